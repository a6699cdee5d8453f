"""Appending events to an org's log: validation, idempotency, index, canonical form, hashes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import orjson

from sealog import events, search, times
from sealog.events import EventValidationError, FieldError, NewEvent, Redactor
from sealog.ledger import tree
from sealog.store.base import EventRow, Store


class Accepted(NamedTuple):
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


@dataclass
class Prepared:
    """A validated event with everything that does not depend on its place in the log."""

    new: NewEvent
    search_text: str
    word_pairs: str
    field_tokens: str
    columns: tuple[str | None, ...]


# The stored qualifier columns, in EventRow's order after action.
_COLUMNS = ("actor_id", "actor_email", "actor_name", "resource_type", "resource_id", "method",
            "path", "ip")


def prepare(new: NewEvent) -> Prepared:
    """The index columns and search words of a validated event (done outside the write lock)."""
    doc = new.doc
    actor = doc["actor"]
    resource = doc["resource"] or {}
    request = doc["request"] or {}
    columns = (
        _lower(actor["id"]), _lower(actor["email"]), _lower(actor["name"]),
        _lower(resource.get("type")), _lower(resource.get("id")), request.get("method"),
        _lower(request.get("path")), _lower(doc["context"]["ip"]),
    )
    tokens = search.field_tokens((
        ("category", doc["category"]), ("result", doc["result"]), ("action", doc["action"]),
        *zip(_COLUMNS, columns, strict=True),
    ))
    return Prepared(new, *search.search_words(doc), tokens, columns)


def seal(prepared: Prepared, *, org_id: str, index: int) -> EventRow:
    """The stored row of a prepared event placed at index in org_id's log."""
    new = prepared.new
    doc = new.doc
    doc["org_id"] = org_id
    doc["index"] = index
    canonical = events.canonical_bytes(doc, exact=new.needs_exact_jcs)
    return EventRow(
        org_id, index, doc["id"], new.occurred_us, doc["category"], doc["result"],
        doc["action"], *prepared.columns, events.leaf_hash(canonical),
        prepared.search_text, prepared.word_pairs, prepared.field_tokens, canonical,
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
    prepared = [prepare(new) for new in validated]
    supplied = [p.new.doc["id"] for p in prepared if p.new.id_supplied]
    with store.writing() as tx:
        head = tx.lock_log(org_id)
        size = head.size
        stored = tx.existing_events(org_id, supplied) if supplied else {}
        accepted: list[Accepted] = []
        rows: list[EventRow] = []
        in_batch: dict[str, EventRow] = {}
        conflicts: list[FieldError] = []
        for position, item in enumerate(prepared):
            event_id = item.new.doc["id"]
            prior_doc = in_batch[event_id].doc if event_id in in_batch else stored.get(event_id)
            if prior_doc is not None:
                prior = orjson.loads(prior_doc)
                if events.same_content(prior, item.new):
                    accepted.append(Accepted(event_id, prior["index"], True))
                else:
                    conflicts.append(FieldError(
                        position, "id",
                        f"event {event_id} is already stored (index {prior['index']}) "
                        "with different content",
                    ))
                continue
            row = seal(item, org_id=org_id, index=size + len(rows))
            in_batch[event_id] = row
            rows.append(row)
            accepted.append(Accepted(event_id, row.index, False))
        if conflicts:
            raise IdConflict(conflicts)
        new_head, nodes = tree.append_leaves(head, [r.leaf_hash for r in rows])
        tx.insert_events(rows)
        tx.insert_tree_nodes(org_id, nodes)
        tx.set_log_head(org_id, new_head)
    return accepted


def record_action(*, store: Store, redactor: Redactor, org_id: str, action: str,
                  actor: dict[str, Any], result: str = "success",
                  category: str | None = None, event_type: str | None = None,
                  description: str | None = None,
                  resource: dict[str, Any] | None = None,
                  metadata: dict[str, Any] | None = None,
                  context: dict[str, Any] | None = None) -> None:
    """Appends one event about an action taken through Sealog itself (a sign-in, a key or
    member change, an export) to the org's own log."""
    event: dict[str, Any] = {"action": action, "result": result, "actor": actor}
    optional = {"category": category, "event_type": event_type, "description": description,
                "resource": resource, "metadata": metadata, "context": context}
    event.update((k, v) for k, v in optional.items() if v is not None)
    ingest(store=store, org_id=org_id, raw_events=[event], redactor=redactor)


__all__ = ["Accepted", "EventValidationError", "IdConflict", "ingest", "prepare",
           "record_action", "seal"]
