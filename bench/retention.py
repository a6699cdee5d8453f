"""Purges, on SQLite and then on PostgreSQL:

- ingest latency while a purge removes N events: `sealog serve` takes 1,000 events/s over
  HTTP (100 a request, every 100 ms) first with no purge (the baseline, same run), then
  while its own purger removes the N events a 60-day policy, set then, no longer keeps
  and then cleans up (SQLite merges the org's full-text index, PostgreSQL vacuums the
  tree's table); each request's latency (p50, p99, max) and the purge's throughput;
- space: the database's size when built, then after each of --cycles cycles of purging
  the older half and ingesting as many new events again (the space freed should hold
  them; the first cycle's growth is freed space not yet reused, a later one's the steady
  state).

Run: python bench/retention.py [--events 1000000] [--seconds 20] [--only purge|space]
     [--cycles 2]
     [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, retention, sampledata, times  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.ledger import checkpoint, note  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import (  # noqa: E402
    Databases,
    Server,
    add_postgres_option,
    median,
    percentile,
    postgres_admin,
)

DAY_US = retention.DAY_US
CHUNK = 1000


def build(url: str, count: int, *, first_day: float, last_day: float, org_id: str = "bench",
          seed: int = 0) -> None:
    """count events into org_id, received from first_day to last_day ago (older first), a
    transaction of CHUNK each, each chunk's events occurring in the time since the chunk
    before (as a steady stream sends them: every build lays its rows out alike)."""
    store = open_store(url)
    try:
        with contextlib.suppress(Exception):
            auth.create_org(store=store, name="Bench", org_id=org_id)
        now = times.now_us()
        chunks = max(1, count // CHUNK)
        store.prepare_for_events(received_from=now - int(first_day * DAY_US), received_until=now)
        for k in range(chunks):
            received = now - int((first_day - (first_day - last_day) * k / chunks) * DAY_US)
            raw = list(sampledata.generate_events(CHUNK, days=(first_day - last_day) / chunks,
                                                  seed=seed + k, now_us=received))
            ingest(store=store, org_id=org_id, raw_events=raw, redactor=Redactor(),
                   received_at_us=received)
    finally:
        store.close()


def size_mb(url: str, folder: Path) -> float:
    """The database's size on disk: SQLite's file and its WAL; PostgreSQL's database."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists()) / 2**20
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0] / 2**20


def tree_mb(url: str) -> float:
    """The Merkle tree's share of it."""
    if url.startswith("sqlite:///"):
        import sqlite3

        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
            return conn.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'tree_nodes' "
                                "OR name LIKE 'sqlite_autoindex_tree_nodes%'").fetchone()[0] / 2**20
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute("SELECT pg_total_relation_size('tree_nodes')").fetchone()[0] / 2**20


class Pacer:
    """Posts 100 events every 100 ms from a thread until stopped; each request's latency."""

    def __init__(self, server: Server, secret: str):
        self.server, self.secret = server, secret
        self.latencies: list[float] = []
        self.late = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Pacer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.secret}", "Content-Type": "application/json"}
        started, k = time.monotonic(), 0
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=60) as client:
            while not self._stop.is_set():
                wait = started + k * 0.1 - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                self.late = max(self.late, -wait)
                body = orjson.dumps({"events": list(sampledata.generate_events(
                    100, days=1, seed=10_000 + k))})
                sent = time.perf_counter()
                r = client.post("/api/v1/events", content=body)
                self.latencies.append(time.perf_counter() - sent)
                if r.status_code != 201:
                    raise SystemExit(f"ingest failed: {r.status_code} {r.text[:300]}")
                k += 1


def _ms(values: list[float]) -> str:
    return (f"p50 {median(values) * 1000:,.0f} ms, p99 {percentile(values, 99) * 1000:,.0f} "
            f"ms, max {max(values) * 1000:,.0f} ms over {len(values):,} requests")


def purge_beside_ingest(prefix: str, url: str, folder: Path, count: int, seconds: float
                        ) -> None:
    """Prints ingest latency without and with a purge of count events, and the purge's rate."""
    data = folder / f"serve-{len(prefix)}"
    data.mkdir()
    build(url, count, first_day=100, last_day=61)
    store = open_store(url)
    auth.create_org(store=store, name="HTTP", org_id="http")
    secret = auth.create_api_key(store=store, org_id="http", scopes=["events:write"]).secret
    store.close()
    # The server's own purger, as deployed: a round a second, a transaction of 1,000
    # events at a time, 20 ms apart.
    env = {"SEALOG_DATABASE_URL": url, "SEALOG_PURGE_INTERVAL_SECONDS": "1"}
    with Server(data, env=env) as server:
        with Pacer(server, secret) as alone:
            time.sleep(seconds)
        vacuums = _tree_vacuums(url)
        store = open_store(url)
        try:
            with Pacer(server, secret) as beside:
                started = time.perf_counter()
                retention.set_policy(store=store, redactor=Redactor(), org_id="bench",
                                     actor={"id": "bench", "type": "system"}, days=60)
                while (kept := store.get_retention("bench")) is None or \
                        kept.pruned_before < count:
                    time.sleep(0.1)
                took = time.perf_counter() - started
                # Then, ingest going on, the purger merges the org's full-text index
                # (SQLite) or vacuums the tree's table twice (PostgreSQL).
                deadline = time.monotonic() + 600
                while _fts_to_merge(url) or (vacuums is not None
                                             and _tree_vacuums(url) < vacuums + 2):
                    if time.monotonic() > deadline:
                        raise SystemExit("the purger did not clean up within 10 minutes")
                    time.sleep(0.1)
                released = time.perf_counter() - started - took
        finally:
            store.close()
    print(f"{prefix}ingest at 1,000 events/s alone:        {_ms(alone.latencies)}", flush=True)
    print(f"{prefix}ingest at 1,000 events/s beside purge: {_ms(beside.latencies)} (target "
          f"p99 < 250 ms; the sender fell at most {beside.late * 1000:.0f} ms behind)",
          flush=True)
    print(f"{prefix}purge by sealog serve: {count:,} events in {took:,.1f} s, "
          f"{count / took:,.0f} events/s; then " + (
              "the tree vacuumed" if url.startswith("postgresql") else
              "its full-text index merged") + f" in {released:,.1f} s", flush=True)


