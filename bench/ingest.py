"""Ingest rate on SQLite and on PostgreSQL: the library (in-process, and with a preparing
process) against a raw insert of the same rows (the floor), the library's ceiling (its
storing alone, for events prepared before the clock starts), and HTTP: one SQLite
process beside `sealog serve --workers 2` on PostgreSQL, in alternating rounds.

SQLite's floor stores already sealed rows (and their already computed tree nodes) with the
store's own multi-row INSERTs, which are faster than executemany: a stricter floor.
PostgreSQL's is a bare COPY of the same rows, built before the clock starts (the token
columns as ready tsvectors), into the same tables and indexes, a transaction a batch.

Run: python bench/ingest.py [--events 1000000] [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psycopg

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata, times  # noqa: E402
from sealog.events import Redactor, validate_events  # noqa: E402
from sealog.ingest import append, ingest  # noqa: E402
from sealog.ledger import tree  # noqa: E402
from sealog.preparers import Preparers  # noqa: E402
from sealog.sealing import Sealable, prepare, prepare_events, seal  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.store.base import EventRow, LogHead  # noqa: E402
from sealog.store.postgres.tokens import tsvector_binary  # noqa: E402
from sealog.store.sqlite import SQLiteStore  # noqa: E402

from common import (  # noqa: E402
    Databases,
    Server,
    add_postgres_option,
    http_org,
    median,
    postgres_admin,
    rss_peak_tree_mb,
    send,
)


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


# PostgreSQL's rows as the floor copies them: events (its tsvector columns last), then
# event_docs and tree_nodes.
EVENT_COPY = ("COPY events (org_id, idx, id, received_at, occurred_at, category, result, "
              "action, actor_id, actor_email, actor_name, resource_type, resource_id, method, "
              "path, ip, leaf_hash, search_text, words, pairs, fields) "
              "FROM STDIN (FORMAT BINARY)")
# A tsvector goes as the bytes of its binary form, which psycopg's bytea dumper passes on
# as they are (a binary COPY names no types: the column's own decides).
EVENT_COPY_TYPES = ["text", "int8", "text", "int8", "int8", "text", "text", "text", "text",
                    "text", "text", "text", "text", "text", "text", "text", "bytea", "text",
                    "bytea", "bytea", "bytea"]
PgRows = list[tuple[list[tuple], list[tuple], list[tuple]]]


def postgres_rows(sealed: Sealed) -> PgRows:
    """Each sealed batch as the rows COPY writes to events, event_docs and tree_nodes."""
    built = []
    for rows, nodes in sealed:
        events, docs = [], []
        for r in rows:
            received = times.parse_rfc3339(orjson.loads(r.doc)["received_at"])
            events.append((r.org_id, r.index, r.id, received, r.occurred_us, r.category,
                           r.result, r.action, r.actor_id, r.actor_email, r.actor_name,
                           r.resource_type, r.resource_id, r.method, r.path, r.ip,
                           r.leaf_hash, r.search_text, tsvector_binary(r.search_text),
                           tsvector_binary(r.word_pairs), tsvector_binary(r.field_tokens)))
            docs.append((r.org_id, r.index, received, r.doc))
        built.append((events, docs, [("floor", level, i, h) for level, i, h in nodes]))
    return built


def copy_rows(conn: psycopg.Connection, batches: PgRows) -> float:
    """Seconds for a bare COPY of built rows on conn (in autocommit), a transaction a batch:
    what no ingest path on PostgreSQL can beat."""
    started = time.perf_counter()
    for events, docs, nodes in batches:
        with conn.transaction(), conn.cursor() as cursor:
            with cursor.copy(EVENT_COPY) as copy:
                copy.set_types(EVENT_COPY_TYPES)
                for row in events:
                    copy.write_row(row)
            with cursor.copy("COPY event_docs (org_id, idx, received_at, doc) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int8", "int8", "bytea"])
                for row in docs:
                    copy.write_row(row)
            with cursor.copy("COPY tree_nodes (org_id, level, idx, hash) "
                             "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["text", "int4", "int8", "bytea"])
                for row in nodes:
                    copy.write_row(row)
    return time.perf_counter() - started


PATHS = ("ceiling", "in_process", "preparers")


def floor_and_library(batches: list[list[dict]], prepared: list[list[Sealable]],
                      floor: Callable[[int, int], float], urls: dict[str, str],
                      rounds: int) -> tuple[float, dict[str, float], dict[str, list[float]]]:
    """The floor's rows/s and the library's events/s on each path (its ceiling, storing
    events prepared beforehand; ingest() in-process; with a preparing process), each path
    into the empty database urls names for it, measured in alternating rounds over
    consecutive slices of the batches, and each round's ratios to the floor (floor(start,
    stop): its seconds for batches[start:stop]): a ratio then compares them under the same
    machine conditions, which drift on these machines."""
    redactor = Redactor()
    lib_stores = {}
    for name in PATHS:
        lib_stores[name] = open_store(urls[name])
        auth.create_org(store=lib_stores[name], name="lib", org_id="lib")
    pool = Preparers(1, redactor=redactor)
    ingest(store=lib_stores["preparers"], org_id="lib", raw_events=batches[0][:100],
           redactor=redactor, preparers=pool, received_at_us=None)  # start the process
    per_round = -(-len(batches) // rounds)
    floor_seconds = 0.0
    seconds = dict.fromkeys(PATHS, 0.0)
    ratios: dict[str, list[float]] = {name: [] for name in PATHS}
    for start in range(0, len(batches), per_round):
        floor_round = floor(start, start + per_round)
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
    for s in lib_stores.values():
        s.close()
    total = sum(len(b) for b in batches)
    return total / floor_seconds, {k: total / v for k, v in seconds.items()}, ratios


def print_library(prefix: str, floor: float, rates: dict[str, float],
                  ratios: dict[str, list[float]]) -> None:
    labels = {
        "ceiling": "library ceiling, events prepared beforehand:",
        "in_process": "library ingest, prepared in-process:        ",
        "preparers": "library ingest, with a preparing process:   ",
    }
    for name in PATHS:
        print(f"{prefix}{labels[name]} {rates[name]:>10,.0f} events/s "
              f"({rates[name] / floor:.1%} of floor; rounds: median "
              f"{median(ratios[name]):.1%}, {min(ratios[name]):.0%}-"
              f"{max(ratios[name]):.0%})", flush=True)


class HttpTarget:
    """A served database HTTP ingest is measured on (url None: the data folder's SQLite
    file), and what it measured."""

    def __init__(self, data_dir: Path, url: str | None, clients: int,
                 args: tuple[str, ...] = ()):
        self.secret = http_org(data_dir, url)
        self.server = Server(data_dir, env={"SEALOG_DATABASE_URL": url} if url else None,
                             args=args)
        self.clients = clients
        self.seconds = 0.0
        self.rounds: list[float] = []
        self.peak, self.processes = 0.0, 0


def over_http(batches: list[list[dict]], targets: list[HttpTarget], rounds: int) -> None:
    """HTTP ingest into each target, all served at once, in alternating rounds over
    consecutive slices of the batches (each target gets every batch); each round's seconds
    and the whole run's in the targets, and each server's peak RSS."""
    bodies = [orjson.dumps({"events": b}) for b in batches]
    per_round = -(-len(bodies) // rounds)
    with contextlib.ExitStack() as stack:
        for target in targets:
            stack.enter_context(target.server)
        for start in range(0, len(bodies), per_round):
            for target in targets:
                took = send(target.server, target.secret, bodies[start : start + per_round],
                            target.clients)
                target.seconds += took
                target.rounds.append(took)
        for target in targets:
            target.peak, target.processes = rss_peak_tree_mb(target.server.proc.pid)


def sqlite_library(batches: list[list[dict]], sealed: Sealed,
                   prepared: list[list[Sealable]], folder: Path, rounds: int) -> None:
    """Prints SQLite's floor (and its bare insert, without the tree) and library rates."""
    bare_store = SQLiteStore(f"sqlite:///{folder / 'bare.db'}")
    auth.create_org(store=bare_store, name="floor", org_id="floor")
    total = sum(len(b) for b in batches)
    bare = total / insert_sealed(bare_store, sealed, with_tree=False)
    bare_store.close()
    print(f"raw insert, events + FTS5 (no tree):         {bare:>10,.0f} rows/s", flush=True)
    floor_store = SQLiteStore(f"sqlite:///{folder / 'floor.db'}")
    auth.create_org(store=floor_store, name="floor", org_id="floor")
    floor, rates, ratios = floor_and_library(
        batches, prepared, lambda a, b: insert_sealed(floor_store, sealed[a:b], with_tree=True),
        {name: f"sqlite:///{folder / f'{name}.db'}" for name in PATHS}, rounds)
    floor_store.close()
    print(f"raw insert, events + FTS5 + tree (floor):    {floor:>9,.0f} rows/s "
          f"(the tree costs {1 - floor / bare:.0%} of the bare rate)", flush=True)
    print_library("", floor, rates, ratios)
    print("  targets for the preparing process: >= 20,000 events/s and >= 60% of floor",
          flush=True)


