"""Streams on both backends: a webhook stream delivers the org's log in index order, at
least once, each batch signed per Standard Webhooks (checked by the `standardwebhooks`
package, which nobody here wrote) and carrying the signed checkpoint that covers it; a
real HTTP server in the test is the receiver."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import itertools
import re
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import standardwebhooks

from sealog import auth, events, times
from sealog.config import Settings, SettingsError
from sealog.eventlog import event_json
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import checkpoint, merkle
from sealog.ledger.note import Verifier
from sealog.sampledata import generate_events
from sealog.store import Store, open_store
from sealog.store.base import StreamRow
from sealog.streams import delivery, manage
from sealog.streams.delivery import Deliverer, StreamConfig, new_stream
from sealog.streams.secrets import SecretBox, SecretsError

from conftest import event, wait_for

HOST = "sealog.test"


class Receiver:
    """A webhook receiver on a free local port: answers each request with the next of
    `answers` (then 200), and keeps every request it verified with standardwebhooks."""

    def __init__(self) -> None:
        self.secret = ""
        self.answers: list[tuple[int, dict[str, str], str]] = []
        self.bodies: list = []
        self.raw: list[bytes] = []  # the verified bodies as they came
        self.content_types: list[str] = []
        self.refused: list[str] = []
        # The request (counted from 1) the receiver takes and then holds, unanswered,
        # until release is set: a delivery in flight.
        self.hold_at: int | None = None
        self.held, self.release = threading.Event(), threading.Event()
        self.requests = 0
        self.spans: list[tuple[float, float]] = []  # (monotonic start, end) of each request
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                started = time.monotonic()
                body = self.rfile.read(int(self.headers["content-length"]))
                status, headers, text = (receiver.answers.pop(0) if receiver.answers
                                         else (200, {}, "ok"))
                if status == 200:
                    try:
                        standardwebhooks.Webhook(receiver.secret).verify(
                            body, {k.lower(): v for k, v in self.headers.items()})
                    except standardwebhooks.WebhookVerificationError as exc:
                        receiver.refused.append(str(exc))
                        status, text = 401, "bad signature"
                    else:
                        receiver.bodies.append(orjson.loads(body))
                        receiver.raw.append(body)
                        receiver.content_types.append(self.headers["content-type"])
                receiver.requests += 1
                if receiver.requests == receiver.hold_at:
                    receiver.held.set()
                    receiver.release.wait(60)
                # Its end is taken before the answer goes out: once the sender has the
                # answer it may send the next request, which this thread, waiting for the
                # GIL, could otherwise see begin before this one "ended".
                receiver.spans.append((started, time.monotonic()))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.handler = Handler
        self._serve(0)

    def _serve(self, port: int) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), self.handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def restart(self) -> None:
        """Listens again on the port it had before close."""
        self._serve(int(self.url.split(":")[2].split("/")[0]))

    def events(self) -> list[dict]:
        return [e for body in self.bodies for e in body["events"]]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def box(tmp_path: Path) -> SecretBox:
    return SecretBox.load(tmp_path / "data" / "streams.key")


@pytest.fixture
def signer(tmp_path: Path):
    return checkpoint.load_signer(tmp_path / "data" / "signing.key", HOST)


def _log(store: Store, count: int, **fields) -> None:
    """An org "acme" with count events (and whatever audit events its creation made)."""
    if not any(o.id == "acme" for o in store.list_orgs()):
        auth.create_org(store=store, name="Acme", org_id="acme")
    for first in range(0, count, 1000):
        batch = [event(description=f"event {n}", **fields)
                 for n in range(first, min(first + 1000, count))]
        ingest(store=store, org_id="acme", raw_events=batch, redactor=Redactor())


def _new(box: SecretBox, *, url: str, name: str = "SIEM", start_index: int = 0,
         kind: str = "webhook", fmt: str = "sealog", headers: dict[str, str] | None = None,
         allow_http: bool = True, **config) -> tuple[StreamRow, str | None]:
    """A new stream of org acme (not stored), its config made of the other settings."""
    return new_stream(org_id="acme", name=name, config=StreamConfig(url=url, **config),
                      box=box, start_index=start_index, kind=kind, fmt=fmt, headers=headers,
                      allow_http=allow_http)


def _stream(store: Store, box: SecretBox, receiver: Receiver, **settings) -> StreamRow:
    row, secret = _new(box, url=receiver.url, **settings)
    assert secret is not None
    receiver.secret = secret
    with store.writing() as tx:
        tx.insert_stream(row)
    return row


def _deliver_all(deliverer: Deliverer, limit: int = 100) -> int:
    """Calls the deliverer until no stream is due; how many rounds delivered."""
    for calls in range(limit):
        if not deliverer.deliver_round():
            return calls
    raise AssertionError(f"streams still due after {limit} rounds")


def _one_round(deliverer: Deliverer) -> StreamRow | None:
    """A round of the deliverer, of one stream: that stream as it then is, or None when no
    stream was due."""
    streams = deliverer.deliver_round()
    assert len(streams) <= 1, streams
    return streams[0] if streams else None


def _deliverer(store: Store, box: SecretBox, signer, owner: str = "w1",
               linger_us: int = 0) -> Deliverer:
    """A deliverer that sends the next batch at once (no linger) unless told otherwise."""
    return Deliverer(store=store, box=box, signer=signer, host=HOST, owner=owner,
                     allow_private=True, linger_us=linger_us)


def test_a_webhook_stream_delivers_the_log_in_order_signed_and_verifiable(
        store, box, signer, receiver):
    """1,200 events from the log's beginning, batches of 500: every event once, in index
    order, exactly as GET /events/{id} shows it; each batch verified by standardwebhooks,
    and its checkpoint a note the log's key signed, covering the batch, whose root the
    batch's leaf hashes (with the log's earlier ones) make."""
    _log(store, 1200)
    size = store.log_head("acme").size
    _stream(store, box, receiver, batch_events=500)
    assert _deliver_all(_deliverer(store, box, signer)) == 3
    assert receiver.refused == []
    got = receiver.events()
    assert [e["index"] for e in got] == list(range(size))
    stored = [store.get_event("acme", e["id"]) for e in got]
    for e, s in zip(got, stored, strict=True):
        assert s is not None and e["leaf_hash"] == s.leaf_hash.hex()
        # The document less its leaf_hash is the sealed document, whose hash it is.
        doc = orjson.dumps({k: v for k, v in e.items() if k != "leaf_hash"})
        assert events.leaf_hash(s.doc) == bytes.fromhex(e["leaf_hash"])
        assert orjson.loads(doc) == orjson.loads(s.doc)
    verifier = Verifier.parse(signer.verifier.text())  # as pinned by the receiver
    leaves = [bytes.fromhex(e["leaf_hash"]) for e in got]
    assert [(b["from_index"], b["to_index"]) for b in receiver.bodies] == [
        (0, 500), (500, 1000), (1000, size)]
    for body in receiver.bodies:
        signed = checkpoint.open_checkpoint(body["checkpoint"], [verifier])
        assert signed.size >= body["to_index"]
        assert merkle.root_of_leaves(leaves[:signed.size]) == signed.root
    stream = store.list_streams("acme")[0]
    assert (stream.next_index, stream.delivered, stream.state, stream.attempts) == (
        size, size, "active", 0)
    assert stream.lease_owner is None

    # A receiver with another secret refuses what the stream sends.
    receiver.secret = "whsec_" + base64.b64encode(b"x" * 32).decode()
    _log(store, 3)
    assert _deliver_all(_deliverer(store, box, signer)) == 1
    assert receiver.refused and "signature" in receiver.refused[0].lower()
    stream = store.list_streams("acme")[0]
    assert stream.next_index == size and stream.state == "failing"
    assert stream.last_error == "HTTP 401: bad signature"


def test_a_batch_goes_as_far_as_the_latest_checkpoint_and_shares_it(
        store, box, signer, receiver):
    """With a checkpoint inside the batch's range, the batch stops there and carries that
    checkpoint; the rest goes next, with a new one: a stream signs no checkpoint of its own
    while one already covers part of its batch."""
    _log(store, 100)
    signed = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    _log(store, 50)
    size = store.log_head("acme").size
    _stream(store, box, receiver, batch_events=500)
    assert _deliver_all(_deliverer(store, box, signer)) == 2
    assert [(b["from_index"], b["to_index"]) for b in receiver.bodies] == [
        (0, signed.size), (signed.size, size)]
    sizes = [checkpoint.open_checkpoint(b["checkpoint"], [signer.verifier]).size
             for b in receiver.bodies]
    assert sizes == [signed.size, size]
    assert [c.size for c in store.iter_checkpoints("acme")] == [signed.size, size]


def test_a_stream_started_from_now_sends_only_later_events(store, box, signer, receiver):
    _log(store, 50)
    size = store.log_head("acme").size
    _stream(store, box, receiver, start_index=size)
    assert _deliver_all(_deliverer(store, box, signer)) == 0
    _log(store, 5)
    waiting = store.list_streams("acme")[0]
    first = orjson.loads(next(iter(store.iter_events_by_index("acme", size, size + 1))).doc)
    received = times.parse_rfc3339(first["received_at"])
    assert manage.lag_seconds(store, waiting, size + 5, now_us=received + 2_500_000) == 2.5
    shown = manage.view(store, waiting)
    assert (shown["lag_events"], shown["last_delivered_index"]) == (5, size - 1)
    assert _deliver_all(_deliverer(store, box, signer)) == 1
    assert [e["index"] for e in receiver.events()] == list(range(size, size + 5))
    assert manage.view(store, store.list_streams("acme")[0])["lag_seconds"] == 0


def test_retried_failures_back_off_honour_retry_after_and_skip_nothing(
        store, box, signer, receiver, monkeypatch):
    """A 503, a 429 with Retry-After and a lost connection are tried again later, the
    cursor unmoved; then everything arrives once, in order."""
    _log(store, 30)
    size = store.log_head("acme").size
    _stream(store, box, receiver, batch_events=10)
    receiver.answers = [(503, {}, "busy"), (429, {"Retry-After": "7"}, "slow down")]
    deliverer = _deliverer(store, box, signer)
    first = _one_round(deliverer)
    assert first is not None and first.state == "active" and first.attempts == 1
    assert first.next_index == 0 and first.last_error == "HTTP 503: busy"
    assert _one_round(deliverer) is None  # not due before its retry time
    assert 0 <= first.retry_at - first.updated_at <= delivery.RETRY_BASE_US

    def due(stream: StreamRow) -> None:
        with store.writing() as tx:
            locked = tx.lock_stream(stream.org_id, stream.id)
            assert locked is not None
            tx.update_stream(dataclasses.replace(locked, retry_at=times.now_us()))

    due(first)
    second = _one_round(deliverer)
    assert second is not None and second.attempts == 2 and second.failures == 2
    assert second.retry_at - second.updated_at == 7_000_000  # the receiver's Retry-After
    due(second)
    receiver.close()  # nobody listens: a connection error
    third = _one_round(deliverer)
    assert third is not None and third.attempts == 3 and "ConnectError" in third.last_error
    revived = Receiver()
    try:
        revived.secret = receiver.secret
        with store.writing() as tx:
            locked = tx.lock_stream(third.org_id, third.id)
            assert locked is not None
            config = orjson.loads(locked.config) | {"url": revived.url}
            tx.update_stream(dataclasses.replace(locked, config=orjson.dumps(config).decode(),
                                                 retry_at=times.now_us()))
        _deliver_all(deliverer)
        assert [e["index"] for e in revived.events()] == list(range(size))
        final = store.list_streams("acme")[0]
        assert (final.state, final.attempts, final.failing_since, final.failures) == (
            "active", 0, None, 3)
    finally:
        revived.close()


def test_a_refusal_makes_the_stream_failing_with_the_answer_until_it_is_taken(
        store, box, signer, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_BASE_US", 0)
    _log(store, 20)
    _stream(store, box, receiver, batch_events=100)
    receiver.answers = [(400, {}, "unknown tenant token"), (404, {}, "no such hook")]
    deliverer = _deliverer(store, box, signer)
    failed = _one_round(deliverer)
    assert failed is not None and failed.state == "failing" and failed.next_index == 0
    assert failed.last_error == "HTTP 400: unknown tenant token"
    assert _one_round(deliverer).last_error == "HTTP 404: no such hook"
    assert _one_round(deliverer).state == "active"  # the receiver took it
    assert len(receiver.events()) == store.log_head("acme").size


def test_a_stream_failing_past_the_limit_is_disabled_and_not_tried(
        store, box, signer, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_BASE_US", 0)
    monkeypatch.setattr(delivery, "DISABLE_AFTER_US", 0)
    _log(store, 5)
    _stream(store, box, receiver)
    receiver.answers = [(500, {}, "down")]
    deliverer = _deliverer(store, box, signer)
    assert _one_round(deliverer).state == "disabled"
    assert _one_round(deliverer) is None and receiver.bodies == []


def test_only_the_chosen_categories_are_sent_and_the_others_move_the_cursor(
        store, box, signer, receiver):
    auth.create_org(store=store, name="Acme", org_id="acme")
    raw = [event(description=f"e{n}", action=("auth.login_failed" if n % 3 == 0
                                              else "agent.created")) for n in range(90)]
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor())
    _stream(store, box, receiver, categories=("security_events",), batch_events=7)
    _deliver_all(_deliverer(store, box, signer))
    got = receiver.events()
    assert {e["category"] for e in got} == {"security_events"}
    assert len(got) == 30 and [e["index"] for e in got] == sorted(e["index"] for e in got)
    assert store.list_streams("acme")[0].next_index == store.log_head("acme").size


def test_one_worker_at_a_time_delivers_a_stream(store, box, signer, receiver):
    """While one worker holds a stream's lease, no other claims it; a worker whose lease
    ran out and was taken over moves nothing when it finishes; two workers delivering at
    once send each batch once, in order."""
    _log(store, 40)
    size = store.log_head("acme").size
    row = _stream(store, box, receiver, batch_events=5)
    now = times.now_us()
    [held] = store.claim_streams(owner="w1", now=now, lease_us=delivery.LEASE_US, limit=8)
    assert held.lease_owner == "w1"
    assert store.claim_streams(owner="w2", now=now, lease_us=delivery.LEASE_US, limit=8) == []
    later = now + delivery.LEASE_US + 1
    [taken] = store.claim_streams(owner="w2", now=later, lease_us=delivery.LEASE_US, limit=8)
    assert taken.lease_owner == "w2"
    late = _deliverer(store, box, signer, owner="w1")
    batch = delivery.next_batch(store, held, StreamConfig.parse(held.config), "src")
    late._record([held], [batch], [delivery.Attempt(True)], [False])
    assert store.get_stream("acme", row.id).next_index == 0  # w1's batch moved nothing
    with store.writing() as tx:
        locked = tx.lock_stream("acme", row.id)
        assert locked is not None
        tx.update_stream(dataclasses.replace(locked, lease_owner=None, lease_expires_at=None))

    workers = [_deliverer(store, box, signer, owner=f"t{n}") for n in range(2)]
    threads = [threading.Thread(target=_deliver_all, args=(w, 200)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert [e["index"] for e in receiver.events()] == list(range(size))


def test_streams_of_an_org_at_one_place_go_in_one_round_from_one_read(
        store, box, signer, monkeypatch):
    """Three streams at the same index, in two formats: one round reads the log once and
    sends each its batch; a receiver that refuses holds back only its own stream."""
    _log(store, 1200)
    size = store.log_head("acme").size
    receivers = [Receiver() for _ in range(3)]
    try:
        rows = [_stream(store, box, r, name=f"s{n}", fmt=fmt)
                for n, (r, fmt) in enumerate(zip(receivers, ("sealog", "ocsf", "sealog"),
                                                 strict=True))]
        receivers[2].answers = [(400, {}, "no such index")]
        reads: list[tuple[int, int]] = []
        by_index = store.iter_events_by_index

        def counted(org_id: str, start: int, stop: int):
            reads.append((start, stop))
            return by_index(org_id, start, stop)

        monkeypatch.setattr(store, "iter_events_by_index", counted)
        deliverer = _deliverer(store, box, signer)
        first = {s.id: s for s in deliverer.deliver_round()}
        assert reads == [(0, 500)]
        assert {i: (s.next_index, s.state) for i, s in first.items()} == {
            rows[0].id: (500, "active"), rows[1].id: (500, "active"),
            rows[2].id: (0, "failing")}
        assert [(b["from_index"], b["to_index"]) for b in receivers[0].bodies] == [(0, 500)]
        assert receivers[1].bodies[0]["events"][0]["metadata"]["uid"] == \
            receivers[0].bodies[0]["events"][0]["id"]  # OCSF's event id is Sealog's

        with store.writing() as tx:  # its retry well after the others are done (no jitter)
            refused = tx.lock_stream("acme", rows[2].id)
            assert refused is not None and refused.retry_at is not None
            tx.update_stream(dataclasses.replace(refused, retry_at=times.now_us() + 3_600_000_000))
        _deliver_all(deliverer)  # the two together
        for r in receivers[:2]:
            assert [e["index"] if "index" in e else e["unmapped"]["sealog"]["index"]
                    for e in r.events()] == list(range(size))
        assert reads == [(0, 500), (500, 1000), (1000, size)] and receivers[2].bodies == []
    finally:
        for r in receivers:
            r.close()


def test_a_stream_that_cannot_be_sent_fails_alone_in_its_round(store, box, signer):
    """A header value the HTTP client cannot encode (not ASCII) fails that stream's attempt,
    kept as its error; its partner in the round is delivered and moves on."""
    _log(store, 20)
    size = store.log_head("acme").size
    receivers = [Receiver() for _ in range(2)]
    try:
        good = _stream(store, box, receivers[0], name="good")
        bad = _stream(store, box, receivers[1], name="bad", headers={"X-Token": "café"})
        after = {s.id: s for s in _deliverer(store, box, signer).deliver_round()}
        assert after[good.id].next_index == size and len(receivers[0].events()) == size
        assert (after[bad.id].next_index, after[bad.id].state) == (0, "failing")
        assert after[bad.id].last_error.startswith("UnicodeEncodeError")
        assert receivers[1].requests == 0
    finally:
        for r in receivers:
            r.close()


def test_a_slow_receiver_does_not_hold_its_round_partners_to_its_pace(
        store, box, signer, monkeypatch):
    """A round waits ROUND_WAIT_SECONDS for its answers: the fast stream is recorded and
    moves on alone while the slow receiver's batch is in flight, which is recorded when it
    answers; both end with every event once, in order."""
    monkeypatch.setattr(delivery, "ROUND_WAIT_SECONDS", 0.2)
    _log(store, 20)
    first_size = store.log_head("acme").size
    fast, slow = Receiver(), Receiver()
    slow.hold_at = 1
    deliverer = _deliverer(store, box, signer)
    try:
        fast_row = _stream(store, box, fast, name="fast")
        slow_row = _stream(store, box, slow, name="slow")
        started = time.monotonic()
        [moved] = deliverer.deliver_round()
        assert time.monotonic() - started < 5 and slow.held.is_set()
        assert (moved.id, moved.next_index) == (fast_row.id, first_size)
        held = store.get_stream("acme", slow_row.id)
        assert (held.next_index, held.lease_owner) == (0, deliverer.owner)

        _log(store, 5)
        [moved] = deliverer.deliver_round()  # the slow one is still in flight: not claimed
        assert moved.id == fast_row.id and moved.next_index == store.log_head("acme").size
        slow.release.set()
        wait_for(lambda: store.get_stream("acme", slow_row.id).next_index == first_size, 10,
                 "the slow receiver's batch recorded once it answered")
        _deliver_all(deliverer)
        size = store.log_head("acme").size
        for r in (fast, slow):
            assert [e["index"] for e in r.events()] == list(range(size))
    finally:
        slow.release.set()
        deliverer.close()
        fast.close()
        slow.close()


def test_a_round_that_fails_keeps_the_lease_of_a_batch_still_in_flight(
        store, box, signer, monkeypatch):
    """When recording a round fails, its streams are released for another worker, but not
    one whose request is still in flight: that would let a second request of the stream
    go out beside it."""
    monkeypatch.setattr(delivery, "ROUND_WAIT_SECONDS", 0.2)
    _log(store, 20)
    fast, slow = Receiver(), Receiver()
    slow.hold_at = 1
    deliverer = _deliverer(store, box, signer)
    try:
        fast_row = _stream(store, box, fast, name="fast")
        slow_row = _stream(store, box, slow, name="slow")
        recorded = deliverer._record
        failed: list[int] = []

        def record_fails_once(*args):
            if not failed:
                failed.append(1)
                raise RuntimeError("the database went away")
            return recorded(*args)

        monkeypatch.setattr(deliverer, "_record", record_fails_once)
        with pytest.raises(RuntimeError):
            deliverer.deliver_round()
        assert slow.held.is_set()
        assert store.get_stream("acme", fast_row.id).lease_owner is None  # released
        assert store.get_stream("acme", slow_row.id).lease_owner == deliverer.owner
        slow.release.set()
        size = store.log_head("acme").size
        wait_for(lambda: store.get_stream("acme", slow_row.id).next_index == size, 10,
                 "the slow receiver's batch recorded once it answered")
    finally:
        slow.release.set()
        deliverer.close()
        fast.close()
        slow.close()


def test_a_stream_that_reached_the_log_head_lingers_before_its_next_batch(
        store, box, signer, receiver):
    """A batch that reached the log's head and was not full keeps the stream's lease for
    the linger, so no worker sends the next few events before it; a full batch does not."""
    _log(store, 10)
    row = _stream(store, box, receiver)
    deliverer = _deliverer(store, box, signer, linger_us=30_000_000)
    [delivered] = deliverer.deliver_round()
    assert delivered.next_index == store.log_head("acme").size
    assert delivered.lease_owner == deliverer.owner
    _log(store, 5)
    assert deliverer.deliver_round() == []
    now = times.now_us()
    assert store.claim_streams(owner="w2", now=now, lease_us=delivery.LEASE_US, limit=8) == []
    [after] = store.claim_streams(owner="w2", now=now + 30_000_001, lease_us=delivery.LEASE_US,
                                  limit=8)
    assert after.id == row.id and after.lease_owner == "w2"

    with store.writing() as tx:
        tx.delete_stream("acme", row.id)
    full = _stream(store, box, receiver, name="full", batch_events=5)
    [sent] = deliverer.deliver_round()
    assert sent.id == full.id and sent.next_index == 5 and sent.lease_owner is None
    [sent] = deliverer.deliver_round()  # due again at once
    assert sent.next_index == 10


def test_the_linger_is_a_setting_of_its_own():
    assert Settings.from_env({}).stream_linger_seconds == 0.25
    assert Settings.from_env({"SEALOG_STREAM_LINGER_SECONDS": "0"}).stream_linger_seconds == 0
    for bad in ("-1", "11", "soon"):
        with pytest.raises(SettingsError, match="SEALOG_STREAM_LINGER_SECONDS"):
            Settings.from_env({"SEALOG_STREAM_LINGER_SECONDS": bad})


def test_secrets_are_stored_sealed_and_open_only_with_their_key(
        store, store_url, box, signer, receiver, tmp_path):
    _log(store, 1)
    row, secret = _new(box, url=receiver.url, headers={"Authorization": "Splunk tok-4e1f9c"})
    assert secret is not None
    with store.writing() as tx:
        tx.insert_stream(row)
    stored = store.get_stream("acme", row.id)
    assert stored is not None and stored.sealed == row.sealed
    for plain in (secret, "tok-4e1f9c"):
        assert plain.encode() not in stored.sealed and plain not in stored.config
    if store_url.startswith("sqlite"):
        files = [p for p in (tmp_path).rglob("*") if p.is_file() and "sealog.db" in p.name]
        assert files and not any(b"tok-4e1f9c" in p.read_bytes() for p in files)
    assert box.open("acme", row.id, stored.sealed)["headers"] == {
        "Authorization": "Splunk tok-4e1f9c"}
    other = SecretBox.load(tmp_path / "other.key")
    with pytest.raises(SecretsError, match="streams key"):
        other.open("acme", row.id, stored.sealed)
    with pytest.raises(SecretsError):  # bound to its stream: not another's
        box.open("acme", "str_other", stored.sealed)
    assert (tmp_path / "data" / "streams.key").stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize(("settings", "named"), [
    ({"url": "ftp://siem.example.com/x"}, "url"),
    ({"url": "http://siem.example.com/x", "allow_http": False}, "url"),
    ({"batch_events": 0}, "batch_events"),
    ({"batch_bytes": 10}, "batch_bytes"),
    ({"headers": {f"X-{n}": "v" for n in range(21)}}, "headers"),
    ({"headers": {"Webhook-Signature": "forged"}}, "headers"),
    ({"headers": {"X-Token": "a\r\nX-Injected: 1"}}, "headers"),
    ({"headers": {"X Token": "a"}}, "headers"),
    ({"headers": {"": "a"}}, "headers"),
    ({"name": " "}, "name"),
    ({"kind": "email"}, "kind"),
    ({"fmt": "xml"}, "format"),
    ({"categories": ("security_events", "gossip")}, "categories"),
    ({"query": 'actor:"unclosed'}, "query"),
    ({"query": "colour:red"}, "query"),
    ({"ca_bundle": "-----BEGIN CERTIFICATE-----"}, "ca_bundle"),
    ({"kind": "syslog"}, "url"),
    ({"kind": "syslog", "url": "tcp://siem.example.com"}, "url"),
    ({"kind": "syslog", "url": "tcp://siem.example.com:99999"}, "url"),
    ({"kind": "syslog", "url": "tcp://siem.example.com:514/path"}, "url"),
    ({"kind": "syslog", "url": "tcp://siem.example.com:514",
      "headers": {"X-Token": "a"}}, "headers"),
    ({"kind": "syslog", "url": "tcp://siem.example.com:514", "ca_bundle": "x"}, "ca_bundle"),
    ({"kind": "syslog", "url": "tls://siem.example.com:6514", "ca_bundle": "x"}, "ca_bundle"),
])
def test_settings_a_stream_cannot_take_are_refused_naming_them(box, settings, named):
    args = {"url": "https://siem.example.com/hook"} | settings
    with pytest.raises(delivery.StreamError, match=f"^{named}:"):
        _new(box, **args)


# -- through the API ---------------------------------------------------------------------

def test_a_stream_made_through_the_api_of_a_real_server_delivers_pauses_replays(
        tmp_path, store_url, receiver):
    """`sealog serve` delivers a stream made through the API (its stream worker): every
    event from the beginning, then, paused, nothing, then the rest once resumed, then all
    again from a replayed index; the changes are audit events of the org's log, and the
    secret is in the creating answer only."""
    from conftest import SealogProcess, acme_data_folder, wait_for

    data = tmp_path / "data"
    secret = acme_data_folder(data, store_url)
    server = SealogProcess(data, database_url=store_url, env={
        "SEALOG_STREAMS_ALLOW_PRIVATE": "1", "SEALOG_STREAMS_ALLOW_HTTP": "1"})
    server.start()
    api = httpx.Client(base_url=f"{server.base}/api/v1",
                       headers={"Authorization": f"Bearer {secret}"})
    try:
        sent = [event(description=f"e{n}") for n in range(300)]
        assert api.post("/events", json={"events": sent}).status_code == 201
        made = api.post("/streams", json={"name": "SIEM", "url": receiver.url,
                                          "start": "beginning", "batch_events": 100})
        assert made.status_code == 201, made.text
        stream = made.json()
        receiver.secret = stream["secret"]
        assert stream["secret"].startswith("whsec_") and stream["state"] == "active"
        sid = stream["id"]

        def lag() -> int:
            return api.get(f"/streams/{sid}").json()["lag_events"]

        wait_for(lambda: lag() == 0, 30, "the stream to catch up")
        shown = api.get(f"/streams/{sid}").json()
        assert "secret" not in shown and shown["delivered"] == shown["next_index"]
        indexes = [e["index"] for e in receiver.events()]
        assert indexes == list(range(shown["next_index"]))
        assert {e["description"] for e in receiver.events()} >= {f"e{n}" for n in range(300)}

        assert api.post(f"/streams/{sid}/pause").json()["state"] == "paused"
        got = len(receiver.events())
        assert api.post("/events", json={"events": [event(description="later")]}
                        ).status_code == 201
        time.sleep(1.0)  # several of the worker's rounds
        assert len(receiver.events()) == got
        assert api.post(f"/streams/{sid}/resume").json()["state"] == "active"
        wait_for(lambda: lag() == 0, 30, "the resumed stream to catch up")
        assert "later" in {e["description"] for e in receiver.events()}

        replayed = api.post(f"/streams/{sid}/replay", json={"index": 5})
        assert replayed.status_code == 200 and replayed.json()["next_index"] == 5
        wait_for(lambda: lag() == 0, 30, "the replay")
        again = [e["index"] for e in receiver.events()]
        assert again[-(api.get(f"/streams/{sid}").json()["next_index"] - 5):][0] == 5

        listed = api.get("/streams").json()["data"]
        assert [s["id"] for s in listed] == [sid] and "secret" not in listed[0]
        assert api.delete(f"/streams/{sid}").status_code == 204
        assert api.get(f"/streams/{sid}").status_code == 404
        actions = [e["action"] for e in api.get(
            "/events", params={"range": "24h", "q": "action:stream.*", "limit": 50}
        ).json()["data"]]
        assert sorted(actions) == sorted(["stream.created", "stream.paused", "stream.resumed",
                                          "stream.replayed", "stream.deleted"])
    finally:
        api.close()
        server.stop()
        print(server.output())


def test_the_api_refuses_what_a_stream_cannot_take_naming_it(tenant_factory):
    admin = tenant_factory("acme")
    reader = tenant_factory("acme", scopes=["events:read", "exports"])
    body = {"name": "SIEM", "url": "https://127.0.0.1/hook"}
    refused = admin.client.post("/api/v1/streams", json=body)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "url"
    assert "loopback" in refused.json()["detail"]
    assert "SEALOG_STREAMS_ALLOW_PRIVATE" in refused.json()["detail"]
    for bad, field in ((body | {"url": "http://siem.example.com/x"}, "url"),
                       (body | {"categories": ["nope"]}, "categories"),
                       (body | {"batch_events": 0}, "batch_events")):
        answer = admin.client.post("/api/v1/streams", json=bad)
        assert answer.status_code == 422 and answer.json()["errors"][0]["field"] == field
    assert admin.client.post("/api/v1/streams", json=body | {"start": "yesterday"}
                             ).status_code == 422
    assert reader.client.post("/api/v1/streams", json=body).status_code == 403
    assert reader.client.get("/api/v1/streams").status_code == 403
    assert admin.client.get("/api/v1/streams/str_none").status_code == 404
    assert admin.client.get("/api/v1/streams").json() == {"data": []}


def test_a_destination_that_resolves_to_a_private_address_is_refused_at_connection(
        store, box, signer, receiver):
    """Made while allowed, a stream to a loopback address is not sent to by a deliverer
    that does not allow private addresses: the check is made on connecting."""
    _log(store, 3)
    _stream(store, box, receiver)
    strict = Deliverer(store=store, box=box, signer=signer, host=HOST, owner="w")
    failed = _one_round(strict)
    assert failed is not None and failed.next_index == 0 and receiver.bodies == []
    assert "127.0.0.1 is a loopback address" in failed.last_error


def test_the_command_line_makes_lists_changes_and_deletes_streams(
        capsys, store, store_url, tmp_path, receiver, signer, monkeypatch):
    """`sealog streams` over the same functions as the API: the secret printed once, the
    list showing state and lag, pause, resume, replay and delete, each an audit event of
    the operator's; a refused setting exits 2 naming it."""
    from sealog.cli import main

    monkeypatch.setenv("SEALOG_STREAMS_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("SEALOG_STREAMS_ALLOW_HTTP", "1")
    db = ["--database-url", store_url, "--data-dir", str(tmp_path / "data")]

    def run(*argv: str) -> tuple[int, str, str]:
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    _log(store, 10)
    code, out, _ = run("streams", "create", "--org", "acme", "--name", "SIEM", "--url",
                       receiver.url, "--start", "beginning", "--header",
                       "Authorization: Bearer t0k", "--json", *db)
    assert code == 0, out
    made = orjson.loads(out)
    assert made["secret"].startswith("whsec_") and made["header_names"] == ["Authorization"]
    receiver.secret = made["secret"]
    sid = made["id"]
    code, out, _ = run("streams", "list", "--org", "acme", *db)
    assert code == 0 and sid in out and "active" in out and made["secret"] not in out
    box = SecretBox.load(tmp_path / "data" / "streams.key")
    assert _deliver_all(_deliverer(store, box, signer)) >= 1  # the key the command made
    assert len(receiver.events()) == 11
    assert orjson.loads(run("streams", "pause", "--org", "acme", sid, "--json", *db)[1]
                        )["state"] == "paused"
    assert orjson.loads(run("streams", "resume", "--org", "acme", sid, "--json", *db)[1]
                        )["state"] == "active"
    code, out, _ = run("streams", "replay", "--org", "acme", sid, "--index", "2", *db)
    assert code == 0 and "next index 2" in out
    code, _, err = run("streams", "replay", "--org", "acme", sid, "--index", "999", *db)
    assert code == 2 and "index: the log holds indexes 0 to" in err
    code, _, err = run("streams", "create", "--org", "acme", "--name", "x", "--url",
                       receiver.url, "--category", "nope", *db)
    assert code == 2 and "categories: nope" in err
    code, out, _ = run("streams", "update", "--org", "acme", sid, "--query", "actor:bob*",
                       "--format", "ocsf", "--header", "X-Token: t2", "--json", *db)
    changed = orjson.loads(out)
    assert code == 0 and (changed["query"], changed["format"], changed["header_names"],
                          changed["next_index"]) == ("actor:bob*", "ocsf", ["X-Token"], 2)
    code, _, err = run("streams", "update", "--org", "acme", sid, "--query", "colour:red", *db)
    assert code == 2 and "query:" in err
    assert run("streams", "update", "--org", "acme", sid, *db)[0] == 2  # nothing to change
    code, out, _ = run("streams", "create", "--org", "acme", "--name", "rsyslog", "--kind",
                       "syslog", "--url", "tcp://127.0.0.1:6514", "--format", "cloudevents",
                       "--json", *db)
    syslog_made = orjson.loads(out)
    assert code == 0 and syslog_made["secret"] is None and syslog_made["kind"] == "syslog"
    assert run("streams", "delete", "--org", "acme", syslog_made["id"], *db)[0] == 0
    assert run("streams", "delete", "--org", "acme", sid, *db)[0] == 0
    assert run("streams", "list", "--org", "acme", *db)[1].strip() == "(no streams)"
    actions = [orjson.loads(d.doc) for d in store.iter_events_by_index(
        "acme", 0, store.log_head("acme").size)]
    by_cli = [e["action"] for e in actions if e["actor"]["id"] == "sealog-cli"]
    assert by_cli == ["stream.created", "stream.paused", "stream.resumed", "stream.replayed",
                      "stream.updated", "stream.created", "stream.deleted", "stream.deleted"]


def _worker_setup(tmp_path: Path, store_url: str, box: SecretBox, receiver: Receiver, *,
                  events: int, batch_events: int, **env: str
                  ) -> tuple[int, list[str], dict[str, str]]:
    """A log of events events streamed to receiver from its beginning: the log's size, and
    the command and environment of a `sealog worker` process that delivers it."""
    import os
    import sys

    store = open_store(store_url)
    try:
        _log(store, events)
        size = store.log_head("acme").size
        _stream(store, box, receiver, batch_events=batch_events)
    finally:
        store.close()
    return size, [sys.executable, "-m", "sealog", "worker", "--data-dir",
                  str(tmp_path / "data")], {
        **os.environ, "SEALOG_STREAMS_ALLOW_PRIVATE": "1", "SEALOG_DATABASE_URL": store_url,
        "SEALOG_EXPORT_WORKERS": "0", **env}


def test_a_worker_killed_mid_batch_repeats_only_that_batch_once_restarted(
        tmp_path, store_url, receiver, box):
    """`sealog worker` processes deliver a stream; the first is SIGKILLed while the receiver
    holds its fifth request: a second worker, started after, sends that batch again once
    the lease has run out, then the rest: every event arrives, in order, and the only
    repeats are the batch that was in flight."""
    import signal
    import subprocess

    from conftest import wait_for

    size, command, env = _worker_setup(tmp_path, store_url, box, receiver, events=2000,
                                       batch_events=100, SEALOG_STREAM_LEASE_SECONDS="2")
    receiver.hold_at = 5
    first = subprocess.Popen(command, env=env)
    second = None
    try:
        assert receiver.held.wait(60), "the worker did not reach its fifth batch"
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        receiver.release.set()
        second = subprocess.Popen(command, env=env)
        wait_for(lambda: len({e["index"] for e in receiver.events()}) == size, 60,
                 "every event to arrive")
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(30)
    got = [e["index"] for e in receiver.events()]
    in_flight = list(range(400, 500))
    assert got == list(range(500)) + in_flight + list(range(500, size))


def test_two_worker_processes_deliver_20000_events_in_order_across_a_receiver_outage(
        tmp_path, store_url, receiver, box):
    """Two `sealog worker` processes of two stream workers each deliver 20,000 events; the
    receiver stops listening for 10 s in the middle: every event arrives in order, none
    missing, and no two requests of the stream were ever in flight at once (one worker at
    a time, across processes, on both backends)."""
    import subprocess

    size, command, env = _worker_setup(tmp_path, store_url, box, receiver, events=20_000,
                                       batch_events=500, SEALOG_STREAM_WORKERS="2")
    workers = [subprocess.Popen(command, env=env) for _ in range(2)]
    try:
        wait_for(lambda: len(receiver.events()) >= 5000, 120, "a quarter of the events")
        receiver.close()
        stopped = len(receiver.events())
        time.sleep(10)
        assert stopped < size and len(receiver.events()) == stopped  # down mid-way
        receiver.restart()
        wait_for(lambda: len({e["index"] for e in receiver.events()}) == size, 120,
                 "every event to arrive")
    finally:
        for proc in workers:
            proc.terminate()
            proc.wait(30)
    got = [e["index"] for e in receiver.events()]
    assert list(dict.fromkeys(got)) == list(range(size))
    # A batch answered as the listener closed may come again once, whole, and in place.
    assert len(got) - size <= 500
    spans = sorted(receiver.spans)
    overlaps = [(earlier, later) for earlier, later in itertools.pairwise(spans)
                if later[0] < earlier[1]]
    assert not overlaps, (overlaps, stopped, len(spans))


def test_a_rotated_secret_leaves_the_old_one_valid_for_the_overlap_only(
        store, signer, receiver, tenant_factory, monkeypatch):
    """After a rotation each request is signed by the new secret and, during the overlap,
    the old: a receiver holding either verifies it (standardwebhooks); past the overlap
    only the new one does. The new secret is in the rotating answer alone."""
    from sealog.streams import manage

    admin = tenant_factory("acme")  # the app's streams key is its data folder's
    box = admin.client.app.state.streams_box
    monkeypatch.setattr(delivery, "RETRY_BASE_US", 0)
    made = admin.client.post("/api/v1/streams", json={
        "name": "SIEM", "url": receiver.url, "start": "beginning"})
    assert made.status_code == 422  # a private address, refused without the operator's leave
    row = _stream(store, box, receiver)
    old = receiver.secret
    rotated = admin.client.post(f"/api/v1/streams/{row.id}/rotate-secret",
                                json={"overlap_seconds": 3600})
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert "secret" not in admin.client.get(f"/api/v1/streams/{row.id}").json()
    deliverer = _deliverer(store, box, signer)
    for secret in (old, new):
        receiver.secret = secret
        _log(store, 1)
        _deliver_all(deliverer)
        assert receiver.refused == [], secret
    with pytest.raises(delivery.StreamError, match="^overlap_seconds:"):
        manage.rotate_secret(store=store, box=box, redactor=Redactor(), org_id="acme",
                             actor={"id": "t", "type": "system"}, stream_id=row.id,
                             overlap_seconds=-1)
    manage.rotate_secret(store=store, box=box, redactor=Redactor(), org_id="acme",
                         actor={"id": "t", "type": "system"}, stream_id=row.id,
                         overlap_seconds=0)  # the earlier secrets end now
    receiver.secret = new
    _log(store, 1)
    refused = _one_round(deliverer)
    assert refused is not None and refused.last_error == "HTTP 401: bad signature"
    assert len(receiver.refused) == 1
    assert {e["action"] for e in receiver.events()} >= {"stream.secret_rotated"}


def _admin_api(store: Store, tmp_path: Path) -> tuple[Any, Any]:
    """An app over store (no workers; streams may go to local HTTP receivers) with org
    acme, and a test client with an admin key of it."""
    from fastapi.testclient import TestClient

    from sealog.api.app import create_app
    from sealog.config import Settings

    settings = Settings(data_dir=tmp_path / "data", streams_allow_private=True,
                        streams_allow_http=True)
    app = create_app(settings, store=store, run_workers=False)
    auth.create_org(store=store, name="Acme", org_id="acme")
    key = auth.create_api_key(store=store, org_id="acme", scopes=["admin"]).secret
    return app, TestClient(app, headers={"Authorization": f"Bearer {key}"})


def test_the_test_action_sends_a_signed_message_and_shows_the_answer(
        store, tmp_path, receiver):
    """POST /streams/{id}/test: the destination gets a signed message with the org's latest
    checkpoint and no event, and the caller sees its answer; a refusal is shown, and the
    stream's cursor and state are left as they were."""
    app, client = _admin_api(store, tmp_path)
    made = client.post("/api/v1/streams", json={"name": "SIEM", "url": receiver.url})
    assert made.status_code == 201, made.text
    stream = made.json()
    receiver.secret = stream["secret"]
    answer = client.post(f"/api/v1/streams/{stream['id']}/test")
    assert answer.json() == {"delivered": True, "status": 200, "error": None}
    assert receiver.refused == [] and receiver.bodies[0]["type"] == "sealog.test"
    assert receiver.bodies[0]["events"] == []
    assert checkpoint.open_checkpoint(receiver.bodies[0]["checkpoint"],
                                      [app.state.signer.verifier]).size == store.log_head(
        "acme").size
    receiver.answers = [(403, {}, "forbidden by the SIEM")]
    assert client.post(f"/api/v1/streams/{stream['id']}/test").json() == {
        "delivered": False, "status": 403, "error": "HTTP 403: forbidden by the SIEM"}
    after = client.get(f"/api/v1/streams/{stream['id']}").json()
    assert (after["state"], after["next_index"], after["failures"]) == (
        "active", stream["next_index"], 0)
    assert client.post("/api/v1/streams/str_none/test").status_code == 404


# -- formats, filters, proofs ------------------------------------------------------------

OCSF_SCHEMAS = Path(__file__).parent / "data" / "ocsf"


def _varied_events() -> list[dict]:
    """Sample events of every kind, and the IAM actions that have OCSF classes of their own."""
    raw = list(generate_events(150, days=2, seed=11))
    member = {"type": "member", "id": "usr_0042", "name": "ana@acme.com"}
    raw += [event(action="member.invited", resource=member, metadata={"role": "auditor"}),
            event(action="member.role_changed", resource=member,
                  metadata={"from": "auditor", "to": "admin"}),
            event(action="member.removed", resource=member, result="success"),
            event(action="auth.logout"), event(action="auth.login_failed", result="failed"),
            event(action="security.suspicious_activity", result="warning"),
            event(action="stream.paused", resource={"type": "stream", "id": "str_1"}),
            event(action="custom.thing_done", category="system_events")]
    return raw


def test_a_query_filter_sends_only_matching_events_and_moves_past_the_rest(
        store, box, signer, receiver):
    _log(store, 0)
    raw = [event(description=f"e{n}", actor={"id": f"usr_{n % 3}", "email": None,
                                              "name": ["Bob Stone", "Alice", "Bob Ray"][n % 3]},
                 result=["success", "denied"][n % 2]) for n in range(60)]
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor())
    size = store.log_head("acme").size
    _stream(store, box, receiver, query="actor:bob* -result:denied", batch_events=4)
    _deliver_all(_deliverer(store, box, signer))
    got = [e["description"] for e in receiver.events()]
    wanted = [e["description"] for n, e in enumerate(raw) if n % 3 != 1 and n % 2 == 0]
    assert got == wanted and len(wanted) == 20
    assert store.list_streams("acme")[0].next_index == size


