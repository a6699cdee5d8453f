"""Export bundles verified offline: a clean one passes, each kind of tampering is named."""

from __future__ import annotations

import dataclasses
import io
import random
from pathlib import Path

import pytest

from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import audit, checkpoint, export
from sealog.ledger.note import Signer
from sealog.sampledata import generate_events
from sealog.search import build_filter

HOST = "audit.example.com"


@pytest.fixture
def log(store):
    from sealog import auth

    auth.create_org(store=store, name="Acme", org_id="acme")
    ingest(store=store, org_id="acme", raw_events=list(generate_events(130, days=1)),
           redactor=Redactor())
    signer = Signer.generate(HOST)
    signed = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    return store, signer, signed


def write(tmp_path: Path, log, **kw) -> Path:
    store, _, signed = log
    out = io.BytesIO()
    export.write_bundle(out, store=store, org_id="acme", host=HOST, signed=signed, **kw)
    path = tmp_path / "bundle.jsonl"
    path.write_bytes(out.getvalue())
    return path


def check(path: Path, signer: Signer) -> audit.Report:
    return audit.verify_bundle_file(path, [signer.verifier])


def edit_line(path: Path, number: int, change) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    lines[number] = change(lines[number])
    path.write_bytes(b"".join(lines))


def test_a_complete_bundle_verifies(tmp_path, log):
    path = write(tmp_path, log)
    report = check(path, log[1])
    assert report.ok and report.valid == report.total == 130, report.text()


def test_tampered_lines_are_named(tmp_path, log):
    path = write(tmp_path, log)
    edit_line(path, 11, lambda b: b.replace(b'"result":"', b'"result":"x', 1))  # index 10
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[51]  # index 50
    lines[21], lines[31] = lines[31], lines[21]  # indexes 20 and 30
    path.write_bytes(b"".join(lines))
    report = check(path, log[1])
    found = [(f.kind, f.index) for f in report.failures]
    assert ("modified", 10) in found and ("missing", 50) in found
    assert any(k == "reordered" for k, _ in found)
    assert not report.ok and report.valid < 130


def test_a_bundle_signed_by_another_key_fails(tmp_path, log):
    path = write(tmp_path, log)
    assert [f.kind for f in check(path, Signer.generate(HOST)).failures] == ["unknown key"]


def test_a_selection_verifies_by_its_proofs(tmp_path, log):
    store = log[0]
    flt = build_filter(org_id="acme", range_preset="custom", start="2000-01-01T00:00:00Z",
                       categories=["security_events"])
    docs = [d for d in store.iter_events_by_index("acme", 0, 130)
            if b'"category":"security_events"' in d.doc]
    path = write(tmp_path, log, docs=docs, count=len(docs), selection={"category": "x"})
    assert store.count_events(flt) == len(docs) > 0
    report = check(path, log[1])
    assert report.ok and report.valid == len(docs), report.text()
    edit_line(path, 2, lambda b: b.replace(b'"result":"', b'"result":"x', 1))
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[3]
    path.write_bytes(b"".join(lines))
    report = check(path, log[1])
    assert [f.kind for f in report.failures] == ["modified", "missing"]


@pytest.mark.parametrize("selection", [
    {"range_preset": "24h"}, {"categories": ["security_events"]}, {"q": "agent"}, {}])
def test_a_selection_of_events_sent_out_of_time_order_bundles_in_index_order(
        tmp_path, store, selection):
    from sealog import auth
    from sealog.exports import jobs

    auth.create_org(store=store, name="Acme", org_id="acme")
    raw = list(generate_events(300, days=3))
    random.Random(3).shuffle(raw)  # as producers that batch and retry send them
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor())
    everything = {"range_preset": "custom", "start": "2000-01-01T00:00:00Z"}
    flt = build_filter(org_id="acme", **(selection if "range_preset" in selection
                                         else {**everything, **selection}))
    flt = dataclasses.replace(flt, max_index=280)
    by_time = [d.index for d in store.iter_events_ascending(flt)]
    by_index = [d.index for d in store.iter_events_in_index_order(flt, batch=7)]
    assert by_index == sorted(by_time) != by_time and len(by_time) > 7
    signer = Signer.generate(HOST)
    path = tmp_path / "selection.jsonl"
    count = jobs.write_file(store=store, org_id="acme", format="jsonl", flt=flt, path=path,
                            signer=signer, host=HOST, selection=selection)
    report = check(path, signer)
    assert report.ok and report.valid == count == len(by_time), report.text()


def test_an_unreadable_file_is_an_error(tmp_path, log):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"not json\n")
    with pytest.raises(audit.AuditError):
        check(path, log[1])


def test_proofs_stay_right_when_the_node_cache_is_cleared(log):
    from sealog.ledger import merkle, tree

    store, _, signed = log
    small = tree.ProofMaker(store=store, org_id="acme", size=signed.size, cache_nodes=12)
    for doc in store.iter_events_by_index("acme", 0, signed.size):
        merkle.verify_inclusion(doc.leaf_hash, doc.index, signed.size,
                                small.inclusion(doc.index), signed.root)


def test_a_one_event_log_bundles_with_an_empty_proof(tmp_path, store):
    from sealog import auth

    auth.create_org(store=store, name="Solo", org_id="solo")
    ingest(store=store, org_id="solo", raw_events=list(generate_events(1, days=1)),
           redactor=Redactor())
    signer = Signer.generate(HOST)
    signed = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="solo")
    out = io.BytesIO()
    export.write_bundle(out, store=store, org_id="solo", host=HOST, signed=signed)
    assert b'"proof":[]' in out.getvalue()
    path = tmp_path / "solo.jsonl"
    path.write_bytes(out.getvalue())
    assert check(path, signer).ok
