"""Streams on both backends: a webhook stream delivers the org's log in index order, at
least once, each batch signed per Standard Webhooks (checked by the `standardwebhooks`
package, which nobody here wrote) and carrying the signed checkpoint that covers it; a
real HTTP server in the test is the receiver."""

from __future__ import annotations

import base64
import dataclasses
import http.server
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import standardwebhooks

from sealog import auth, events, times
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import checkpoint, merkle
from sealog.ledger.note import Verifier
from sealog.store import Store, open_store
from sealog.store.base import StreamRow
from sealog.streams import delivery
from sealog.streams.delivery import Deliverer, new_webhook_stream
from sealog.streams.secrets import SecretBox, SecretsError

from conftest import event

HOST = "sealog.test"


class Receiver:
    """A webhook receiver on a free local port: answers each request with the next of
    `answers` (then 200), and keeps every request it verified with standardwebhooks."""

    def __init__(self) -> None:
        self.secret = ""
        self.answers: list[tuple[int, dict[str, str], str]] = []
        self.bodies: list[dict] = []
        self.refused: list[str] = []
        # The request (counted from 1) the receiver takes and then holds, unanswered,
        # until release is set: a delivery in flight.
        self.hold_at: int | None = None
        self.held, self.release = threading.Event(), threading.Event()
        self.requests = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
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
                receiver.requests += 1
                if receiver.requests == receiver.hold_at:
                    receiver.held.set()
                    receiver.release.wait(60)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(text)))
                self.end_headers()
                self.wfile.write(text.encode())

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

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


def _stream(store: Store, box: SecretBox, receiver: Receiver, **settings) -> StreamRow:
    row, secret = new_webhook_stream(org_id="acme", name="SIEM", url=receiver.url, box=box,
                                     start_index=settings.pop("start_index", 0),
                                     allow_http=True, **settings)
    receiver.secret = secret
    with store.writing() as tx:
        tx.insert_stream(row)
    return row


def _deliver_all(deliverer: Deliverer, limit: int = 100) -> int:
    """Calls the deliverer until no stream is due; how many calls delivered a batch."""
    for calls in range(limit):
        if deliverer.deliver_one() is None:
            return calls
    raise AssertionError(f"streams still due after {limit} batches")


def _deliverer(store: Store, box: SecretBox, signer, owner: str = "w1") -> Deliverer:
    return Deliverer(store=store, box=box, signer=signer, host=HOST, owner=owner,
                     allow_private=True)


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


def test_a_stream_started_from_now_sends_only_later_events(store, box, signer, receiver):
    _log(store, 50)
    size = store.log_head("acme").size
    _stream(store, box, receiver, start_index=size)
    assert _deliver_all(_deliverer(store, box, signer)) == 0
    _log(store, 5)
    assert _deliver_all(_deliverer(store, box, signer)) == 1
    assert [e["index"] for e in receiver.events()] == list(range(size, size + 5))


def test_retried_failures_back_off_honour_retry_after_and_skip_nothing(
        store, box, signer, receiver, monkeypatch):
    """A 503, a 429 with Retry-After and a lost connection are tried again later, the
    cursor unmoved; then everything arrives once, in order."""
    _log(store, 30)
    size = store.log_head("acme").size
    _stream(store, box, receiver, batch_events=10)
    receiver.answers = [(503, {}, "busy"), (429, {"Retry-After": "7"}, "slow down")]
    deliverer = _deliverer(store, box, signer)
    first = deliverer.deliver_one()
    assert first is not None and first.state == "active" and first.attempts == 1
    assert first.next_index == 0 and first.last_error == "HTTP 503: busy"
    assert deliverer.deliver_one() is None  # not due before its retry time
    assert 0 <= first.retry_at - first.updated_at <= delivery.RETRY_BASE_US

    def due(stream: StreamRow) -> None:
        with store.writing() as tx:
            locked = tx.lock_stream(stream.org_id, stream.id)
            assert locked is not None
            tx.update_stream(dataclasses.replace(locked, retry_at=times.now_us()))

    due(first)
    second = deliverer.deliver_one()
    assert second is not None and second.attempts == 2 and second.failures == 2
    assert second.retry_at - second.updated_at == 7_000_000  # the receiver's Retry-After
    due(second)
    receiver.close()  # nobody listens: a connection error
    third = deliverer.deliver_one()
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
    failed = deliverer.deliver_one()
    assert failed is not None and failed.state == "failing" and failed.next_index == 0
    assert failed.last_error == "HTTP 400: unknown tenant token"
    assert deliverer.deliver_one().last_error == "HTTP 404: no such hook"
    assert deliverer.deliver_one().state == "active"  # the receiver took it
    assert len(receiver.events()) == store.log_head("acme").size