def test_an_ocsf_stream_sends_events_each_valid_against_its_class_schema(
        store, box, signer, receiver):
    """Every event in OCSF 1.8, valid against the official schema of the class its action
    maps to (all five classes seen), type_uid its class and activity, the Sealog id, index
    and leaf hash kept; with proofs, every batch verifies offline."""
    import jsonschema

    from sealog.streams import received

    _log(store, 0)
    ingest(store=store, org_id="acme", raw_events=_varied_events(), redactor=Redactor())
    size = store.log_head("acme").size
    _stream(store, box, receiver, fmt="ocsf", include_proofs=True, batch_events=40)
    _deliver_all(_deliverer(store, box, signer))
    validators = {int(p.name.split("_")[0]): jsonschema.Draft202012Validator(
        orjson.loads(p.read_bytes())) for p in OCSF_SCHEMAS.glob("*.schema.json")}
    got = receiver.events()
    assert len(got) == size
    classes = {}
    for out in got:
        validators[out["class_uid"]].validate(out)
        assert out["type_uid"] == out["class_uid"] * 100 + out["activity_id"]
        kept = out["unmapped"]["sealog"]
        stored = store.get_event("acme", kept["id"])
        assert stored is not None and kept["leaf_hash"] == stored.leaf_hash.hex()
        assert out["metadata"]["uid"] == kept["id"] and out["metadata"]["sequence"] == (
            kept["index"]) == stored.index
        classes.setdefault(out["class_uid"], set()).add(kept["action"])
    assert set(classes) == {3001, 3002, 3004, 3005, 6003}
    assert "member.role_changed" in classes[3005] and "auth.logout" in classes[3002]
    roles = [o for o in got if o["unmapped"]["sealog"]["action"] == "member.role_changed"]
    assert all(r["privileges"] for r in roles)  # the role given, from metadata or request
    assert [(r["privileges"], r["user"]["uid"]) for r in roles
            if r["user"]["uid"] == "usr_0042"] == [(["admin"], "usr_0042")]
    verifier = Verifier.parse(signer.verifier.text())
    for body in receiver.raw:
        report = received.verify_batch(body, [verifier])
        assert report.ok and report.valid == len(orjson.loads(body)["events"]), report.text()


