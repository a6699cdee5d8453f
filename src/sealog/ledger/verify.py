"""Verifying a log against a signed checkpoint: every failure named, with index and event id.

Used by `sealog verify` online (entries fetched from a server) and offline (a bundle).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from hashlib import sha256

import orjson

from sealog.ledger import merkle
from sealog.ledger.bundle import Entry

MODIFIED = "modified"
MISSING = "missing"
REORDERED = "reordered"
BAD_SIGNATURE = "bad signature"
UNKNOWN_KEY = "unknown key"
INCONSISTENT = "inconsistent checkpoint"
ROOT_MISMATCH = "root mismatch"


@dataclass(frozen=True)
class Failure:
    """One thing that is wrong: its kind, where, and in plain words what."""

    kind: str
    detail: str
    index: int | None = None
    event_id: str | None = None

    def line(self) -> str:
        where = f" index {self.index}" if self.index is not None else ""
        event = f" event {self.event_id}" if self.event_id else ""
        return f"FAILED {self.kind}:{where}{event}: {self.detail}"


@dataclass
class Report:
    """What a verification found: valid events out of those the checkpoint commits to, and
    those before them that the retention policy removed (pruned)."""

    total: int = 0
    valid: int = 0
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    pruned: int = 0
    erased: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and self.valid + self.pruned + self.erased == self.total

    def text(self) -> str:
        if self.pruned or self.erased:
            kept = self.total - self.pruned - self.erased
            count = f"{self.valid}/{kept} {'retained ' if self.pruned else ''}events valid"
            count += f", {self.erased} erased" if self.erased else ""
            count += f", {self.pruned} pruned" if self.pruned else ""
            count += f" of {self.total}"
        else:
            count = f"{self.valid}/{self.total} events valid"
        lines = [*self.notes, count]
        lines += [f.line() for f in self.failures]
        return "\n".join(lines)


@dataclass(frozen=True)
class Pruned:
    """The log's removed prefix as its server describes it: the events before `size` are
    gone, and hashes are the perfect subtrees of their leaves, largest first (checked with
    the rest against the signed root)."""

    size: int
    hashes: list[bytes]


# An audit_log.purged event Sealog recorded: what a removed prefix must be explained by.
_PURGE_MARK = b'"action":"audit_log.purged"'


_ERASURE_MARK = b'"action":"audit_log.erased"'
_TOMBSTONE = re.compile(rb'^\{"erased":\{"request_index":(\d+),')


def _erasure_request(entry: Entry) -> tuple[int, str, int] | None:
    """(count, indexes_sha256, first_index) of an erasure request Sealog recorded, or None."""
    if _ERASURE_MARK not in entry.event:
        return None
    try:
        doc = orjson.loads(entry.event)
        if doc.get("action") != "audit_log.erased" or (doc.get("recorded_by") or {}).get(
                "type") != "sealog":
            return None
        meta = doc["metadata"]
        return int(meta["count"]), str(meta["indexes_sha256"]), int(meta["first_index"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def tombstone_request(entry: Entry) -> int | None:
    """The index of the erasure request an erased event's tombstone names, or None."""
    match = _TOMBSTONE.match(entry.event)
    return int(match.group(1)) if match else None


def indexes_digest(indexes: list[int]) -> str:
    """The SHA-256 (hex) of indexes in ascending order, written as decimal numbers joined by
    commas: what an erasure request records of the events it erased."""
    return sha256(",".join(map(str, sorted(indexes))).encode()).hexdigest()


def _leaf(entry: Entry) -> bytes:
    """The leaf an entry stands for: its bytes' hash, or, erased, its stored leaf hash (the
    content is gone; the root says whether the hash is the one sealed)."""
    if tombstone_request(entry) is not None:
        return entry.leaf_hash
    return merkle.leaf_hash(entry.event)


def _purge_record(entry: Entry) -> int | None:
    """The retained_from_index of a purge record that Sealog itself recorded, or None (for
    a tombstone too: its stored hash is taken as it is, not its bytes)."""
    if _PURGE_MARK not in entry.event or tombstone_request(entry) is not None:
        return None
    try:
        doc = orjson.loads(entry.event)
        if doc.get("action") != "audit_log.purged" or (doc.get("recorded_by") or {}).get(
                "type") != "sealog":
            return None
        value = doc["metadata"]["retained_from_index"]
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_INDEX_FIELD = re.compile(rb'"id":"([^"]*)","index":(\d+),"metadata":')


