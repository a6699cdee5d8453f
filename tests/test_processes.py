"""Real processes at once on one database, on each backend: writers appending to one org's
log and to four, a writer killed inside its transaction, two export workers, and two owners
demoting each other. Each process opens its own store, as separate servers would."""

from __future__ import annotations

import csv
import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import httpx
import openpyxl
import orjson
import pytest

from processes import (
    BATCH,
    HELD_CHUNK,
    HOST,
    REDACTOR,
    demote_the_other,
    event_id,
    hold_batch,
    sign_checkpoints,
    write_events,
    write_until_stopped,
)
from sealog import auth
from sealog.events import MAX_BATCH_EVENTS
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.ledger import audit, checkpoint, merkle, tree
from sealog.ledger.note import Signer
from sealog.sampledata import generate_events
from sealog.store import Store, open_store
from sealog.store.base import ExportRow, StoredDoc

from conftest import SealogProcess, wait_for

pytestmark = pytest.mark.slow

# Children are spawned, not forked: the test process has threads (and, on PostgreSQL, a
# connection pool) that a forked child would inherit half-way.
SPAWN = multiprocessing.get_context("spawn")
WRITERS = 4


def joined(procs: list, timeout: float) -> None:
    """Waits for each child; fails naming those that failed or did not end in time."""
    deadline = time.monotonic() + timeout
    for proc in procs:
        proc.join(max(deadline - time.monotonic(), 0))
    hung = [p for p in procs if p.exitcode is None]
    for proc in hung:
        proc.kill()
        proc.join()
    failed = [(p.name, p.exitcode) for p in procs if p.exitcode != 0]
    assert not hung and not failed, f"children hung {[p.name for p in hung]}, failed {failed}"


# -- what the test checks afterwards ----------------------------------------------------


def check_log(store: Store, org_id: str, sent: set[str]) -> list[StoredDoc]:
    """The org's events in index order, after checking that its log holds each id of sent
    exactly once, indexes 0..N-1, and that the head, its root and the tree nodes agree with
    the leaves."""
    head = store.log_head(org_id)
    docs = list(store.iter_events_by_index(org_id, 0, head.size + 1))
    assert [d.index for d in docs] == list(range(len(sent))), "indexes are not 0..N-1"
    stored = [d.id for d in docs]
    assert len(set(stored)) == len(stored), "an event is stored twice"
    assert set(stored) == sent, (f"{len(sent - set(stored))} sent events are missing, "
                                 f"{len(set(stored) - sent)} stored were never sent")
    assert head.size == len(sent)
    leaves = [d.leaf_hash for d in docs]
    assert all(merkle.leaf_hash(d.doc) == d.leaf_hash for d in docs)
    from_leaves = merkle.CompactRange()
    from_leaves.extend(leaves)
    assert from_leaves.root() == tree.head_root(head)
    assert merkle.root_from_nodes(
        head.size, lambda wanted: store.read_tree_nodes(org_id, wanted)) == tree.head_root(head)
    return docs


def check_checkpoints(store: Store, org_id: str, leaves: list[bytes],
                      signer: Signer) -> list[int]:
    """The sizes of the org's checkpoints, after checking each one's signature and root
    against the leaves, and its consistency with the one before it."""
    rows = list(store.iter_checkpoints(org_id))
    sizes = [r.size for r in rows]
    assert sizes == sorted(set(sizes)) and sizes[-1] == len(leaves), sizes
    prefix = merkle.CompactRange()
    for row in rows:
        prefix.extend(leaves[prefix.size:row.size])
        assert row.root == prefix.root(), f"the checkpoint of size {row.size} has another root"
        signed = checkpoint.open_checkpoint(row.note, [signer.verifier])
        assert (signed.origin, signed.size, signed.root) == (
            checkpoint.origin(HOST, org_id), row.size, row.root)
    for before, after in pairwise(rows):
        if before.size > 0:
            proof = tree.consistency_proof(store=store, org_id=org_id, old=before.size,
                                           new=after.size)
            merkle.verify_consistency(before.size, after.size, proof, before.root, after.root)
    return sizes


