"""Offline verification rate of a complete JSON Lines bundle, against bare hashing.

The baseline reads the same file and SHA-256-hashes each event's bytes, nothing more.
Run: python bench/verify.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sealog import times  # noqa: E402
from sealog.events import Redactor, validate_events  # noqa: E402
from sealog.ledger import audit, bundle, checkpoint, merkle  # noqa: E402
from sealog.ledger.note import Signer  # noqa: E402
from sealog.sampledata import generate_events  # noqa: E402
from sealog.sealing import prepare, seal  # noqa: E402

HOST = "bench.example.com"


def build(path: Path, count: int, signer: Signer) -> None:
    raw = list(generate_events(1000, days=30))
    templates = []
    for new in validate_events(raw, received_at_us=times.now_us(), redactor=Redactor()):
        doc = seal(prepare(new, org_id="bench"), org_id="bench", index=0).doc
        head, tail = doc.split(b'"index":0,', 1)
        templates.append((head + b'"index":', b"," + tail))
    docs = [t[0] + str(i).encode() + t[1] for i, t in
            ((i, templates[i % len(templates)]) for i in range(count))]
    leaves = [merkle.leaf_hash(d) for d in docs]
    nodes = {(0, i): h for i, h in enumerate(leaves)}
    compact = merkle.CompactRange()
    compact.extend(leaves, lambda level, i, h: nodes.__setitem__((level, i), h))

    def read(wanted):
        return {k: nodes[k] for k in wanted}

    note = signer.sign(checkpoint.body(checkpoint.origin(HOST, "bench"), count, compact.root()))
    with path.open("wb") as out:
        out.write(bundle.header_line(org_id="bench", origin=checkpoint.origin(HOST, "bench"),
                                     tree_size=count, complete=True, count=count, selection={}))
        for i, doc in enumerate(docs):
            out.write(bundle.entry_line(i, leaves[i], doc, merkle.inclusion_proof(i, count, read)))
        out.write(bundle.checkpoint_line(note))


def bare_hashing(path: Path) -> float:
    started = time.perf_counter()
    n = 0
    with path.open("rb") as f:
        next(f)
        for line in f:
            cut = line.find(b',"event":')
            if cut < 0:
                continue
            hashlib.sha256(b"\x00" + line[cut + 9 : -2]).digest()
            n += 1
    return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    signer = Signer.generate(HOST)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bundle.jsonl"
        print(f"writing a bundle of {args.events:,} events…", flush=True)
        build(path, args.events, signer)
        print(f"bundle size {path.stat().st_size / 1e6:,.0f} MB", flush=True)
        rates, bares = [], []
        for _ in range(3):
            bares.append(bare_hashing(path))
            started = time.perf_counter()
            report = audit.verify_bundle_file(path, [signer.verifier])
            rates.append(args.events / (time.perf_counter() - started))
            assert report.ok, report.text()
        rates.sort()
        bares.sort()
        print(f"bare read + SHA-256 of each event (baseline): {bares[1]:>10,.0f} events/s")
        print(f"sealog verify of the bundle (median of 3):     {rates[1]:>10,.0f} events/s "
              f"({rates[1] / bares[1]:.0%} of baseline; target >= 200,000)")


if __name__ == "__main__":
    main()
