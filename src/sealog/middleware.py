"""An ASGI middleware that records the HTTP request behind each change as an audit event.

It passes every message through unchanged and as it comes (streaming included), keeps a
bounded copy of JSON bodies, and queues the event after the response is sent; a failure
to record is logged and never reaches the app or its caller.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
import uuid_utils

from sealog.client import BufferFull, SealogClient
from sealog.events import (
    CATEGORIES,
    DEFAULT_SECRET_KEYS,
    MAX_BODY_BYTES,
    Redactor,
    catalog_entry,
    loads_json,
)

log = logging.getLogger("sealog.middleware")

Scope = dict[str, Any]
ActorFn = Callable[[Scope], dict[str, Any] | None]
MUTATING_METHODS = ("POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::[a-z]+)?\}")


@dataclass(frozen=True)
class Route:
    """What a request to one route records: its action, and optionally its category and
    resource (type, and the path parameter holding its id)."""

    action: str
    category: str | None = None
    resource_type: str | None = None
    resource_id_param: str | None = None


@dataclass(frozen=True)
class _CompiledRoute:
    method: str
    template: str
    pattern: re.Pattern[str]
    params: tuple[str, ...]
    route: Route


def _compile(key: str, value: str | Route) -> _CompiledRoute:
    method, _, template = key.strip().partition(" ")
    template = template.strip()
    if not method or not template.startswith("/"):
        raise ValueError(f'a route key is "METHOD /path/{{param}}", not {key!r}')
    route = value if isinstance(value, Route) else Route(action=value)
    if route.category is None and catalog_entry(route.action) is None:
        raise ValueError(f"{route.action!r} is not a built-in action: give its category, "
                         f"one of {', '.join(CATEGORIES)}")
    params = tuple(_PARAM.findall(template))
    regex = "".join(
        "([^/]+)" if part.startswith("{") else re.escape(part)
        for part in re.split(r"(\{[^}]+\})", template)
    )
    return _CompiledRoute(method.upper(), template, re.compile(f"^{regex}$"), params, route)


def _default_resource(template: str, params: dict[str, str]) -> dict[str, str] | None:
    """The last `{thing_id}` of the path as a resource: type thing, id its value."""
    names = _PARAM.findall(template)
    for name in reversed(names):
        if name.endswith("_id") and name in params:
            return {"type": name[:-3], "id": params[name]}
    return None


def result_of(status: int) -> str:
    """The audit result a response status means."""
    if status in (401, 403):
        return "denied"
    return "failed" if status >= 400 else "success"


class _BoundedBody:
    """The first max_bytes of a body, and its whole size."""

    __slots__ = ("chunks", "kept", "size", "max_bytes")

    def __init__(self, max_bytes: int):
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0
        self.max_bytes = max_bytes

    def add(self, data: bytes) -> None:
        self.size += len(data)
        room = self.max_bytes - self.kept
        if room > 0 and data:
            piece = data[:room]
            self.chunks.append(piece)
            self.kept += len(piece)

    def json(self) -> Any:
        """The body as JSON, the truncation marker when too large, None if not JSON."""
        if self.size > self.max_bytes:
            return self.marker()
        data = b"".join(self.chunks)
        if not data:
            return None
        try:
            return loads_json(data)
        except orjson.JSONDecodeError:
            return None

    def marker(self) -> dict[str, Any]:
        """The server's truncation marker for this body, with no preview: JSON cut short or
        nested too deep cannot be redacted, so none of its text is sent."""
        return {"_truncated": True, "size": self.size, "preview": ""}


class AuditMiddleware:
    """Records matching requests (default: POST, PUT, PATCH, DELETE) through client.

    routes maps "METHOD /template/{param}" to an action or a Route; a matching request
    without a mapping is recorded as `http.<method>` in default_category. actor is called
    with the ASGI scope after the response (so `scope["state"]` holds what the app set).
    """

    def __init__(
        self,
        app: Callable[..., Any],
        *,
        client: SealogClient,
        actor: ActorFn,
        routes: dict[str, str | Route] | None = None,
        methods: Iterable[str] = MUTATING_METHODS,
        include: Callable[[Scope], bool] | None = None,
        only_routes: bool = False,
        default_category: str = "user_actions",
        secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ):
        if default_category not in CATEGORIES:
            raise ValueError(f"default_category must be one of {', '.join(CATEGORIES)}")
        self.app = app
        self.client = client
        self.actor = actor
        self.routes = [_compile(k, v) for k, v in (routes or {}).items()]
        self.methods = frozenset(m.upper() for m in methods)
        self.include = include
        self.only_routes = only_routes
        self.default_category = default_category
        self.redactor = Redactor(tuple(secret_keys))
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or not self._wanted(scope):
            await self.app(scope, receive, send)
            return
        request_body = _BoundedBody(self.max_body_bytes)
        response_body = _BoundedBody(self.max_body_bytes)
        response: dict[str, Any] = {"status": 500, "json": False}

        async def receive_and_copy() -> dict[str, Any]:
            message = await receive()
            if message["type"] == "http.request":
                request_body.add(message.get("body", b""))
            return message

        async def copy_and_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["json"] = _is_json(list(message.get("headers", ())))
            elif message["type"] == "http.response.body" and response["json"]:
                response_body.add(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive_and_copy, copy_and_send)
        finally:
            try:
                self._record(scope, response["status"], request_body,
                             response_body if response["json"] else None)
            except BufferFull as exc:
                log.warning("audit event for %s %s not recorded: %s",
                            scope["method"], scope["path"], exc)
            except Exception:
                log.exception("audit event for %s %s not recorded",
                              scope["method"], scope["path"])

    def _wanted(self, scope: Scope) -> bool:
        if self.include is not None:
            return self.include(scope)
        return scope["method"] in self.methods

    def _match(self, scope: Scope) -> tuple[_CompiledRoute | None, dict[str, str]]:
        method, path = scope["method"], scope["path"]
        for compiled in self.routes:
            if compiled.method == method:
                # match and `$`, as Starlette routes: the route recorded is the one run.
                found = compiled.pattern.match(path)
                if found:
                    return compiled, dict(zip(compiled.params, found.groups(), strict=True))
        return None, {}

    def _record(self, scope: Scope, status: int, request_body: _BoundedBody,
                response_body: _BoundedBody | None) -> None:
        compiled, params = self._match(scope)
        if compiled is None and self.only_routes:
            return
        method, path = scope["method"], scope["path"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        if compiled is not None:
            route, template = compiled.route, compiled.template
        else:
            framework_route = scope.get("route")
            template = getattr(framework_route, "path", None) or path
            params = {k: str(v) for k, v in (scope.get("path_params") or {}).items()}
            route = Route(action=f"http.{method.lower()}", category=self.default_category)
        event: dict[str, Any] = {
            "action": route.action,
            "result": result_of(status),
            "actor": self.actor(scope) or {"type": "system", "name": "unknown"},
            "request": {
                "method": method,
                "path": path,
                "status": status,
                "body": self._redacted(request_body),
                "response": self._redacted(response_body) if response_body is not None else None,
            },
            "context": {
                "ip": scope["client"][0] if scope.get("client") else None,
                "user_agent": headers.get("user-agent"),
                "request_id": headers.get("x-request-id") or str(uuid_utils.uuid7()),
            },
            "metadata": {"route": template},
        }
        if route.category is not None:
            event["category"] = route.category
        if compiled is None:
            event["event_type"] = "HTTP Request"
            event["description"] = f"{method} {template}"
        resource = (
            {"type": route.resource_type, "id": params.get(route.resource_id_param or "")}
            if route.resource_type else _default_resource(template, params)
        )
        if resource is not None:
            event["resource"] = {k: v for k, v in resource.items() if v is not None}
        self.client.record_event(event, block=False)

    def _redacted(self, body: _BoundedBody) -> Any:
        try:
            return self.redactor.redact(body.json())
        except ValueError:
            # Nested deeper than an event holds: the request is still recorded, its body
            # shown as the server shows one too large.
            return body.marker()


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    for key, value in headers:
        if key.lower() == b"content-encoding" and value.lower() != b"identity":
            return False
    for key, value in headers:
        if key.lower() == b"content-type":
            kind = value.split(b";")[0].strip().lower()
            return kind == b"application/json" or kind.endswith(b"+json")
    return False
