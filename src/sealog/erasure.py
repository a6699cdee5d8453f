"""Erasure: an owner removes the content of the events a query matches (a person's right to
be forgotten, a secret sent by mistake), each event keeping its place, index and leaf hash
under a tombstone that names the request; the request is an event of the log. What the API
and the CLI call.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import orjson

from sealog import times
from sealog.events import Redactor
from sealog.ingest import record_action
from sealog.ledger.verify import indexes_digest
from sealog.search import Cursor, EventFilter, build_filter
from sealog.store.base import Conflict, HoldRow, Store, StoredDoc

ERASED = "audit_log.erased"
# The whole of time a search can name: an erasure looks at every event kept.
_ALL_TIME = "0001-01-01T00:00:00Z"
_PAGE = 1000


class ErasureError(ValueError):
    """A request that cannot be carried out, naming why."""


class Match(NamedTuple):
    """An event a query matches: its place, and when it occurred (which holds cover)."""

    index: int  # type: ignore[assignment]  # the log's word; shadows tuple.index
    occurred_us: int


@dataclass(frozen=True)
class Matched:
    """The kept, not yet erased events a query matches, and those of them a hold covers."""

    events: list[Match]
    held: list[Match]


@dataclass(frozen=True)
class Erasure:
    """An erasure done: its request's index in the log and the indexes it erased."""

    request_index: int
    indexes: list[int]


def is_tombstone(doc: bytes) -> bool:
    return doc.startswith(b'{"erased":')


def _filter(org_id: str, query: str) -> EventFilter:
    if not query.strip():
        raise ErasureError("query: say which events to erase, e.g. actor:usr_123; an empty "
                           "query would erase the whole log")
    return build_filter(org_id=org_id, q=query, range_preset="custom", start=_ALL_TIME)


def _covered(doc: StoredDoc | Match, holds: list[HoldRow]) -> bool:
    return any((h.occurred_from is None or doc.occurred_us >= h.occurred_from)
               and (h.occurred_to is None or doc.occurred_us < h.occurred_to)
               for h in holds if h.released_at is None)


def matching(store: Store, org_id: str, query: str) -> Matched:
    """What erasing query would erase now, and what of it a legal hold keeps."""
    flt = _filter(org_id, query)
    found: list[Match] = []
    cursor: Cursor | None = None
    while True:
        page = store.list_events(flt, cursor=cursor, limit=_PAGE)
        found += [Match(d.index, d.occurred_us) for d in page if not is_tombstone(d.doc)]
        if len(page) < _PAGE:
            break
        cursor = Cursor(page[-1].occurred_us, page[-1].id)
    holds = store.list_holds(org_id)
    return Matched(found, [d for d in found if _covered(d, holds)])


def tombstone(doc: StoredDoc, request_index: int, erased_at: str) -> bytes:
    """What stays of an erased event: its id, place, times, org and category, and the
    request that erased it."""
    original = orjson.loads(doc.doc)
    return orjson.dumps({
        "erased": {"request_index": request_index, "erased_at": erased_at},
        "id": original["id"], "index": original["index"], "org_id": original["org_id"],
        "occurred_at": original["occurred_at"], "received_at": original["received_at"],
        "category": original["category"], "result": original["result"],
    })


def erase(*, store: Store, redactor: Redactor, org_id: str, actor: dict[str, Any],
          query: str, reason: str, expected: int) -> Erasure:
    """Erases the events query matches, when they are `expected` many (what the caller was
    shown) and no hold covers one; raises ErasureError or Conflict naming why not."""
    reason = reason.strip()
    if not reason or len(reason) > 2000:
        raise ErasureError("reason: 1 to 2000 characters; say why the events are erased")
    matched = sorted(d.index for d in matching(store, org_id, query).events)
    # Documents are read a page at a time, twice (to check, then to erase), so that memory
    # holds a page of them, not every match; all in one transaction with the request.
    with store.writing(scrub=True) as tx:
        tx.lock_retention(org_id)  # no purge or hold meanwhile
        holds = tx.list_holds(org_id)
        # Read again under the lock: an event erased or purged since the search is no
        # longer there to erase.
        indexes: list[int] = []
        received: list[int] = []
        held = 0
        for start in range(0, len(matched), _PAGE):
            current = tx.docs_at(org_id, matched[start:start + _PAGE])
            events = [d for d in current.values() if not is_tombstone(d.doc)]
            indexes += [d.index for d in events]
            received += [_received_us(d) for d in events]
            held += sum(_covered(d, holds) for d in events)
        if len(indexes) != expected:
            raise Conflict(f"the query matches {len(indexes):,} events now, not "
                           f"{expected:,}; look at what it matches again")
        if not indexes:
            raise ErasureError("query: it matches no event to erase")
        if held:
            raise Conflict(f"{held:,} of the {len(indexes):,} events are under a legal "
                           "hold; release it, or narrow the query")
        head = tx.lock_log(org_id)
        request_index = head.size
        indexes.sort()
        now = times.format_rfc3339(times.now_us())
        record_action(
            tx=tx, redactor=redactor, org_id=org_id, action=ERASED, actor=actor,
            resource={"type": "audit_log", "id": org_id},
            description=f"Erased the content of {len(indexes):,} events",
            metadata={"query": query, "reason": reason, "count": len(indexes),
                      "indexes_sha256": indexes_digest(indexes),
                      "first_index": indexes[0], "last_index": indexes[-1]})
        for start in range(0, len(indexes), _PAGE):
            current = tx.docs_at(org_id, indexes[start:start + _PAGE])
            tx.erase_events(org_id, [(d.index, tombstone(d, request_index, now))
                                     for d in current.values()])
        # An export made before may hold what is erased: it ends, and its file goes.
        withdrawn = [row for row in (tx.withdraw_export(org_id, e.id, times.now_us())
                                     for e in store.list_exports(org_id)) if row is not None]
    for row in withdrawn:
        if row.file_path:
            Path(row.file_path).unlink(missing_ok=True)
    store.scrub_erased(org_id, received)
    return Erasure(request_index, indexes)


def _received_us(doc: StoredDoc) -> int:
    return times.parse_rfc3339(orjson.loads(doc.doc)["received_at"])
