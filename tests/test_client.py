"""The Python client against a real `sealog serve` process: delivery, retries, limits."""

from __future__ import annotations

import asyncio
import email.utils
import gzip
import logging
import subprocess
import sys
import threading
import time

import httpx
import pytest

from sealog.client import (
    AsyncSealogClient,
    BufferFull,
    DeliveryError,
    SealogClient,
    _retry_after,
)
from sealog.events import EventValidationError

from conftest import free_port

# What is tested here is the sending side; the server's backend is tested apart.
BACKENDS = ["sqlite"]

ACTOR = {"id": "usr_1", "email": "alice@acme.com", "name": "Alice Chen", "type": "user"}


def stored_ids(base: str, secret: str) -> list[str]:
    """Every event id the server holds for the key's org (30 days), by paging."""
    ids: list[str] = []
    params: dict = {"range": "30d", "limit": 200}
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {secret}"}) as http:
        while True:
            page = http.get("/api/v1/events", params=params).json()
            ids += [e["id"] for e in page["data"]]
            if not page["next_cursor"]:
                return ids
            params["cursor"] = page["next_cursor"]


def test_recorded_events_arrive_with_their_fields(served):
    process, secret = served
    with SealogClient(process.base, secret, flush_interval=0.05) as client:
        event_id = client.record(
            "guardrail.updated", actor=ACTOR, resource={"type": "guardrail", "id": "g9"},
            request={"method": "PUT", "path": "/agent/a1/guardrails/g9", "status": 200,
                     "body": {"threshold": 0.8, "api_key": "sk-live-1"},
                     "response": {"ok": True}},
            context={"ip": "10.0.0.7", "request_id": "req-1"},
            metadata={"ticket": "SEC-4", "tweet_id": 1234567890123456789, "big": 2**70},
        )
        second = client.record("policy.enabled", actor=ACTOR, result="approved")
        client.flush(timeout=10)
    with httpx.Client(base_url=process.base,
                      headers={"Authorization": f"Bearer {secret}"}) as http:
        got = http.get(f"/api/v1/events/{event_id}").json()
        assert http.get(f"/api/v1/events/{second}").json()["result"] == "approved"
    assert got["action"] == "guardrail.updated"
    assert got["category"] == "agent_operations"
    assert got["actor"]["email"] == "alice@acme.com"
    assert got["resource"] == {"type": "guardrail", "id": "g9", "name": None}
    assert got["request"]["body"] == {"threshold": 0.8, "api_key": "[REDACTED]"}
    assert got["context"]["request_id"] == "req-1"
    # Integers past 2^53 are stored as their exact digits (past 64 bits too).
    assert got["metadata"] == {"ticket": "SEC-4", "tweet_id": "1234567890123456789",
                               "big": "1180591620717411303424"}
    assert got["index"] == 0