def test_a_cloudevents_stream_sends_batches_a_cloudevents_sdk_reads(
        store, box, signer, receiver):
    """Batches in CloudEvents 1.0 batch mode, each event read by the CloudEvents SDK (which
    nobody here wrote), its data the event as the API shows it, its checkpoint the batch's
    last event; the batches verify offline."""
    from cloudevents.core.formats.json import JSONFormat

    from sealog.streams import received

    _log(store, 25)
    size = store.log_head("acme").size
    _stream(store, box, receiver, fmt="cloudevents", include_proofs=True, batch_events=10)
    _deliver_all(_deliverer(store, box, signer))
    assert set(receiver.content_types) == {"application/cloudevents-batch+json"}
    indexes = []
    for batch in receiver.bodies:
        read = [JSONFormat().read(None, orjson.dumps(e)) for e in batch]
        assert [e.get_type() for e in read][-1] == "sealog.checkpoint"
        for e in read[:-1]:
            data = e.get_data()
            stored = store.get_event("acme", e.get_id())
            assert stored is not None and data["leaf_hash"] == stored.leaf_hash.hex()
            assert e.get_source() == f"{HOST}/sealog/acme"
            assert e.get_type() == "sealog." + data["action"]
            assert e.get_extension("sealogindex") == data["index"] == stored.index
            indexes.append(data["index"])
    assert indexes == list(range(size))
    verifier = Verifier.parse(signer.verifier.text())
    assert all(received.verify_batch(b, [verifier]).ok for b in receiver.raw)


