"""Many writers of one org's log at once, on each backend: checkpoints are stored one at a
time, each checked against the one before it, and received_at never falls as the index
rises, whatever order batches were received in and whatever the clocks say."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

import orjson
import psycopg
import pytest

from sealog import auth, events, times
from sealog.events import Redactor
from sealog.ingest import append, ingest
from sealog.ledger import checkpoint, merkle, tree
from sealog.ledger.note import Signer
from sealog.preparers import Preparers
from sealog.sampledata import generate_events
from sealog.sealing import prepare_events
from sealog.store import Store, open_store
from sealog.store.base import CheckpointRow
from tamper import Tamper

from conftest import all_at_once, event, wait_for

BACKENDS = ["sqlite", "postgresql"]
HOST = "sealog.test"
HOUR_US = 3600 * 10**6


@pytest.fixture
def stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores open on one database with org acme, as two server processes would be."""
    first, second = open_store(store_url), open_store(store_url)
    try:
        auth.create_org(store=first, name="Acme", org_id="acme")
        yield first, second
    finally:
        first.close()
        second.close()


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    return checkpoint.load_signer(tmp_path / "log.key", HOST)


def _append(store: Store, count: int, *, seed: int = 0, preparers: Preparers | None = None,
            received_at_us: int | None = None) -> None:
    ingest(store=store, org_id="acme", raw_events=list(generate_events(count, seed=seed)),
           redactor=Redactor(), preparers=preparers, received_at_us=received_at_us)


def _sign(store: Store, signer: Signer) -> CheckpointRow:
    return checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")


def _stored_checkpoints(url: str) -> list[tuple[int, bytes, str, int]]:
    """(size, root, note, created_at) of each of acme's checkpoints, in the order they were
    stored: created_at, stamped under the signing lock."""
    sql = ("SELECT size, root, note, created_at FROM checkpoints WHERE org_id = 'acme' "
           "ORDER BY created_at, size")
    if url.startswith("postgresql://"):
        with psycopg.connect(url) as conn:
            return [(s, bytes(r), n, c) for s, r, n, c in conn.execute(sql)]
    with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
        return conn.execute(sql).fetchall()


def _check_checkpoints(store: Store, url: str, signer: Signer) -> list[int]:
    """The sizes of acme's checkpoints, after checking that each was stored after every
    smaller one, is signed, has the root of the log's first `size` events, and is
    consistent with the one before it."""
    stored = _stored_checkpoints(url)
    sizes = [size for size, _, _, _ in stored]
    assert sizes == sorted(set(sizes)), "a checkpoint was stored after a larger one"
    leaves = store.read_tree_range("acme", 0, 0, store.log_head("acme").size)
    previous: tuple[int, bytes] | None = None
    for size, root, note, _ in stored:
        opened = checkpoint.open_checkpoint(note, [signer.verifier])
        assert (opened.size, opened.root) == (size, root)
        assert root == merkle.root_of_leaves([leaves[(0, i)] for i in range(size)])
        if previous is not None and previous[0] > 0:
            proof = tree.consistency_proof(store=store, org_id="acme", old=previous[0],
                                           new=size)
            merkle.verify_consistency(previous[0], size, proof, previous[1], root)
        previous = (size, root)
    return sizes


# A signer in a process of its own, as every `sealog serve` runs one: it says "ready" once
# its store is open, then signs acme's checkpoints until the file named stop exists.
_SIGNING_PROCESS = """
import sys
from pathlib import Path
from sealog.ledger import checkpoint
from sealog.store import open_store
from sealog.store.postgres.store import PostgresStore

url, key, stop = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
store = PostgresStore(url) if url.startswith("postgresql://") else open_store(url)
signer = checkpoint.load_signer(key, "sealog.test")
print("ready", flush=True)
signed = 0
while not stop.exists():
    checkpoint.sign_latest(store=store, signer=signer, host="sealog.test", org_id="acme")
    signed += 1
store.close()
print(signed, flush=True)
"""