def _identity(event: bytes) -> tuple[str | None, int | None]:
    """The id and index an event's bytes claim (None when unreadable)."""
    match = _INDEX_FIELD.search(event)
    if match:
        return match.group(1).decode(), int(match.group(2))
    try:
        doc = orjson.loads(event)
        return doc.get("id"), doc.get("index")
    except (orjson.JSONDecodeError, AttributeError):
        return None, None


ProofSource = Callable[[], Iterable[Entry]]


def verify_log(
    entries: Iterable[Entry],
    *,
    size: int,
    root: bytes,
    with_proofs: ProofSource | None = None,
    progress: Callable[[int], None] | None = None,
    pruned: Pruned | None = None,
) -> Report:
    """Checks that entries are exactly the size events the checkpoint (size, root) commits to.

    with_proofs, when given, re-reads the entries with inclusion proofs; it is used only
    when the events do not hash to the root, to name the events that differ. pruned, when
    given, is a removed prefix: entries then start after it, and a purge record among them
    (an audit_log.purged event that Sealog recorded) must explain it.
    """
    report = Report(total=size)
    start = 0 if pruned is None else pruned.size
    compact = merkle.CompactRange() if pruned is None else merkle.CompactRange(
        pruned.size, pruned.hashes)
    expected = start
    gap = False
    flagged: set[int] = set()
    purges: list[tuple[int, int]] = []  # (its index, retained_from_index) of purge records
    requests: dict[int, tuple[int, str, int]] = {}  # erasure requests by index
    erased: dict[int, list[int]] = {}  # the erased events' indexes by their request's
    for count, entry in enumerate(entries, 1):
        if entry.index >= size:
            break
        if entry.index < start:
            event_id, _ = _identity(entry.event)
            report.failures.append(Failure(
                MODIFIED, f"is still here, though the server says events before {start} "
                "were removed", entry.index, event_id))
            continue
        retained_from = _purge_record(entry)
        if retained_from is not None:
            purges.append((entry.index, retained_from))
        request = _erasure_request(entry)
        if request is not None:
            requests[entry.index] = request
        if entry.index < expected:
            event_id, _ = _identity(entry.event)
            report.failures.append(Failure(
                REORDERED, f"appears after index {expected - 1}", entry.index, event_id))
            flagged.add(entry.index)
            continue
        if entry.index > expected:
            report.failures.append(_missing(expected, entry.index))
            gap = True
        leaf = sha256(b"\x00" + entry.event).digest()
        by = tombstone_request(entry) if leaf != entry.leaf_hash else None
        if by is not None:
            erased.setdefault(by, []).append(entry.index)
            leaf = entry.leaf_hash
        elif leaf != entry.leaf_hash:
            report.failures.append(_changed(entry, "its content no longer matches its leaf hash"))
            flagged.add(entry.index)
        if not gap:
            compact.append(leaf)
        expected = entry.index + 1
        if progress is not None and count % 10000 == 0:
            progress(count)
    if expected < size:
        report.failures.append(_missing(expected, size))
        gap = True
    if progress is not None:
        progress(expected)
    if start:
        _explain_pruned(report, start, [p for p in purges if p[0] not in flagged])
    _explain_erased(report, start, erased, {i: r for i, r in requests.items()
                                            if i not in flagged})
    if not gap and compact.root() == root:
        report.valid = size - start - len(flagged) - sum(map(len, erased.values()))
        return report
    if with_proofs is None:
        report.failures.append(Failure(
            ROOT_MISMATCH, "the events do not hash to the signed root; "
            "no proofs were available to say which differ"))
        return report
    report.valid = 0
    failed: dict[int, str | None] = {}
    for entry in with_proofs():
        if entry.index >= size or entry.proof is None:
            continue
        try:
            merkle.verify_inclusion(_leaf(entry), entry.index, size, entry.proof, root)
        except merkle.ProofError:
            if entry.index not in flagged:
                event_id, sealed_at = _identity(entry.event)
                if sealed_at != entry.index:
                    report.failures.append(_changed(entry, ""))
                    flagged.add(entry.index)
                else:
                    failed[entry.index] = event_id
            continue
        if entry.index not in flagged and tombstone_request(entry) is None:
            report.valid += 1
    for index, event_id in sorted(failed.items()):
        sibling = index ^ 1
        if sibling in failed and sibling < index:
            continue
        if sibling in failed:
            # A leaf's proof holds its sibling's hash: when both fail, either may have changed.
            detail = (f"this event or index {sibling} (event {failed[sibling]}) differs from "
                      "what the checkpoint commits to; their leaf hashes were rewritten too")
        else:
            detail = "differs from the event the checkpoint commits to"
        report.failures.append(Failure(MODIFIED, detail, index, event_id))
        flagged.add(index)
    if (report.valid + report.erased + len(failed) + len(flagged) < size - start
            and not report.failures):
        report.failures.append(Failure(ROOT_MISMATCH, "the events do not hash to the signed root"))
    report.failures.sort(key=lambda f: (f.index is None, f.index or 0))
    return report