def test_compressed_batches_arrive_whole(served):
    process, secret = served
    sent: list[tuple[str | None, int, int]] = []

    class Recording(httpx.HTTPTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            body = request.read()
            sent.append((request.headers.get("content-encoding"), len(body),
                         len(gzip.decompress(body))))
            return super().handle_request(request)

    with SealogClient(process.base, secret, batch_size=100, compress=True,
                      transport=Recording()) as client:
        ids = [client.record("agent.created", actor=ACTOR, metadata={"n": i})
               for i in range(300)]
        client.flush(timeout=30)
    assert sorted(stored_ids(process.base, secret)) == sorted(ids)
    assert len(sent) >= 3
    assert all(coding == "gzip" and size < inflated / 3 for coding, size, inflated in sent)


def test_server_down_for_5_seconds_every_event_arrives_exactly_once(served):
    process, secret = served
    client = SealogClient(process.base, secret, batch_size=100, flush_interval=0.05,
                          max_backoff=1.0)
    recorded: list[str] = []

    def produce() -> None:
        for i in range(2000):
            recorded.append(client.record("agent.updated", actor=ACTOR,
                                          metadata={"n": i}))
            time.sleep(0.002)

    producer = threading.Thread(target=produce)
    producer.start()
    while len(recorded) < 500:
        time.sleep(0.01)
    process.stop()
    down_at = time.monotonic()
    time.sleep(5)
    assert len(recorded) > 1000, "recording went on while the server was down"
    assert client.pending > 0
    process.start()
    producer.join()
    client.flush(timeout=60)
    client.close()
    assert time.monotonic() - down_at >= 5
    ids = stored_ids(process.base, secret)
    assert len(ids) == 2000
    assert sorted(ids) == sorted(recorded)
    assert "retry" in process.output() or client.requests_sent > 20


def test_a_refused_event_is_reported_and_not_retried(served):
    process, secret = served
    with SealogClient(process.base, secret, validate=False, flush_interval=0.05) as client:
        good = client.record("agent.created", actor=ACTOR)
        bad = client.record("widget.spun", actor=ACTOR)  # unknown action, no category
        with pytest.raises(DeliveryError) as raised:
            client.flush(timeout=10)
        rejection, = raised.value.rejections
        assert rejection.status == 422
        assert rejection.event["id"] == bad
        assert "category" in rejection.message
        assert rejection.problem["errors"][0]["index"] == 1
        # One 422, then the good event alone: nothing is retried.
        assert client.requests_sent == 2
        client.flush(timeout=1)  # reported once
    assert stored_ids(process.base, secret) == [good]


def test_a_bad_event_raises_at_the_call_when_validating():
    with SealogClient(f"http://127.0.0.1:{free_port()}", "slg_key_x_y") as client:
        with pytest.raises(EventValidationError, match="category"):
            client.record("widget.spun", actor=ACTOR)
        with pytest.raises(EventValidationError, match="result"):
            client.record("agent.created", actor=ACTOR, result="meh")
        deep: object = 1
        for _ in range(300):
            deep = [deep]
        with pytest.raises(EventValidationError, match="metadata: is nested more than 64"):
            client.record("agent.created", actor=ACTOR, metadata={"x": deep})
        with pytest.raises(EventValidationError, match="request.body: is nested more than 64"):
            client.record("agent.created", actor=ACTOR,
                          request={"method": "POST", "path": "/a", "body": deep})
        assert client.pending == 0


def test_buffer_full_raises_at_once_when_asked(caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    client = SealogClient(f"http://127.0.0.1:{free_port()}", "slg_key_x_y", batch_size=5,
                          max_buffer=5, when_full="raise", flush_interval=0.01)
    for _ in range(5):
        client.record("agent.created", actor=ACTOR)
    started = time.monotonic()
    with pytest.raises(BufferFull, match="5 unsent"):
        client.record("agent.created", actor=ACTOR)
    assert time.monotonic() - started < 0.5
    assert client.pending == 5
    with pytest.raises(TimeoutError, match="5 event"):
        client.close(timeout=0.2)


def test_buffer_full_blocks_until_timeout_then_until_the_server_is_back(served, caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    process, secret = served
    process.stop()
    client = SealogClient(process.base, secret, batch_size=5, max_buffer=5,
                          when_full="block", block_timeout=0.5, flush_interval=0.01,
                          max_backoff=0.2)
    for _ in range(5):
        client.record("agent.created", actor=ACTOR)
    started = time.monotonic()
    with pytest.raises(BufferFull, match="stayed full"):
        client.record("agent.created", actor=ACTOR)
    assert 0.5 <= time.monotonic() - started < 2

    client.block_timeout = 60
    threading.Timer(1.0, process.start).start()
    last = client.record("agent.created", actor=ACTOR)  # waits for room
    client.flush(timeout=30)
    client.close()
    ids = stored_ids(process.base, secret)
    assert len(ids) == 6 and last in ids


def test_the_spool_keeps_events_across_a_restart_of_the_app(served, tmp_path, caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    process, secret = served
    process.stop()
    spool = tmp_path / "spool.db"
    first = SealogClient(process.base, secret, spool=spool, max_backoff=0.2)
    recorded = [first.record("policy.updated", actor=ACTOR) for _ in range(50)]
    with pytest.raises(TimeoutError):
        first.close(timeout=0.3)

    process.start()
    with SealogClient(process.base, secret, spool=spool) as second:
        assert second.pending == 50
        second.flush(timeout=10)
        assert second.pending == 0
    assert sorted(stored_ids(process.base, secret)) == sorted(recorded)


def test_events_are_flushed_at_interpreter_exit(served):
    process, secret = served
    script = (
        "from sealog.client import SealogClient\n"
        f"c = SealogClient({process.base!r}, {secret!r}, flush_interval=60)\n"
        "for i in range(25):\n"
        "    c.record('settings.updated', actor={'email': 'ops@acme.com'})\n"
        "print(c.pending)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "25"  # nothing was sent before exit
    assert len(stored_ids(process.base, secret)) == 25


def test_async_client_records_and_flushes(served):
    process, secret = served

    async def main() -> list[str]:
        async with AsyncSealogClient(process.base, secret, flush_interval=0.05) as client:
            ids = [await client.record("approval.approved", actor=ACTOR, result="approved")
                   for _ in range(30)]
            await client.flush(timeout=10)
            assert client.pending == 0
        return ids

    ids = asyncio.run(main())
    assert sorted(stored_ids(process.base, secret)) == sorted(ids)


def test_retry_after_in_seconds_and_as_a_date():
    def response(value: str) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": value})

    assert _retry_after(response("3")) == 3.0
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= _retry_after(response(later)) <= 31
    assert _retry_after(httpx.Response(503)) is None


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="batch_size"):
        SealogClient("http://x", "k", batch_size=5000)
    with pytest.raises(ValueError, match="when_full"):
        SealogClient("http://x", "k", when_full="drop")  # type: ignore[arg-type]


class FlakyFront:
    """A real HTTP front (as a rate limiter or load balancer is) before the real server: it
    answers the first POSTs with the given statuses, then forwards every request."""

    def __init__(self, upstream: str, statuses: list[tuple[int, dict]]):
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Route

        self.statuses = list(statuses)
        self.seen: list[tuple[float, int]] = []

        async def forward(request: Request) -> Response:
            if request.method == "POST" and self.statuses:
                status, headers = self.statuses.pop(0)
                self.seen.append((time.monotonic(), status))
                return Response(b'{"detail": "try later"}', status_code=status,
                                headers=headers, media_type="application/json")
            async with httpx.AsyncClient(base_url=upstream) as http:
                answer = await http.request(request.method, request.url.path,
                                            content=await request.body(),
                                            headers={k: v for k, v in request.headers.items()
                                                     if k.lower() != "host"})
            self.seen.append((time.monotonic(), answer.status_code))
            return Response(answer.content, status_code=answer.status_code,
                            media_type=answer.headers.get("content-type"))

        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(
            Starlette(routes=[Route("/{path:path}", forward, methods=["GET", "POST"])]),
            host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        while not self.server.started:
            time.sleep(0.01)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def test_429_503_and_507_are_retried_honouring_retry_after(served, caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    process, secret = served
    front = FlakyFront(process.base, [(429, {"Retry-After": "1"}), (503, {}),
                                      (507, {"Retry-After": "0"})])
    with front as url, SealogClient(url, secret, max_backoff=0.2) as client:
        ids = [client.record("agent.created", actor=ACTOR) for _ in range(10)]
        client.flush(timeout=30)
        assert client.requests_sent == 4
    (t429, s429), (t503, s503), (_, s507), (_, s201) = front.seen
    assert (s429, s503, s507, s201) == (429, 503, 507, 201)
    assert t503 - t429 >= 0.95  # waited as Retry-After said
    assert sorted(stored_ids(process.base, secret)) == sorted(ids)


def test_one_client_shared_by_threads_delivers_each_event_once(served):
    process, secret = served
    recorded: list[list[str]] = [[] for _ in range(4)]
    with SealogClient(process.base, secret, batch_size=50, flush_interval=0.01) as client:
        def produce(slot: int) -> None:
            for i in range(250):
                recorded[slot].append(client.record("agent.updated", actor=ACTOR,
                                                    metadata={"thread": slot, "n": i}))

        threads = [threading.Thread(target=produce, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.flush(timeout=30)
    everything = [i for ids in recorded for i in ids]
    assert len(set(everything)) == 1000
    assert sorted(stored_ids(process.base, secret)) == sorted(everything)


def test_a_refusal_naming_no_event_reports_the_whole_batch(served, caplog):
    caplog.set_level(logging.CRITICAL, logger="sealog.client")
    process, _ = served
    with SealogClient(process.base, "slg_key_nope_wrong", flush_interval=0.05) as client:
        ids = [client.record("agent.created", actor=ACTOR) for _ in range(3)]
        with pytest.raises(DeliveryError) as raised:
            client.flush(timeout=10)
        assert client.requests_sent == 1  # a 401 is not retried
        assert [r.event["id"] for r in raised.value.rejections] == ids
        assert {(r.status, r.message) for r in raised.value.rejections} == {
            (401, "the API key is not valid")}
        assert client.pending == 0