def verified_through_a_server(tmp_path: Path, url: str, secrets: dict[str, str],
                              signer: Signer, sizes: dict[str, int]) -> None:
    """`sealog verify` of each org, run as an auditor runs it (the orgs' at once) against a
    real `sealog serve` on the database: each exits 0 and finds every event valid."""
    process = SealogProcess(tmp_path / "data", database_url=url)
    process.start()
    try:
        for org_id, secret in secrets.items():
            # The latest checkpoint, signed with the server's own key file, covers the log.
            answer = httpx.get(f"{process.base}/api/v1/log/checkpoint",
                               headers={"Authorization": f"Bearer {secret}"}, timeout=30)
            assert answer.status_code == 200 and f"\n{sizes[org_id]}\n" in answer.text
        auditors = {org_id: subprocess.Popen(
            [sys.executable, "-m", "sealog", "verify", "--url", process.base, "--api-key",
             secret, "--verifier-key", signer.verifier.text(),
             "--state", str(tmp_path / f"state-{org_id}.json")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for org_id, secret in secrets.items()}
        for org_id, auditor in auditors.items():
            out, err = auditor.communicate(timeout=600)
            size = sizes[org_id]
            assert auditor.returncode == 0, out + err
            assert f"\n{size}/{size} events valid\n" in f"\n{out}", out
    finally:
        process.stop()
        print(process.output())


def make_orgs(url: str, org_ids: list[str]) -> dict[str, str]:
    """The orgs, each with an auditor's API key (events:read); returns their secrets."""
    store = open_store(url)
    try:
        for org_id in org_ids:
            auth.create_org(store=store, name=org_id.title(), org_id=org_id)
        return {org_id: auth.create_api_key(store=store, org_id=org_id,
                                            scopes=["events:read"]).secret
                for org_id in org_ids}
    finally:
        store.close()


# -- 1. writers at once ----------------------------------------------------------------

# The issue asks for 4 writers x 50,000 events, into one org and into four. Here (2 cores)
# that took 102 s and 106 s on PostgreSQL, 91 s and 84 s on SQLite, ingest and `sealog
# verify` of every event each about half: 6.5 minutes, where this whole file has 2.5. So
# the writers send 50,000 events in all (4 x 12,500) unless this says otherwise.
EVENTS_PER_WRITER = int(os.environ.get("SEALOG_TEST_EVENTS_PER_WRITER", "12500"))


@pytest.mark.parametrize("org_count", [1, 4], ids=["one-org", "four-orgs"])
def test_writers_at_once_lose_and_double_nothing(tmp_path, store_url, org_count):
    """WRITERS processes ingest EVENTS_PER_WRITER events each (12,500, not the issue's
    50,000, to fit the time the suite has; SEALOG_TEST_EVENTS_PER_WRITER=50000 runs that),
    BATCH at a time, into one org (org_count 1) or one each (4), all at once, while another
    process signs checkpoints: every event sent is stored once, each batch whole and in
    its writer's order, indexes are 0..N-1, the head's root is the leaves', each checkpoint
    is consistent with the one before, and `sealog verify` finds every event valid."""
    count = EVENTS_PER_WRITER
    org_ids = [f"org{i}" for i in range(org_count)]
    secrets = make_orgs(store_url, org_ids)
    key_file = tmp_path / "data" / "signing.key"
    signer = checkpoint.load_signer(key_file, HOST)

    start = SPAWN.Barrier(WRITERS + 2)
    stop = SPAWN.Event()
    writers = [SPAWN.Process(target=write_events, name=f"writer-{w}",
                             args=(store_url, org_ids[w % org_count], w, count, start))
               for w in range(WRITERS)]
    signing = SPAWN.Process(target=sign_checkpoints, name="signer",
                            args=(store_url, org_ids, str(key_file), start, stop))
    for proc in [*writers, signing]:
        proc.start()
    try:
        start.wait(timeout=120)
        joined(writers, timeout=600)
    finally:
        stop.set()
        joined([signing], timeout=60)

    sent = {org_id: set() for org_id in org_ids}
    for w in range(WRITERS):
        sent[org_ids[w % org_count]].update(event_id(w, n) for n in range(count))
    store = open_store(store_url)
    try:
        indexes = {}
        for org_id in org_ids:
            docs = check_log(store, org_id, sent[org_id])
            indexes.update((d.id, d.index) for d in docs)
            leaves = [d.leaf_hash for d in docs]
            sizes = check_checkpoints(store, org_id, leaves, signer)
            assert any(0 < s < len(leaves) for s in sizes), (
                f"no checkpoint was signed while the writers ran: {sizes}")
    finally:
        store.close()
    for w in range(WRITERS):  # each batch whole, at consecutive indexes, in the order sent
        for first in range(0, count, BATCH):
            placed = [indexes[event_id(w, n)] for n in range(first, min(first + BATCH, count))]
            assert placed == list(range(placed[0], placed[0] + len(placed))), (w, first)
            assert first == 0 or placed[0] > indexes[event_id(w, first - 1)], (w, first)
    verified_through_a_server(tmp_path, store_url, secrets, signer,
                              {org_id: len(ids) for org_id, ids in sent.items()})


# -- 2. a writer killed inside its transaction ------------------------------------------

OTHERS = 3
AFTER_KILLS = 2 * BATCH * OTHERS  # events the others must store after the kills
# How many of the killed batch's chunks of HELD_CHUNK are inserted when its process dies:
# half of them, and all (its commit is what is left).
KILLED_AT = {"half of its rows inserted": 2, "before its commit": 4}


def test_writers_killed_inside_their_transaction_store_none_of_their_batch(tmp_path,
                                                                           store_url):
    """OTHERS processes ingest into one org while, one after the other, two more each store
    a batch of MAX_BATCH_EVENTS (the most one ingest call takes) in one transaction as
    ingest does, and are killed (SIGKILL) with it open, at each point of KILLED_AT: none of
    either batch is stored, every other event is, once, indexes stay 0..N-1, the others
    go on writing, and `sealog verify` finds every event valid."""
    assert KILLED_AT["before its commit"] * HELD_CHUNK == MAX_BATCH_EVENTS
    secrets = make_orgs(store_url, ["acme"])
    signer = checkpoint.load_signer(tmp_path / "data" / "signing.key", HOST)
    start, stop = SPAWN.Barrier(OTHERS + 1), SPAWN.Event()
    written = [SPAWN.Value("q", 0) for _ in range(OTHERS)]
    # The others write until stopped, not a fixed count: under load a count could be
    # written before the killed writers are ready, and the kills would then test nothing.
    others = [SPAWN.Process(target=write_until_stopped, name=f"writer-{w}",
                            args=(store_url, "acme", w, start, stop, written[w]))
              for w in range(OTHERS)]
    for proc in others:
        proc.start()
    store = open_store(store_url)
    try:
        try:
            start.wait(timeout=120)
            for writer, chunks in enumerate(KILLED_AT.values(), start=OTHERS):
                held = SPAWN.Event()
                killed = SPAWN.Process(target=hold_batch, name=f"killed-{writer}",
                                       args=(store_url, "acme", writer, chunks, held))
                killed.start()
                try:
                    wait_for(lambda held=held, killed=killed: held.is_set()
                             or killed.exitcode is not None, 120, "the batch to be inserted")
                    assert held.is_set(), f"the killed writer failed first ({killed.exitcode})"
                    assert all(p.is_alive() for p in others), "a writer ended before the kill"
                    os.kill(killed.pid, signal.SIGKILL)
                    killed.join(timeout=30)
                    assert killed.exitcode == -signal.SIGKILL
                finally:
                    if killed.is_alive():
                        killed.kill()
            size_at_kills = store.log_head("acme").size
            wait_for(lambda: store.log_head("acme").size >= size_at_kills + AFTER_KILLS
                     or not all(p.is_alive() for p in others), 120,
                     "the others to write after the kills")
        finally:
            stop.set()
        joined(others, timeout=600)

        stored = {d.id for d in store.iter_events_by_index("acme", 0, 10**9)}
        for writer, point in enumerate(KILLED_AT, start=OTHERS):
            batch = {event_id(writer, n) for n in range(MAX_BATCH_EVENTS)}
            assert not stored & batch, f"{len(stored & batch)} stored of the batch killed {point}"
        sent = {event_id(w, n) for w in range(OTHERS) for n in range(written[w].value)}
        size = len(check_log(store, "acme", sent))
        assert size >= size_at_kills + AFTER_KILLS, "the others wrote too little after the kills"
        checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    finally:
        store.close()
    verified_through_a_server(tmp_path, store_url, secrets, signer, {"acme": size})


# -- 3. two export workers --------------------------------------------------------------

# Enough work that the jobs last several of a worker's 1 s polls: else the first worker to
# wake may finish them all before the other looks.
EXPORT_EVENTS = 6_000
JOBS = ["csv", "jsonl", "xlsx"] * 4


def start_worker(data: Path, url: str) -> subprocess.Popen:
    """A `sealog worker` process with one worker thread, once it says it has started."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealog", "worker", "--workers", "1", "--data-dir", str(data)],
        env={**os.environ, "SEALOG_DATABASE_URL": url}, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    assert line.startswith("Sealog export worker"), line + proc.stderr.read()
    return proc


def exported_ids(path: Path, format: str, signer: Signer) -> list[str]:
    """The event ids an export file holds, in its order (a bundle: once it verifies)."""
    if format == "csv":
        with path.open(newline="", encoding="utf-8-sig") as f:
            return [row[13] for row in list(csv.reader(f))[1:]]
    if format == "xlsx":
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            return [r[13] for ws in book.worksheets
                    for r in ws.iter_rows(min_row=2, values_only=True)]
        finally:
            book.close()
    report = audit.verify_bundle_file(path, [signer.verifier])
    assert report.ok, report.text()
    with path.open("rb") as f:
        lines = [orjson.loads(line) for line in f]
    return [line["event"]["id"] for line in lines if "event" in line]


def test_two_export_workers_run_each_job_once(tmp_path, store_url):
    """Two `sealog worker` processes and several queued export jobs: each job is claimed
    once (attempts 1) and completed once, with a file of the events it selects."""
    data = tmp_path / "data"
    store = open_store(store_url)
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        raw = list(generate_events(EXPORT_EVENTS, days=3))
        for first in range(0, EXPORT_EVENTS, 1000):
            ingest(store=store, org_id="acme", raw_events=raw[first:first + 1000],
                   redactor=REDACTOR)
        signer = checkpoint.load_signer(data / "signing.key", HOST)
        workers = [start_worker(data, store_url) for _ in range(2)]
        try:
            rows = [jobs.create_export(store=store, redactor=REDACTOR, org_id="acme",
                                       actor=jobs.Actor("test", "test"), name=f"job {i}",
                                       format=fmt, range_preset="7d")
                    for i, fmt in enumerate(JOBS)]

            def finished() -> list[ExportRow] | None:
                now = [store.get_export("acme", r.id) for r in rows]
                return now if all(r.status in ("completed", "failed") for r in now) else None

            done = wait_for(finished, 120, "the workers to finish every job")
        finally:
            for proc in workers:
                proc.terminate()
                proc.wait(timeout=30)
                proc.stderr.close()
        expected = [{d.id for d in store.iter_events_ascending(jobs.filter_of(r))}
                    for r in rows]
    finally:
        store.close()

    assert [(r.status, r.attempts, r.error) for r in done] == [("completed", 1, None)] * len(JOBS)
    # A worker of one thread runs one job at a time: two jobs running at once were the
    # two workers', so each took jobs while the other did.
    spans = sorted((r.started_at, r.finished_at) for r in done)
    assert any(later[0] < earlier[1] for earlier, later in pairwise(spans)), spans
    for row, ids in zip(done, expected, strict=True):
        path = Path(row.file_path)
        assert path.name == f"{row.id}.{row.format}"
        content = path.read_bytes()
        assert (row.sha256, row.size_bytes) == (hashlib.sha256(content).hexdigest(), len(content))
        found = exported_ids(path, row.format, signer)
        # The events, and the audit events of the exports queued before this one.
        assert row.row_count == len(found) == len(ids) >= EXPORT_EVENTS
        assert set(found) == ids
    files = sorted(p.name for p in (data / "exports").iterdir())
    assert files == sorted(f"{r.id}.{r.format}" for r in done), files


# -- 4. two owners demoting each other --------------------------------------------------

ROUNDS = 10


def test_two_last_owners_demoted_from_two_processes_leave_an_owner(store_url):
    """Each of the org's two owners demotes the other from a process of its own, at the
    same moment, ROUNDS times: each time one is demoted and the other refused."""
    store = open_store(store_url)
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        a, b = (auth.create_user(store=store, org_id="acme", email=email, role="owner",
                                 password="correct horse battery")
                for email in ("a@acme.com", "b@acme.com"))
        rounds_barrier = SPAWN.Barrier(3)
        outcomes = SPAWN.Queue()
        owners = [SPAWN.Process(target=demote_the_other, name=f"owner-{me.email}",
                                args=(store_url, me.id, other.id, ROUNDS, rounds_barrier,
                                      outcomes))
                  for me, other in ((a, b), (b, a))]
        for proc in owners:
            proc.start()
        try:
            for round_ in range(ROUNDS):
                rounds_barrier.wait(timeout=120)
                rounds_barrier.wait(timeout=60)  # both have tried
                seen = sorted(outcomes.get(timeout=10)[1] for _ in owners)
                assert seen[0] == "demoted" and seen[1].startswith("refused: "), (round_, seen)
                assert "last owner" in seen[1] or "no longer one" in seen[1]
                kept = [u for u in store.list_users("acme") if u.role == "owner"]
                assert len(kept) == 1, (round_, kept)
                with store.writing() as tx:
                    for user in (a, b):
                        tx.set_user_role(org_id="acme", user_id=user.id, role="owner")
                rounds_barrier.wait(timeout=60)
        except BaseException:
            rounds_barrier.abort()  # the owners' processes stop waiting for this one
            raise
        finally:
            joined(owners, timeout=60)
    finally:
        store.close()
