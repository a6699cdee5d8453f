"""Ingest rate: library and HTTP, against a raw insert of the same rows (the floor).

The floor stores already sealed rows (and their already computed tree nodes) with the
store's own multi-row INSERTs, which are faster than executemany: a stricter floor.

Run: python bench/ingest.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import gc
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
from sealog.ledger import tree  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.store.base import LogHead  # noqa: E402
from sealog.store.sqlite import SQLiteStore  # noqa: E402

from common import Server, rss_peak_mb  # noqa: E402


def make_batches(count: int, size: int) -> list[list[dict]]:
    events = list(sampledata.generate_events(count, days=45))
    return [events[i : i + size] for i in range(0, count, size)]


def raw_floor(batches: list[list[dict]], path: Path, *, with_tree: bool) -> float:
    """Rows/s of inserting the already sealed rows (and, with_tree, their already computed
    tree nodes) into the same schema: what no ingest path can beat."""
    store = SQLiteStore(f"sqlite:///{path}")
    auth.create_org(store=store, name="floor", org_id="floor")
    redactor = Redactor()
    now = times.now_us()
    sealed = []
    head = LogHead(0, ())
    for batch in batches:
        rows = []
        for new in validate_events(batch, received_at_us=now, redactor=redactor):
            rows.append(seal(prepare(new), org_id="floor", index=head.size + len(rows)))
        head, nodes = tree.append_leaves(head, [r.leaf_hash for r in rows])
        sealed.append((rows, nodes))
    started = time.perf_counter()
    for rows, nodes in sealed:
        with store.writing() as tx:
            tx.insert_events(rows)
            if with_tree:
                tx.insert_tree_nodes("floor", nodes)
    elapsed = time.perf_counter() - started
    store.close()
    return head.size / elapsed


def library(batches: list[list[dict]], path: Path) -> float:
    """Events/s of ingest() called batch after batch."""
    store = open_store(f"sqlite:///{path}")
    auth.create_org(store=store, name="lib", org_id="lib")
    redactor = Redactor()
    total = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        ingest(store=store, org_id="lib", raw_events=batch, redactor=redactor)
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
    # The pre-generated events are not part of what is measured: keep the collector off them.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        bare = raw_floor(lib_batches, folder / "bare.db", with_tree=False)
        print(f"raw insert, events + FTS5 (no tree):         {bare:>10,.0f} rows/s", flush=True)
        floor = raw_floor(lib_batches, folder / "floor.db", with_tree=True)
        print(f"raw insert, events + FTS5 + tree (floor):    {floor:>9,.0f} rows/s "
              f"(the tree costs {1 - floor / bare:.0%} of the bare rate)", flush=True)
        rate = library(lib_batches, folder / "lib.db")
        print(f"library ingest, batches of 1000:             {rate:>10,.0f} events/s "
              f"({rate / floor:.0%} of floor; target >= 20,000 and >= 60%)", flush=True)
        http_rate, peak = over_http(http_batches, folder / "http", args.clients)
        print(f"HTTP ingest, batches of 500, {args.clients} clients:      {http_rate:>10,.0f} "
              f"events/s (target >= 10,000)")
        print(f"sealog serve peak RSS during HTTP ingest:    {peak:>10,.0f} MB (target < 200)")
        sqlite3.connect(":memory:").close()


if __name__ == "__main__":
    main()
