"""The size of SQLite's write-ahead log while `sealog serve` ingests over HTTP: with four
writers at once, beside one writer (the baseline) in the same run, and at rest after each.

Run: python bench/wal.py [--seconds 60] [--writers 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata  # noqa: E402
from sealog.store import open_store  # noqa: E402

from common import Server, median  # noqa: E402

BATCH = 500


def wal_mb(data: Path) -> float:
    wal = data / "sealog.db-wal"
    return wal.stat().st_size / 2**20 if wal.exists() else 0.0


def run(writers: int, seconds: float, batches: list[list[dict]], folder: Path) -> dict:
    """Serves a fresh data folder, ingests from `writers` threads for `seconds` while
    sampling the WAL's size, then lets it rest; returns the figures."""
    data = folder / f"data-{writers}"
    store = open_store(f"sqlite:///{data.resolve() / 'sealog.db'}")
    auth.create_org(store=store, name="Bench", org_id="bench")
    secret = auth.create_api_key(store=store, org_id="bench", scopes=["events:write"]).secret
    store.close()
    sizes: list[float] = []
    sent = [0]
    stop = threading.Event()

    def write(offset: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}, timeout=60) as http:
            i = offset
            while not stop.is_set():
                r = http.post(f"{server.url}/api/v1/events",
                              json={"events": batches[i % len(batches)]})
                r.raise_for_status()
                sent[0] += BATCH
                i += writers

    with Server(data) as server:
        threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            sizes.append(wal_mb(data))
            time.sleep(0.2)
        stop.set()
        for t in threads:
            t.join()
        time.sleep(2)  # idle: the checkpoint thread catches up
        with httpx.Client(headers={"Authorization": f"Bearer {secret}"}) as http:
            http.post(f"{server.url}/api/v1/events", json={"events": batches[0][:1]})
        time.sleep(1)
        rest = wal_mb(data)
    return {"peak": max(sizes), "median": median(sizes), "rest": rest,
            "rate": sent[0] / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--writers", type=int, default=4)
    args = parser.parse_args()
    events = list(sampledata.generate_events(40 * BATCH, days=10))
    batches = [events[i : i + BATCH] for i in range(0, len(events), BATCH)]
    with tempfile.TemporaryDirectory() as tmp:
        for writers in (1, args.writers):
            got = run(writers, args.seconds, batches, Path(tmp))
            print(f"WAL with {writers} writer(s), batches of {BATCH}: peak {got['peak']:.1f} MB,"
                  f" median {got['median']:.1f} MB, at rest {got['rest']:.1f} MB"
                  f" ({got['rate']:,.0f} events/s)", flush=True)


if __name__ == "__main__":
    main()
