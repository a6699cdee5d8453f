"""Ingest rate: library and HTTP, against a raw executemany of the same rows (the floor).

Run: python bench/ingest.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata, times  # noqa: E402
from sealog.events import Redactor, validate_events  # noqa: E402
from sealog.ingest import ingest, prepare, seal  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.store.sqlite import SQLiteStore  # noqa: E402

from common import Server, rss_peak_mb  # noqa: E402


def make_batches(count: int, size: int) -> list[list[dict]]:
    events = list(sampledata.generate_events(count, days=45))
    return [events[i : i + size] for i in range(0, count, size)]


def raw_floor(batches: list[list[dict]], path: Path) -> float:
    """Rows/s of executemany of the already sealed rows into the same schema."""
    store = SQLiteStore(f"sqlite:///{path}")
    auth.create_org(store=store, name="floor", org_id="floor")
    redactor = Redactor()
    now = times.now_us()
    sealed = []
    index = 0
    for batch in batches:
        rows = []
        for new in validate_events(batch, received_at_us=now, redactor=redactor):
            rows.append(seal(prepare(new), org_id="floor", index=index))
            index += 1
        sealed.append(rows)
    started = time.perf_counter()
    for rows in sealed:
        with store.writing() as tx:
            tx.insert_events(rows)
    elapsed = time.perf_counter() - started
    store.close()
    return index / elapsed


def library(batches: list[list[dict]], path: Path, threads: int) -> float:
    """Events/s of ingest() called from `threads` threads, as the server calls it."""
    store = open_store(f"sqlite:///{path}")
    auth.create_org(store=store, name="lib", org_id="lib")
    redactor = Redactor()
    total = sum(len(b) for b in batches)
    queue = list(reversed(batches))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                if not queue:
                    return
                batch = queue.pop()
            ingest(store=store, org_id="lib", raw_events=batch, redactor=redactor)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    started = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - started
    store.close()
    return total / elapsed


def over_http(batches: list[list[dict]], data_dir: Path, clients: int) -> tuple[float, float]:
    data_dir.mkdir()
    setup = open_store(f"sqlite:///{data_dir.resolve() / 'sealog.db'}")
    auth.create_org(store=setup, name="http", org_id="http")
    secret = auth.create_api_key(store=setup, org_id="http", scopes=["events:write"]).secret
    setup.close()
    bodies = [orjson.dumps({"events": b}) for b in batches]
    total = sum(len(b) for b in batches)
    peak = 0.0
    with Server(data_dir) as server:
        headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
        queue = list(reversed(bodies))
        lock = threading.Lock()
        failures: list[str] = []

        def send() -> None:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
                while True:
                    with lock:
                        if not queue:
                            return
                        body = queue.pop()
                    r = client.post("/api/v1/events", content=body)
                    if r.status_code != 201:
                        failures.append(r.text[:300])

        threads = [threading.Thread(target=send) for _ in range(clients)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - started
        peak = rss_peak_mb(server.proc.pid)
        if failures:
            raise SystemExit(f"HTTP ingest failed: {failures[0]}")
    return total / elapsed, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    print(f"generating {args.events:,} events…", flush=True)
    lib_batches = make_batches(args.events, 1000)
    http_batches = make_batches(args.events, 500)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        floor = raw_floor(lib_batches, folder / "floor.db")
        print(f"raw executemany (floor, same schema + FTS5): {floor:>10,.0f} rows/s", flush=True)
        for threads in (1, 2):
            rate = library(lib_batches, folder / f"lib{threads}.db", threads)
            print(f"library ingest, batches of 1000, {threads} thread(s): {rate:>9,.0f} events/s "
                  f"({rate / floor:.0%} of floor; target >= 20,000 and >= 60%)", flush=True)
        http_rate, peak = over_http(http_batches, folder / "http", args.clients)
        print(f"HTTP ingest, batches of 500, {args.clients} clients:      {http_rate:>10,.0f} "
              f"events/s (target >= 10,000)")
        print(f"sealog serve peak RSS during HTTP ingest:    {peak:>10,.0f} MB (target < 200)")
        sqlite3.connect(":memory:").close()


if __name__ == "__main__":
    main()
