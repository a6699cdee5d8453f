"""The SQLite store's WAL: copied back by a thread of its own, and nothing lost on a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from sealog import auth, sampledata
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import checkpoint, merkle, tree
from sealog.ledger.note import Signer
from sealog.store import StorageFull, open_store
from sealog.store.sqlite import store as sqlite_store

from conftest import empty_wal, fill_disk, wait_for

REDACTOR = Redactor()


def wal_bytes(store) -> int:
    wal = store.path.with_name(store.path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def fill(store, batches: int) -> None:
    events = list(sampledata.generate_events(batches * 500, days=3))
    for start in range(0, len(events), 500):
        ingest(store=store, org_id="acme", raw_events=events[start : start + 500],
               redactor=REDACTOR)
        time.sleep(0.06)  # a server's pace between batches: the thread gets its turn


def test_the_checkpoint_thread_keeps_the_wal_small(tmp_path, monkeypatch):
    with_thread = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    auth.create_org(store=with_thread, name="Acme", org_id="acme")
    fill(with_thread, 12)
    # Without it (its pokes lost), the WAL grows until the writer's own threshold.
    without = open_store(f"sqlite:///{tmp_path / 'b.db'}")
    monkeypatch.setattr(without._wal_checkpointer, "poke", lambda: None)
    auth.create_org(store=without, name="Acme", org_id="acme")
    fill(without, 12)
    assert wal_bytes(with_thread) < 8 * 2**20 < wal_bytes(without)
    for store in (with_thread, without):
        store.close()


def test_closing_the_store_stops_its_thread(tmp_path):
    before = {t for t in threading.enumerate() if t.name == "sealog-wal-checkpoint"}
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    auth.create_org(store=store, name="Acme", org_id="acme")
    ingest(store=store, org_id="acme", raw_events=[{"action": "agent.created",
           "result": "success", "actor": {"id": "u1"}}], redactor=REDACTOR)
    store.close()
    after = {t for t in threading.enumerate() if t.name == "sealog-wal-checkpoint"}
    assert after <= before


_WRITER = textwrap.dedent("""
    import sys
    from sealog import auth, sampledata
    from sealog.events import Redactor
    from sealog.ingest import ingest
    from sealog.store import open_store

    store = open_store(sys.argv[1])
    auth.create_org(store=store, name="Acme", org_id="acme")
    events = list(sampledata.generate_events(40_000, days=3))
    print("ready", flush=True)
    for start in range(0, len(events), 500):
        ingest(store=store, org_id="acme", raw_events=events[start:start + 500],
               redactor=Redactor())
        print(start + 500, flush=True)