def _explain_pruned(report: Report, start: int, purges: list[tuple[int, int]]) -> None:
    """Counts the events before start as pruned when a valid purge record reaches at least
    that far; else they are missing."""
    explaining = [(index, reach) for index, reach in purges if reach >= start]
    if not explaining:
        report.failures.append(Failure(
            MISSING, f"no events at indexes 0 to {start - 1} ({start} events), and no "
            "purge record of the retention policy explains their removal", 0))
        return
    index, reach = explaining[-1]
    report.pruned = start
    in_progress = f"; the purge it ordered reaches {reach - 1}" if reach > start else ""
    report.notes.append(f"{start} events pruned under the retention policy (indexes 0–"
                        f"{start - 1}, purge recorded at index {index}{in_progress})")


def _explain_erased(report: Report, start: int, erased: dict[int, list[int]],
                    requests: dict[int, tuple[int, str, int]]) -> None:
    """Counts erased events as erased when the request their tombstones name is a valid
    erasure request that lists exactly them (those a later purge removed aside); every
    other erased event, and every request its tombstones do not match, is a failure."""
    for request_index in sorted(set(erased) | set(requests)):
        found = erased.get(request_index, [])
        request = requests.get(request_index)
        if request is None:
            if request_index < start:  # the request itself was purged since
                report.erased += len(found)
                continue
            for index in found:
                report.failures.append(Failure(
                    MODIFIED, f"its content is a tombstone naming an erasure request at "
                    f"index {request_index}, and there is none", index))
            continue
        count, digest, first = request
        partly_pruned = first < start
        matches = (len(found) <= count and all(i >= start for i in found) if partly_pruned
                   else len(found) == count and indexes_digest(found) == digest)
        if not matches:
            report.failures.append(Failure(
                MODIFIED, f"the erasure request at this index lists {count} events, and "
                f"the tombstones naming it are {len(found)} other ones", request_index))
            continue
        report.erased += len(found)
        if found:
            report.notes.append(f"{len(found)} events erased (request at index "
                                f"{request_index})")


def verify_entries_with_proofs(entries: Iterable[Entry], *, size: int, root: bytes) -> Report:
    """Checks entries one by one against the checkpoint with their inclusion proofs (for
    bundles that hold a selection of events, not all of them)."""
    report = Report(total=0)
    last = -1
    requests: set[int] = set()
    for entry in entries:
        report.total += 1
        event_id, sealed_at = _identity(entry.event)
        if entry.index <= last:
            report.failures.append(Failure(
                REORDERED, f"appears after index {last}", entry.index, event_id))
            continue
        last = entry.index
        if sealed_at != entry.index:
            report.failures.append(Failure(
                REORDERED, f"holds the event sealed at index {sealed_at}", entry.index, event_id))
            continue
        if entry.proof is None or entry.index >= size:
            report.failures.append(Failure(
                MODIFIED, "has no inclusion proof in the checkpoint", entry.index, event_id))
            continue
        try:
            merkle.verify_inclusion(_leaf(entry), entry.index, size, entry.proof, root)
        except merkle.ProofError:
            report.failures.append(Failure(
                MODIFIED, "differs from the event the checkpoint commits to",
                entry.index, event_id))
            continue
        request = tombstone_request(entry)
        if request is not None:  # its place and leaf hash proven; its content erased
            report.erased += 1
            requests.add(request)
            continue
        report.valid += 1
    if requests:
        report.notes.append(f"{report.erased} events erased, their place and leaf hash "
                            "proven (requests at index "
                            f"{', '.join(map(str, sorted(requests)))})")
    return report


def _changed(entry: Entry, detail: str) -> Failure:
    """A failure for an entry whose bytes are not what was sealed at its place: another
    event's (reordered) or altered ones (modified)."""
    event_id, sealed_at = _identity(entry.event)
    if sealed_at is not None and sealed_at != entry.index:
        return Failure(REORDERED, f"holds the event sealed at index {sealed_at}", entry.index,
                       event_id)
    return Failure(MODIFIED, detail or "differs from the event the checkpoint commits to",
                   entry.index, event_id)


def _missing(start: int, stop: int) -> Failure:
    if stop - start == 1:
        return Failure(MISSING, "no event at this index (a gap in the log)", start)
    return Failure(MISSING, f"no events at indexes {start} to {stop - 1} "
                            f"({stop - start} events)", start)
