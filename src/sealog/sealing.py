"""Preparing validated events for an org's log: each event's whole stored row but its
index and received time (in any process), then sealed with both, under the log's lock, into
its canonical form and leaf hash."""

from __future__ import annotations

from typing import Any, NamedTuple

from sealog import events, search, times
from sealog.events import NewEvent, Redactor
from sealog.store.base import EventRow


class Sealable(NamedTuple):
    """A validated event of one org, prepared: its whole stored row but its index, and its
    canonical form cut where the index and received_at go. Plain values, so it can cross
    processes."""

    id: str
    id_supplied: bool
    occurred_supplied: bool
    occurred_us: int
    category: str
    result: str
    action: str
    actor_id: str | None
    actor_email: str | None
    actor_name: str | None
    resource_type: str | None
    resource_id: str | None
    method: str | None
    path: str | None
    ip: str | None
    search_text: str
    word_pairs: str
    field_tokens: str
    received_us: int  # what validation took as received_at: the least the stored one may be
    canonical_head: bytes
    canonical_middle: bytes
    canonical_tail: bytes


def prepare(new: NewEvent, *, org_id: str,
            recorded_by: dict[str, Any] = events.RECORDED_BY_SEALOG) -> Sealable:
    """Everything of a validated event's row that does not depend on its place in the log;
    recorded_by (server-set, sealed with the event) names the credential that wrote it."""
    doc = new.doc
    doc["org_id"] = org_id
    doc["recorded_by"] = recorded_by
    columns = search.stored_columns(doc)
    tokens = search.field_tokens((
        ("category", doc["category"]), ("result", doc["result"]), ("action", doc["action"]),
        *zip(search.STORED_COLUMNS, columns, strict=True),
    ))
    return Sealable(
        doc["id"], new.id_supplied, new.occurred_supplied, new.occurred_us, doc["category"],
        doc["result"], doc["action"], *columns, *search.search_words(doc), tokens,
        new.received_us, *events.canonical_parts(doc, exact=new.needs_exact_jcs),
    )


def prepare_events(raw_events: list[Any], *, org_id: str, received_at_us: int,
                   redactor: Redactor,
                   recorded_by: dict[str, Any] = events.RECORDED_BY_SEALOG) -> list[Sealable]:
    """The batch validated and prepared; raises EventValidationError naming every problem."""
    validated = events.validate_events(raw_events, received_at_us=received_at_us,
                                       redactor=redactor)
    return [prepare(new, org_id=org_id, recorded_by=recorded_by) for new in validated]


def canonical(item: Sealable, index: int, received_at: str) -> bytes:
    """The RFC 8785 bytes of a prepared event placed at index, received at received_at
    (RFC 3339, as times.format_rfc3339 writes it)."""
    return b"".join((item.canonical_head, str(index).encode(), item.canonical_middle,
                     received_at.encode(), item.canonical_tail))


def seal(item: Sealable, *, org_id: str, index: int, received_at: str | None = None) -> EventRow:
    """The stored row of a prepared event placed at index in org_id's log, received at
    received_at (None: at the time it was validated against)."""
    if received_at is None:
        received_at = times.format_rfc3339(item.received_us)
    doc = canonical(item, index, received_at)
    return EventRow(
        org_id=org_id, index=index, id=item.id, occurred_us=item.occurred_us,
        category=item.category, result=item.result, action=item.action,
        actor_id=item.actor_id, actor_email=item.actor_email, actor_name=item.actor_name,
        resource_type=item.resource_type, resource_id=item.resource_id, method=item.method,
        path=item.path, ip=item.ip, leaf_hash=events.leaf_hash(doc),
        search_text=item.search_text, word_pairs=item.word_pairs,
        field_tokens=item.field_tokens, doc=doc,
    )


__all__ = ["Sealable", "canonical", "prepare", "prepare_events", "seal"]