def postgres_library(batches: list[list[dict]], sealed: Sealed,
                     prepared: list[list[Sealable]], databases: Databases,
                     rounds: int) -> None:
    """Prints PostgreSQL's floor (a bare COPY) and library rates."""
    built = postgres_rows(sealed)
    gc.collect()
    gc.freeze()  # as the events: the built rows are not part of what is measured
    floor_url = databases.new("floor")
    floor_store = open_store(floor_url)  # the schema, and the org as the library's
    auth.create_org(store=floor_store, name="floor", org_id="floor")
    floor_store.close()
    with psycopg.connect(floor_url, autocommit=True) as conn:
        floor, rates, ratios = floor_and_library(
            batches, prepared, lambda a, b: copy_rows(conn, built[a:b]),
            {name: databases.new(name) for name in PATHS}, rounds)
    print(f"PostgreSQL bare COPY, events + tokens + tree (floor): {floor:>9,.0f} rows/s",
          flush=True)
    print_library("PostgreSQL ", floor, rates, ratios)
    print("  target on PostgreSQL for both ingest paths: >= 50% of floor", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--clients", type=int, default=2,
                        help="HTTP client connections to the SQLite server (default 2)")
    parser.add_argument("--postgres-clients", type=int, default=4,
                        help="HTTP client connections to the 2 PostgreSQL API processes "
                             "(default 4: two each keep both busy)")
    parser.add_argument("--rounds", type=int, default=10,
                        help="alternating floor/library (and SQLite/PostgreSQL HTTP) rounds "
                             "(default 10)")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    print(f"generating {args.events:,} events…", flush=True)
    lib_batches = make_batches(args.events, 1000)
    http_batches = make_batches(args.events, 500)
    # The pre-generated events are not part of what is measured: keep the collector off them.
    gc.collect()
    gc.freeze()
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        folder = Path(tmp)
        databases = stack.enter_context(Databases(admin, "sealog_bench_ingest")) if admin else None
        sealed = sealed_rows(lib_batches)
        prepared = prepared_batches(lib_batches)
        sqlite_library(lib_batches, sealed, prepared, folder, args.rounds)
        if databases is not None:
            postgres_library(lib_batches, sealed, prepared, databases, args.rounds)
        del sealed, prepared
        targets = [HttpTarget(folder / "http", None, args.clients)]
        if databases is not None:
            targets.append(HttpTarget(folder / "http-pg", databases.new("http"),
                                      args.postgres_clients, ("--workers", "2")))
        over_http(http_batches, targets, args.rounds if databases is not None else 1)
        lite = targets[0]
        lite_rate = args.events / lite.seconds
        print(f"HTTP ingest, batches of 500, {args.clients} clients:      {lite_rate:>10,.0f} "
              f"events/s (target >= 10,000)")
        print(f"sealog serve peak RSS during HTTP ingest:    {lite.peak:>10,.0f} MB, its "
              f"{lite.processes} processes added up (target < 200)")
        if databases is not None:
            pg = targets[1]
            pg_rate = args.events / pg.seconds
            # Each round's events are the same on both: its rate ratio is seconds inverted.
            by_round = [a / b for a, b in zip(lite.rounds, pg.rounds, strict=True)]
            print(f"PostgreSQL HTTP ingest, batches of 500, 2 API processes, "
                  f"{args.postgres_clients} clients: {pg_rate:>10,.0f} events/s "
                  f"({pg_rate / lite_rate:.2f}x SQLite's; rounds: median "
                  f"{median(by_round):.2f}x, {min(by_round):.2f}-{max(by_round):.2f}; "
                  "target >= 1.0)")
            print(f"PostgreSQL sealog serve --workers 2 peak RSS: {pg.peak:>7,.0f} MB, its "
                  f"{pg.processes} processes added up")
        sqlite3.connect(":memory:").close()


if __name__ == "__main__":
    main()
