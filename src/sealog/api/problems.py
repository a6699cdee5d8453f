"""RFC 9457 problem details: every error the API returns."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from sealog.auth import AuthError, ScopeError, SignInLocked
from sealog.erasure import ErasureError
from sealog.events import EventValidationError, FieldError
from sealog.exports.jobs import ExportError
from sealog.ingest import IdConflict
from sealog.preparers import PreparerFailed
from sealog.retention import RetentionError
from sealog.search import CursorError, FilterError, QueryTooCostly, SearchSyntaxError
from sealog.store.base import Conflict, NotFound, StorageFull, Unavailable
from sealog.streams.delivery import StreamError
from sealog.times import TimeError

log = logging.getLogger("sealog.api")
MEDIA_TYPE = "application/problem+json"
# Seconds a writer is told to wait on a full disk: freeing space takes an operator.
FULL_DISK_RETRY_SECONDS = 60


class Problem(Exception):
    """An error answer: status, a short title, a detail for this occurrence, field errors."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        kind: str | None = None,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.kind = kind
        self.errors = errors
        self.headers = headers or {}
        self.extra = extra or {}

    def response(self) -> Response:
        phrase = HTTPStatus(self.status).phrase
        body: dict[str, Any] = {
            "type": f"urn:sealog:problem:{self.kind}" if self.kind else "about:blank",
            "title": phrase,
            "status": self.status,
            "detail": self.detail,
        }
        if self.errors is not None:
            body["errors"] = [e.as_dict() for e in self.errors]
        body.update(self.extra)
        return Response(
            orjson.dumps(body), status_code=self.status, media_type=MEDIA_TYPE,
            headers=self.headers,
        )


def _from_pydantic(exc: RequestValidationError) -> Problem:
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return Problem(400, f"the body is not valid JSON: {err.get('msg')}",
                           kind="malformed-json")
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body")]
        errors.append(FieldError(None, ".".join(loc) or "request", err.get("msg", "invalid")))
    detail = "; ".join(f"{e.field}: {e.message}" for e in errors) or "the request is invalid"
    return Problem(422, detail, kind="validation", errors=errors)


def as_problem(exc: Exception) -> Problem:
    """The problem an exception from the library stands for."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, EventValidationError):
        return Problem(422, str(exc), kind="validation", errors=exc.errors)
    if isinstance(exc, IdConflict):
        return Problem(409, str(exc), kind="id-conflict", errors=exc.errors)
    if isinstance(exc, SearchSyntaxError):
        return Problem(
            422, str(exc), kind="query-syntax",
            errors=[FieldError(None, "q", str(exc))],
            extra={"token": exc.token, "position": exc.position},
        )
    if isinstance(exc, QueryTooCostly):
        return Problem(422, str(exc), kind="query-too-costly",
                       errors=[FieldError(None, "q", str(exc))])
    if isinstance(exc, TimeError | FilterError | ExportError):
        return Problem(422, str(exc), kind="validation")
    if isinstance(exc, StreamError | RetentionError | ErasureError):  # the setting first
        return Problem(422, str(exc), kind="validation",
                       errors=[FieldError(None, str(exc).split(":", 1)[0], str(exc))])
    if isinstance(exc, CursorError):
        return Problem(400, str(exc), kind="bad-cursor")
    if isinstance(exc, AuthError):
        return Problem(401, str(exc), kind="unauthenticated",
                       headers={"WWW-Authenticate": "Bearer"})
    if isinstance(exc, SignInLocked):
        return Problem(429, str(exc), kind="sign-in-locked",
                       headers={"Retry-After": str(exc.retry_after)})
    if isinstance(exc, ScopeError):
        return Problem(403, str(exc), kind="forbidden")
    if isinstance(exc, NotFound):
        return Problem(404, str(exc), kind="not-found")
    if isinstance(exc, Conflict):
        return Problem(409, str(exc), kind="conflict")
    if isinstance(exc, PreparerFailed):  # nothing was stored; the next try gets a new process
        return Problem(503, f"{str(exc).splitlines()[0]}; nothing was stored, send the batch "
                            "again", kind="unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, Unavailable):  # nothing was stored; the same request may succeed
        return Problem(503, f"{exc}; nothing was stored, send the request again",
                       kind="unavailable", headers={"Retry-After": "1"})
    if isinstance(exc, StorageFull):  # reads go on; the same request succeeds once space is freed
        return Problem(507, "the server's storage is full: nothing was stored; send the "
                            "request again later", kind="insufficient-storage",
                       headers={"Retry-After": str(FULL_DISK_RETRY_SECONDS)})
    raise exc


def install(app: FastAPI) -> None:
    """Makes every error of app a problem-details answer."""

    async def on_library_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, StorageFull | Unavailable):  # the caller is told; the operator acts
            log.error("%s %s refused: %s", request.method, request.url.path, exc)
        return as_problem(exc).response()

    for cls in (Problem, EventValidationError, IdConflict, SearchSyntaxError, QueryTooCostly,
                TimeError, FilterError, CursorError, ExportError, StreamError, RetentionError,
                ErasureError,
                AuthError, ScopeError, NotFound, Conflict, SignInLocked, PreparerFailed,
                StorageFull, Unavailable):
        app.add_exception_handler(cls, on_library_error)

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return _from_pydantic(exc).response()

    app.add_exception_handler(RequestValidationError, on_request_validation)

    async def on_http(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        return Problem(exc.status_code, detail, headers=dict(exc.headers or {})).response()

    app.add_exception_handler(StarletteHTTPException, on_http)
