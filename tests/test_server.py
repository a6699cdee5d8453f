"""The real `sealog serve` process on a free port: start, ingest, search, stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from sealog import sampledata
from sealog.exports import jobs
from sealog.ledger.note import Signer

from conftest import (
    SealogProcess,
    acme_data_folder,
    empty_wal,
    event,
    fill_disk,
    wait_for,
)


@pytest.fixture
def server(served):
    process, secret = served
    return process.base, secret


def test_served_process_ingests_and_searches(server):
    base, secret = server
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        r = client.post("/api/v1/events", json={"events": [
            event(description="Created pii-filter guardrail"), event(action="policy.enabled")]})
        assert r.status_code == 201
        page = client.get("/api/v1/events", params={"q": "pii"}).json()
        assert [e["description"] for e in page["data"]] == ["Created pii-filter guardrail"]
        assert client.get("/api/v1/events/count").json() == {"count": 2}
        assert client.get("/").status_code == 200
        assert client.get("/api/v1/openapi.json").status_code == 200


def test_verify_command_against_the_served_log(server, tmp_path):
    base, secret = server
    headers = {"Authorization": f"Bearer {secret}"}
    httpx.post(f"{base}/api/v1/events", headers=headers, timeout=10,
               json={"events": [event(description=f"e{i}") for i in range(20)]})
    key = httpx.get(f"{base}/api/v1/log/key", timeout=10).text.strip()
    state = tmp_path / "state.json"

    def verify(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "sealog", "verify", "--url", base, "--api-key", secret,
             "--state", str(state), *extra], capture_output=True, text=True, timeout=60)

    ok = verify("--verifier-key", key)
    assert ok.returncode == 0, ok.stderr
    assert "20/20 events valid" in ok.stdout
    some_id = httpx.get(f"{base}/api/v1/events", headers=headers, timeout=10
                        ).json()["data"][0]["id"]
    one = verify("--verifier-key", key, "--event-id", some_id)
    assert one.returncode == 0 and "1/1 events valid" in one.stdout
    bad = verify("--verifier-key", key.replace(key.split("+")[2][:4], "AAAA"))
    assert bad.returncode == 2  # a key whose ID does not match is refused up front
    wrong = verify("--verifier-key", Signer.generate("sealog.local").verifier.text())
    assert wrong.returncode == 1 and "unknown key" in wrong.stdout


def test_behind_a_tls_proxy_the_session_cookie_is_secure(server):
    base, secret = server
    with httpx.Client(base_url=base, timeout=10) as client:
        made = client.post("/api/v1/members", json={"email": "ana@acme.com", "role": "auditor"},
                           headers={"Authorization": f"Bearer {secret}"}).json()
        https_origin = base.replace("http://", "https://")
        proxied = {"X-Forwarded-Proto": "https", "Origin": https_origin}
        ana = {"org_id": "acme", "email": "ana@acme.com", "password": made["password"]}
        r = client.post("/api/v1/session", headers=proxied, json=ana)
        assert r.status_code == 200, r.text
        assert "Secure" in r.headers["set-cookie"]
        # Without the proxy's word the same Origin is another site.
        r = client.post("/api/v1/session", headers={"Origin": https_origin}, json=ana)
        assert r.status_code == 403


# The review's query: 500 one-letter prefix terms within the 1,000-character limit.
REVIEWED_ATTACK = "a " * 500
# The costliest queries the limits accept: twenty distinct two-letter prefixes, the ones with
# the most index entries, all required, all excluded, or one required and the rest excluded.
COSTLIEST = "ag ap 00 ac ke de c7 a6 h3 p2 n6 t6 fo m5 ca in d6 u7 co re".split()
COSTLY_QUERIES = [" ".join(COSTLIEST), " ".join("-" + p for p in COSTLIEST),
                  " ".join([COSTLIEST[0], *("-" + p for p in COSTLIEST[1:])])]


def test_health_and_ingest_answer_within_a_second_while_costly_searches_run(server):
    base, secret = server
    headers = {"Authorization": f"Bearer {secret}"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    with httpx.Client(base_url=base, headers=headers, timeout=60, limits=limits) as client:
        raw = list(sampledata.generate_events(5000, days=7))
        for i in range(0, len(raw), 1000):
            assert client.post("/api/v1/events", json={"events": raw[i : i + 1000]}
                               ).status_code == 201
        stop = threading.Event()

        def search(q: str, path: str = "/api/v1/events/count") -> httpx.Response:
            return client.get(path, params={"q": q, "range": "30d"})

        def keep_searching(q: str, path: str) -> list[int]:
            statuses = []
            while not stop.is_set():
                statuses.append(search(q, path).status_code)
            return statuses

        slowest: dict[str, float] = {}
        with ThreadPoolExecutor(max_workers=64) as pool:
            attacks = [pool.submit(search, REVIEWED_ATTACK) for _ in range(45)]
            loops = [pool.submit(keep_searching, q, path) for q in COSTLY_QUERIES
                     for path in ("/api/v1/events", "/api/v1/events/count")]
            try:
                with httpx.Client(base_url=base, headers=headers, timeout=10) as probe:
                    for _ in range(5):
                        for name, call in (
                            ("healthz", lambda: probe.get("/healthz")),
                            ("readyz", lambda: probe.get("/readyz")),
                            ("ingest", lambda: probe.post("/api/v1/events",
                                                          json={"events": [event()]})),
                        ):
                            started = time.perf_counter()
                            assert call().status_code in (200, 201)
                            took = time.perf_counter() - started
                            slowest[name] = max(slowest.get(name, 0.0), took)
            finally:
                stop.set()
            refused = [f.result() for f in attacks]
            answered = [status for f in loops for status in f.result()]
    assert max(slowest.values()) < 1.0, slowest
    for r in refused:
        assert r.status_code == 422
        body = r.json()
        assert body["type"] == "urn:sealog:problem:query-syntax"
        assert "at most 20 terms and qualifiers" in body["detail"]
    assert len(answered) >= len(loops) and set(answered) == {200}, answered


def verify_online(base: str, secret: str, state) -> subprocess.CompletedProcess:
    key = httpx.get(f"{base}/api/v1/log/key", timeout=10).text.strip()
    return subprocess.run(
        [sys.executable, "-m", "sealog", "verify", "--url", base, "--api-key", secret,
         "--state", str(state), "--verifier-key", key],
        capture_output=True, text=True, timeout=60)


def test_a_full_disk_refuses_writes_with_507_serves_reads_and_recovers(small_disk, tmp_path):
    secret = acme_data_folder(small_disk)
    # Its output goes beside, off the small disk. Checkpoints every 2 s: the member.invited
    # event below (no ingest pokes the signer) is likely still unsigned when the disk fills.
    process = SealogProcess(small_disk, env={"SEALOG_CHECKPOINT_INTERVAL": "2"})
    process.start()
    try:
        with httpx.Client(base_url=process.base, timeout=30,
                          headers={"Authorization": f"Bearer {secret}"}) as client:
            batch = {"events": [event(description=f"e{i}") for i in range(50)]}
            assert client.post("/api/v1/events", json=batch).status_code == 201
            ana = client.post("/api/v1/members", json={"email": "ana@acme.com",
                                                       "role": "auditor"}).json()
            writes = {
                "ingest": lambda: client.post("/api/v1/events", json=batch),
                "sign-in": lambda: client.post("/api/v1/session", json={
                    "org_id": "acme", "email": "ana@acme.com", "password": ana["password"]}),
                "members": lambda: client.post("/api/v1/members", json={
                    "email": "bo@acme.com", "role": "member"}),
                "keys": lambda: client.post("/api/v1/keys", json={"scopes": ["events:read"]}),
                "exports": lambda: client.post("/api/v1/exports", json={
                    "name": "week", "format": "csv", "range": "7d"}),
            }
            empty_wal(small_disk / "sealog.db")
            ballast = fill_disk(small_disk)
            stored = client.get("/api/v1/events/count", params={"range": "7d"}).json()
            for name, write in writes.items():
                r = write()
                assert r.status_code == 507, (name, r.status_code, r.text)
                assert r.headers["content-type"] == "application/problem+json"
                assert r.headers["retry-after"] == "60"
                assert r.json()["type"] == "urn:sealog:problem:insufficient-storage"
            assert client.get("/readyz").status_code == 200
            assert client.get("/api/v1/events/count", params={"range": "7d"}).json() == stored
            assert len(client.get("/api/v1/events", params={"limit": 5}).json()["data"]) == 5
            assert client.get("/api/v1/members").status_code == 200
            signed = client.get("/api/v1/log/checkpoint")  # the last stored one, at worst
            assert signed.status_code == 200
            assert int(signed.text.split("\n")[1]) <= stored["count"]

            ballast.unlink()
            for name, write in writes.items():
                r = write()
                assert r.status_code < 300, (name, r.status_code, r.text)
            total = client.get("/api/v1/events/count", params={"range": "7d"}).json()["count"]
            assert total > stored["count"] + 50
            wait_for(lambda: client.get("/api/v1/log/checkpoint").text.split("\n")[1]
                     == str(total), 15, "a checkpoint of the whole log")
        verified = verify_online(process.base, secret, tmp_path / "state.json")
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert f"{total}/{total} events valid" in verified.stdout
        assert '" 500' not in process.output()
    finally:
        process.stop()
        print(process.output())


def test_an_export_that_fills_the_disk_fails_saying_so_and_the_worker_goes_on(small_disk):
    secret = acme_data_folder(small_disk)
    process = SealogProcess(small_disk)
    process.start()
    try:
        with httpx.Client(base_url=process.base, timeout=30,
                          headers={"Authorization": f"Bearer {secret}"}) as client:
            for start in range(0, 600, 100):  # 3 MB of database, a CSV of 750 kB
                assert client.post("/api/v1/events", json={"events": [
                    event(description=f"e{start + i} " + "x" * 900) for i in range(100)]}
                ).status_code == 201

            def finished(export_id: str) -> dict | None:
                job = client.get(f"/api/v1/exports/{export_id}").json()
                return job if job["status"] in ("completed", "failed") else None

            empty_wal(small_disk / "sealog.db")
            ballast = fill_disk(small_disk, leave=256 * 1024)  # room for rows, not the file
            queued = client.post("/api/v1/exports", json={
                "name": "all", "format": "csv", "range": "7d"})
            assert queued.status_code == 202, queued.text
            failed = wait_for(lambda: finished(queued.json()["id"]), 30, "the export to end")
            assert failed["status"] == "failed"
            assert failed["error"] == jobs.DISK_FULL_ERROR

            ballast.unlink()
            again = client.post("/api/v1/exports", json={
                "name": "all", "format": "csv", "range": "7d"}).json()
            done = wait_for(lambda: finished(again["id"]), 30, "the export to end")
            # The 600 events and the first export's audit_log.exported, each a line.
            assert done["status"] == "completed" and done["row_count"] == 601
            assert client.get(done["download_url"]).content.count(b"\r\n") == 1 + 601
    finally:
        process.stop()
        print(process.output())


def _children(pid: int) -> list[int]:
    """The processes whose parent is pid."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _api_processes(process: SealogProcess) -> list[int]:
    """The API processes of a `serve --workers N` (its supervisor's children that run
    Python's multiprocessing, not a helper such as its resource tracker)."""
    assert process.proc is not None
    return [pid for pid in _children(process.proc.pid)
            if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()]


