"""Ingest rate: the library (in-process, and with a preparing process) and HTTP, against
a raw insert of the same rows (the floor), and the library's ceiling: its storing alone,
for events prepared before the clock starts.

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
from sealog.ingest import append, ingest  # noqa: E402
from sealog.ledger import tree  # noqa: E402
from sealog.preparers import Preparers  # noqa: E402
from sealog.sealing import Sealable, prepare, prepare_events, seal  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.store.base import EventRow, LogHead  # noqa: E402
from sealog.store.sqlite import SQLiteStore  # noqa: E402

from common import Server, median, rss_peak_tree_mb  # noqa: E402


def make_batches(count: int, size: int) -> list[list[dict]]:
    events = list(sampledata.generate_events(count, days=45))
    return [events[i : i + size] for i in range(0, count, size)]


Sealed = list[tuple[list[EventRow], list[tuple[int, int, bytes]]]]


def sealed_rows(batches: list[list[dict]]) -> Sealed:
    """Each batch's rows, validated and sealed, and its tree nodes: what the floor stores."""
    redactor = Redactor()
    now = times.now_us()
    sealed = []
    head = LogHead(0, ())
    for batch in batches:
        rows = []
        for new in validate_events(batch, received_at_us=now, redactor=redactor):
            rows.append(seal(prepare(new, org_id="floor"), org_id="floor",
                             index=head.size + len(rows)))
        head, nodes = tree.append_leaves(head, [r.leaf_hash for r in rows])
        sealed.append((rows, nodes))
    return sealed


def insert_sealed(store: SQLiteStore, sealed: Sealed, *, with_tree: bool) -> float:
    """Seconds to insert already sealed rows (and, with_tree, their tree nodes) into the
    same schema: what no ingest path can beat."""
    started = time.perf_counter()
    for rows, nodes in sealed:
        with store.writing() as tx:
            tx.insert_events(rows)
            if with_tree:
                tx.insert_tree_nodes("floor", nodes)
    return time.perf_counter() - started


def prepared_batches(batches: list[list[dict]]) -> list[list[Sealable]]:
    """Each batch validated and prepared, as ingest() would before storing it."""
    redactor = Redactor()
    now = times.now_us()
    return [prepare_events(b, org_id="lib", received_at_us=now, redactor=redactor)
            for b in batches]


PATHS = ("ceiling", "in_process", "preparers")


def floor_and_library(batches: list[list[dict]], sealed: Sealed, prepared: list[list[Sealable]],
                      folder: Path, rounds: int) -> tuple[float, dict[str, float],
                                                          dict[str, list[float]]]:
    """The floor's rows/s and the library's events/s on each path (its ceiling, storing
    events prepared beforehand; ingest() in-process; with a preparing process), measured in
    alternating rounds over consecutive slices of the batches, and each round's ratios to
    the floor: a ratio then compares them under the same machine conditions, which drift
    on these machines."""
    floor_store = SQLiteStore(f"sqlite:///{folder / 'floor.db'}")
    auth.create_org(store=floor_store, name="floor", org_id="floor")
    redactor = Redactor()
    lib_stores = {}
    for name in PATHS:
        lib_stores[name] = open_store(f"sqlite:///{folder / f'{name}.db'}")
        auth.create_org(store=lib_stores[name], name="lib", org_id="lib")
    pool = Preparers(1, redactor=redactor)
    ingest(store=lib_stores["preparers"], org_id="lib", raw_events=batches[0][:100],
           redactor=redactor, preparers=pool, received_at_us=None)  # start the process
    per_round = -(-len(batches) // rounds)
    floor_seconds = 0.0
    seconds = dict.fromkeys(PATHS, 0.0)
    ratios: dict[str, list[float]] = {name: [] for name in PATHS}
    for start in range(0, len(batches), per_round):
        floor_round = insert_sealed(floor_store, sealed[start : start + per_round],
                                    with_tree=True)
        floor_seconds += floor_round
        for name in PATHS:
            started = time.perf_counter()
            if name == "ceiling":
                for chunk in prepared[start : start + per_round]:
                    with lib_stores[name].writing() as tx:
                        append(tx, "lib", iter([chunk]))
            else:
                for batch in batches[start : start + per_round]:
                    ingest(store=lib_stores[name], org_id="lib", raw_events=batch,
                           redactor=redactor, preparers=pool if name == "preparers" else None)
            took = time.perf_counter() - started
            seconds[name] += took
            ratios[name].append(floor_round / took)  # same events: library rate / floor rate
    pool.close()
    floor_store.close()
    for s in lib_stores.values():
        s.close()
    total = sum(len(b) for b in batches)
    return total / floor_seconds, {k: total / v for k, v in seconds.items()}, ratios


def over_http(batches: list[list[dict]], data_dir: Path,
              clients: int) -> tuple[float, float, int]:
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
        peak, processes = rss_peak_tree_mb(server.proc.pid)
        if failures:
            raise SystemExit(f"HTTP ingest failed: {failures[0]}")
    return total / elapsed, peak, processes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating floor/library rounds (default 10)")
    args = parser.parse_args()
    print(f"generating {args.events:,} events…", flush=True)
    lib_batches = make_batches(args.events, 1000)
    http_batches = make_batches(args.events, 500)
    # The pre-generated events are not part of what is measured: keep the collector off them.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sealed = sealed_rows(lib_batches)
        bare_store = SQLiteStore(f"sqlite:///{folder / 'bare.db'}")
        auth.create_org(store=bare_store, name="floor", org_id="floor")
        bare = args.events / insert_sealed(bare_store, sealed, with_tree=False)
        bare_store.close()
        print(f"raw insert, events + FTS5 (no tree):         {bare:>10,.0f} rows/s", flush=True)
        floor, rates, ratios = floor_and_library(lib_batches, sealed,
                                                 prepared_batches(lib_batches), folder,
                                                 args.rounds)
        print(f"raw insert, events + FTS5 + tree (floor):    {floor:>9,.0f} rows/s "
              f"(the tree costs {1 - floor / bare:.0%} of the bare rate)", flush=True)
        labels = {
            "ceiling": "library ceiling, events prepared beforehand:",
            "in_process": "library ingest, prepared in-process:        ",
            "preparers": "library ingest, with a preparing process:   ",
        }
        for name in PATHS:
            print(f"{labels[name]} {rates[name]:>10,.0f} events/s "
                  f"({rates[name] / floor:.1%} of floor; rounds: median "
                  f"{median(ratios[name]):.1%}, {min(ratios[name]):.0%}-"
                  f"{max(ratios[name]):.0%})", flush=True)
        print("  targets for the preparing process: >= 20,000 events/s and >= 60% of floor",
              flush=True)
        http_rate, peak, processes = over_http(http_batches, folder / "http", args.clients)
        print(f"HTTP ingest, batches of 500, {args.clients} clients:      {http_rate:>10,.0f} "
              f"events/s (target >= 10,000)")
        print(f"sealog serve peak RSS during HTTP ingest:    {peak:>10,.0f} MB, its "
              f"{processes} processes added up (target < 200)")
        sqlite3.connect(":memory:").close()


if __name__ == "__main__":
    main()
