"""Query latency over N events: first pages and counts, median and p95 of 50 varied runs.

The plain newest-50 page is the baseline the others are read against.
Run: python bench/query.py [--events 1000000] [--db PATH to reuse a built database]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata  # noqa: E402
from sealog.eventlog import count_events, find_events  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.search import build_filter  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import median, percentile  # noqa: E402

TERMS = ["guardrail", "alice", "policy", "denied", "pii", "refund", "login", "trust",
         "security-scanner", "\"prompt injection\"", "kowalski", "agt_0007", "residency",
         "approver", "failed", "invoke", "tier", "nightly", "rego", "grd_1a"]
QUALIFIERS = ["actor:alice.chen@acme.com", "action:policy.*", "result:denied",
              "resource:agent", "method:DELETE", "ip:203.0.113.7", "path:/policies/*",
              "actor:usr_0007", "action:guardrail.deleted", "resource:policy:pol_003"]
CATEGORIES = ["agent_operations", "policy_changes", "user_actions", "security_events",
              "system_events"]


def build(path: Path, count: int) -> None:
    store = open_store(f"sqlite:///{path}")
    auth.create_org(store=store, name="Bench", org_id="bench")
    redactor = Redactor()
    batch: list[dict] = []
    started = time.perf_counter()
    for event in sampledata.generate_events(count, days=45):
        batch.append(event)
        if len(batch) == 1000:
            ingest(store=store, org_id="bench", raw_events=batch, redactor=redactor)
            batch = []
    if batch:
        ingest(store=store, org_id="bench", raw_events=batch, redactor=redactor)
    store.close()
    print(f"built {count:,} events in {time.perf_counter() - started:.0f} s", flush=True)


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
    print(f"{kind:<28} first page median {median(pages):6.1f} ms  p95 {percentile(pages, 95):6.1f}"
          f" ms | count median {median(counts):6.1f} ms  p95 {percentile(counts, 95):6.1f} ms",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--db", type=Path, help="reuse (or build once into) this file")
    args = parser.parse_args()
    path = args.db or Path(f"/tmp/sealog-bench-query-{args.events}.db")
    if not path.exists():
        build(path, args.events)
    store = open_store(f"sqlite:///{path}")
    try:
        measure(store, "(warm-up) newest 50", [{}])  # reads the pages into the cache
        measure(store, "newest 50, last 30 days", [{}])
        measure(store, "+ one category", [{"categories": [c]} for c in CATEGORIES])
        measure(store, "+ a free-text term", [{"q": t} for t in TERMS])
        measure(store, "+ a qualifier", [{"q": q} for q in QUALIFIERS])
        print("targets: first page p95 < 50 ms; count p95 < 100 ms; "
              "free-text first page median < 10 ms")
    finally:
        store.close()


if __name__ == "__main__":
    main()
