"""Routes of /api/v1/retention, /api/v1/legal-holds and /api/v1/erasures: how long the org
keeps its events, the holds that keep some whatever the policy says, and erasing events'
content. Anyone who may read events sees the policy and holds; only an owner, signed in,
changes them or erases."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, Field
from starlette.responses import Response

from sealog import auth, erasure, retention
from sealog.api.bodies import JsonBodyRoute
from sealog.api.deps import CurrentPrincipal, RedactorDep, SettingsDep, StoreDep
from sealog.api.schemas import PROBLEM_RESPONSES

router = APIRouter(prefix="/api/v1", tags=["retention"], route_class=JsonBodyRoute)


class PolicyIn(BaseModel):
    """days: how long events are kept (null: forever); lock: from now on the policy can
    only be lengthened."""

    days: int | None = Field(description="1 to 36500, or null to keep forever")
    lock: bool = False


class HoldIn(BaseModel):
    """A legal hold on the whole log, or on the events that occurred in [from, to)."""

    name: str
    reason: str
    from_: str | None = Field(None, alias="from", description="RFC 3339; open when absent")
    to: str | None = Field(None, description="RFC 3339; open when absent")


class HoldOut(BaseModel):
    id: str
    name: str
    reason: str
    occurred_from: str | None
    occurred_to: str | None
    whole_log: bool
    created_by: str | None
    created_at: str
    released_at: str | None
    released_by: str | None
    active: bool


class PolicyOut(BaseModel):
    days: int | None
    locked: bool
    locked_at: str | None
    min_days: int | None = Field(description="the fewest days this deployment allows")
    retained_from_index: int = Field(description="events before this index were removed "
                                                 "under the policy")
    purge: dict[str, Any] | None = Field(description="a purge under way: to_index, "
                                                     "record_index")
    last_purge_record_index: int | None
    holds: list[HoldOut]


class HoldList(BaseModel):
    data: list[HoldOut]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


@router.get("/retention", response_model=PolicyOut, responses=PROBLEM_RESPONSES,
            summary="The org's retention policy, what purges removed, and its legal holds")
def get_policy(principal: CurrentPrincipal, store: StoreDep,
               settings: SettingsDep) -> Response:
    principal.require("events:read")
    return _json(retention.view(store, principal.org_id,
                                min_days=settings.retention_min_days))


@router.put("/retention", response_model=PolicyOut, responses=PROBLEM_RESPONSES,
            summary="Set how long the org keeps its events (owners)")
def put_policy(spec: PolicyIn, principal: CurrentPrincipal, store: StoreDep,
               redactor: RedactorDep, settings: SettingsDep) -> Response:
    auth.require_owner(principal, "change the retention policy")
    retention.set_policy(store=store, redactor=redactor, org_id=principal.org_id,
                         actor=principal.actor, days=spec.days, lock=spec.lock,
                         min_days=settings.retention_min_days)
    return _json(retention.view(store, principal.org_id,
                                min_days=settings.retention_min_days))


@router.get("/legal-holds", response_model=HoldList, responses=PROBLEM_RESPONSES,
            summary="The org's legal holds, released ones too, oldest first")
def list_holds(principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("events:read")
    return _json({"data": [retention.hold_view(h) for h in store.list_holds(principal.org_id)]})


@router.post("/legal-holds", status_code=201, response_model=HoldOut,
             responses=PROBLEM_RESPONSES, summary="Place a legal hold (owners)")
def place_hold(spec: HoldIn, principal: CurrentPrincipal, store: StoreDep,
               redactor: RedactorDep) -> Response:
    auth.require_owner(principal, "place a legal hold")
    row = retention.place_hold(store=store, redactor=redactor, org_id=principal.org_id,
                               actor=principal.actor, name=spec.name, reason=spec.reason,
                               occurred_from=spec.from_, occurred_to=spec.to)
    return _json(retention.hold_view(row), 201)


@router.post("/legal-holds/{hold_id}/release", response_model=HoldOut,
             responses=PROBLEM_RESPONSES, summary="Release a legal hold (owners)")
def release_hold(hold_id: str, principal: CurrentPrincipal, store: StoreDep,
                 redactor: RedactorDep) -> Response:
    auth.require_owner(principal, "release a legal hold")
    row = retention.release_hold(store=store, redactor=redactor, org_id=principal.org_id,
                                 actor=principal.actor, hold_id=hold_id)
    return _json(retention.hold_view(row))


class ErasureQuery(BaseModel):
    """The events to erase: a query of the search language over the whole kept log."""

    query: str


class ErasureIn(ErasureQuery):
    """The erasure itself: why, and how many events the preview showed (the confirmation:
    refused when the query matches another number by then)."""

    reason: str
    expected_count: int


class ErasurePreview(BaseModel):
    count: int
    held: int = Field(description="how many of them a legal hold keeps (then refused)")
    first_occurred_at: str | None
    last_occurred_at: str | None


class ErasureDone(BaseModel):
    request_index: int = Field(description="the audit_log.erased event's index")
    count: int


@router.post("/erasures/preview", response_model=ErasurePreview, responses=PROBLEM_RESPONSES,
             summary="What erasing a query's events would erase (owners)")
def preview_erasure(spec: ErasureQuery, principal: CurrentPrincipal,
                    store: StoreDep) -> Response:
    auth.require_owner(principal, "erase events")
    matched = erasure.matching(store, principal.org_id, spec.query)
    times_ = sorted(d.occurred_us for d in matched.events)
    return _json({"count": len(matched.events), "held": len(matched.held),
                  "first_occurred_at": retention.time_text(times_[0]) if times_ else None,
                  "last_occurred_at": retention.time_text(times_[-1]) if times_ else None})


@router.post("/erasures", status_code=201, response_model=ErasureDone,
             responses=PROBLEM_RESPONSES,
             summary="Erase the content of a query's events, keeping their place (owners)")
def erase(spec: ErasureIn, principal: CurrentPrincipal, store: StoreDep,
          redactor: RedactorDep) -> Response:
    auth.require_owner(principal, "erase events")
    done = erasure.erase(store=store, redactor=redactor, org_id=principal.org_id,
                         actor=principal.actor, query=spec.query, reason=spec.reason,
                         expected=spec.expected_count)
    return _json({"request_index": done.request_index, "count": len(done.indexes)}, 201)
