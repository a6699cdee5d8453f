"""The JSON Lines form of log entries: the /log/entries answer and the export bundle.

An entry line is `{"index":N,"leaf_hash":"<hex>"[,"proof":[<base64>…]],"event":<event>}`
where <event> is the event's canonical (RFC 8785) bytes, verbatim: the leaf hash is
SHA-256(0x00 || those bytes). A bundle is a header line, entry lines, and a closing line
`{"checkpoint":"<signed note>"}` that the proofs are against. See docs/integrity.md.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import IO, Any

import orjson

BUNDLE_FORMAT = "sealog-bundle/1"
_EVENT_KEY = b',"event":'


class BundleError(ValueError):
    """Raised for a line that is not an entry, header or checkpoint line."""


@dataclass(frozen=True)
class Entry:
    """One log entry: its index, the leaf hash the source claims, a proof, the event bytes."""

    index: int
    leaf_hash: bytes
    event: bytes
    proof: list[bytes] | None = None


def entry_line(index: int, leaf_hash: bytes, event: bytes, proof: list[bytes] | None = None
               ) -> bytes:
    """The JSON line of one entry (ending in a newline)."""
    head: dict[str, Any] = {"index": index, "leaf_hash": leaf_hash.hex()}
    if proof is not None:
        head["proof"] = [base64.b64encode(p).decode() for p in proof]
    return orjson.dumps(head)[:-1] + _EVENT_KEY + event + b"}\n"


def parse_entry_line(line: bytes) -> Entry:
    """The entry a line holds; its event bytes are returned exactly as written."""
    cut = line.find(_EVENT_KEY)
    if cut < 0 or not line.rstrip().endswith(b"}"):
        raise BundleError("not an entry line (no event)")
    try:
        head = orjson.loads(line[:cut] + b"}")
        proof = head.get("proof")
        return Entry(
            index=int(head["index"]),
            leaf_hash=bytes.fromhex(head["leaf_hash"]),
            event=line[cut + len(_EVENT_KEY) : line.rstrip().rfind(b"}")],
            proof=None if proof is None else [base64.b64decode(p, validate=True)
                                              for p in proof],
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise BundleError(f"malformed entry line: {exc}") from None


def header_line(*, org_id: str, origin: str, tree_size: int, complete: bool,
                count: int | None, selection: dict[str, Any]) -> bytes:
    """The first line of a bundle: what it holds and whether every index is present."""
    return orjson.dumps({
        "format": BUNDLE_FORMAT, "org_id": org_id, "origin": origin, "tree_size": tree_size,
        "complete": complete, "count": count, "selection": selection,
    }) + b"\n"


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
