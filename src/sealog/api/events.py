"""Routes of /api/v1/events: ingest, list, count, get."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sealog import eventlog, search
from sealog.api.bodies import JSON, read_json_body
from sealog.api.deps import CurrentPrincipal, RedactorDep, StoreDep
from sealog.api.problems import Problem
from sealog.api.schemas import PROBLEM_RESPONSES, Event, EventCount, EventPage, IngestResult
from sealog.events import (
    EVENT_BATCH_SCHEMA_ADAPTER,
    MAX_BATCH_BYTES,
    FieldError,
    recorded_by_api_key,
)
from sealog.ingest import ingest

router = APIRouter(prefix="/api/v1", tags=["events"])
T = TypeVar("T")


class Searches:
    """Runs searches (lists and counts) at most `concurrency` at once, each in a thread of
    the pool, so that however costly they are the pool keeps threads, and the cores keep
    time, for ingest and health checks. The others wait their turn without a thread, for at
    most `wait` seconds; each runs at most `budget` seconds of database work."""

    def __init__(self, *, concurrency: int, wait: float, budget: float):
        self.limiter = anyio.CapacityLimiter(concurrency)
        self.wait = wait
        self.budget = budget

    async def run(self, search: Callable[[float], T]) -> T:
        """search(budget) in a thread once a turn is free; 503 after waiting too long."""
        with anyio.move_on_after(self.wait) as waiting:
            await self.limiter.acquire()
        if waiting.cancelled_caught:
            raise Problem(
                503, f"{self.limiter.total_tokens:g} searches are running and this one waited "
                f"{self.wait:g} s for its turn; try again shortly", kind="unavailable",
                headers={"Retry-After": "1"})
        try:
            return await run_in_threadpool(search, self.budget)
        finally:
            self.limiter.release()


def _batch_events(body: object) -> list:
    if not isinstance(body, dict):
        raise Problem(422, 'the body must be an object {"events": [...]}', kind="validation",
                      errors=[FieldError(None, "body", "must be an object")])
    unknown = sorted(set(body) - {"events"})
    if unknown:
        raise Problem(422, f"unknown field {unknown[0]!r}", kind="validation",
                      errors=[FieldError(None, unknown[0], "unknown field")])
    if "events" not in body:
        raise Problem(422, "events: field required", kind="validation",
                      errors=[FieldError(None, "events", "field required")])
    return body["events"]  # type: ignore[return-value]


_BATCH_SCHEMA = EVENT_BATCH_SCHEMA_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")


@router.post(
    "/events",
    status_code=201,
    response_model=IngestResult,
    responses={**PROBLEM_RESPONSES, 409: PROBLEM_RESPONSES[422], 413: PROBLEM_RESPONSES[422]},
    summary="Append a batch of events (atomic)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {JSON: {"schema": {"$ref": "#/components/schemas/EventBatchIn"}}},
        }
    },
)
async def post_events(
    request: Request, principal: CurrentPrincipal, store: StoreDep, redactor: RedactorDep
) -> Response:
    principal.require("events:write")
    if principal.key_id is None:  # users hold no events:write; only keys send events
        raise Problem(403, "events are sent with an API key", kind="forbidden")
    recorded_by = recorded_by_api_key(principal.key_id)
    raw = _batch_events(await read_json_body(request, MAX_BATCH_BYTES))
    preparers = request.app.state.preparers
    accepted = await run_in_threadpool(
        lambda: ingest(store=store, org_id=principal.org_id, raw_events=raw, redactor=redactor,
                       preparers=preparers, recorded_by=recorded_by)
    )
    request.app.state.checkpointer.poke()
    body = orjson.dumps({"events": [a.as_dict() for a in accepted]})
    return Response(body, status_code=201, media_type=JSON)


Q = Annotated[str | None, Query(description="search language, e.g. `guard -denied actor:a@b.c`")]
Categories = Annotated[list[str] | None, Query(description="repeatable")]
Results = Annotated[list[str] | None, Query(description="repeatable")]
Range = Annotated[
    str | None, Query(alias="range", description="24h (default), 7d, 30d, month, custom")
]
From = Annotated[str | None, Query(alias="from", description="RFC 3339, with range=custom")]
To = Annotated[str | None, Query(description="RFC 3339, exclusive, with range=custom")]
Tz = Annotated[str | None, Query(description="IANA time zone for range=month")]


def event_filter(
    principal: CurrentPrincipal,
    q: Q = None,
    category: Categories = None,
    result: Results = None,
    range_: Range = None,
    from_: From = None,
    to: To = None,
    tz: Tz = None,
) -> search.EventFilter:
    """The filter the query parameters describe, in the caller's org (events:read)."""
    principal.require("events:read")
    return search.build_filter(
        org_id=principal.org_id, range_preset=range_, start=from_, end=to, tz=tz,
        categories=category or (), results=result or (), q=q,
    )


FilterDep = Annotated[search.EventFilter, Depends(event_filter)]


SEARCH_RESPONSES = {**PROBLEM_RESPONSES, 503: PROBLEM_RESPONSES[422]}


@router.get("/events", response_model=EventPage, responses=SEARCH_RESPONSES,
            summary="Search events, newest first")
async def list_events(
    request: Request,
    flt: FilterDep,
    store: StoreDep,
    limit: Annotated[int, Query(ge=1, le=eventlog.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    searches: Searches = request.app.state.searches
    body = await searches.run(lambda budget: eventlog.find_events(
        store=store, flt=flt, cursor=cursor, limit=limit, budget=budget).json())
    return Response(body, media_type=JSON)


@router.get("/events/count", response_model=EventCount, responses=SEARCH_RESPONSES,
            summary="Count the events a search selects")
async def count_events(request: Request, flt: FilterDep, store: StoreDep) -> Response:
    searches: Searches = request.app.state.searches
    count = await searches.run(
        lambda budget: eventlog.count_events(store=store, flt=flt, budget=budget))
    return Response(orjson.dumps({"count": count}), media_type=JSON)


@router.get("/events/{event_id}", response_model=Event, responses=PROBLEM_RESPONSES,
            summary="One event with its request, response and leaf hash")
def get_event(event_id: str, principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("events:read")
    stored = eventlog.get_event(store=store, org_id=principal.org_id, event_id=event_id)
    return Response(eventlog.event_json(stored), media_type=JSON)
