"""Export writers over N events beside the bare writers over the same rows, and the peak
memory of a `sealog worker` process exporting N and 10,000 events: on SQLite, then on
PostgreSQL over the same generated events (each figure's baseline on its own backend).

Run: python bench/export.py [--events 1000000] [--data FOLDER to reuse a built SQLite
    database] [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata, times  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.exports import jobs, writers  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.ledger.note import Signer  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import (  # noqa: E402
    Databases,
    add_postgres_option,
    postgres_admin,
    rss_peak_mb,
    vacuum_analyze,
)


def build(url: str, events: list[dict]) -> None:
    store = open_store(url)
    auth.create_org(store=store, name="Bench", org_id="bench")
    for i in range(0, len(events), 1000):
        ingest(store=store, org_id="bench", raw_events=events[i : i + 1000],
               redactor=Redactor())
    store.close()


def rows_of(store, flt) -> list[list]:
    return [writers._row(d)[1] for d in store.iter_events_ascending(flt)]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def worker_peak(data: Path, url: str, start: str) -> tuple[float, int]:
    """Peak RSS of a worker process (on data, and url's database) running one CSV, one Excel
    and one bundle export."""
    store = open_store(url)
    ids = []
    for fmt in ("csv", "xlsx", "jsonl"):
        row = jobs.create_export(store=store, redactor=Redactor(), org_id="bench",
                                 actor=jobs.Actor("bench", "bench"), name=f"peak-{fmt}",
                                 format=fmt, range_preset="custom", start=start)
        ids.append(row.id)
    proc = subprocess.Popen([sys.executable, "-m", "sealog", "worker", "--data-dir", str(data)],
                            env={**os.environ, "SEALOG_EXPORT_LEASE_SECONDS": "600",
                                 "SEALOG_DATABASE_URL": url})
    rows = 0
    try:
        while True:
            states = [store.get_export("bench", i) for i in ids]
            if all(s is not None and s.status in ("completed", "failed") for s in states):
                rows = max(s.row_count or 0 for s in states if s is not None)
                break
            if proc.poll() is not None:
                raise SystemExit(f"sealog worker exited with {proc.returncode}")
            time.sleep(0.5)
        peak = rss_peak_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        store.close()
    return peak, rows


def writers_over(prefix: str, url: str, wanted: set[str], out: Path) -> None:
    """Prints each export writer's rate over url's events beside the bare writer's over the
    same rows, each line starting with prefix."""
    store = open_store(url)
    row = jobs.create_export(store=store, redactor=Redactor(), org_id="bench",
                             actor=jobs.Actor("bench", "bench"), name="bench",
                             format="csv", range_preset="custom",
                             start="2000-01-01T00:00:00Z")
    flt = jobs.filter_of(row)
    n = store.count_events(flt)
    rows = rows_of(store, flt)

    def bare_csv() -> None:
        with (out / "bare.csv").open("w", newline="") as f:
            csv.writer(f).writerows(rows)

    def bare_xlsx() -> None:
        import xlsxwriter

        book = xlsxwriter.Workbook(str(out / "bare.xlsx"), {"constant_memory": True})
        sheet = book.add_worksheet()
        for i, r in enumerate(rows):
            if i and i % writers.EXCEL_ROWS_PER_SHEET == 0:
                sheet = book.add_worksheet()
            sheet.write_row(i % writers.EXCEL_ROWS_PER_SHEET, 0, r)
        book.close()

    signer = Signer.generate("bench.example.com")

    def ours(fmt: str) -> None:
        jobs.write_file(store=store, org_id="bench", format=fmt, flt=flt,
                        path=out / f"ours.{fmt}", signer=signer, host="bench.example.com",
                        selection={})

    if "csv" in wanted:
        base_csv = n / timed(bare_csv)
        our_csv = n / timed(lambda: ours("csv"))
        print(f"{prefix}CSV:   bare csv.writer {base_csv:>9,.0f} rows/s | sealog "
              f"{our_csv:>9,.0f} rows/s ({our_csv / base_csv:.0%}; target >= 60%)", flush=True)
    if "xlsx" in wanted:
        base_xlsx = n / timed(bare_xlsx)
        our_xlsx = n / timed(lambda: ours("xlsx"))
        print(f"{prefix}Excel: bare XlsxWriter {base_xlsx:>9,.0f} rows/s | sealog "
              f"{our_xlsx:>9,.0f} rows/s ({our_xlsx / base_xlsx:.0%}; target >= 80%)",
              flush=True)
    rows.clear()
    if "jsonl" in wanted:
        our_jsonl = n / timed(lambda: ours("jsonl"))
        print(f"{prefix}JSON Lines bundle with proofs:          sealog {our_jsonl:>9,.0f} "
              "rows/s (target >= 50,000)", flush=True)
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path,
                        help="reuse (or build once into) this folder's SQLite database")
    parser.add_argument("--only", choices=["csv", "xlsx", "jsonl", "memory"],
                        help="measure one thing")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    now = times.now_us()
    events: list[dict] = []

    def generated() -> list[dict]:
        if not events:
            events.extend(sampledata.generate_events(args.events, days=40, now_us=now))
        return events

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        data = args.data or Path(tmp) / "data"
        # (prefix of the printed lines, database URL, data folder of the worker)
        backends = [("", f"sqlite:///{(data / 'sealog.db').resolve()}", data)]
        if not (data / "sealog.db").exists():
            data.mkdir(parents=True, exist_ok=True)
            print(f"building {args.events:,} events…", flush=True)
            build(backends[0][1], generated())
        if admin is not None:
            url = stack.enter_context(Databases(admin, "sealog_bench_export")).new("events")
            print(f"PostgreSQL: building {args.events:,} events…", flush=True)
            build(url, generated())
            vacuum_analyze(url)  # as autovacuum would have (the bench's server may lack it)
            (Path(tmp) / "data-pg").mkdir()
            backends.append(("PostgreSQL ", url, Path(tmp) / "data-pg"))
        events.clear()
        wanted = {args.only} if args.only else {"csv", "xlsx", "jsonl", "memory"}
        for prefix, url, _ in backends:
            writers_over(prefix, url, wanted, Path(tmp))
        # The newest 1% of 40 days is about 10,000 rows of a million.
        recent = times.format_rfc3339(times.now_us() - int(0.01 * 40 * 86400 * 10**6))
        for start in ("2000-01-01T00:00:00Z", recent) if "memory" in wanted else ():
            for prefix, url, folder in backends:
                peak, exported = worker_peak(folder, url, start)
                print(f"{prefix}worker peak RSS exporting {exported:,} rows in 3 formats: "
                      f"{peak:,.0f} MB (target < 150)", flush=True)


if __name__ == "__main__":
    main()
