"""A worker process killed mid-export: another takes the job over once the lease expires."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import openpyxl

from sealog import auth
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.sampledata import generate_events
from sealog.store import open_store

from conftest import wait_for

EVENTS = 30_000


def start_worker(data: Path, database_url: str) -> subprocess.Popen:
    env = {**os.environ, "SEALOG_EXPORT_LEASE_SECONDS": "2", "SEALOG_DATABASE_URL": database_url}
    return subprocess.Popen([sys.executable, "-m", "sealog", "worker", "--data-dir", str(data)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def job_state(database_url: str, export_id: str) -> tuple:
    """The job's status, progress, attempts, row_count, file_path and error, read afresh."""
    store = open_store(database_url)
    try:
        row = store.get_export("acme", export_id)
    finally:
        store.close()
    assert row is not None
    return row.status, row.progress, row.attempts, row.row_count, row.file_path, row.error


def test_a_killed_worker_leaves_a_job_another_completes_exactly(tmp_path, store_url):
    data = tmp_path / "data"
    db = store_url
    store = open_store(db)
    auth.create_org(store=store, name="Acme", org_id="acme")
    raw = list(generate_events(EVENTS, days=3))
    for i in range(0, EVENTS, 1000):
        ingest(store=store, org_id="acme", raw_events=raw[i : i + 1000], redactor=Redactor())
    row = jobs.create_export(store=store, redactor=Redactor(), org_id="acme",
                             actor=jobs.Actor("test", "test"), name="all", format="xlsx",
                             range_preset="7d")
    expected = {d.id for d in store.iter_events_ascending(jobs.filter_of(row))}
    store.close()
    assert len(expected) == EVENTS

    first = start_worker(data, db)
    try:
        wait_for(lambda: (s := job_state(db, row.id)) and s[0] == "running" and s[1] > 0.2,
                 60, "the first worker to be well into the job")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    finally:
        if first.poll() is None:
            first.kill()
        first.stderr.close()
    status, progress, attempts, *_ = job_state(db, row.id)
    assert (status, attempts) == ("running", 1) and progress < 1

    second = start_worker(data, db)
    try:
        state = wait_for(lambda: (s := job_state(db, row.id)) and s[0] in ("completed", "failed")
                         and s, 120, "the second worker to finish the job")
    finally:
        second.terminate()
        second.wait(timeout=30)
        second.stderr.close()
    status, progress, attempts, row_count, file_path, error = state
    assert status == "completed", error
    assert attempts == 2 and row_count == EVENTS and progress == 1
    book = openpyxl.load_workbook(file_path, read_only=True)
    ids = [r[13] for ws in book.worksheets for r in ws.iter_rows(min_row=2, values_only=True)]
    book.close()
    assert len(ids) == EVENTS and set(ids) == expected
    assert not list(Path(file_path).parent.glob("*.part"))  # the dead worker's file is gone