def _tree_vacuums(url: str) -> int | None:
    """How many times the tree's table was vacuumed by hand (PostgreSQL; None on SQLite,
    which has no such step)."""
    if not url.startswith("postgresql"):
        return None
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT pg_stat_get_vacuum_count('tree_nodes'::regclass)"
                            ).fetchone()[0]


def _fts_to_merge(url: str) -> bool:
    """Whether SQLite's full-text index of the purged org still waits for its merge."""
    if not url.startswith("sqlite:///"):
        return False
    import sqlite3

    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as conn:
        return conn.execute("SELECT count(*) FROM fts_deleted WHERE org_id = 'bench'"
                            ).fetchone()[0] > 0


def space(prefix: str, url: str, folder: Path, count: int, cycles: int) -> None:
    """Prints the database's size built, then after each cycle of purging the older half
    and refilling that half with new events (the first cycle's growth is the freed space
    not yet reused; the later ones' the steady state)."""
    half = count // 2

    def days(k: int) -> tuple[float, float]:  # when the k-th half was received (days ago)
        if k > cycles:
            return 0.5, 0.0
        return (cycles + 1 - k) * 100.0, (cycles + 1 - k) * 100.0 - 39

    for k in (0, 1):
        build(url, count - half if k else half, first_day=days(k)[0], last_day=days(k)[1],
              seed=1 + k)
    sizes = [(size_mb(url, folder), tree_mb(url))]
    removed = 0
    for cycle in range(1, cycles + 1):
        store = open_store(url)
        try:
            # Keeps the half received after the (cycle - 1)-th.
            retention.set_policy(store=store, redactor=Redactor(), org_id="bench",
                                 actor={"id": "bench", "type": "system"},
                                 days=int(days(cycle - 1)[1]) - 10)
            # A purge removes only signed events, as serve's checkpointer would have signed.
            checkpoint.sign_latest(store=store, signer=note.Signer.generate("bench.local"),
                                   host="bench.local", org_id="bench")
            removed += sum(s.stop - s.start for s in retention.purge(
                store=store, redactor=Redactor(), org_id="bench") if not s.ordered)
        finally:
            store.close()
        if url.startswith("postgresql"):
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:  # what autovacuum would do
                conn.execute("VACUUM")
        purged = size_mb(url, folder)
        build(url, half, first_day=days(cycle + 1)[0], last_day=days(cycle + 1)[1],
              seed=10 + cycle)
        sizes.append((size_mb(url, folder), tree_mb(url)))
        (before, tree_before), (after, tree) = sizes[-2], sizes[-1]
        rest = (after - tree) - (before - tree_before)
        print(f"{prefix}space, cycle {cycle}: {before:,.0f} MB; {half:,} purged "
              f"{purged:,.0f} MB; {half:,} new events {after:,.0f} MB ("
              f"{(after - before) / before:+.1%}; the tree's hashes {tree_before:,.0f} -> "
              f"{tree:,.0f} MB; all else {rest / before:+.1%}; target: no growth)", flush=True)
    built, total = sizes[0][0], sizes[-1][0]
    print(f"{prefix}space: {count:,} events built {built:,.0f} MB; after {cycles} cycles "
          f"({removed:,} purged, as many new) {total:,.0f} MB ({(total - built) / built:+.1%})",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=20,
                        help="how long the baseline ingests with no purge")
    parser.add_argument("--only", choices=["purge", "space"], help="measure one of the two")
    parser.add_argument("--cycles", type=int, default=2,
                        help="space: how many times to purge half and refill it")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        backends = [("", lambda name: f"sqlite:///{folder / f'{name}.db'}")]
        if admin is not None:
            databases = stack.enter_context(Databases(admin, "sealog_bench_retention"))
            backends.append(("PostgreSQL ", databases.new))
        for prefix, new in backends:
            if args.only in (None, "purge"):
                purge_beside_ingest(prefix, new("purge"), folder, args.events, args.seconds)
        for prefix, new in backends:
            if args.only in (None, "space"):
                space(prefix, new("space"), folder, args.events, args.cycles)


if __name__ == "__main__":
    main()
