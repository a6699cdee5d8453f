"""Routes of /api/v1/exports: queue, list, read, cancel and download export jobs."""

from __future__ import annotations

from typing import Any, Literal

import orjson
from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import FileResponse, Response

from sealog.api.bodies import JsonBodyRoute
from sealog.api.deps import CurrentPrincipal, RedactorDep, SettingsDep, StoreDep
from sealog.api.problems import Problem
from sealog.api.schemas import PROBLEM_RESPONSES
from sealog.auth import Principal
from sealog.exports import jobs, writers

router = APIRouter(prefix="/api/v1/exports", tags=["exports"], route_class=JsonBodyRoute)
JSON = "application/json"


class ExportIn(BaseModel):
    """What to export: the same range, categories and search as the event list."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    format: Literal["csv", "xlsx", "jsonl"]
    range: str | None = "24h"
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    tz: str | None = None
    categories: list[str] = []
    q: str | None = None


class ExportOut(BaseModel):
    id: str
    name: str
    format: str
    status: Literal["queued", "running", "completed", "failed", "expired", "cancelled"]
    progress: float
    row_count: int | None
    size_bytes: int | None
    sha256: str | None
    error: str | None
    range: str
    from_: str | None = Field(None, alias="from")
    to: str | None
    tz: str | None
    categories: list[str]
    q: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None
    expires_at: str | None
    download_url: str | None


class ExportList(BaseModel):
    data: list[ExportOut]


def _actor(principal: Principal) -> jobs.Actor:
    return jobs.Actor(**principal.actor)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type=JSON)


@router.post("", status_code=202, response_model=ExportOut, responses=PROBLEM_RESPONSES,
             summary="Queue an export")
async def create(spec: ExportIn, principal: CurrentPrincipal, store: StoreDep,
                 redactor: RedactorDep, settings: SettingsDep) -> Response:
    principal.require("exports")
    row = await run_in_threadpool(lambda: jobs.create_export(
        store=store, redactor=redactor, org_id=principal.org_id, actor=_actor(principal),
        name=spec.name, format=spec.format, range_preset=spec.range, start=spec.from_,
        end=spec.to, tz=spec.tz, categories=spec.categories, q=spec.q,
        expires_days=settings.export_expiry_days))
    return _json(jobs.export_view(row), 202)


@router.get("", response_model=ExportList, responses=PROBLEM_RESPONSES,
            summary="The org's exports, newest first")
def list_all(principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("exports")
    return _json({"data": [jobs.export_view(r) for r in store.list_exports(principal.org_id)]})


@router.get("/{export_id}", response_model=ExportOut, responses=PROBLEM_RESPONSES,
            summary="One export's status and progress")
def get_one(export_id: str, principal: CurrentPrincipal, store: StoreDep) -> Response:
    principal.require("exports")
    row = jobs.get_export(store=store, org_id=principal.org_id, export_id=export_id)
    return _json(jobs.export_view(row))


@router.delete("/{export_id}", response_model=ExportOut, responses=PROBLEM_RESPONSES,
               summary="Cancel a queued or running export")
def cancel(export_id: str, principal: CurrentPrincipal, store: StoreDep,
           redactor: RedactorDep) -> Response:
    principal.require("exports")
    row = jobs.cancel_export(store=store, redactor=redactor, org_id=principal.org_id,
                             export_id=export_id, actor=_actor(principal))
    return _json(jobs.export_view(row))


@router.get("/{export_id}/download", response_class=FileResponse, responses={
    **PROBLEM_RESPONSES, 409: PROBLEM_RESPONSES[422], 410: PROBLEM_RESPONSES[422]},
    summary="The export's file")
def download(export_id: str, principal: CurrentPrincipal, store: StoreDep,
             redactor: RedactorDep) -> FileResponse:
    principal.require("exports")
    try:
        row, path = jobs.open_download(store=store, redactor=redactor, org_id=principal.org_id,
                                       export_id=export_id, actor=_actor(principal))
    except jobs.ExportNotReady as exc:
        raise Problem(409, str(exc), kind="not-ready",
                      extra={"export_status": exc.row.status}) from None
    except jobs.ExportGone as exc:
        raise Problem(410, str(exc), kind="expired") from None
    return FileResponse(path, media_type=writers.FORMATS[row.format],
                        filename=jobs.file_name(row))
