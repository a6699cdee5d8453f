"""Query latency over N events on SQLite and on PostgreSQL, built from the same generated
events: first pages and counts, median and p95 of 50 varied runs, each kind's PostgreSQL
line under its SQLite line.

The plain newest-50 page is the baseline the others are read against. A SQLite file
reused with --db keeps the events it was built with; PostgreSQL's throwaway database then
gets the generator's same events again, dated from now.
Run: python bench/query.py [--events 1000000] [--db PATH to reuse a built SQLite database]
    [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata, times  # noqa: E402
from sealog.eventlog import count_events, find_events  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.search import build_filter  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import (  # noqa: E402
    Databases,
    add_postgres_option,
    median,
    percentile,
    postgres_admin,
    vacuum_analyze,
)

TERMS = ["guardrail", "alice", "policy", "denied", "pii", "refund", "login", "trust",
         "security-scanner", "\"prompt injection\"", "kowalski", "agt_0007", "residency",
         "approver", "failed", "invoke", "tier", "nightly", "rego", "grd_1a"]
QUALIFIERS = ["actor:alice.chen@acme.com", "action:policy.*", "result:denied",
              "resource:agent", "method:DELETE", "ip:203.0.113.7", "path:/policies/*",
              "actor:usr_0007", "action:guardrail.deleted", "resource:policy:pol_003"]
CATEGORIES = ["agent_operations", "policy_changes", "user_actions", "security_events",
              "system_events"]


def build(url: str, events: list[dict], label: str = "") -> None:
    store = open_store(url)
    auth.create_org(store=store, name="Bench", org_id="bench")
    redactor = Redactor()
    started = time.perf_counter()
    for i in range(0, len(events), 1000):
        ingest(store=store, org_id="bench", raw_events=events[i : i + 1000], redactor=redactor)
    store.close()
    print(f"{label}built {len(events):,} events in {time.perf_counter() - started:.0f} s",
          flush=True)


def measure(store, kind: str, params: list[dict]) -> None:
    pages, counts = [], []
    for p in itertools.islice(itertools.cycle(params), 50):
        flt = build_filter(org_id="bench", range_preset="30d", **p)
        t = time.perf_counter()
        find_events(store=store, flt=flt, limit=50)
        pages.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        count_events(store=store, flt=flt)
        counts.append((time.perf_counter() - t) * 1000)
    print(f"{kind:<39} first page median {median(pages):6.1f} ms  p95 "
          f"{percentile(pages, 95):6.1f} ms | count median {median(counts):6.1f} ms  p95 "
          f"{percentile(counts, 95):6.1f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or build once into) this SQLite file")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    path = args.db or Path(f"/tmp/sealog-bench-query-{args.events}.db")
    now = times.now_us()
    events: list[dict] = []

    def generated() -> list[dict]:
        if not events:
            events.extend(sampledata.generate_events(args.events, days=45, now_us=now))
        return events

    if not path.exists():
        build(f"sqlite:///{path}", generated())
    with contextlib.ExitStack() as stack:
        stores = {"": open_store(f"sqlite:///{path}")}
        stack.callback(stores[""].close)
        if admin is not None:
            databases = stack.enter_context(Databases(admin, "sealog_bench_query"))
            url = databases.new("events")
            build(url, generated(), "PostgreSQL: ")
            # As autovacuum would have by the time an operator queries a database this size
            # (the bench's server may run without it): the planner's statistics, and the
            # visibility map that lets counts read the indexes alone.
            vacuum_analyze(url)
            stores["PostgreSQL "] = open_store(url)
            stack.callback(stores["PostgreSQL "].close)
        events.clear()
        kinds = [
            ("newest 50, last 30 days", [{}]),
            ("+ one category", [{"categories": [c]} for c in CATEGORIES]),
            ("+ a free-text term", [{"q": t} for t in TERMS]),
            ("+ a qualifier", [{"q": q} for q in QUALIFIERS]),
        ]
        for prefix, store in stores.items():  # reads the pages into the caches
            measure(store, f"(warm-up) {prefix}newest 50", [{}])
        for kind, params in kinds:
            for prefix, store in stores.items():
                measure(store, prefix + kind, params)
        print("targets (PostgreSQL as SQLite): first page p95 < 50 ms; count p95 < 100 ms; "
              "free-text first page median < 10 ms")


if __name__ == "__main__":
    main()
