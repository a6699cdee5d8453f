"""What `sealog verify` runs: a server's log, one event, or a bundle file, against pinned keys."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import rfc8785

from sealog.ledger import closure, merkle
from sealog.ledger.bundle import BUNDLE_FORMAT, BundleError, Entry, parse_entry_line
from sealog.ledger.checkpoint import Checkpoint, CheckpointError, open_checkpoint
from sealog.ledger.note import SignatureError, Verifier
from sealog.ledger.verify import (
    BAD_SIGNATURE,
    INCONSISTENT,
    MISSING,
    MODIFIED,
    UNKNOWN_KEY,
    Failure,
    Pruned,
    Report,
    verify_entries_with_proofs,
    verify_log,
)

PAGE = 1000
Progress = Callable[[int], None]


class AuditError(Exception):
    """Raised when verification cannot run at all (server unreachable, unreadable file)."""


def checked_checkpoint(note: str, verifiers: list[Verifier], report: Report
                       ) -> Checkpoint | None:
    """The checkpoint note opened with the pinned keys, or None with the failure reported."""
    try:
        cp = open_checkpoint(note, verifiers)
    except SignatureError as exc:
        kind = UNKNOWN_KEY if str(exc).startswith("unknown key") else BAD_SIGNATURE
        report.failures.append(Failure(kind, f"checkpoint: {exc}"))
        return None
    except CheckpointError as exc:
        report.failures.append(Failure(BAD_SIGNATURE, f"checkpoint is malformed: {exc}"))
        return None
    report.notes.append(f"Checkpoint: {cp.origin}, {cp.size} events, signed by {cp.key.name}+"
                        f"{cp.key.id.hex()}")
    return cp


class Server:
    """A Sealog server seen through its public API with one API key."""

    def __init__(self, url: str, api_key: str, *, timeout: float = 60,
                 client: httpx.Client | None = None):
        self.client = client or httpx.Client(base_url=url.rstrip("/") + "/api/v1",
                                              timeout=timeout)
        self.client.headers["Authorization"] = f"Bearer {api_key}"

    def close(self) -> None:
        self.client.close()

    def _get(self, path: str, **params: str | int | None) -> httpx.Response:
        try:
            response = self.client.get(path, params={k: v for k, v in params.items()
                                                     if v is not None})
        except httpx.HTTPError as exc:
            raise AuditError(f"cannot reach the server: {exc}") from None
        if response.status_code != 200:
            raise AuditError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
        return response

    def checkpoint(self) -> str:
        return self._get("/log/checkpoint").text

    def pruned(self) -> Pruned | None:
        """The log's prefix removed under the retention policy, or None when none is."""
        body = self._get("/log/pruned").json()
        if not body["retained_from_index"]:
            return None
        return Pruned(body["retained_from_index"], [base64.b64decode(h) for h in body["hashes"]])

    def consistency(self, old: int, new: int) -> list[bytes]:
        hashes = self._get("/log/proof/consistency", **{"from": old, "to": new}).json()["hashes"]
        return [base64.b64decode(h) for h in hashes]

    def inclusion(self, index: int, size: int) -> list[bytes]:
        hashes = self._get("/log/proof/inclusion", index=index, tree_size=size).json()["hashes"]
        return [base64.b64decode(h) for h in hashes]

    def event(self, event_id: str) -> dict:
        return self._get(f"/events/{event_id}").json()

    def entries(self, size: int, *, proofs: bool = False) -> Iterator[Entry]:
        start = 0
        while start < size:
            response = self._get("/log/entries", start=start, limit=PAGE,
                                 proofs_for=size if proofs else None)
            # Lines end in "\n" alone: str.splitlines() would also split inside an event at
            # U+2028, U+0085, \x1c and other characters JSON carries unescaped.
            page = [parse_entry_line(line) for line in response.content.split(b"\n")
                    if line.strip()]
            if not page:
                return
            yield from page
            start = page[-1].index + 1


def _load_state(path: Path | None) -> dict:
    if path is None or not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read the state file {path}: {exc}") from None


def _save_state(path: Path | None, state: dict) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(path)