@pytest.mark.backends("postgresql")
def test_serve_with_two_workers_runs_two_api_processes_on_one_port(tmp_path, store_url):
    """Batches sent at once through two API processes are all stored, numbered densely;
    an API process that dies is replaced; stopping the server stops them all."""
    data = tmp_path / "data"
    secret = acme_data_folder(data, store_url)
    process = SealogProcess(data, database_url=store_url, args=("--workers", "2"))
    process.start()
    try:
        wait_for(lambda: len(_api_processes(process)) == 2, 30, "two API processes")
        headers = {"Authorization": f"Bearer {secret}"}

        def send(batch: int) -> list[int]:
            events = [event(description=f"batch {batch} event {i}") for i in range(200)]
            r = httpx.post(f"{process.base}/api/v1/events", json={"events": events},
                           headers=headers, timeout=60)
            assert r.status_code == 201, r.text
            return [e["index"] for e in r.json()["events"]]

        with ThreadPoolExecutor(8) as pool:
            indexes = [i for batch in pool.map(send, range(24)) for i in batch]
        assert sorted(indexes) == list(range(24 * 200))

        first, second = _api_processes(process)
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: (pids := _api_processes(process)) and len(pids) == 2
                 and first not in pids, 60, "the dead API process to be replaced")
        assert second in _api_processes(process)
        send(24)
        count = httpx.get(f"{process.base}/api/v1/events/count", params={"range": "24h"},
                          headers=headers, timeout=30).json()["count"]
        assert count == 25 * 200
        supervisor = process.proc.pid
        servers = _api_processes(process)
    finally:
        process.stop()
        print(process.output())
    assert process.proc is None and not any(Path(f"/proc/{pid}").exists() for pid in servers
                                            if pid != supervisor)


def test_serve_refuses_more_than_one_worker_on_sqlite(tmp_path, capsys):
    from sealog.cli import main

    code = main(["serve", "--workers", "2", "--data-dir", str(tmp_path / "data")])
    err = capsys.readouterr().err
    assert code == 2 and "needs PostgreSQL" in err and "one process write at a time" in err
    assert not (tmp_path / "data" / "sealog.db").exists()  # refused before opening anything