def test_batches_with_proofs_verify_offline_and_a_changed_one_is_named(
        store, box, signer, receiver, tmp_path, capsys):
    """A receiver's saved batches verify with the pinned key alone (library and `sealog
    verify --batch`); an event changed, a proof changed, another log's key and a batch
    without proofs are each reported, and the command exits 1."""
    from sealog.cli import main
    from sealog.streams import received

    _log(store, 30)
    _stream(store, box, receiver, include_proofs=True, batch_events=8)
    _deliver_all(_deliverer(store, box, signer))
    saved = tmp_path / "received"
    saved.mkdir()
    for n, body in enumerate(receiver.raw):
        (saved / f"{n:04}.json").write_bytes(body)
    key = signer.verifier.text()
    assert main(["verify", "--batch", str(saved), "--verifier-key", key]) == 0
    out = capsys.readouterr().out
    assert f"{store.log_head('acme').size}/{store.log_head('acme').size} events valid" in out

    verifier = Verifier.parse(key)
    body = orjson.loads(receiver.raw[1])
    changed = {**body, "events": [{**body["events"][2], "description": "nothing to see"},
                                  *body["events"][3:]]}
    report = received.verify_batch(orjson.dumps(changed), [verifier])
    assert [f.kind for f in report.failures] == ["modified"]
    assert report.failures[0].index == body["events"][2]["index"]
    proofs = [dict(p) for p in body["inclusion_proofs"]]
    proofs[0]["hashes"] = [base64.b64encode(b"\x01" * 32).decode(), *proofs[0]["hashes"][1:]]
    report = received.verify_batch(orjson.dumps({**body, "inclusion_proofs": proofs}),
                                   [verifier])
    assert [f.kind for f in report.failures] == ["root mismatch"]
    other = checkpoint.load_signer(tmp_path / "other.key", HOST).verifier
    assert [f.kind for f in received.verify_batch(receiver.raw[0], [other]).failures] == [
        "unknown key"]
    bare = {k: v for k, v in body.items() if k != "inclusion_proofs"}
    report = received.verify_batch(orjson.dumps(bare), [verifier])
    assert not report.ok and [f.kind for f in report.failures] == ["not proven"]
    (saved / "9999.json").write_bytes(orjson.dumps(changed))
    assert main(["verify", "--batch", str(saved), "--verifier-key", key]) == 1
    assert "FAILED modified" in capsys.readouterr().out


