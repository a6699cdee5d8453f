"""AuditMiddleware: the events it records (through a real server) and responses it leaves alone."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route as StarletteRoute

from sealog.client import SealogClient
from sealog.middleware import AuditMiddleware, Route, result_of

from conftest import free_port
from examples.governance_app.app import Platform, create_app
from examples.governance_app.drive import drive

# What is tested here is the sending side; the server's backend is tested apart.
BACKENDS = ["sqlite"]


def api(base: str, secret: str) -> httpx.Client:
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"})


def call_platform(app, requests: list[tuple[str, str, Any, str]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://platform") as http:
            return [await http.request(method, path, json=body,
                                       headers={"Authorization": f"Bearer {token}",
                                                "User-Agent": "console/1.0"})
                    for method, path, body, token in requests]
    return asyncio.run(main())


def test_each_change_becomes_the_event_the_audit_log_shows(served):
    process, secret = served
    platform = Platform()
    with SealogClient(process.base, secret, flush_interval=0.05) as client:
        app = create_app(client, platform)
        agent = call_platform(app, [("POST", "/agents", {"name": "support-bot"},
                                     "tok-sarah")])[0].json()
        guardrail = call_platform(app, [(
            "POST", f"/agent/{agent['id']}/guardrails",
            {"type": "rate_limit", "config": {"max_requests_per_minute": 60}}, "tok-sarah",
        )])[0].json()
        update, denied, missing, listed = call_platform(app, [
            ("PUT", f"/agent/{agent['id']}/guardrails/{guardrail['id']}",
             {"type": "rate_limit", "config": {"max_requests_per_minute": 30,
                                               "api_key": "sk-live-42"}}, "tok-marcus"),
            ("POST", f"/agents/{agent['id']}/block", None, "tok-dan"),
            ("PUT", "/agents/agt_nope/trust-tier", {"trust_tier": "trusted"}, "tok-sarah"),
            ("GET", "/agents", None, "tok-sarah"),
        ])
        assert (update.status_code, denied.status_code, missing.status_code,
                listed.status_code) == (200, 403, 404, 200)
        client.flush(timeout=10)

    with api(process.base, secret) as http:
        events = http.get("/api/v1/events", params={"limit": 200}).json()["data"]
    by_action = {e["action"]: e for e in events}
    assert len(events) == 5, "GET is not a change: not recorded"
    assert set(by_action) == {"agent.created", "guardrail.created", "guardrail.updated",
                              "agent.blocked", "agent.trust_tier_changed"}

    updated = by_action["guardrail.updated"]
    assert updated["category"] == "agent_operations"
    assert updated["event_type"] == "Guardrail Change"
    assert updated["actor"] == {"id": "u-marcus", "email": "marcus.johnson@acme.com",
                                "name": "Marcus Johnson", "type": "user"}
    assert updated["resource"] == {"type": "guardrail", "id": guardrail["id"], "name": None}
    assert updated["request"]["method"] == "PUT"
    assert updated["request"]["path"] == f"/agent/{agent['id']}/guardrails/{guardrail['id']}"
    assert updated["request"]["status"] == 200
    assert updated["request"]["body"]["config"] == {"max_requests_per_minute": 30,
                                                    "api_key": "[REDACTED]"}
    assert updated["request"]["response"]["id"] == guardrail["id"]
    assert updated["request"]["response"]["config"]["api_key"] == "[REDACTED]"
    assert updated["context"]["ip"] == "10.1.2.3"
    assert updated["context"]["user_agent"] == "console/1.0"
    assert updated["context"]["request_id"]
    assert updated["metadata"] == {"route": "/agent/{agent_id}/guardrails/{guardrail_id}"}
    assert updated["result"] == "success"

    assert by_action["agent.created"]["resource"]["type"] == "agent"
    assert by_action["agent.blocked"]["result"] == "denied"
    assert by_action["agent.blocked"]["actor"]["email"] == "dan.wilson@acme.com"
    assert by_action["agent.trust_tier_changed"]["result"] == "failed"
    assert by_action["agent.trust_tier_changed"]["request"]["status"] == 404


def test_the_driver_builds_a_history_of_every_kind(served):
    process, secret = served
    platform = Platform()

    async def main() -> dict[int, int]:
        with SealogClient(process.base, secret, flush_interval=0.05) as client:
            app = create_app(client, platform)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://p") as http:
                statuses = await drive(http, platform, 200)
            await asyncio.to_thread(client.flush, 30)
        return statuses

    statuses = asyncio.run(main())
    assert sum(statuses.values()) == 200 and statuses.get(403) and statuses.get(404)
    with api(process.base, secret) as http:
        assert http.get("/api/v1/events/count").json()["count"] == 200
        for category in ("agent_operations", "policy_changes", "user_actions"):
            assert http.get("/api/v1/events/count",
                            params={"category": category}).json()["count"] > 0
        assert http.get("/api/v1/events/count", params={"result": "denied"}).json()["count"]


# -- responses are left alone ---------------------------------------------------------

def _raw_app(proceed: asyncio.Event | None = None) -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        async def chunks():
            yield b'{"part": 1}\n'
            if proceed is not None:
                await proceed.wait()
            for i in range(2, 6):
                yield b'{"part": %d}\n' % i
        return StreamingResponse(chunks(), media_type="application/x-ndjson",
                                 headers={"X-Kind": "stream"})

    async def echo(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"got": body, "ok": True}, status_code=201,
                            headers={"Set-Cookie": "s=1; HttpOnly"})

    return Starlette(routes=[StarletteRoute("/stream", stream, methods=["POST"]),
                             StarletteRoute("/items/{item_id}", echo, methods=["PUT"])])


async def _asgi_messages(app, method: str, path: str, body: bytes,
                         on_send=None) -> list[dict]:
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("platform", 80),
             "client": ("10.0.0.1", 5000),
             "headers": [(b"content-type", b"application/json"), (b"host", b"platform")]}
    messages: list[dict] = []
    chunks = [body[:3], body[3:]]

    async def receive() -> dict:
        if chunks:
            piece = chunks.pop(0)
            return {"type": "http.request", "body": piece, "more_body": bool(chunks)}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        messages.append(message)
        if on_send is not None:
            on_send(message)

    await app(scope, receive, send)
    return messages


@pytest.fixture
def down_client(caplog):
    """A client whose server is not there (nothing listens on its port)."""
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    client = SealogClient(f"http://127.0.0.1:{free_port()}", "slg_key_x_y", max_backoff=0.1)
    yield client
    pending = client.pending
    try:
        client.close(timeout=0.1)
    except TimeoutError:
        assert pending, "only events with nowhere to go can time out"


def test_responses_are_byte_identical_with_and_without_the_middleware(down_client):
    plain = _raw_app()
    audited = AuditMiddleware(_raw_app(), client=down_client,
                              actor=lambda scope: {"email": "bot@acme.com"},
                              routes={"PUT /items/{item_id}": Route(
                                  "item.updated", category="system_events")})
    for method, path, body in [("PUT", "/items/7", b'{"password": "x", "n": 1}'),
                               ("POST", "/stream", b"{}")]:
        without = asyncio.run(_asgi_messages(plain, method, path, body))
        with_it = asyncio.run(_asgi_messages(audited, method, path, body))
        assert with_it == without
        assert len(with_it) >= 2
    assert down_client.pending == 2  # recorded, kept while the server is down


def test_streaming_passes_each_chunk_through_as_it_comes(down_client):
    async def main() -> list[bytes]:
        proceed = asyncio.Event()
        app = AuditMiddleware(_raw_app(proceed), client=down_client,
                              actor=lambda scope: None)
        seen: list[bytes] = []

        def on_send(message: dict) -> None:
            if message["type"] == "http.response.body":
                seen.append(message.get("body", b""))
                # The first chunk got out before the app was allowed to make the second.
                proceed.set()

        await _asgi_messages(app, "POST", "/stream", b"{}", on_send)
        return seen

    chunks = asyncio.run(main())
    assert chunks[0] == b'{"part": 1}\n'
    assert b"".join(chunks).count(b"part") == 5


def test_the_app_keeps_working_when_sealog_is_down(down_client):
    app = create_app(down_client)
    responses = call_platform(app, [("POST", "/agents", {"name": "a"}, "tok-sarah")] * 20)
    assert [r.status_code for r in responses] == [201] * 20
    assert down_client.pending == 20


def test_a_full_buffer_never_breaks_the_app(caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    caplog.set_level(logging.WARNING, logger="sealog.middleware")  # last: sets the handler's
    client = SealogClient(f"http://127.0.0.1:{free_port()}", "slg_key_x_y", batch_size=2,
                          max_buffer=2, when_full="block", block_timeout=30)
    app = create_app(client)
    responses = call_platform(app, [("POST", "/agents", {"name": "a"}, "tok-sarah")] * 5)
    assert [r.status_code for r in responses] == [201] * 5
    assert "not recorded: the buffer holds 2 unsent events" in caplog.text
    with pytest.raises(TimeoutError):
        client.close(timeout=0.1)


def test_a_large_body_is_cut_with_the_visible_marker_and_no_unredacted_preview(down_client):
    app = AuditMiddleware(_raw_app(), client=down_client, actor=lambda scope: None,
                          max_body_bytes=100)
    # Cut JSON cannot be read for secrets: none of its text is sent.
    body = b'{"password": "hunter2", "text": "' + b"x" * 500 + b'"}'
    asyncio.run(_asgi_messages(app, "PUT", "/items/1", body))
    sent = orjson.loads(down_client._queue.peek(1)[0][1])
    assert sent["request"]["body"] == {"_truncated": True, "size": len(body), "preview": ""}
    # The app's response echoes the body: cut alike.
    assert sent["request"]["response"]["preview"] == ""


def test_a_body_nested_too_deep_is_still_recorded_and_big_numbers_keep_their_digits(
        down_client):
    app = AuditMiddleware(_raw_app(), client=down_client, actor=lambda scope: None)
    deep = b'{"password": "hunter2", "a": ' + b"[" * 300 + b"1" + b"]" * 300 + b"}"
    asyncio.run(_asgi_messages(app, "PUT", "/items/1", deep))
    asyncio.run(_asgi_messages(app, "PUT", "/items/2", b'{"n": 123456789012345678901234567890}'))
    first, second = (orjson.loads(body) for _, body in down_client._queue.peek(2))
    # Recorded as the server shows a body too large for it, the request still audited; too
    # deep to redact, none of its text is sent.
    assert first["request"]["body"] == {"_truncated": True, "size": len(deep), "preview": ""}
    assert second["request"]["body"] == {"n": "123456789012345678901234567890"}


def test_route_configuration_is_checked_up_front(down_client):
    with pytest.raises(ValueError, match="give its category"):
        AuditMiddleware(_raw_app(), client=down_client, actor=lambda s: None,
                        routes={"PUT /items/{item_id}": "item.updated"})
    with pytest.raises(ValueError, match="METHOD /path"):
        AuditMiddleware(_raw_app(), client=down_client, actor=lambda s: None,
                        routes={"/items": "agent.created"})


def test_result_of_status():
    assert [result_of(s) for s in (200, 201, 302, 400, 401, 403, 404, 500)] == [
        "success", "success", "success", "failed", "denied", "denied", "failed", "failed"]
