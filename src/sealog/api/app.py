"""The FastAPI application: API routes, health checks and the landing page."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

from sealog import __version__, metrics, retention, times
from sealog.api import access, events, exports, log, problems, streams
from sealog.api import retention as retention_routes
from sealog.api.deps import StoreDep
from sealog.api.events import _BATCH_SCHEMA
from sealog.api.schemas import PROBLEM_RESPONSES
from sealog.auth import KeyAuthenticator, LoginThrottle
from sealog.config import Settings
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ledger import checkpoint
from sealog.preparers import Preparers
from sealog.store import Store, open_store
from sealog.streams import delivery
from sealog.streams.secrets import SecretBox

WEB_FOLDER = Path(__file__).resolve().parent.parent / "web"
# The UI loads nothing but its own files: no inline script or style, no other origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
UI_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


class _UiFiles(StaticFiles):
    """The UI's static files, each with the UI's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(UI_HEADERS)
        return response


def create_app(settings: Settings, *, store: Store | None = None,
               run_workers: bool = True) -> FastAPI:
    """The app on settings' database, or on store when given (then the caller closes it);
    it runs settings.export_workers export workers and settings.stream_workers stream
    workers unless run_workers is False."""
    owns_store = store is None
    the_store = store if store is not None else open_store(settings.resolved_database_url)

    signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
    the_store.add_log_key(signer.verifier.text(), times.now_us())
    checkpointer = checkpoint.Checkpointer(
        store=the_store, signer=signer, host=settings.log_host,
        interval=settings.checkpoint_interval,
    )

    workers = [
        jobs.Worker(store=the_store, folder=settings.resolved_export_dir, signer=signer,
                    host=settings.log_host, lease_seconds=settings.export_lease_seconds)
        for _ in range(settings.export_workers if run_workers else 0)
    ]

    stream_workers = (delivery.stream_workers(settings=settings, store=the_store, signer=signer)
                      if run_workers else [])
    purger = (retention.Purger(store=the_store, redactor=Redactor(settings.redact_keys),
                               signer=signer, host=settings.log_host,
                               interval=settings.purge_interval_seconds,
                               batch=settings.purge_batch)
              if run_workers else None)

    redactor = Redactor(settings.redact_keys)
    # Started when the first batch large enough to use them arrives.
    processes = settings.resolved_ingest_processes
    preparers = Preparers(processes, redactor=redactor) if processes else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        checkpointer.start()
        for worker in workers:
            worker.start()
        for stream_worker in stream_workers:
            stream_worker.start()
        if purger is not None:
            purger.start()
        yield
        if purger is not None:
            purger.stop()
        for stream_worker in stream_workers:
            stream_worker.stop()
        for worker in workers:
            worker.stop()
        if preparers is not None:
            preparers.close()
        checkpointer.stop()
        if owns_store:
            the_store.close()

    app = FastAPI(
        title="Sealog",
        version=__version__,
        summary="The searchable, provably untampered audit log of an organization.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.store = the_store
    app.state.redactor = redactor
    app.state.preparers = preparers
    app.state.authenticator = KeyAuthenticator(the_store)
    app.state.signer = signer
    app.state.checkpointer = checkpointer
    app.state.streams_box = SecretBox.load(settings.resolved_streams_key_file)
    app.state.login_throttle = LoginThrottle()
    app.state.searches = events.Searches(
        concurrency=settings.resolved_search_concurrency, wait=settings.search_queue_seconds,
        budget=settings.search_budget_seconds)
    problems.install(app)
    app.include_router(events.router)
    app.include_router(log.router)
    app.include_router(exports.router)
    app.include_router(streams.router)
    app.include_router(retention_routes.router)
    app.include_router(access.router)
    app.mount("/static", _UiFiles(directory=WEB_FOLDER), name="static")

    # On the event loop, not in a thread of the pool: it answers whatever the pool is doing.
    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="The database answers",
             responses={503: PROBLEM_RESPONSES[422]})
    def readyz(store: StoreDep) -> Response:
        try:
            store.ping()
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return problems.Problem(503, f"database unreachable: {exc}").response()
        return Response(b'{"status":"ready"}', media_type="application/json")

    @app.get("/metrics", tags=["health"], response_class=Response,
             summary="Prometheus metrics of every org (with SEALOG_METRICS_TOKEN)",
             responses={401: PROBLEM_RESPONSES[422], 404: PROBLEM_RESPONSES[422]})
    def prometheus_metrics(request: Request, store: StoreDep) -> Response:
        token = settings.metrics_token
        if token is None:
            return problems.Problem(404, "metrics are off: the operator sets "
                                    "SEALOG_METRICS_TOKEN to turn them on").response()
        given = request.headers.get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            return problems.Problem(401, "GET /metrics takes Authorization: Bearer "
                                    "<SEALOG_METRICS_TOKEN>",
                                    headers={"WWW-Authenticate": "Bearer"}).response()
        return Response(metrics.render(store), media_type=metrics.CONTENT_TYPE)

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    def web_ui() -> FileResponse:
        return FileResponse(WEB_FOLDER / "index.html", headers=UI_HEADERS)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title, version=app.version, summary=app.summary, routes=app.routes
            )
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            batch = dict(_BATCH_SCHEMA)
            components.update(batch.pop("$defs", {}))
            components["EventBatchIn"] = batch
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