""")


def test_a_writer_killed_mid_ingest_leaves_every_committed_batch_whole(tmp_path):
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, url], stdout=subprocess.PIPE,
                              text=True)
    assert writer.stdout.readline().strip() == "ready"
    acknowledged = 0
    while acknowledged < 6000:  # past several checkpoints, mid-batch at the kill
        acknowledged = int(writer.stdout.readline())
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    writer.stdout.close()
    store = open_store(url)
    head = store.log_head("acme")
    docs = list(store.iter_events_by_index("acme", 0, head.size))
    assert head.size >= acknowledged and head.size % 500 == 0
    assert len(docs) == head.size
    assert merkle.root_of_leaves([d.leaf_hash for d in docs]) == tree.head_root(head)
    assert store._reader().execute("PRAGMA integrity_check").fetchone() == ("ok",)
    store.close()


def test_the_checkpoint_thread_is_given_its_connection_open(tmp_path, monkeypatch):
    """Its connection opens with the store, so the thread has nothing left to fail on when
    the folder goes away before it runs (as when a caller fails and removes it)."""
    opened_on = []
    connect = sqlite_store._connect

    def recording_connect(*args, **kwargs):
        opened_on.append(threading.current_thread().name)
        return connect(*args, **kwargs)

    monkeypatch.setattr(sqlite_store, "_connect", recording_connect)
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    auth.create_org(store=store, name="Acme", org_id="acme")
    fill(store, 1)
    store.close()
    assert len(opened_on) >= 2  # the writer's and the thread's, at least
    assert set(opened_on) == {threading.current_thread().name}


def test_the_wal_file_shrinks_back_once_it_is_copied_back(tmp_path, monkeypatch):
    """After a burst the thread could not keep up with, the file does not keep its size."""
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}")
    auth.create_org(store=store, name="Acme", org_id="acme")
    poke = store._wal_checkpointer.poke
    monkeypatch.setattr(store._wal_checkpointer, "poke", lambda: None)
    fill(store, 12)
    assert wal_bytes(store) > 8 * 2**20  # the burst
    monkeypatch.setattr(store._wal_checkpointer, "poke", poke)
    ingest(store=store, org_id="acme", raw_events=[{"action": "agent.created",
           "result": "success", "actor": {"id": "u1"}}], redactor=REDACTOR)
    deadline = time.monotonic() + 10
    while wal_bytes(store) > sqlite_store.WAL_REST_BYTES and time.monotonic() < deadline:
        time.sleep(0.05)
    assert wal_bytes(store) <= sqlite_store.WAL_REST_BYTES
    assert store.log_head("acme").size == 12 * 500 + 1
    store.close()


def test_a_full_disk_refuses_writes_whole_and_the_store_recovers_once_space_is_freed(
        small_disk, caplog):
    store = open_store(f"sqlite:///{small_disk / 'sealog.db'}")
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        fill(store, 2)
        empty_wal(store.path)
        ballast = fill_disk(small_disk)
        batch = list(sampledata.generate_events(500, days=1))
        with pytest.raises(StorageFull):
            ingest(store=store, org_id="acme", raw_events=batch, redactor=REDACTOR)
        with pytest.raises(StorageFull):  # any write, however small
            auth.create_api_key(store=store, org_id="acme", scopes=["events:read"])
        head = store.log_head("acme")
        assert head.size == 1000  # nothing of the refused batch
        assert len(list(store.iter_events_by_index("acme", 0, 2000))) == 1000
        # Its first round has 1,000 events to sign, and no room to store the checkpoint.
        checkpointer = checkpoint.Checkpointer(
            store=store, signer=Signer.generate("sealog.local"), host="sealog.local",
            interval=0.05)
        checkpointer.start()
        try:
            wait_for(lambda: "checkpoints wait for disk space" in caplog.text, 15,
                     "the checkpointer to meet the full disk")
            assert checkpointer._thread.is_alive()
            assert store._wal_checkpointer._thread.is_alive()

            ballast.unlink()
            ingest(store=store, org_id="acme", raw_events=batch, redactor=REDACTOR)
            checkpointer.poke()
            wait_for(lambda: (store.latest_checkpoint("acme") or head).size == 1500, 15,
                     "a checkpoint of the whole log")
            assert checkpointer._thread.is_alive()
        finally:
            checkpointer.stop()
        head = store.log_head("acme")
        docs = list(store.iter_events_by_index("acme", 0, head.size))
        assert merkle.root_of_leaves([d.leaf_hash for d in docs]) == tree.head_root(head)
        assert store.latest_checkpoint("acme").root == tree.head_root(head)
        assert store._reader().execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert store._wal_checkpointer._thread.is_alive()
    finally:
        store.close()


def test_sqlite_options_travel_in_the_url_and_bad_ones_are_refused_naming_them(tmp_path):
    """?synchronous= and ?mmap_mb= set SQLite's options; anything else in the URL is refused
    before a file is made."""
    from sealog.store.sqlite import split_url

    path, options = split_url(f"sqlite:///{tmp_path / 'a.db'}?synchronous=normal&mmap_mb=0")
    assert path == tmp_path / "a.db" and (options.synchronous, options.mmap_mb) == ("NORMAL", 0)
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}?synchronous=NORMAL&mmap_mb=0")
    try:
        assert store._writer.execute("PRAGMA synchronous").fetchone() == (1,)  # NORMAL
    finally:
        store.close()
    for query, named in (("synchronous=sometimes", "synchronous"), ("mmap_mb=lots", "mmap_mb"),
                         ("journal=off", "journal"), ("mmap_mb=0&mmap_mb=1", "given twice")):
        with pytest.raises(ValueError, match=named):
            open_store(f"sqlite:///{tmp_path / 'b.db'}?{query}")
    assert not (tmp_path / "b.db").exists()