def test_signers_at_once_while_the_log_grows_store_each_checkpoint_after_the_last(
        stores, store_url, signer, tmp_path):
    here, there = stores
    _append(here, 5)
    stop = tmp_path / "stop"
    child = subprocess.Popen(
        [sys.executable, "-c", _SIGNING_PROCESS, store_url, str(tmp_path / "log.key"),
         str(stop)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n", child.communicate(timeout=30)
        appended = threading.Event()

        def write() -> None:
            try:
                for batch in range(12):
                    _append(here if batch % 2 else there, 1 + batch * 7, seed=batch)
            finally:
                appended.set()

        def sign(store: Store) -> int:
            rounds = 0
            while not appended.is_set():
                _sign(store, signer)
                rounds += 1
            return rounds

        outcomes = all_at_once([write, *[partial(sign, s) for s in (here, there) * 2]])
        stop.touch()
        out, err = child.communicate(timeout=30)
    finally:
        stop.touch()
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode == 0, err
    assert outcomes[0] is None and all(isinstance(n, int) for n in outcomes[1:]), outcomes
    last = _sign(here, signer)
    assert last.size == here.log_head("acme").size
    sizes = _check_checkpoints(here, store_url, signer)
    assert sizes[-1] == last.size and len(sizes) > 2


def _waiting_on_locks(url: str) -> int:
    """How many sessions of the database wait for a lock."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'").fetchone()
    assert row is not None
    return row[0]


def test_a_signer_held_up_before_it_stores_is_not_overtaken_by_a_later_one(
        postgres_url, signer):
    """Signer A reads a head of 100 and is held up before it stores its checkpoint; the log
    grows to 120 and signer B signs. B's checkpoint may not be stored first: A's would then
    land below it, never checked against it. B waits for A, then checks against A's."""
    first, second = open_store(postgres_url), open_store(postgres_url)
    holder = psycopg.connect(postgres_url)
    try:
        auth.create_org(store=first, name="Acme", org_id="acme")
        _append(first, 100)
        # An uncommitted checkpoint of size 100 holds up any other insert of that key
        # until its transaction ends: signer A waits there, between its reads and its write.
        holder.execute("INSERT INTO checkpoints (org_id, size, root, note, key_id, "
                       "created_at) VALUES ('acme', 100, %s, 'held', 'k', 0)", (bytes(32),))
        with ThreadPoolExecutor(3) as pool:
            try:
                a = pool.submit(_sign, first, signer)
                wait_for(lambda: _waiting_on_locks(postgres_url) == 1, 10, "A to wait")
                pool.submit(_append, first, 20).result(10)  # appending waits for no signer
                b = pool.submit(_sign, second, signer)
                wait_for(lambda: b.done() or _waiting_on_locks(postgres_url) == 2, 10,
                         "B to finish or wait")
                stored_while_a_waited = [s for s, _, _, _ in _stored_checkpoints(postgres_url)]
            finally:
                holder.rollback()
            signed = a.result(10).size, b.result(10).size
        assert stored_while_a_waited == [], "B stored its checkpoint before A"
        assert signed == (100, 120)
        assert _check_checkpoints(first, postgres_url, signer) == [100, 120]
    finally:
        holder.close()
        first.close()
        second.close()


def test_a_signer_does_not_wait_for_a_batch_being_appended(postgres_url, signer):
    first, second = open_store(postgres_url), open_store(postgres_url)
    try:
        auth.create_org(store=first, name="Acme", org_id="acme")
        _append(first, 10)
        with ThreadPoolExecutor(1) as pool, first.writing() as tx:
            tx.lock_log("acme")
            assert pool.submit(_sign, second, signer).result(10).size == 10
    finally:
        first.close()
        second.close()


def test_a_checkpoint_that_covers_the_events_asked_for_is_reused_not_signed_again(
        stores, signer):
    store = stores[0]
    _append(store, 10)
    first = _sign(store, signer)
    _append(store, 5, seed=1)
    reused = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme",
                                    covering=10)
    assert reused == first
    newer = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme",
                                   covering=11)
    assert newer.size == 15 and store.latest_checkpoint("acme") == newer


def test_events_read_by_index_span_pages_and_stop_at_the_end_asked_for(stores):
    store = stores[0]
    for seed, count in enumerate((1_000, 1_000, 345)):
        _append(store, count, seed=seed)
    got = [d.index for d in store.iter_events_by_index("acme", 3, 2_201)]
    assert got == list(range(3, 2_201))
    assert [d.index for d in store.iter_events_by_index("acme", 2_300, 9_000)] == \
        list(range(2_300, 2_345))
    with Tamper(store) as tamper:  # more than a page's worth gone: the reader goes past it
        for index in range(1_000, 2_100):
            tamper.delete_event("acme", index)
    assert [d.index for d in store.iter_events_by_index("acme", 0, 2_345)] == \
        [*range(1_000), *range(2_100, 2_345)]


def _received(store: Store) -> list[int]:
    """The received_at of each of acme's events, in index order."""
    return [times.parse_rfc3339(orjson.loads(d.doc)["received_at"])
            for d in store.iter_events_by_index("acme", 0, store.log_head("acme").size)]


def test_batches_sent_at_once_are_received_in_the_order_of_their_indexes(stores):
    here, there = stores
    with Preparers(1, redactor=Redactor()) as pool:
        def send(store: Store, writer: int) -> None:
            for r in range(8):
                # Half the writers' batches go through the preparing process.
                big = writer % 2 == 1
                _append(store, 40 if big else 3, seed=writer * 100 + r,
                        preparers=pool if big else None)

        outcomes = all_at_once([partial(send, s, w)
                                for w, s in enumerate((here, there, here, there))])
    assert outcomes == [None] * 4
    received = _received(here)
    assert len(received) == 2 * 8 * (40 + 3)
    assert received == sorted(received)
    assert here.log_head("acme").last_received_us == received[-1]


def test_a_log_stamped_ahead_of_this_clock_goes_on_from_that_stamp(stores):
    """As after another machine with a clock an hour fast appended, or this one's clock
    stepped back: received_at stays where it was until the clock catches up."""
    store, _ = stores
    _append(store, 3)
    ahead = times.now_us() + HOUR_US
    with store.writing() as tx:
        head = tx.lock_log("acme")
        tx.set_log_head("acme", dataclasses.replace(head, last_received_us=ahead))
    _append(store, 4)
    with Preparers(1, redactor=Redactor()) as pool:
        _append(store, 40, preparers=pool)
    _append(store, 2, received_at_us=ahead - 24 * HOUR_US)  # a time given is raised alike
    received = _received(store)
    assert received == sorted(received)
    assert received[3:] == [ahead] * 46
    head = store.log_head("acme")
    assert (head.size, head.last_received_us) == (49, ahead)


def test_an_event_is_never_received_before_the_time_it_was_validated_against(stores):
    """A clock that stepped back between validating a batch and appending it: occurred_at
    was allowed up to 5 minutes past the validation time, and stays within 5 minutes of the
    stored received_at (on PostgreSQL, the constraint events_occurred_by_receipt)."""
    store, _ = stores
    validated_at = times.now_us()
    soon = times.format_rfc3339(validated_at + events.MAX_FUTURE_US)
    prepared = prepare_events([event(occurred_at=soon)], org_id="acme",
                              received_at_us=validated_at, redactor=Redactor())
    with store.writing() as tx:
        append(tx, "acme", iter([prepared]), received_at_us=validated_at - HOUR_US)
    assert _received(store) == [validated_at]
