"""Closing an org's log (offboarding a tenant): the closing record appended last and signed
in a final checkpoint; then the org's events, members, keys, exports, streams and settings
deleted. Its row, checkpoints, tree of hashes and closing record stay, so that an auditor
holding an old checkpoint can be shown that the log was closed, not forked. What the CLI
calls.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

from sealog import times
from sealog.events import Redactor
from sealog.ingest import record_action
from sealog.ledger import bundle, checkpoint, closure, tree
from sealog.ledger.export import bundle_lines
from sealog.ledger.note import Signer
from sealog.store.base import CheckpointRow, Conflict, NotFound, Store, StoredDoc, wait_after

DELETE_BATCH = 1000
_MONTH_STEP_US = 28 * 86_400 * 10**6  # shorter than any month: a mark in each


@dataclass(frozen=True)
class Closure:
    """A closed log: when, the index of its closing record (its last event), the final
    checkpoint that covers it, and how many events this call deleted."""

    org_id: str
    closed_at: int
    record_index: int
    checkpoint: CheckpointRow
    deleted: int


def close_org(*, store: Store, redactor: Redactor, signer: Signer, host: str, org_id: str,
              actor: dict[str, Any], batch: int = DELETE_BATCH, pause: float = 0,
              progress: Callable[[int], None] | None = None) -> Closure:
    """Closes the org's log and deletes what it held; raises NotFound, and Conflict while a
    legal hold is in place. Called again after a crash, it goes on where it stopped."""
    org = store.get_org(org_id)
    if org.closed_at is None:
        with store.writing() as tx:
            tx.lock_retention(org_id)  # holds are placed under it: none is missed
            head = tx.lock_log(org_id)
            held = [h for h in tx.list_holds(org_id) if h.released_at is None]
            if held:
                raise Conflict(f"the legal hold {held[0].name!r} ({held[0].id}) keeps the "
                               f"events of org {org_id!r}; release it (sealog holds "
                               "release) before deleting the org; nothing was deleted")
            record_action(
                tx=tx, redactor=redactor, org_id=org_id, action=closure.CLOSED, actor=actor,
                resource={"type": "organization", "id": org_id},
                description=(f"The log of {org.name} was closed: its {head.size:,} events "
                             "before this one, its members, keys and settings are deleted; "
                             "its checkpoints and tree hashes are kept"),
                metadata={"events_before": head.size})
            tx.close_org(org_id, times.now_us())
        org = store.get_org(org_id)
    assert org.closed_at is not None
    record_index = org.log_size - 1
    # Nothing can be appended any more: this checkpoint is the last the log will have.
    signed = checkpoint.sign_latest(store=store, signer=signer, host=host, org_id=org_id)
    (record,) = store.iter_events_by_index(org_id, record_index, record_index + 1)
    first = next(iter(store.iter_events_by_index(org_id, 0, record_index)), None) or record
    # From the org's creation: a closing resumed after a crash scrubs the months that the
    # run before it emptied too.
    start, first_received, last_received = first.index, org.created_at, _received(record)
    deleted = 0
    stopping = threading.Event()
    while start < record_index:
        started = time.monotonic()
        stop = min(start + batch, record_index)
        with store.writing(scrub=True) as tx:
            deleted += tx.delete_events(org_id, start, stop)
        start = stop
        if progress is not None:
            progress(deleted)
        wait_after(started, pause, stopping)
    with store.writing(scrub=True) as tx:
        files = tx.delete_org_rows(org_id)
    for name in files:
        Path(name).unlink(missing_ok=True)
    store.release_emptied_storage(pause=pause, scrub=True)
    store.scrub_erased(org_id, list(range(first_received, last_received, _MONTH_STEP_US))
                       + [last_received])
    return Closure(org_id, org.closed_at, record_index, signed, deleted)


def _received(stored: StoredDoc) -> int:
    return times.parse_rfc3339(orjson.loads(stored.doc)["received_at"])


def write_closure(out: IO[bytes], *, store: Store, org_id: str, host: str,
                  from_sizes: Iterable[int] = ()) -> int:
    """Writes the closed log's closure file (a bundle): the closing record with its proof
    against the final checkpoint, and a consistency proof to that checkpoint from each of
    from_sizes; raises NotFound, and Conflict for an org whose log is open."""
    org = store.get_org(org_id)
    if org.closed_at is None:
        raise Conflict(f"the log of org {org_id!r} is open; a closure file is made of a "
                       "closed log (sealog orgs delete)")
    final = store.latest_checkpoint(org_id)
    if final is None or final.size != org.log_size:
        raise NotFound(f"the final checkpoint of org {org_id!r} is not signed yet; run "
                       "sealog orgs delete again to finish closing it")
    proofs = {}
    for size in sorted(set(from_sizes)):
        if not 0 < size <= final.size:
            raise ValueError(f"--from-size {size}: the log held 1 to {final.size:,} events")
        proofs[size] = tree.consistency_proof(store=store, org_id=org_id, old=size,
                                              new=final.size)
    header = bundle.header_line(
        org_id=org_id, origin=checkpoint.origin(host, org_id), tree_size=final.size,
        complete=False, count=1, selection={},
        closed=closure.header_field(record_index=final.size - 1, closed_at=org.closed_at,
                                    proofs=proofs))
    docs = store.iter_events_by_index(org_id, final.size - 1, final.size)
    makers = tree.ProofMaker(store=store, org_id=org_id, size=final.size)
    return bundle.write_bundle(out, header=header, entries=bundle_lines(docs, makers, None),
                               note=final.note)


__all__ = ["Closure", "close_org", "write_closure"]
