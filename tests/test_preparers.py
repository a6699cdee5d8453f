"""Preparing processes: the same log as preparing in-process, and no half-stored batch."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import orjson
import pytest
import uuid_utils

from sealog import auth, preparers, sampledata, times
from sealog.config import Settings, SettingsError
from sealog.eventlog import count_events
from sealog.events import EventValidationError, Redactor, leaf_hash, recorded_by_api_key
from sealog.ingest import IdConflict, ingest
from sealog.preparers import PreparerFailed, Preparers
from sealog.search import build_filter
from sealog.store import NotFound, open_store

from conftest import event

NOW = times.now_us()


@pytest.fixture(autouse=True)
def _now_is_now() -> None:
    """NOW, the received time both stores are given, taken at each test's start: taken once
    at import, a long suite reached these tests with realistic events (dated from the
    clock) more than 5 minutes after it, in the future of their receipt."""
    global NOW
    NOW = times.now_us()
REDACTOR = Redactor()


@pytest.fixture(scope="module")
def pool():
    with Preparers(1, redactor=REDACTOR) as p:
        yield p


@pytest.fixture
def two_stores(tmp_path):
    stores = [open_store(f"sqlite:///{tmp_path / f'{name}.db'}") for name in ("here", "there")]
    for s in stores:
        auth.create_org(store=s, name="Acme", org_id="acme")
    yield stores
    for s in stores:
        s.close()


def realistic_batch(count: int, seed: int = 1) -> list[dict]:
    """Demo events with ids, plus ones that take the exact RFC 8785 path (floats, keys past
    ASCII), secrets to redact and a body past 64 KiB."""
    batch = list(sampledata.generate_events(count, days=3, seed=seed))
    for i, raw in enumerate(batch):
        raw["id"] = str(uuid_utils.uuid7())
        if i % 7 == 0:
            raw["metadata"] = {"score": 0.1 * i, "ключ": "значение", "\U0001f600": 1}
        if i % 11 == 0:
            raw["context"] = {"ip": "10.0.0.1", "extra": {"api_key": "sk-live"}}
    batch[3]["request"] = {"method": "POST", "path": "/big", "body": {"blob": "x" * 70_000}}
    return batch


def log_of(store) -> tuple[list[tuple[bytes, bytes]], object]:
    head = store.log_head("acme")
    return [(d.doc, d.leaf_hash) for d in store.iter_events_by_index("acme", 0, head.size)], head


def test_a_log_prepared_in_processes_is_byte_for_byte_the_same(two_stores, pool):
    here, there = two_stores
    batches = [realistic_batch(1000, seed=1), realistic_batch(333, seed=2),
               realistic_batch(40, seed=3)]
    for batch in batches:
        a = ingest(store=here, org_id="acme", raw_events=batch, redactor=REDACTOR,
                   received_at_us=NOW)
        b = ingest(store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
                   received_at_us=NOW, preparers=pool)
        assert a == b
    docs_here, head_here = log_of(here)
    docs_there, head_there = log_of(there)
    assert len(docs_here) == 1373
    assert docs_here == docs_there
    assert head_here == head_there  # the same Merkle tree
    stored = orjson.loads(docs_there[3][0])
    assert stored["request"]["body"]["_truncated"] is True
    assert stored["index"] == 3 and stored["org_id"] == "acme"
    assert b"sk-live" not in b"".join(d for d, _ in docs_there)
    for q in ("", "guard", "action:agent.*", "result:denied", "guardrail created", "-alice"):
        flt = build_filter(org_id="acme", q=q, range_preset="30d")
        assert count_events(store=here, flt=flt) == count_events(store=there, flt=flt), q


@pytest.mark.parametrize("ready", ["never", "every other time", "always"])
def test_pieces_prepared_here_are_stored_in_their_place(two_stores, pool, monkeypatch, ready):
    """However the batch is shared out (this process prepares every piece it may, every
    other one, or none), the log is the one in-process preparation gives, and invalid
    events are named at their batch positions."""
    here, there = two_stores
    polls = iter(range(10**6))
    pattern = {"never": lambda: False, "every other time": lambda: next(polls) % 2 == 1,
               "always": lambda: True}[ready]
    prepared_here = []
    prepare_here = preparers._Batch._prepare_here

    def counted(batch, start, stop):
        prepared_here.append((start, stop))
        return prepare_here(batch, start, stop)

    monkeypatch.setattr(preparers._Batch, "_reply_ready", lambda batch: pattern())
    monkeypatch.setattr(preparers._Batch, "_prepare_here", counted)
    for batch in (realistic_batch(1000, seed=4), realistic_batch(77, seed=5)):
        ingest(store=here, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW)
        ingest(store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW, preparers=pool)
    assert log_of(here) == log_of(there)
    if ready == "always":
        assert prepared_here == []
    else:
        assert len(prepared_here) > 10
        assert sum(stop - start for start, stop in prepared_here) < 1077  # shared out

    bad = realistic_batch(500, seed=6)
    for position in (0, 300, 499):
        bad[position] = event(action="not an action")
    with pytest.raises(EventValidationError) as refused:
        ingest(store=there, org_id="acme", raw_events=bad, redactor=REDACTOR,
               received_at_us=NOW, preparers=pool)
    assert [e.index for e in refused.value.errors] == [0, 300, 499]
    assert there.log_head("acme").size == 1077


def refused_alike(here, there, batch: list, pool) -> list:
    """The errors of a batch refused in-process (here) and by preparers (there): the same."""
    with pytest.raises(EventValidationError) as in_process:
        ingest(store=here, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW)
    with pytest.raises(EventValidationError) as in_processes:
        ingest(store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW, preparers=pool)
    assert in_processes.value.errors == in_process.value.errors
    return in_processes.value.errors


def test_invalid_events_in_any_chunk_are_all_named_and_nothing_is_stored(two_stores, pool):
    here, there = two_stores
    batch = realistic_batch(400)
    for position in (0, 150, 399):
        batch[position] = event(action="not an action")
    batch[200] = event(request={"method": "POST", "path": "/p", "body": {"x": float("nan")}})
    errors = refused_alike(here, there, batch, pool)
    assert [e.index for e in errors] == [0, 150, 200, 399]
    assert there.log_head("acme").size == 0
    assert count_events(store=there, flt=build_filter(org_id="acme", q="", range_preset="30d")) == 0
    # The process is free again, and the next batch is whole.
    ingest(store=there, org_id="acme", raw_events=realistic_batch(100), redactor=REDACTOR,
           preparers=pool)
    assert there.log_head("acme").size == 100


def test_json_nested_too_deep_is_named_not_a_failure_of_the_process(two_stores, pool):
    def nested(levels: int) -> object:
        value: object = 1
        for _ in range(levels):
            value = [value]
        return value

    here, there = two_stores
    batch = realistic_batch(40)
    batch[5]["metadata"] = {"x": nested(300)}
    batch[20] = event(request={"method": "POST", "path": "/p", "response": nested(65)})
    batch[39]["context"] = {"ip": "10.0.0.1", "x": nested(800)}
    ingest(store=there, org_id="acme", raw_events=realistic_batch(40, seed=2),
           redactor=REDACTOR, preparers=pool)
    [process] = [p.process for p in pool._all]
    errors = refused_alike(here, there, batch, pool)
    assert [(e.index, e.field) for e in errors] == [
        (5, "metadata"), (20, "request.response"), (39, "context")]
    assert there.log_head("acme").size == 40
    assert [p.process for p in pool._all] == [process] and process.is_alive()  # not replaced


def test_retries_and_reused_ids_across_chunks(two_stores, pool):
    here, there = two_stores
    first = realistic_batch(300)
    for s in two_stores:
        ingest(store=s, org_id="acme", raw_events=first[:100], redactor=REDACTOR,
               received_at_us=NOW)
    # A retry of stored events, an id repeated later in the same batch, and new events.
    retry = [*first[:100], *first[100:300], first[250]]
    a = ingest(store=here, org_id="acme", raw_events=retry, redactor=REDACTOR,
               received_at_us=NOW)
    b = ingest(store=there, org_id="acme", raw_events=retry, redactor=REDACTOR,
               received_at_us=NOW, preparers=pool)
    assert a == b
    assert [x.duplicate for x in b] == [True] * 100 + [False] * 200 + [True]
    assert b[-1].index == b[250].index
    # The same id with other content, in the last chunk: a conflict, nothing stored.
    changed = {**first[5], "description": "something else"}
    clash = [*realistic_batch(250, seed=9), changed]
    with pytest.raises(IdConflict) as err:
        ingest(store=there, org_id="acme", raw_events=clash, redactor=REDACTOR,
               preparers=pool)
    assert [e.index for e in err.value.errors] == [250]
    assert there.log_head("acme").size == 300
    assert log_of(here) == log_of(there)


@pytest.mark.timeout(60)
def test_events_larger_than_the_pipes_pass_both_ways(two_stores, pool):
    # A chunk's request and its reply each far exceed a pipe's buffer: neither side may wait
    # on the other (the preparing process reads requests on a thread of its own).
    here, there = two_stores
    batch = realistic_batch(200)
    for i, raw in enumerate(batch):
        raw["request"] = {"method": "POST", "path": f"/big/{i}", "body": {"a": "x" * 60_000},
                          "response": {"b": "y" * 60_000}}
    for s, p in ((here, None), (there, pool)):
        ingest(store=s, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW, preparers=p)
    assert log_of(here) == log_of(there)


def test_threads_sharing_one_process_each_store_their_batches_whole(two_stores, pool):
    _, there = two_stores
    batches = [realistic_batch(300, seed=i) for i in range(8)]
    failures = []

    def send(batch):
        try:
            ingest(store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
                   preparers=pool)
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    threads = [threading.Thread(target=send, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert failures == []
    docs, head = log_of(there)
    assert head.size == 2400
    ids = [orjson.loads(d)["id"] for d, _ in docs]
    assert sorted(ids) == sorted(e["id"] for b in batches for e in b)
    # Each batch's events hold consecutive indexes: batches were not interleaved.
    for batch in batches:
        places = sorted(ids.index(e["id"]) for e in batch)
        assert places == list(range(places[0], places[0] + 300))


def test_the_process_starts_on_a_batch_while_its_caller_waits_for_the_write_lock(two_stores):
    _, there = two_stores
    batch = realistic_batch(200)
    accepted = []
    with Preparers(1, redactor=REDACTOR) as own:
        with there.writing():  # as when another batch is being stored or committed
            sender = threading.Thread(target=lambda: accepted.append(ingest(
                store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
                preparers=own)))
            sender.start()
            deadline = time.monotonic() + 30
            while not own._all and time.monotonic() < deadline:
                time.sleep(0.01)
            # A prepared piece comes back while the caller still waits for the lock.
            assert own._all[0].results.poll(30)
            assert accepted == []
        sender.join(60)
    assert [a.index for a in accepted[0]] == list(range(200))


def test_what_cannot_cross_processes_is_refused_as_in_process(two_stores, pool):
    _, there = two_stores
    batch = realistic_batch(64)
    batch[40] = event(metadata={"callback": lambda: None})
    with pytest.raises(EventValidationError) as err:
        ingest(store=there, org_id="acme", raw_events=batch, redactor=REDACTOR,
               preparers=pool)
    assert [(e.index, e.field) for e in err.value.errors] == [(40, "metadata")]
    assert "function is not a JSON value" in err.value.errors[0].message
    assert there.log_head("acme").size == 0


class Name(str):
    """A str subclass, which validation turns into a plain str."""


def _only_here(value: str) -> str:
    if multiprocessing.parent_process() is not None:  # in a preparing process
        raise ImportError("this value cannot be read in another process")
    return value


class ReadableHereOnly(str):
    def __reduce__(self):
        return _only_here, (str(self),)


def test_values_of_other_types_cross_or_are_prepared_here(two_stores, pool):
    here, there = two_stores
    batch = realistic_batch(200)
    batch[20]["actor"] = {"id": "usr_9", "name": Name("Ana Ruiz")}
    batch[150]["description"] = ReadableHereOnly("Read only by the process that made it")
    for s, p in ((here, None), (there, pool)):
        ingest(store=s, org_id="acme", raw_events=batch, redactor=REDACTOR,
               received_at_us=NOW, preparers=p)
    assert log_of(here) == log_of(there)
    assert b"Read only by the process" in log_of(there)[0][150][0]
    # The process is still there, and still in use.
    assert len(pool._all) == 1 and pool._all[0].process.is_alive()


def test_a_failure_while_storing_leaves_the_process_ready(two_stores, pool):
    _, there = two_stores
    with pytest.raises(NotFound):
        ingest(store=there, org_id="nobody", raw_events=realistic_batch(500),
               redactor=REDACTOR, preparers=pool)
    ingest(store=there, org_id="acme", raw_events=realistic_batch(500), redactor=REDACTOR,
           preparers=pool)
    assert there.log_head("acme").size == 500


def test_a_preparing_process_that_dies_fails_the_batch_and_is_replaced(two_stores):
    _, there = two_stores
    with Preparers(1, redactor=REDACTOR) as pool:
        ingest(store=there, org_id="acme", raw_events=realistic_batch(50), redactor=REDACTOR,
               preparers=pool)
        [process] = [p.process for p in pool._all]
        os.kill(process.pid, signal.SIGKILL)
        process.join(5)
        with pytest.raises(PreparerFailed):
            ingest(store=there, org_id="acme", raw_events=realistic_batch(500),
                   redactor=REDACTOR, preparers=pool)
        assert there.log_head("acme").size == 50
        ingest(store=there, org_id="acme", raw_events=realistic_batch(500), redactor=REDACTOR,
               preparers=pool)
        assert there.log_head("acme").size == 550
        assert [p.process.pid for p in pool._all] != [process.pid]
    assert not any(p.process.is_alive() for p in pool._all)


def test_small_batches_and_other_redactors():
    with Preparers(1, redactor=REDACTOR) as pool:
        assert not pool.takes([event()] * (preparers.MIN_EVENTS - 1), REDACTOR)
        assert pool.takes([event()] * preparers.MIN_EVENTS, REDACTOR)
        with pytest.raises(ValueError, match="other keys"):
            pool.takes([event()] * 100, Redactor(("password",)))
        assert pool._all == []  # nothing started until a batch needs it
    with pytest.raises(RuntimeError, match="closed"):
        pool._take()


def test_the_setting():
    assert Settings(ingest_processes=0).resolved_ingest_processes == 0
    assert Settings().resolved_ingest_processes == (1 if (os.cpu_count() or 1) >= 2 else 0)
    assert Settings.from_env({"SEALOG_INGEST_PROCESSES": "2"}).ingest_processes == 2
    for bad in ("17", "-1", "two"):
        with pytest.raises(SettingsError, match="SEALOG_INGEST_PROCESSES"):
            Settings.from_env({"SEALOG_INGEST_PROCESSES": bad})


def test_batches_sent_over_http_are_stored_as_the_library_stores_them(tenant_factory, store,
                                                                     tmp_path):
    tenant = tenant_factory()
    batch = realistic_batch(300)
    batch[7]["metadata"] = {"ratio": 0.25, "big": 2**53 - 1, "ключ": [1.5e-7, None, True],
                            "id64": 2**63 + 7, "e20": 1e20}
    r = tenant.client.post("/api/v1/events", json={"events": batch})
    assert r.status_code == 201, r.text
    here = open_store(f"sqlite:///{tmp_path / 'here.db'}")
    auth.create_org(store=here, name="Acme", org_id="acme")
    ingest(store=here, org_id="acme", raw_events=orjson.loads(orjson.dumps(batch)),
           redactor=REDACTOR, recorded_by=recorded_by_api_key(tenant.key_id))
    expected, _ = log_of(here)
    here.close()
    got, _ = log_of(store)
    assert len(got) == 300

    def without_received_at(doc: bytes) -> dict:
        return {k: v for k, v in orjson.loads(doc).items() if k != "received_at"}

    assert [without_received_at(d) for d, _ in got] == [without_received_at(d)
                                                         for d, _ in expected]
    assert all(h == leaf_hash(d) for d, h in got)


def test_the_api_answers_503_when_the_process_dies_and_stores_nothing(tenant_factory, app):
    tenant = tenant_factory()
    batch = {"events": realistic_batch(200)}
    assert tenant.client.post("/api/v1/events", json=batch).status_code == 201
    pool = app.state.preparers
    [process] = [p.process for p in pool._all]
    os.kill(process.pid, signal.SIGKILL)
    process.join(5)
    again = {"events": realistic_batch(200, seed=5)}
    r = tenant.client.post("/api/v1/events", json=again)
    assert r.status_code == 503, r.text
    assert r.headers["Retry-After"] == "1"
    assert "nothing was stored" in r.json()["detail"]
    started = time.monotonic()
    assert tenant.client.post("/api/v1/events", json=again).status_code == 201
    assert time.monotonic() - started < 30
    r = tenant.client.get("/api/v1/events/count", params={"range": "30d"})
    assert r.json()["count"] == 400
