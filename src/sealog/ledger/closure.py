"""A closed log's closure file: a bundle of its closing record (its last event, recorded by
Sealog), proven in the final signed checkpoint, with consistency proofs to that checkpoint
from the sizes auditors hold; and its check against the checkpoint an auditor saw before."""

from __future__ import annotations

import base64
from typing import Any

import orjson

from sealog.ledger import merkle
from sealog.ledger.bundle import Entry
from sealog.ledger.checkpoint import Checkpoint
from sealog.ledger.verify import (
    INCONSISTENT,
    MISSING,
    MODIFIED,
    Failure,
    Report,
    tombstone_request,
)

CLOSED = "audit_log.closed"
UNPROVEN = "unproven"


def header_field(*, record_index: int, closed_at: int, proofs: dict[int, list[bytes]]
                 ) -> dict[str, Any]:
    """The header's "closed": where the closing record is, when, and the proofs."""
    return {"record_index": record_index, "closed_at": closed_at, "consistency": [
        {"from_size": size, "proof": [base64.b64encode(h).decode() for h in proof]}
        for size, proof in proofs.items()]}


def check(closed: dict[str, Any], entries: list[Entry], cp: Checkpoint,
          seen: tuple[int, bytes] | None, report: Report) -> None:
    """Adds to report what the closure file proves: that the checkpoint's last event is the
    closing record, and that seen (the size and root an auditor held) is a prefix of it."""
    last = cp.size - 1
    record = next((e for e in entries if e.index == last), None)
    if record is None:
        report.failures.append(Failure(MISSING, "the closure file does not hold the log's "
                                       "last event, the closing record", last))
        return
    try:
        doc = orjson.loads(record.event)
        by_sealog = (doc.get("recorded_by") or {}).get("type") == "sealog"
        action = doc.get("action")
    except (orjson.JSONDecodeError, AttributeError):
        by_sealog, action = False, None
    # Its bytes must be what the tree holds: a tombstone's hash is taken as stored, and a
    # closing record is never erased (a closed log takes no erasure).
    hashed = tombstone_request(record) is None and merkle.leaf_hash(record.event) == \
        record.leaf_hash
    if action != CLOSED or not by_sealog or not hashed or closed.get("record_index") != last:
        report.failures.append(Failure(
            MODIFIED, f"the log's last event is not a closing record ({CLOSED}) that Sealog "
            "recorded: the log was not closed", last))
        return
    report.notes.append(f"Closed: the log's last event, index {last}, is its closing record "
                        f"({doc.get('received_at')}), signed in the final checkpoint of "
                        f"size {cp.size}")
    if seen is None:
        report.notes.append("No checkpoint of this log was seen before (--state): the "
                            "file's consistency proofs were not checked against one")
        return
    size, root = seen
    try:
        proofs = {p["from_size"]: p["proof"] for p in closed.get("consistency", [])}
    except (KeyError, TypeError, AttributeError):
        report.failures.append(Failure(MODIFIED, "the closure file's consistency proofs "
                                       "are not readable"))
        return
    try:
        if size == 0:
            pass  # an empty log is a prefix of any
        elif size > cp.size:
            raise merkle.ProofError(f"the log shrank from {size} to {cp.size} events")
        if size == cp.size:
            if root != cp.root:
                raise merkle.ProofError("same size, different root")
        elif size not in proofs:
            report.failures.append(Failure(
                UNPROVEN, f"the file holds no consistency proof from size {size}, the "
                "checkpoint seen before; ask the operator for one: sealog orgs closure "
                f"ORG --from-size {size}"))
            return
        else:
            merkle.verify_consistency(size, cp.size, [base64.b64decode(h) for h in
                                                      proofs[size]], root, cp.root)
    except (merkle.ProofError, ValueError, TypeError) as exc:
        report.failures.append(Failure(
            INCONSISTENT, f"the final checkpoint of size {cp.size} is not consistent with "
            f"the one of size {size} seen before ({exc}): the history was rewritten (a "
            "fork)"))
        return
    report.notes.append(f"Consistent with the checkpoint of size {size} seen before: the "
                        "log was closed, not forked")


__all__ = ["CLOSED", "check", "header_field"]
