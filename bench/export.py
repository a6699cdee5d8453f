"""Export writers over N events beside the bare writers over the same rows, and the peak
memory of a `sealog worker` process exporting N and 10,000 events.

Run: python bench/export.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import csv
import os
import sqlite3
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

from common import rss_peak_mb  # noqa: E402


def build(data: Path, count: int) -> None:
    store = open_store(f"sqlite:///{(data / 'sealog.db').resolve()}")
    auth.create_org(store=store, name="Bench", org_id="bench")
    batch: list[dict] = []
    for event in sampledata.generate_events(count, days=40):
        batch.append(event)
        if len(batch) == 1000:
            ingest(store=store, org_id="bench", raw_events=batch, redactor=Redactor())
            batch = []
    if batch:
        ingest(store=store, org_id="bench", raw_events=batch, redactor=Redactor())
    store.close()


def rows_of(store, flt) -> list[list]:
    return [writers._row(d)[1] for d in store.iter_events_ascending(flt)]


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def worker_peak(data: Path, start: str) -> tuple[float, int]:
    """Peak RSS of a worker process running one CSV, one Excel and one bundle export."""
    store = open_store(f"sqlite:///{(data / 'sealog.db').resolve()}")
    ids = []
    for fmt in ("csv", "xlsx", "jsonl"):
        row = jobs.create_export(store=store, redactor=Redactor(), org_id="bench",
                                 actor=jobs.Actor("bench", "bench"), name=f"peak-{fmt}",
                                 format=fmt, range_preset="custom", start=start)
        ids.append(row.id)
    store.close()
    proc = subprocess.Popen([sys.executable, "-m", "sealog", "worker", "--data-dir", str(data)],
                            env={**os.environ, "SEALOG_EXPORT_LEASE_SECONDS": "600"})
    db = sqlite3.connect(data / "sealog.db")
    rows = 0
    try:
        while True:
            states = db.execute(
                f"SELECT status, row_count FROM exports WHERE id IN ({','.join('?' * 3)})", ids
            ).fetchall()
            if all(s in ("completed", "failed") for s, _ in states):
                rows = max(r or 0 for _, r in states)
                break
            time.sleep(0.5)
        peak = rss_peak_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        db.close()
    return peak, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, help="reuse (or build once into) this folder")
    parser.add_argument("--only", choices=["csv", "xlsx", "jsonl", "memory"],
                        help="measure one thing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "data"
        if not (data / "sealog.db").exists():
            data.mkdir(parents=True, exist_ok=True)
            print(f"building {args.events:,} events…", flush=True)
            build(data, args.events)
        store = open_store(f"sqlite:///{(data / 'sealog.db').resolve()}")
        row = jobs.create_export(store=store, redactor=Redactor(), org_id="bench",
                                 actor=jobs.Actor("bench", "bench"), name="bench",
                                 format="csv", range_preset="custom",
                                 start="2000-01-01T00:00:00Z")
        flt = jobs.filter_of(row)
        n = store.count_events(flt)
        rows = rows_of(store, flt)
        out = Path(tmp)

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

        wanted = {args.only} if args.only else {"csv", "xlsx", "jsonl", "memory"}
        if "csv" in wanted:
            base_csv = n / timed(bare_csv)
            our_csv = n / timed(lambda: ours("csv"))
            print(f"CSV:   bare csv.writer {base_csv:>9,.0f} rows/s | sealog {our_csv:>9,.0f} "
                  f"rows/s ({our_csv / base_csv:.0%}; target >= 60%)", flush=True)
        if "xlsx" in wanted:
            base_xlsx = n / timed(bare_xlsx)
            our_xlsx = n / timed(lambda: ours("xlsx"))
            print(f"Excel: bare XlsxWriter {base_xlsx:>9,.0f} rows/s | sealog {our_xlsx:>9,.0f} "
                  f"rows/s ({our_xlsx / base_xlsx:.0%}; target >= 80%)", flush=True)
        rows.clear()
        if "jsonl" in wanted:
            our_jsonl = n / timed(lambda: ours("jsonl"))
            print(f"JSON Lines bundle with proofs:          sealog {our_jsonl:>9,.0f} rows/s "
                  f"(target >= 50,000)", flush=True)
        store.close()
        # The newest 1% of 40 days is about 10,000 rows of a million.
        recent = times.format_rfc3339(times.now_us() - int(0.01 * 40 * 86400 * 10**6))
        for start in ("2000-01-01T00:00:00Z", recent) if "memory" in wanted else ():
            peak, exported = worker_peak(data, start)
            print(f"worker peak RSS exporting {exported:,} rows in 3 formats: {peak:,.0f} MB "
                  f"(target < 150)", flush=True)


if __name__ == "__main__":
    main()
