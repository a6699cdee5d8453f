"""Reading an org's log: one event, a page of events, a count, as the API returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from sealog import times
from sealog.search import Cursor, EventFilter, FilterError
from sealog.store.base import NotFound, Store, StoredDoc

MAX_PAGE = 200


def event_json(stored: StoredDoc) -> bytes:
    """The event as the API shows it: the canonical document plus its leaf_hash."""
    return stored.doc[:-1] + b',"leaf_hash":"' + stored.leaf_hash.hex().encode() + b'"}'


@dataclass(frozen=True)
class Page:
    """Events newest first, the cursor of the next page (None on the last), and where the
    retained part of the log starts when the window reaches before it (else None)."""

    events: list[StoredDoc]
    next_cursor: str | None
    retained_from: dict[str, Any] | None = None

    def json(self) -> bytes:
        data = b",".join(event_json(e) for e in self.events)
        return (b'{"data":[' + data + b'],"next_cursor":' + orjson.dumps(self.next_cursor)
                + b',"retained_from":' + orjson.dumps(self.retained_from) + b"}")


def retained_from(store: Store, flt: EventFilter) -> dict[str, Any] | None:
    """Where the org's retained events start, when flt's window reaches before it: the
    events received before were removed under its retention policy. None otherwise."""
    kept = store.get_retention(flt.org_id)
    if kept is None or kept.pruned_before == 0:
        return None
    first = next(iter(store.iter_events_by_index(flt.org_id, kept.pruned_before,
                                                 kept.pruned_before + 1)), None)
    received = None if first is None else orjson.loads(first.doc)["received_at"]
    if received is not None and flt.time_range.start_us >= times.parse_rfc3339(received):
        return None
    return {"index": kept.pruned_before, "received_at": received, "policy_days": kept.days}


def get_event(*, store: Store, org_id: str, event_id: str) -> StoredDoc:
    """The event of org_id with that id; raises NotFound (also for another org's event)."""
    stored = store.get_event(org_id, event_id)
    if stored is None:
        raise NotFound(f"event {event_id!r} does not exist")
    return stored


def find_events(
    *, store: Store, flt: EventFilter, cursor: str | None = None, limit: int = 50,
    budget: float | None = None,
) -> Page:
    """A page of the events flt selects; raises CursorError for a bad cursor, FilterError
    for a limit out of range, QueryTooCostly past budget seconds of database work."""
    if not 1 <= limit <= MAX_PAGE:
        raise FilterError(f"limit must be between 1 and {MAX_PAGE}")
    after = Cursor.decode(cursor) if cursor else None
    found = store.list_events(flt, cursor=after, limit=limit + 1, budget=budget)
    retained = retained_from(store, flt)
    if len(found) > limit:
        last = found[limit - 1]
        return Page(found[:limit], Cursor(last.occurred_us, last.id).encode(), retained)
    return Page(found, None, retained)


def count_events(*, store: Store, flt: EventFilter, budget: float | None = None) -> int:
    """The exact number of events flt selects; raises QueryTooCostly past budget seconds of
    database work."""
    return store.count_events(flt, budget=budget)
