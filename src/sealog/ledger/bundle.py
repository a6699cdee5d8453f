"""The JSON Lines form of log entries: the /log/entries answer and the export bundle.

An entry line is `{"index":N,"leaf_hash":"<hex>"[,"proof":[<base64>…]],"event":<event>}`
where <event> is the event's canonical (RFC 8785) bytes, verbatim: the leaf hash is
SHA-256(0x00 || those bytes). A bundle is a header line, entry lines, and a closing line
`{"checkpoint":"<signed note>"}` that the proofs are against. See docs/integrity.md.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import IO, Any

import orjson

BUNDLE_FORMAT = "sealog-bundle/1"
_EVENT_KEY = b',"event":'


class BundleError(ValueError):
    """Raised for a line that is not an entry, header or checkpoint line."""


class Entry:
    """One log entry: its index, the leaf hash the source claims, the event bytes, and its
    inclusion proof (decoded only when asked for)."""

    __slots__ = ("index", "leaf_hash", "event", "proof_json")

    def __init__(self, index: int, leaf_hash: bytes, event: bytes,
                 proof_json: bytes | None = None):
        self.index = index
        self.leaf_hash = leaf_hash
        self.event = event
        self.proof_json = proof_json

    @property
    def proof(self) -> list[bytes] | None:
        if self.proof_json is None:
            return None
        try:
            return [base64.b64decode(p, validate=True) for p in orjson.loads(self.proof_json)]
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise BundleError(f"entry {self.index} has a malformed proof") from None


def entry_line(index: int, leaf_hash: bytes, event: bytes, proof: list[bytes] | None = None,
               *, proof_b64: list[str] | None = None) -> bytes:
    """The JSON line of one entry (ending in a newline)."""
    if proof is not None:
        proof_b64 = [base64.b64encode(p).decode() for p in proof]
    # Base64 and hex need no JSON escaping, so the line is assembled directly.
    if proof_b64 is None:
        proof_part = ""
    elif proof_b64:
        proof_part = ',"proof":["' + '","'.join(proof_b64) + '"]'
    else:
        proof_part = ',"proof":[]'
    head = f'{{"index":{index},"leaf_hash":"{leaf_hash.hex()}"{proof_part}'
    return head.encode() + _EVENT_KEY + event + b"}\n"


_INDEX_PREFIX = b'{"index":'
_LEAF_PREFIX = b',"leaf_hash":"'
_PROOF_PREFIX = b'","proof":'


def parse_entry_line(line: bytes) -> Entry:
    """The entry a line holds; its event bytes are returned exactly as written."""
    # Lines are read by position, not parsed whole: a bundle of a million events is
    # checked at the speed of hashing (bench/verify.py).
    end = len(line)
    while end and line[end - 1] in b"\r\n":
        end -= 1
    cut = line.find(_EVENT_KEY)
    if cut < 0 or line[:9] != _INDEX_PREFIX or line[end - 1] != 125:  # 125 is "}"
        raise BundleError("not an entry line")
    comma = line.find(b",", len(_INDEX_PREFIX))
    leaf_at = comma + len(_LEAF_PREFIX)
    if line[comma:leaf_at] != _LEAF_PREFIX:
        raise BundleError("an entry line has no leaf_hash after its index")
    index_text = line[len(_INDEX_PREFIX) : comma]
    if not index_text.isdigit():  # ASCII digits only, and no sign, space or "_" int() takes
        raise BundleError("an entry line has a malformed index or leaf_hash")
    try:
        index = int(index_text)
        leaf = bytes.fromhex(line[leaf_at : leaf_at + 64].decode())
    except ValueError:
        raise BundleError("an entry line has a malformed index or leaf_hash") from None
    rest = line[leaf_at + 64 : cut]
    if rest == b'"':
        proof = None
    elif rest.startswith(_PROOF_PREFIX):
        proof = rest[len(_PROOF_PREFIX) :]
    else:
        raise BundleError("an entry line has unexpected fields")
    return Entry(index, leaf, line[cut + len(_EVENT_KEY) : end - 1], proof)


def header_line(*, org_id: str, origin: str, tree_size: int, complete: bool,
                count: int | None, selection: dict[str, Any],
                pruned: dict[str, Any] | None = None,
                closed: dict[str, Any] | None = None) -> bytes:
    """The first line of a bundle: what it holds and whether every index is present; with
    pruned, that the events before pruned["retained_from_index"] were removed under the
    org's retention policy (and, in a complete bundle, their leaves' subtree hashes); with
    closed, that it is a closed log's closure file (ledger/closure.py)."""
    header: dict[str, Any] = {
        "format": BUNDLE_FORMAT, "org_id": org_id, "origin": origin, "tree_size": tree_size,
        "complete": complete, "count": count, "selection": selection,
    }
    if pruned is not None:
        header["pruned"] = pruned
    if closed is not None:
        header["closed"] = closed
    return orjson.dumps(header) + b"\n"


def checkpoint_line(note: str) -> bytes:
    return orjson.dumps({"checkpoint": note}) + b"\n"


def write_bundle(out: IO[bytes], *, header: bytes, entries: Iterable[bytes], note: str) -> int:
    """Writes header, entry lines and the checkpoint line; returns the number of entries."""
    out.write(header)
    count = 0
    for line in entries:
        out.write(line)
        count += 1
    out.write(checkpoint_line(note))
    return count