def test_a_stream_failing_past_the_limit_is_disabled_and_not_tried(
        store, box, signer, receiver, monkeypatch):
    monkeypatch.setattr(delivery, "RETRY_BASE_US", 0)
    monkeypatch.setattr(delivery, "DISABLE_AFTER_US", 0)
    _log(store, 5)
    _stream(store, box, receiver)
    receiver.answers = [(500, {}, "down")]
    deliverer = _deliverer(store, box, signer)
    assert deliverer.deliver_one().state == "disabled"
    assert deliverer.deliver_one() is None and receiver.bodies == []


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
    held = store.claim_stream(owner="w1", now=now, lease_us=delivery.LEASE_US)
    assert held is not None and held.lease_owner == "w1"
    assert store.claim_stream(owner="w2", now=now, lease_us=delivery.LEASE_US) is None
    later = now + delivery.LEASE_US + 1
    taken = store.claim_stream(owner="w2", now=later, lease_us=delivery.LEASE_US)
    assert taken is not None and taken.lease_owner == "w2"
    late = _deliverer(store, box, signer, owner="w1")
    batch = delivery.next_batch(store, held, delivery.WebhookConfig.parse(held.config))
    late._record(held, batch, delivery.Attempt(True))
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


def test_secrets_are_stored_sealed_and_open_only_with_their_key(
        store, store_url, box, signer, receiver, tmp_path):
    _log(store, 1)
    row, secret = new_webhook_stream(org_id="acme", name="SIEM", url=receiver.url, box=box,
                                     start_index=0, allow_http=True,
                                     headers={"Authorization": "Splunk tok-4e1f9c"})
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
])
def test_settings_a_stream_cannot_take_are_refused_naming_them(box, settings, named):
    args = {"org_id": "acme", "name": "SIEM", "url": "https://siem.example.com/hook",
            "box": box, "start_index": 0, "allow_http": True} | settings
    with pytest.raises(delivery.StreamError, match=f"^{named}:"):
        new_webhook_stream(**args)


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
    failed = strict.deliver_one()
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
    assert run("streams", "delete", "--org", "acme", sid, *db)[0] == 0
    assert run("streams", "list", "--org", "acme", *db)[1].strip() == "(no streams)"
    actions = [orjson.loads(d.doc) for d in store.iter_events_by_index(
        "acme", 0, store.log_head("acme").size)]
    by_cli = [e["action"] for e in actions if e["actor"]["id"] == "sealog-cli"]
    assert by_cli == ["stream.created", "stream.paused", "stream.resumed", "stream.replayed",
                      "stream.deleted"]


def test_a_worker_killed_mid_batch_repeats_only_that_batch_once_restarted(
        tmp_path, store_url, receiver, box):
    """`sealog worker` processes deliver a stream; the first is SIGKILLed while the receiver
    holds its fifth request: a second worker, started after, sends that batch again once
    the lease has run out, then the rest: every event arrives, in order, and the only
    repeats are the batch that was in flight."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_for

    data = tmp_path / "data"
    store = open_store(store_url)
    try:
        _log(store, 2000)
        size = store.log_head("acme").size
        _stream(store, box, receiver, batch_events=100)
    finally:
        store.close()
    env = {**os.environ, "SEALOG_STREAMS_ALLOW_PRIVATE": "1", "SEALOG_DATABASE_URL": store_url,
           "SEALOG_STREAM_LEASE_SECONDS": "2", "SEALOG_EXPORT_WORKERS": "0"}
    command = [sys.executable, "-m", "sealog", "worker", "--data-dir", str(data)]
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
    refused = deliverer.deliver_one()
    assert refused is not None and refused.last_error == "HTTP 401: bad signature"
    assert len(receiver.refused) == 1
    assert {e["action"] for e in receiver.events()} >= {"stream.secret_rotated"}


def test_the_test_action_sends_a_signed_message_and_shows_the_answer(
        store, tmp_path, receiver):
    """POST /streams/{id}/test: the destination gets a signed message with the org's latest
    checkpoint and no event, and the caller sees its answer; a refusal is shown, and the
    stream's cursor and state are left as they were."""
    from fastapi.testclient import TestClient

    from sealog.api.app import create_app
    from sealog.config import Settings

    settings = Settings(data_dir=tmp_path / "data", streams_allow_private=True,
                        streams_allow_http=True)
    app = create_app(settings, store=store, run_workers=False)
    auth.create_org(store=store, name="Acme", org_id="acme")
    key = auth.create_api_key(store=store, org_id="acme", scopes=["admin"]).secret
    client = TestClient(app, headers={"Authorization": f"Bearer {key}"})
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
