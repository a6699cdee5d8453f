"""What the processes that test_processes starts do: each opens its own store, as a
separate server would, and fails (a non-zero exit code) when something is wrong. Kept apart
from the tests so that a spawned child imports Sealog and nothing of pytest."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sealog import auth, times
from sealog.events import MAX_BATCH_EVENTS, Redactor
from sealog.ingest import append, ingest
from sealog.ledger import checkpoint
from sealog.sampledata import generate_events
from sealog.sealing import prepare_events
from sealog.store import Conflict, open_store

BATCH = 500
HOST = "sealog.local"  # the log host `sealog serve` signs as by default
DISTINCT = 5_000  # events a writer generates, then sends again under new ids
WAIT = 300  # seconds a child waits for the others at most
REDACTOR = Redactor()


def event_id(writer: int, n: int) -> str:
    """The id of writer's nth event: a UUIDv7 of the form producers may send, unique to it."""
    return f"{writer:08x}-0000-7000-8000-{n:012x}"


def events_of(writer: int, first: int, stop: int, pool: list[dict]) -> list[dict[str, Any]]:
    """writer's events first..stop-1: realistic events from pool, each with its own id."""
    return [{**pool[n % len(pool)], "id": event_id(writer, n)} for n in range(first, stop)]


def write_events(url: str, org_id: str, writer: int, count: int,
                 start: threading.Barrier) -> None:
    """Ingests count events into org_id, BATCH at a time, once every writer is ready;
    fails unless ingest accepts each batch's events as new, in order."""
    store = open_store(url)
    try:
        pool = list(generate_events(min(count, DISTINCT), days=3, seed=writer))
        start.wait(WAIT)
        for first in range(0, count, BATCH):
            write_batch(store, org_id, writer, first, min(first + BATCH, count), pool)
    finally:
        store.close()


def write_until_stopped(url: str, org_id: str, writer: int, start: threading.Barrier,
                        stop: threading.Event, written: Any) -> None:
    """Ingests batches of BATCH events into org_id from when every writer is ready until
    stop is set, keeping in written (a shared integer) how many it has stored."""
    store = open_store(url)
    try:
        pool = list(generate_events(DISTINCT, days=3, seed=writer))
        start.wait(WAIT)
        while not stop.is_set():
            write_batch(store, org_id, writer, written.value, written.value + BATCH, pool)
            written.value += BATCH
    finally:
        store.close()


def write_batch(store: Any, org_id: str, writer: int, first: int, stop: int,
                pool: list[dict]) -> None:
    """Ingests writer's events first..stop-1; fails unless ingest accepts them as new, in
    order."""
    batch = events_of(writer, first, stop, pool)
    accepted = ingest(store=store, org_id=org_id, raw_events=batch, redactor=REDACTOR)
    if [(a.id, a.duplicate) for a in accepted] != [(e["id"], False) for e in batch]:
        raise AssertionError(f"writer {writer}: ingest did not take its batch as sent")


def sign_checkpoints(url: str, orgs: list[str], key_file: str, start: threading.Barrier,
                     stop: threading.Event) -> None:
    """Signs the latest checkpoint of each org again and again from when the writers start
    until stopped, then once more; fails if a log is ever not consistent with its last
    checkpoint."""
    store = open_store(url)
    signer = checkpoint.load_signer(Path(key_file), HOST)
    try:
        start.wait(WAIT)
        while True:
            stopping = stop.wait(0.2)
            for org_id in orgs:
                checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id=org_id)
            if stopping:
                return
    finally:
        store.close()


HELD_CHUNK = 250


def hold_batch(url: str, org_id: str, writer: int, chunks_stored: int,
               held: threading.Event) -> None:
    """Stores one batch of MAX_BATCH_EVENTS events as ingest does (prepared, then appended
    in one transaction, HELD_CHUNK at a time), and once chunks_stored chunks are inserted
    says so and waits, its transaction open, to be killed."""
    store = open_store(url)
    try:
        pool = list(generate_events(MAX_BATCH_EVENTS, days=3, seed=writer))
        prepared = prepare_events(events_of(writer, 0, MAX_BATCH_EVENTS, pool),
                                  org_id=org_id, received_at_us=times.now_us(),
                                  redactor=REDACTOR)

        def chunks() -> Iterator[list]:
            for first in range(0, chunks_stored * HELD_CHUNK, HELD_CHUNK):
                yield prepared[first:first + HELD_CHUNK]
            # append asks for the next chunk once it has inserted the last one's rows; with
            # every chunk given, what it has left is the tree, the log head and the commit.
            held.set()
            time.sleep(WAIT)
            raise RuntimeError("the test did not kill this process")  # roll back

        with store.writing() as tx:
            append(tx, org_id, chunks())
    finally:
        store.close()


def demote_the_other(url: str, me: str, other: str, rounds: int,
                     rounds_barrier: threading.Barrier, outcomes: Any) -> None:
    """Each round, once everyone is at the barrier, demotes the other owner to admin through
    auth.change_role as owner me, and puts what happened on outcomes."""
    store = open_store(url)
    try:
        for _ in range(rounds):
            # Signed in as an owner before either change, as two requests at once are.
            user = store.get_user(me)
            assert user is not None and user.role == "owner"
            by = auth.Principal(org_id=user.org_id, scopes=auth.ROLE_SCOPES[user.role],
                                user=user)
            rounds_barrier.wait(WAIT)
            try:
                auth.change_role(store=store, redactor=REDACTOR, by=by, user_id=other,
                                 role="admin")
                outcomes.put((me, "demoted"))
            except (Conflict, auth.ScopeError) as exc:  # the last owner, or no longer one
                outcomes.put((me, f"refused: {exc}"))
            except Exception as exc:  # the test names it, rather than wait for this process
                outcomes.put((me, f"failed: {exc!r}"))
            rounds_barrier.wait(WAIT)  # the test gives the owner role back meanwhile
            rounds_barrier.wait(WAIT)
    finally:
        store.close()
