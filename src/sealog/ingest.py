"""Appending events to an org's log: validation, idempotency, index, canonical form, hashes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any, NamedTuple

import orjson

from sealog import events, times
from sealog.events import EventValidationError, FieldError, Redactor
from sealog.ledger import tree
from sealog.preparers import Preparers
from sealog.sealing import Sealable, canonical, prepare_events, seal
from sealog.store.base import EventRow, Store, WriteTx


class Accepted(NamedTuple):
    """What ingest says of one event: its id, its index in the log, and whether it was
    already stored (a retry)."""

    id: str
    index: int  # type: ignore[assignment]  # the log's word; shadows tuple.index
    duplicate: bool

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "index": self.index, "duplicate": self.duplicate}


class IdConflict(ValueError):
    """Raised when a batch re-uses a stored event id with different content; nothing is stored."""

    def __init__(self, errors: list[FieldError]):
        self.errors = errors
        super().__init__(
            f"{len(errors)} event id(s) already stored with different content, "
            f"first at event {errors[0].index}"
        )


def ingest(
    *,
    store: Store,
    org_id: str,
    raw_events: list[Any],
    redactor: Redactor,
    received_at_us: int | None = None,
    preparers: Preparers | None = None,
    recorded_by: dict[str, Any] = events.RECORDED_BY_SEALOG,
) -> list[Accepted]:
    """Appends a batch atomically and says where each event went.

    recorded_by is sealed into each event: the API key that sent the batch, or Sealog
    itself (the default, for what Sealog and its tools store). received_at_us, when given,
    stands for the clock's time (see append). With preparers, the events are validated and
    prepared in their processes while this one stores them, a chunk at a time. Raises
    EventValidationError (any invalid event), IdConflict (an id re-used with other
    content) or NotFound (no such org); in each case nothing is stored.
    """
    received = times.now_us() if received_at_us is None else received_at_us
    if preparers is not None and preparers.takes(raw_events, redactor):
        with preparers.preparing(raw_events, org_id=org_id, received_at_us=received,
                                 recorded_by=recorded_by) as chunks, store.writing() as tx:
            return append(tx, org_id, chunks, received_at_us=received_at_us)
    prepared = prepare_events(raw_events, org_id=org_id, received_at_us=received,
                              recorded_by=recorded_by, redactor=redactor)
    with store.writing() as tx:
        return append(tx, org_id, iter([prepared]), received_at_us=received_at_us)


def append(tx: WriteTx, org_id: str, chunks: Iterator[list[Sealable]], *,
           received_at_us: int | None = None) -> list[Accepted]:
    """Stores prepared events in tx, each chunk as it comes, under tx's lock on the org's
    log; a retried id with the same content is a duplicate, with other content an
    IdConflict, after which tx must be rolled back (as leaving its block by it does).

    The events are received at the clock's time once the lock is taken (or at
    received_at_us), raised to the log's last received_at and to the time each event was
    validated against, so that received_at never falls as the index rises."""
    head = tx.lock_log(org_id)
    # Clocks of machines differ, and one may step back: the last stamp is the floor.
    received = max(times.now_us() if received_at_us is None else received_at_us,
                   head.last_received_us)
    stamp = times.format_rfc3339(received)
    size = head.size
    accepted: list[Accepted] = []
    leaves: list[bytes] = []
    in_batch: dict[str, bytes] = {}
    conflicts: list[FieldError] = []
    position = -1  # of the event in the batch
    for chunk in chunks:
        # occurred_at was checked against this (a clock that stepped back since would leave
        # the stored received_at before it): events_occurred_by_receipt on PostgreSQL.
        checked = max((item.received_us for item in chunk), default=received)
        if checked > received:
            received, stamp = checked, times.format_rfc3339(checked)
        supplied = [item.id for item in chunk if item.id_supplied]
        stored = tx.existing_events(org_id, supplied) if supplied else {}
        rows: list[EventRow] = []
        for item in chunk:
            position += 1
            prior_doc = in_batch.get(item.id) or stored.get(item.id)
            if prior_doc is not None:
                prior = orjson.loads(prior_doc)
                new = orjson.loads(canonical(item, prior["index"], stamp))
                if events.same_content(prior, new, occurred_supplied=item.occurred_supplied):
                    accepted.append(Accepted(item.id, prior["index"], True))
                else:
                    conflicts.append(FieldError(
                        position, "id",
                        f"event {item.id} is already stored (index {prior['index']}) "
                        "with different content",
                    ))
                continue
            row = seal(item, org_id=org_id, index=size, received_at=stamp)
            size += 1
            in_batch[item.id] = row.doc
            rows.append(row)
            leaves.append(row.leaf_hash)
            accepted.append(Accepted(item.id, row.index, False))
        if not conflicts:  # the batch will be refused: store no more of it
            tx.insert_events(rows)
    if conflicts:
        raise IdConflict(conflicts)
    new_head, nodes = tree.append_leaves(head, leaves)
    if leaves:
        new_head = dataclasses.replace(new_head, last_received_us=received)
    tx.insert_tree_nodes(org_id, nodes)
    tx.set_log_head(org_id, new_head)
    return accepted


def record_action(*, tx: WriteTx, redactor: Redactor, org_id: str, action: str,
                  actor: dict[str, Any], result: str = "success",
                  category: str | None = None, event_type: str | None = None,
                  description: str | None = None,
                  resource: dict[str, Any] | None = None,
                  metadata: dict[str, Any] | None = None,
                  context: dict[str, Any] | None = None) -> None:
    """Appends one event about an action taken through Sealog itself (a sign-in, a key or
    member change, an export) to the org's own log, in tx: the transaction of the change."""
    event: dict[str, Any] = {"action": action, "result": result, "actor": actor}
    optional = {"category": category, "event_type": event_type, "description": description,
                "resource": resource, "metadata": metadata, "context": context}
    event.update((k, v) for k, v in optional.items() if v is not None)
    prepared = prepare_events([event], org_id=org_id, received_at_us=times.now_us(),
                              redactor=redactor, recorded_by=events.RECORDED_BY_SEALOG)
    append(tx, org_id, iter([prepared]))


__all__ = ["Accepted", "EventValidationError", "IdConflict", "append", "ingest",
           "record_action"]
