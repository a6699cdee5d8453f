"""Streams, on SQLite and then on PostgreSQL:

- delivery over N events already in the log to a local webhook receiver (a process of its
  own that answers each batch at once), beside the floor: the same process merely reading
  those events by index and serialising them into the same batch bodies;
- lag while `sealog serve` ingests 1,000 events/s over HTTP and delivers them to 3 streams:
  for every event at every stream, from the time the server received it (before its commit,
  so an upper bound of the lag from commit) to the receiver's acknowledgement;
- HTTP ingest at full speed into a server with 3 active streams beside one with none, in
  alternating rounds (the streams catching up before the other server's round).

Run: python bench/streams.py [--events 200000] [--batch 500] [--live-seconds 30]
       [--ingest-events 200000] [--only delivery|lag|ingest] [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.ledger import checkpoint  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.streams import delivery, formats  # noqa: E402
from sealog.streams.secrets import SecretBox  # noqa: E402

from common import (  # noqa: E402
    Databases,
    Server,
    add_postgres_option,
    free_port,
    http_org,
    median,
    percentile,
    postgres_admin,
    send,
)

# A receiver that reads each request whole and answers 204: what a queue in front of a SIEM
# does before it acknowledges, each connection in a thread of its own (a worker sends its
# streams' batches at once).
RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

# A receiver that, before it acknowledges a batch, appends to a file a line of the stream's
# path and how long ago the server received each of the batch's events, in seconds.
LAG_RECEIVER = """
import http.server, json, sys, time, datetime
out = open(sys.argv[2], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        now = time.time()
        lags = [now - datetime.datetime.fromisoformat(e["received_at"].replace("Z", "+00:00"))
                .timestamp() for e in body["events"]]
        out.write(self.path + " " + " ".join(f"{x:.4f}" for x in lags) + "\\n")
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def build(url: str, events: list[dict]) -> int:
    store = open_store(url)
    try:
        auth.create_org(store=store, name="Bench", org_id="bench")
        for i in range(0, len(events), 1000):
            ingest(store=store, org_id="bench", raw_events=events[i:i + 1000],
                   redactor=Redactor())
        return store.log_head("bench").size
    finally:
        store.close()


def measure(prefix: str, url: str, folder: Path, port: int, batch: int) -> None:
    store = open_store(url)
    box = SecretBox.load(folder / "streams.key")
    signer = checkpoint.load_signer(folder / "signing.key", "bench.example.com")
    try:
        size = store.log_head("bench").size
        row, _ = delivery.new_stream(
            org_id="bench", name="bench", box=box, start_index=0, allow_http=True,
            config=delivery.StreamConfig(f"http://127.0.0.1:{port}/", batch_events=batch))
        with store.writing() as tx:
            tx.insert_stream(row)
        config = delivery.StreamConfig.parse(row.config)
        signed = checkpoint.sign_latest(store=store, signer=signer, host="bench.example.com",
                                        org_id="bench")
        source = checkpoint.origin("bench.example.com", "bench")

        started = time.perf_counter()
        cursor = row
        while cursor.next_index < size:  # the floor: read and serialise, nothing sent
            b = delivery.next_batch(store, cursor, config, source)
            record = formats.checkpoint_record(org_id="bench", stream_id=row.id, start=b.start,
                                               stop=b.stop, note=signed.note, proofs=None)
            formats.webhook_body(row.format, b.events, record, source)
            cursor = dataclasses.replace(cursor, next_index=b.stop)
        floor = size / (time.perf_counter() - started)

        deliverer = delivery.Deliverer(store=store, box=box, signer=signer,
                                       host="bench.example.com", allow_private=True)
        started = time.perf_counter()
        while deliverer.deliver_round():
            pass
        rate = size / (time.perf_counter() - started)
        deliverer.close()
        shown = store.get_stream("bench", row.id)
        assert shown is not None and shown.next_index == size, shown
        print(f"{prefix}read + serialise (floor): {floor:>9,.0f} events/s | delivered to the "
              f"receiver {rate:>9,.0f} events/s ({rate / floor:.0%} of floor; targets >= "
              "10,000 events/s and >= 50%)", flush=True)
    finally:
        store.close()


STREAM_ENV = {"SEALOG_STREAMS_ALLOW_HTTP": "1", "SEALOG_STREAMS_ALLOW_PRIVATE": "1"}


class Served:
    """`sealog serve` on a data folder (and url's database; None: the folder's SQLite
    file) with an org whose key may ingest and manage streams."""

    def __init__(self, data_dir: Path, url: str | None):
        self.secret = http_org(data_dir, url, scopes=("events:write", "admin"))
        self.server = Server(data_dir, env={**STREAM_ENV, **(
            {"SEALOG_DATABASE_URL": url} if url else {})})

    def __enter__(self) -> Served:
        self.server.__enter__()
        self.client = httpx.Client(base_url=self.server.url, timeout=60, headers={
            "Authorization": f"Bearer {self.secret}"})
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.close()
        self.server.__exit__(*exc)

    def add_streams(self, urls: list[str]) -> None:
        for i, url in enumerate(urls):
            r = self.client.post("/api/v1/streams", json={"name": f"s{i}", "url": url})
            assert r.status_code == 201, r.text

    def caught_up(self, timeout: float = 120) -> None:
        """Waits until every stream has delivered the whole log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            streams = self.client.get("/api/v1/streams").json()["data"]
            if all(s["lag_events"] == 0 and s["state"] == "active" for s in streams):
                return
            time.sleep(0.05)
        raise SystemExit(f"streams did not catch up within {timeout:.0f} s: {streams}")


def lag(prefix: str, url: str | None, folder: Path, seconds: float) -> None:
    """Prints the lag of 3 streams while 1,000 events/s are ingested over HTTP."""
    lags_file = folder / f"lags-{len(prefix)}.txt"
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", LAG_RECEIVER, str(port),
                                 str(lags_file)])
    per_request, interval = 100, 0.1
    events = list(sampledata.generate_events(int(seconds / interval) * per_request, days=1))
    bodies = [orjson.dumps({"events": events[i:i + per_request]})
              for i in range(0, len(events), per_request)]
    late = 0.0
    try:
        with Served(folder / f"lag-{len(prefix)}", url) as served:
            served.add_streams([f"http://127.0.0.1:{port}/s{i}" for i in range(3)])
            started = time.monotonic()
            for k, body in enumerate(bodies):
                wait = started + k * interval - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                late = max(late, -wait)
                r = served.client.post("/api/v1/events", content=body,
                                       headers={"Content-Type": "application/json"})
                assert r.status_code == 201, r.text
            rate = len(events) / (time.monotonic() - started)
            served.caught_up()
            delivered = {f"/s{i}": s["delivered"] for i, s in enumerate(
                served.client.get("/api/v1/streams").json()["data"])}
    finally:
        receiver.terminate()
        receiver.wait(10)
    lags: list[float] = []
    counts: dict[str, int] = {}
    for line in lags_file.read_text().splitlines():
        path, *values = line.split()
        counts[path] = counts.get(path, 0) + len(values)
        lags += [float(v) for v in values]
    # Each stream also gets the org's own audit events after it was made (of the streams
    # made after it, for one).
    assert counts == delivered and min(counts.values()) >= len(events), (counts, delivered)
    print(f"{prefix}lag at {rate:,.0f} events/s over HTTP, 3 streams, {len(lags):,} "
          f"deliveries: median {median(lags) * 1000:,.0f} ms, p95 "
          f"{percentile(lags, 95) * 1000:,.0f} ms, p99 {percentile(lags, 99) * 1000:,.0f} ms, "
          f"max {max(lags) * 1000:,.0f} ms (target p95 < 2 s; the sender fell at most "
          f"{late * 1000:.0f} ms behind its pace)", flush=True)


def ingest_beside_streams(prefix: str, urls: tuple[str | None, str | None], folder: Path,
                          port: int, total: int, rounds: int) -> None:
    """Prints HTTP ingest into a server with 3 active streams against one with none."""
    events = list(sampledata.generate_events(total, days=30))
    bodies = [orjson.dumps({"events": events[i:i + 500]}) for i in range(0, total, 500)]
    per_round = -(-len(bodies) // rounds)
    seconds = {"none": [], "three": []}
    behind: list[float] = []  # how long the streams took to catch up after a round
    with Served(folder / f"none-{len(prefix)}", urls[0]) as none, \
            Served(folder / f"three-{len(prefix)}", urls[1]) as three:
        three.add_streams([f"http://127.0.0.1:{port}/s{i}" for i in range(3)])
        served = {"none": none, "three": three}
        for n, start in enumerate(range(0, len(bodies), per_round)):
            for name in ("none", "three") if n % 2 == 0 else ("three", "none"):
                seconds[name].append(send(served[name].server, served[name].secret,
                                          bodies[start:start + per_round], clients=2))
                if name == "three":
                    started = time.perf_counter()
                    three.caught_up()
                    behind.append(time.perf_counter() - started)
    rate = {name: total / sum(took) for name, took in seconds.items()}
    ratios = [a / b for a, b in zip(seconds["none"], seconds["three"], strict=True)]
    caught = 1 - sum(seconds["none"]) / (sum(seconds["three"]) + sum(behind))
    print(f"{prefix}HTTP ingest, no stream {rate['none']:>8,.0f} events/s | 3 active "
          f"streams {rate['three']:>8,.0f} events/s ({1 - rate['three'] / rate['none']:.1%} "
          f"slower; rounds: median {1 - median(ratios):.1%}; target <= 15%; the streams "
          f"caught up at most {max(behind):.2f} s after a round's last request; counting "
          f"those catch-ups in: {caught:.1%}"
          " slower)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events a request")
    parser.add_argument("--live-seconds", type=float, default=30,
                        help="how long 1,000 events/s are ingested for the lag")
    parser.add_argument("--ingest-events", type=int, default=200_000,
                        help="events ingested into each server beside streams and without")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--only", choices=["delivery", "lag", "ingest"],
                        help="measure one of the three")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            folder = Path(tmp)
            databases = (stack.enter_context(Databases(admin, "sealog_bench_streams"))
                         if admin is not None else None)
            # Each backend's way to a new database: None is a served folder's SQLite file.
            backends: list[tuple[str, Callable[[str], str | None]]] = [("", lambda _: None)]
            if databases is not None:
                backends.append(("PostgreSQL ", databases.new))
            if args.only in (None, "delivery"):
                events = list(sampledata.generate_events(args.events, days=30))
                built = {prefix: new("events") or f"sqlite:///{folder / 'sealog.db'}"
                         for prefix, new in backends}
                for prefix, url in built.items():
                    print(f"{prefix}built {build(url, events):,} events", flush=True)
                for prefix, url in built.items():
                    measure(prefix, url, folder, port, args.batch)
            for prefix, new in backends if args.only in (None, "lag") else ():
                lag(prefix, new("lag"), folder, args.live_seconds)
            for prefix, new in backends if args.only in (None, "ingest") else ():
                ingest_beside_streams(prefix, (new("none"), new("three")), folder, port,
                                      args.ingest_events, args.rounds)
    finally:
        receiver.terminate()
        receiver.wait(10)

if __name__ == "__main__":
    main()