def test_a_stream_changed_through_the_api_keeps_its_place_and_checks_its_settings(
        store, tmp_path, receiver, box, signer):
    """PATCH /streams/{id}: the settings given change (format, query, headers replaced),
    the cursor and state stay, a setting it cannot take is refused naming it and changes
    nothing, and the change is an audit event naming what changed, no header value."""
    _, client = _admin_api(store, tmp_path)
    made = client.post("/api/v1/streams", json={
        "name": "SIEM", "url": receiver.url, "start": "beginning",
        "headers": {"Authorization": "Bearer old"}}).json()
    sid = made["id"]
    changed = client.patch(f"/api/v1/streams/{sid}", json={
        "format": "ocsf", "query": "action:member.*", "headers": {"X-Token": "new-t0k"},
        "name": "Security lake"})
    assert changed.status_code == 200, changed.text
    view = changed.json()
    assert (view["format"], view["query"], view["header_names"], view["name"]) == (
        "ocsf", "action:member.*", ["X-Token"], "Security lake")
    assert (view["next_index"], view["state"], view["url"]) == (0, "active", receiver.url)
    row = store.get_stream("acme", sid)
    assert row is not None and box.open("acme", sid, row.sealed)["headers"] == {
        "X-Token": "new-t0k"}
    for bad, field in (({"query": "colour:red"}, "query"), ({"batch_events": 0},
                       "batch_events"), ({"url": "ftp://siem.example.com/x"}, "url"),
                       ({"ca_bundle": "x"}, "ca_bundle")):
        refused = client.patch(f"/api/v1/streams/{sid}", json=bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.json()["errors"][0]["field"] == field
    assert client.patch(f"/api/v1/streams/{sid}", json={"kind": "syslog"}
                        ).status_code == 422
    unchanged = client.get(f"/api/v1/streams/{sid}").json()
    assert {**unchanged, "lag_seconds": None} == {**view, "lag_seconds": None}
    assert client.patch("/api/v1/streams/str_none", json={"name": "x"}).status_code == 404
    docs = [orjson.loads(d.doc) for d in store.iter_events_by_index(
        "acme", 0, store.log_head("acme").size)]
    updated = [d for d in docs if d["action"] == "stream.updated"]
    assert len(updated) == 1 and updated[0]["metadata"]["changed"] == [
        "format", "headers", "name", "query"]
    assert b"new-t0k" not in b"".join(orjson.dumps(d) for d in docs)


# -- syslog, to a real rsyslogd ----------------------------------------------------------

RSYSLOG_CONFIG = """
global(maxMessageSize="1m" workDirectory="{folder}"{tls_files})
module(load="imtcp"{tls_driver})
template(name="fields" type="list") {{
  constant(value="{{\\"msgid\\":\\"") property(name="msgid" format="json")
  constant(value="\\",\\"sd\\":\\"") property(name="structured-data" format="json")
  constant(value="\\",\\"app\\":\\"") property(name="app-name" format="json")
  constant(value="\\",\\"host\\":\\"") property(name="hostname" format="json")
  constant(value="\\",\\"time\\":\\"") property(name="timereported" dateFormat="rfc3339"
                                                format="json")
  constant(value="\\",\\"pri\\":\\"") property(name="pri")
  constant(value="\\",\\"msg\\":\\"") property(name="msg" format="json")
  constant(value="\\"}}\\n")
}}
input(type="imtcp" port="{port}" ruleset="out")
ruleset(name="out") {{ action(type="omfile" file="{folder}/received.jsonl" template="fields") }}
"""


class Rsyslog:
    """A real rsyslogd on a free local port, taking RFC 5424 over TCP (or TLS with the
    given CA, certificate and key files) and writing each message it parsed as a JSON line
    of its fields."""

    def __init__(self, folder: Path, tls: tuple[Path, Path, Path] | None = None):
        import socket

        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        files = driver = ""
        if tls is not None:
            ca, cert, key = tls
            files = (f' DefaultNetstreamDriverCAFile="{ca}" DefaultNetstreamDriverCertFile='
                     f'"{cert}" DefaultNetstreamDriverKeyFile="{key}"')
            driver = ' StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon"'
        (folder / "rsyslog.conf").write_text(RSYSLOG_CONFIG.format(
            folder=folder, port=self.port, tls_files=files, tls_driver=driver))
        self.process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        import socket

        with (self.folder / "rsyslogd.log").open("ab") as errors:
            self.process = subprocess.Popen(
                ["rsyslogd", "-n", "-f", str(self.folder / "rsyslog.conf"),
                 "-i", str(self.folder / "rsyslog.pid")],
                stdout=subprocess.DEVNULL, stderr=errors)

        def listening() -> bool:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            except OSError:
                return False
            return True
        wait_for(listening, 20, "rsyslogd to listen")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(20)
            self.process = None

    def received(self, count: int) -> list[dict]:
        """The first count messages rsyslogd wrote, waiting for them."""
        path = self.folder / "received.jsonl"

        def written() -> list[dict] | None:
            lines = path.read_bytes().splitlines() if path.exists() else []
            return [orjson.loads(line) for line in lines] if len(lines) >= count else None
        return wait_for(written, 20, f"{count} messages in {path}")


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[Rsyslog]:
    server = Rsyslog(tmp_path / "rsyslog")
    yield server
    server.stop()


_SD_PARAM = re.compile(r'(\w+)="((?:[^"\\\]]|\\.)*)"')


def _structured(sd: str) -> dict[str, str]:
    assert sd.startswith("[sealog@32473 ") and sd.endswith("]"), sd
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in _SD_PARAM.findall(sd)}