def verify_server(
    server: Server, verifiers: list[Verifier], *, state_path: Path | None,
    progress: Progress | None = None,
) -> Report:
    """Checks the server's checkpoint, its consistency with the last one seen, and every event."""
    report = Report()
    cp = checked_checkpoint(server.checkpoint(), verifiers, report)
    if cp is None:
        return report
    report.total = cp.size
    state = _load_state(state_path)
    seen = state.get(cp.origin)
    if seen is not None:
        old_size, old_root = seen["size"], base64.b64decode(seen["root"])
        try:
            if old_size > cp.size:
                raise merkle.ProofError(f"the log shrank from {old_size} to {cp.size} events")
            if 0 < old_size < cp.size:
                merkle.verify_consistency(old_size, cp.size, server.consistency(old_size, cp.size),
                                          old_root, cp.root)
            elif old_size == cp.size and old_root != cp.root:
                raise merkle.ProofError("same size, different root")
        except merkle.ProofError as exc:
            report.failures.append(Failure(
                INCONSISTENT, f"the checkpoint of size {cp.size} is not consistent with the one "
                f"of size {old_size} seen before ({exc}): the history was rewritten (a fork)"))
            return report
        report.notes.append(f"Consistent with the checkpoint of size {old_size} seen before")
    verified = verify_log(server.entries(cp.size), size=cp.size, root=cp.root,
                          with_proofs=lambda: server.entries(cp.size, proofs=True),
                          progress=progress, pruned=server.pruned())
    report.valid, report.pruned, report.erased = verified.valid, verified.pruned, verified.erased
    report.notes += verified.notes
    report.failures += verified.failures
    state[cp.origin] = {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
    _save_state(state_path, state)
    return report


def verify_event(server: Server, verifiers: list[Verifier], event_id: str) -> Report:
    """Checks one event: its leaf hash from its content, and its inclusion in the checkpoint."""
    report = Report(total=1)
    cp = checked_checkpoint(server.checkpoint(), verifiers, report)
    if cp is None:
        return report
    doc = server.event(event_id)
    claimed = bytes.fromhex(doc.pop("leaf_hash"))
    leaf = merkle.leaf_hash(rfc8785.dumps(doc))
    index = doc["index"]
    if leaf != claimed:
        report.failures.append(Failure(MODIFIED, "its content no longer matches its leaf hash",
                                       index, event_id))
        return report
    if index >= cp.size:
        report.notes.append(f"index {index} is newer than the checkpoint; try again shortly")
        report.failures.append(Failure(MODIFIED, "not yet in a signed checkpoint", index,
                                       event_id))
        return report
    try:
        merkle.verify_inclusion(leaf, index, cp.size, server.inclusion(index, cp.size), cp.root)
    except merkle.ProofError as exc:
        report.failures.append(Failure(MODIFIED, f"not included in the checkpoint ({exc})",
                                       index, event_id))
        return report
    report.valid = 1
    report.notes.append(f"Event {event_id} is index {index}, included in the checkpoint")
    return report


def verify_bundle_file(path: Path, verifiers: list[Verifier],
                       progress: Progress | None = None, state_path: Path | None = None
                       ) -> Report:
    """Checks an export bundle offline: its checkpoint, then its events; a closed log's
    closure file also against the checkpoint seen before, in the state file."""
    try:
        header = _header(path)
        note = _closing_note(path)
    except (OSError, ValueError) as exc:
        raise AuditError(f"cannot read {path}: {exc}") from None
    report = Report()
    if note is None:
        report.failures.append(Failure(BAD_SIGNATURE, "the bundle has no checkpoint line"))
        return report
    cp = checked_checkpoint(note, verifiers, report)
    if cp is None:
        return report
    if header.get("origin") != cp.origin:
        report.failures.append(Failure(
            BAD_SIGNATURE, f"the checkpoint is for {cp.origin}, not {header.get('origin')}"))
        return report
    try:
        if header.get("complete"):
            # Every index is present, from the first retained: hash as the file streams,
            # read proofs only if needed.
            pruned = header.get("pruned")
            verified = verify_log(
                _entries(path), size=cp.size, root=cp.root, with_proofs=lambda: _entries(path),
                progress=progress, pruned=None if not pruned else Pruned(
                    pruned["retained_from_index"],
                    [base64.b64decode(h) for h in pruned["hashes"]]))
        else:
            verified = verify_entries_with_proofs(_entries(path), size=cp.size, root=cp.root)
            count = header.get("count")
            if count is not None and count != verified.total:
                verified.failures.append(Failure(
                    MISSING, f"the bundle says it holds {count} events but has "
                    f"{verified.total}"))
    except BundleError as exc:
        raise AuditError(f"cannot read {path}: {exc}") from None
    report.total, report.valid = verified.total, verified.valid
    report.pruned, report.erased = verified.pruned, verified.erased
    report.notes += verified.notes
    report.failures += verified.failures
    if header.get("closed") is not None and report.ok:
        state = _load_state(state_path)
        seen = state.get(cp.origin)
        closure.check(header["closed"], list(_entries(path)), cp, None if seen is None else
                      (seen["size"], base64.b64decode(seen["root"])), report)
        if report.ok:
            state[cp.origin] = {"size": cp.size, "root": base64.b64encode(cp.root).decode()}
            _save_state(state_path, state)
    return report


def _header(path: Path) -> dict:
    with path.open("rb") as f:
        header = json.loads(f.readline() or b"null")
    if not isinstance(header, dict) or header.get("format") != BUNDLE_FORMAT:
        raise ValueError(f"not a {BUNDLE_FORMAT} file")
    return header


def _entries(path: Path) -> Iterator[Entry]:
    with path.open("rb", buffering=1 << 20) as f:
        next(f, None)
        for line in f:
            if line[:2] == b'{"':
                if line.startswith(b'{"checkpoint":'):
                    return
                yield parse_entry_line(line)
            elif line.strip():
                raise BundleError(f"not a bundle line: {line[:40]!r}")


def _closing_note(path: Path) -> str | None:
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 65536))
        tail = f.read().split(b"\n")
    for line in reversed(tail):
        if line.startswith(b'{"checkpoint":'):
            return json.loads(line)["checkpoint"]
    return None
