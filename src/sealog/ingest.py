"""Appending events to an org's log: validation, idempotency, index, canonical form, hashes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sealog import events, search, times
from sealog.events import EventValidationError, FieldError, NewEvent, Redactor
from sealog.store.base import EventRow, Store


@dataclass(frozen=True)
class Accepted:
    """What ingest says of one event: its id, its index in the log, and whether it was
    already stored (a retry)."""

    id: str
    index: int
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


def seal(new: NewEvent, *, org_id: str, index: int) -> EventRow:
    """The stored row of a validated event placed at index in org_id's log."""
    doc = new.doc
    doc["org_id"] = org_id
    doc["index"] = index
    canonical = events.canonical_bytes(doc, exact=new.needs_exact_jcs)
    actor = doc["actor"]
    resource = doc["resource"]
    request = doc["request"]
    return EventRow(
        org_id=org_id,
        index=index,
        id=doc["id"],
        occurred_us=new.occurred_us,
        category=doc["category"],
        result=doc["result"],
        action=doc["action"],
        actor_id=_lower(actor["id"]),
        actor_email=_lower(actor["email"]),
        actor_name=_lower(actor["name"]),
        resource_type=_lower(resource["type"]) if resource else None,
        resource_id=_lower(resource["id"]) if resource else None,
        method=request["method"] if request else None,
        path=_lower(request["path"]) if request else None,
        ip=_lower(doc["context"]["ip"]),
        content_hash=new.content_hash,
        leaf_hash=events.leaf_hash(canonical),
        search_text=search.search_text(doc),
        keys_text=search.keys_text(doc),
        doc=canonical,
    )


def _lower(value: str | None) -> str | None:
    return value.lower() if value is not None else None


def ingest(
    *,
    store: Store,
    org_id: str,
    raw_events: list[Any],
    redactor: Redactor,
    received_at_us: int | None = None,
) -> list[Accepted]:
    """Appends a batch atomically and says where each event went.

    Raises EventValidationError (any invalid event), IdConflict (an id re-used with other
    content) or NotFound (no such org); in each case nothing is stored.
    """
    received = times.now_us() if received_at_us is None else received_at_us
    validated = events.validate_events(raw_events, received_at_us=received, redactor=redactor)
    with store.writing() as tx:
        size = tx.lock_log(org_id)
        stored = tx.existing_events(org_id, [e.doc["id"] for e in validated])
        accepted: list[Accepted] = []
        rows: list[EventRow] = []
        in_batch: dict[str, tuple[int, bytes]] = {}
        conflicts: list[FieldError] = []
        for position, new in enumerate(validated):
            event_id = new.doc["id"]
            prior = stored.get(event_id) or in_batch.get(event_id)
            if prior is not None:
                if prior[1] == new.content_hash:
                    accepted.append(Accepted(event_id, prior[0], True))
                else:
                    conflicts.append(FieldError(
                        position, "id",
                        f"event {event_id} is already stored (index {prior[0]}) "
                        "with different content",
                    ))
                continue
            row = seal(new, org_id=org_id, index=size + len(rows))
            in_batch[event_id] = (row.index, row.content_hash)
            rows.append(row)
            accepted.append(Accepted(event_id, row.index, False))
        if conflicts:
            raise IdConflict(conflicts)
        tx.insert_events(rows)
        tx.set_log_size(org_id, size + len(rows))
    return accepted


__all__ = ["Accepted", "EventValidationError", "IdConflict", "ingest", "seal"]
