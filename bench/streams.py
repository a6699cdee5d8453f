"""Stream delivery over N events to a local webhook receiver (a process of its own that
answers each batch at once), beside the floor: the same process merely reading those
events by index and serialising them into the same batch bodies. On SQLite, then on
PostgreSQL over the same generated events, each against its own floor.

Run: python bench/streams.py [--events 200000] [--batch 500] [--postgres ADMIN_URL | none]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from sealog import auth, sampledata  # noqa: E402
from sealog.events import Redactor  # noqa: E402
from sealog.ingest import ingest  # noqa: E402
from sealog.ledger import checkpoint  # noqa: E402
from sealog.store import open_store  # noqa: E402
from sealog.streams import delivery, formats  # noqa: E402
from sealog.streams.secrets import SecretBox  # noqa: E402

from common import Databases, add_postgres_option, free_port, postgres_admin  # noqa: E402

# A receiver that reads each request whole and answers 204: what a queue in front of a SIEM
# does before it acknowledges.
RECEIVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(204); self.send_header("content-length", "0"); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
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
        while deliverer.deliver_one() is not None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500, help="events a request")
    add_postgres_option(parser)
    args = parser.parse_args()
    admin = postgres_admin(args)
    port = free_port()
    receiver = subprocess.Popen([sys.executable, "-c", RECEIVER, str(port)])
    try:
        events = list(sampledata.generate_events(args.events, days=30))
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            folder = Path(tmp)
            backends = [("", f"sqlite:///{folder / 'sealog.db'}")]
            if admin is not None:
                backends.append(("PostgreSQL ", stack.enter_context(
                    Databases(admin, "sealog_bench_streams")).new("events")))
            for prefix, url in backends:
                print(f"{prefix}built {build(url, events):,} events", flush=True)
            for prefix, url in backends:
                measure(prefix, url, folder, port, args.batch)
    finally:
        receiver.terminate()
        receiver.wait(10)


if __name__ == "__main__":
    main()
