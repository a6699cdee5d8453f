"""Routes of /api/v1/streams: an org's streams of its log to webhooks and syslog receivers;
owners and admins make, list, change, pause, resume, replay, test and delete them."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from sealog.api.bodies import JsonBodyRoute
from sealog.api.deps import CurrentPrincipal, RedactorDep, SettingsDep, StoreDep
from sealog.api.schemas import PROBLEM_RESPONSES
from sealog.streams import delivery, manage

router = APIRouter(prefix="/api/v1/streams", tags=["streams"], route_class=JsonBodyRoute)
JSON = "application/json"


Kind = Literal["webhook", "syslog"]
Format = Literal["sealog", "ocsf", "cloudevents"]


class StreamIn(BaseModel):
    """A stream: where to (a webhook's https URL; tcp:// or tls://host:port for syslog),
    in which format, from when, which events, and batch limits."""

    model_config = ConfigDict(extra="forbid")
    name: str
    url: str
    kind: Kind = "webhook"
    format: Format = "sealog"
    start: Literal["now", "beginning"] = "now"
    headers: dict[str, str] = Field(default_factory=dict)
    categories: list[str] = []
    query: str = Field("", description="only events matching this search query are sent")
    include_proofs: bool = Field(False, description="each batch carries every event's "
                                 "inclusion proof against its checkpoint")
    ca_bundle: str | None = Field(None, description="syslog over TLS: the CA certificates "
                                  "(PEM) to trust instead of the system's")
    batch_events: int = delivery.DEFAULT_BATCH_EVENTS
    batch_bytes: int = delivery.DEFAULT_BATCH_BYTES


class StreamChanges(BaseModel):
    """The settings to change; those left out stay. headers, when given, replace them all."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    url: str | None = None
    format: Format | None = None
    headers: dict[str, str] | None = None
    categories: list[str] | None = None
    query: str | None = None
    include_proofs: bool | None = None
    ca_bundle: str | None = None
    batch_events: int | None = None
    batch_bytes: int | None = None


class ReplayIn(BaseModel):
    """Where to move the cursor: an index of the log, or a received time (RFC 3339)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    index: int | None = None
    from_: str | None = Field(None, alias="from")


class StreamOut(BaseModel):
    id: str
    name: str
    kind: Kind
    format: Format
    url: str
    header_names: list[str]
    categories: list[str]
    query: str
    include_proofs: bool
    ca_bundle: str | None
    batch_events: int
    batch_bytes: int
    state: Literal["active", "paused", "failing", "disabled"]
    next_index: int
    last_delivered_index: int | None
    lag_events: int
    lag_seconds: float = Field(description="how long the oldest event not yet delivered "
                               "has been in the log (0 when none is waiting)")
    delivered: int
    failures: int
    attempts: int
    last_delivered_at: str | None
    last_error: str | None
    failing_since: str | None
    retry_at: str | None
    created_at: str
    updated_at: str


class CreatedStream(StreamOut):
    secret: str | None = Field(description="A webhook's signing secret (whsec_…), shown "
                               "this once; null for syslog")


class StreamList(BaseModel):
    data: list[StreamOut]


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


def _shown(store: Any, row: Any) -> dict[str, Any]:
    return manage.view(store, row)


def _box(request: Request) -> Any:
    return request.app.state.streams_box


@router.post("", status_code=201, response_model=CreatedStream, responses=PROBLEM_RESPONSES,
             summary="Make a stream; its signing secret is in this answer only")
async def create(spec: StreamIn, request: Request, principal: CurrentPrincipal,
                 store: StoreDep, redactor: RedactorDep, settings: SettingsDep) -> Response:
    principal.require("admin")
    policy = manage.Policy(allow_http=settings.streams_allow_http,
                           allow_private=settings.streams_allow_private)

    def made() -> dict[str, Any]:
        row, secret = manage.create_stream(
            store=store, box=_box(request), redactor=redactor, policy=policy,
            org_id=principal.org_id, actor=principal.actor, name=spec.name, url=spec.url,
            kind=spec.kind, fmt=spec.format, start=spec.start, headers=spec.headers,
            categories=spec.categories, query=spec.query, include_proofs=spec.include_proofs,
            ca_bundle=spec.ca_bundle, batch_events=spec.batch_events,
            batch_bytes=spec.batch_bytes)
        return {**_shown(store, row), "secret": secret}

    return _json(await run_in_threadpool(made), 201)


@router.get("", response_model=StreamList, responses=PROBLEM_RESPONSES,
            summary="The org's streams, oldest first")
def list_all(principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("admin")
    size = store.log_head(principal.org_id).size
    return _json({"data": [manage.view(store, r, size)
                            for r in store.list_streams(principal.org_id)]})


@router.get("/{stream_id}", response_model=StreamOut, responses=PROBLEM_RESPONSES,
            summary="One stream: its settings, cursor, lag and state")
def get_one(stream_id: str, principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("admin")
    return _json(_shown(store, manage.get_stream(store, principal.org_id, stream_id)))


@router.patch("/{stream_id}", response_model=StreamOut, responses=PROBLEM_RESPONSES,
              summary="Change a stream's settings; its place and state stay")
async def update(stream_id: str, spec: StreamChanges, request: Request,
                 principal: CurrentPrincipal, store: StoreDep, redactor: RedactorDep,
                 settings: SettingsDep) -> Response:
    principal.require("admin")
    policy = manage.Policy(allow_http=settings.streams_allow_http,
                           allow_private=settings.streams_allow_private)
    # A field sent as null asks nothing, but ca_bundle: null puts the system's CAs back.
    changes = spec.model_dump(exclude_unset=True)
    changes = {k: v for k, v in changes.items() if v is not None or k == "ca_bundle"}

    def updated() -> dict[str, Any]:
        row = manage.update_stream(store=store, box=_box(request), redactor=redactor,
                                   policy=policy, org_id=principal.org_id,
                                   actor=principal.actor, stream_id=stream_id,
                                   changes=changes)
        return _shown(store, row)

    return _json(await run_in_threadpool(updated))


@router.post("/{stream_id}/pause", response_model=StreamOut, responses=PROBLEM_RESPONSES,
             summary="Pause a stream; it keeps its place")
def pause(stream_id: str, principal: CurrentPrincipal, store: StoreDep,
          redactor: RedactorDep) -> Response:
    principal.require("admin")
    row = manage.set_state(store=store, redactor=redactor, org_id=principal.org_id,
                           actor=principal.actor, stream_id=stream_id, action="pause")
    return _json(_shown(store, row))


@router.post("/{stream_id}/resume", response_model=StreamOut, responses=PROBLEM_RESPONSES,
             summary="Resume a paused, failing or disabled stream, at once")
def resume(stream_id: str, principal: CurrentPrincipal, store: StoreDep,
           redactor: RedactorDep) -> Response:
    principal.require("admin")
    row = manage.set_state(store=store, redactor=redactor, org_id=principal.org_id,
                           actor=principal.actor, stream_id=stream_id, action="resume")
    return _json(_shown(store, row))


@router.post("/{stream_id}/replay", response_model=StreamOut, responses=PROBLEM_RESPONSES,
             summary="Send again from an index of the log or a received time")
def replay(stream_id: str, spec: ReplayIn, principal: CurrentPrincipal, store: StoreDep,
           redactor: RedactorDep) -> Response:
    principal.require("admin")
    row = manage.replay(store=store, redactor=redactor, org_id=principal.org_id,
                        actor=principal.actor, stream_id=stream_id, index=spec.index,
                        received_from=spec.from_)
    return _json(_shown(store, row))


class TestOut(BaseModel):
    delivered: bool = Field(description="whether the destination answered 2xx")
    status: int | None = Field(description="the destination's HTTP status, if it answered")
    error: str | None = Field(description="its answer or the network error, when not 2xx")


@router.post("/{stream_id}/test", response_model=TestOut, responses=PROBLEM_RESPONSES,
             summary="Send the destination a signed test message now and show its answer")
def send_test(stream_id: str, request: Request, principal: CurrentPrincipal,
              store: StoreDep, settings: SettingsDep) -> Response:
    principal.require("admin")
    row = manage.get_stream(store, principal.org_id, stream_id)
    attempt = delivery.send_test(store=store, box=_box(request), signer=request.app.state.signer,
                                 host=settings.log_host, stream=row,
                                 allow_private=settings.streams_allow_private)
    return _json({"delivered": attempt.delivered, "status": attempt.status,
                  "error": attempt.error})


class RotateIn(BaseModel):
    """How long the current secrets stay valid beside the new one (seconds)."""

    model_config = ConfigDict(extra="forbid")
    overlap_seconds: float = manage.DEFAULT_OVERLAP_SECONDS


@router.post("/{stream_id}/rotate-secret", response_model=CreatedStream,
             responses=PROBLEM_RESPONSES,
             summary="A new signing secret, in this answer only; the old stays valid a while")
def rotate_secret(stream_id: str, spec: RotateIn, request: Request,
                  principal: CurrentPrincipal, store: StoreDep,
                  redactor: RedactorDep) -> Response:
    principal.require("admin")
    row, secret = manage.rotate_secret(
        store=store, box=_box(request), redactor=redactor, org_id=principal.org_id,
        actor=principal.actor, stream_id=stream_id, overlap_seconds=spec.overlap_seconds)
    return _json({**_shown(store, row), "secret": secret})


@router.delete("/{stream_id}", status_code=204, responses=PROBLEM_RESPONSES,
               summary="Delete a stream")
def delete(stream_id: str, principal: CurrentPrincipal, store: StoreDep,
           redactor: RedactorDep) -> Response:
    principal.require("admin")
    manage.delete_stream(store=store, redactor=redactor, org_id=principal.org_id,
                         actor=principal.actor, stream_id=stream_id)
    return Response(status_code=204)