def test_a_syslog_stream_sends_rfc5424_messages_that_rsyslog_parses_in_order(
        store, box, signer, rsyslog):
    """A syslog stream over TCP to a real rsyslogd: each event one RFC 5424 message its
    parser reads (facility log audit, Sealog's structured data, the event as the API shows
    it), each batch then its checkpoint record, whose signed checkpoint the events' leaf
    hashes make; with rsyslogd stopped the batch is tried again, and nothing is lost."""
    _log(store, 30)
    size = store.log_head("acme").size
    row, secret = _new(box, kind="syslog", url=f"tcp://127.0.0.1:{rsyslog.port}",
                       batch_events=12)
    assert secret is None
    with store.writing() as tx:
        tx.insert_stream(row)
    deliverer = _deliverer(store, box, signer)
    assert _deliver_all(deliverer) == 3
    lines = rsyslog.received(size + 3)
    assert [m["msgid"] for m in lines] == (["event"] * 12 + ["checkpoint"]) * 2 + [
        "event"] * (size - 24) + ["checkpoint"]
    sent = [m for m in lines if m["msgid"] == "event"]
    leaves = []
    for n, m in enumerate(sent):
        stored = next(iter(store.iter_events_by_index("acme", n, n + 1)))
        assert m["msg"].lstrip("\ufeff").encode() == event_json(stored)
        params = _structured(m["sd"])
        assert (params["org"], params["index"], params["leaf_hash"]) == (
            "acme", str(n), stored.leaf_hash.hex())
        doc = orjson.loads(stored.doc)
        assert (m["app"], m["host"], m["pri"], m["time"]) == (
            "sealog", HOST, str(13 * 8 + 6), doc["occurred_at"])
        leaves.append(stored.leaf_hash)
    verifier = Verifier.parse(signer.verifier.text())
    records = [orjson.loads(m["msg"].lstrip("\ufeff")) for m in lines
               if m["msgid"] == "checkpoint"]
    assert [(r["from_index"], r["to_index"]) for r in records] == [(0, 12), (12, 24),
                                                                   (24, size)]
    for record in records:
        signed = checkpoint.open_checkpoint(record["checkpoint"], [verifier])
        assert signed.size >= record["to_index"]
        assert merkle.root_of_leaves(leaves[:signed.size]) == signed.root

    rsyslog.stop()
    _log(store, 4)
    failed = _one_round(deliverer)
    assert failed is not None and failed.next_index == size and failed.attempts == 1
    assert "ConnectionRefused" in failed.last_error and failed.state == "active"
    rsyslog.start()
    with store.writing() as tx:
        locked = tx.lock_stream("acme", row.id)
        assert locked is not None
        tx.update_stream(dataclasses.replace(locked, retry_at=times.now_us()))
    assert _deliver_all(deliverer) == 1
    later = [m for m in rsyslog.received(size + 3 + 5) if m["msgid"] == "event"]
    assert [int(_structured(m["sd"])["index"]) for m in later] == list(range(size + 4))


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it signed for localhost and its key, as PEM files."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())

    def built(subject: str, public: Any, ca: bool) -> x509.Certificate:
        made = (x509.CertificateBuilder().subject_name(name(subject))
                .issuer_name(name("Sealog test CA")).public_key(public)
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)))
        if ca:
            made = made.add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        else:
            made = made.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False)
        return made.sign(ca_key, hashes.SHA256())

    folder.mkdir(parents=True, exist_ok=True)
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    pem = serialization.Encoding.PEM
    paths[0].write_bytes(built("Sealog test CA", ca_key.public_key(), True).public_bytes(pem))
    paths[1].write_bytes(built("localhost", key.public_key(), False).public_bytes(pem))
    paths[2].write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_a_syslog_stream_over_tls_trusts_its_ca_bundle_and_nothing_else(
        store, box, signer, tmp_path):
    """Over TLS (RFC 5425) to rsyslogd with a certificate of a private CA: a stream given
    that CA delivers (here in OCSF); one trusting the system's CAs refuses the certificate
    and keeps its place."""
    certs = _certificates(tmp_path / "certs")
    server = Rsyslog(tmp_path / "tls", tls=certs)
    try:
        _log(store, 5)
        size = store.log_head("acme").size
        url = f"tls://localhost:{server.port}"
        trusting, _ = _new(box, kind="syslog", url=url, fmt="ocsf",
                           ca_bundle=certs[0].read_text())
        strict, _ = _new(box, kind="syslog", url=url, name="strict")
        with store.writing() as tx:
            tx.insert_stream(trusting)
            tx.insert_stream(strict)
        _deliver_all(_deliverer(store, box, signer))
        lines = server.received(size + 1)
        assert [orjson.loads(m["msg"].lstrip("\ufeff"))["metadata"]["sequence"]
                for m in lines if m["msgid"] == "event"] == list(range(size))
        refused = store.get_stream("acme", strict.id)
        assert refused is not None and refused.next_index == 0 and refused.attempts == 1
        assert "CERTIFICATE_VERIFY_FAILED" in refused.last_error
        stream = store.get_stream("acme", trusting.id)
        assert stream is not None and stream.next_index == size
    finally:
        server.stop()
