"""The integrity API, checkpoints, and tamper tests on a real SQLite file."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import re
import time
from collections.abc import Callable, Iterator

import httpx
import openpyxl
import pytest
import rfc8785
from openpyxl.utils.escape import unescape

from sealog import auth
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import audit, bundle, checkpoint, merkle
from sealog.ledger.note import Signer, Verifier
from sealog.sampledata import generate_events
from tamper import Tamper

from conftest import event, verify_online


def b64list(hashes):
    return [base64.b64decode(h) for h in hashes]


def signed(tenant) -> checkpoint.Checkpoint:
    key = Verifier.parse(tenant.client.get("/api/v1/log/key").text)
    note = tenant.client.get("/api/v1/log/checkpoint")
    assert note.headers["content-type"].startswith("text/plain")
    return checkpoint.open_checkpoint(note.text, [key])


def test_checkpoint_proofs_and_key_fit_together(tenant):
    ids = [e["id"] for e in tenant.client.post(
        "/api/v1/events", json={"events": [event(description=f"e{i}") for i in range(7)]}
    ).json()["events"]]
    first = signed(tenant)
    assert first.size == 7 and first.origin == "sealog.local/sealog/acme"
    assert first.note.splitlines()[0] == "sealog.local/sealog/acme"
    tenant.client.post("/api/v1/events", json={"events": [event()] * 5})
    second = signed(tenant)
    assert second.size == 12

    doc = tenant.client.get(f"/api/v1/events/{ids[3]}").json()
    leaf = merkle.leaf_hash(rfc8785.dumps({k: v for k, v in doc.items() if k != "leaf_hash"}))
    assert leaf.hex() == doc["leaf_hash"]
    proof = tenant.client.get("/api/v1/log/proof/inclusion",
                              params={"event_id": ids[3], "tree_size": 12}).json()
    assert proof["index"] == 3 and proof["tree_size"] == 12
    merkle.verify_inclusion(leaf, 3, 12, b64list(proof["hashes"]), second.root)
    by_index = tenant.client.get("/api/v1/log/proof/inclusion", params={"index": 3}).json()
    assert by_index == proof

    consistency = tenant.client.get("/api/v1/log/proof/consistency",
                                    params={"from": 7, "to": 12}).json()
    merkle.verify_consistency(7, 12, b64list(consistency["hashes"]), first.root, second.root)


def test_every_checkpoint_is_kept(tenant, store):
    for n in (1, 2, 3):
        tenant.client.post("/api/v1/events", json={"events": [event()] * n})
        signed(tenant)
    with Tamper(store) as tamper:
        sizes = [r[0] for r in tamper.execute(
            "SELECT size FROM checkpoints WHERE org_id = 'acme' ORDER BY size")]
    assert sizes == [1, 3, 6]


def test_proof_requests_that_cannot_be_answered(tenant, tenant_factory):
    c = tenant.client
    c.post("/api/v1/events", json={"events": [event()] * 3})
    assert c.get("/api/v1/log/proof/inclusion", params={"index": 3, "tree_size": 3}
                 ).status_code == 422
    assert c.get("/api/v1/log/proof/inclusion", params={"index": 0, "tree_size": 9}
                 ).status_code == 422
    assert c.get("/api/v1/log/proof/inclusion").status_code == 422
    assert c.get("/api/v1/log/proof/consistency", params={"from": 3, "to": 2}
                 ).status_code == 422
    assert c.get("/api/v1/log/proof/consistency", params={"from": 0, "to": 2}
                 ).status_code == 422
    other = tenant_factory("beta")
    event_id = c.get("/api/v1/events").json()["data"][0]["id"]
    assert other.client.get("/api/v1/log/proof/inclusion",
                            params={"event_id": event_id}).status_code == 404
    reader = tenant_factory("acme", scopes=["events:write"])
    assert reader.client.get("/api/v1/log/checkpoint").status_code == 403


def test_an_empty_log_has_a_checkpoint_of_the_empty_tree(tenant):
    cp = signed(tenant)
    assert cp.size == 0 and cp.root == hashlib.sha256(b"").digest()


def test_names_and_numbers_of_the_log_are_ascii_with_nothing_after_them(store):
    # Python's `$` matches before a trailing newline; int() and isdigit() take any
    # script's digits, and int() a sign, spaces and "_" too.
    with pytest.raises(ValueError, match="org id"):
        auth.create_org(store=store, name="Acme", org_id="acme\n")
    root = base64.b64encode(bytes(32)).decode()
    assert checkpoint.parse_body(f"h/sealog/acme\n12\n{root}\n")[1] == 12
    with pytest.raises(checkpoint.CheckpointError, match="size"):
        checkpoint.parse_body(f"h/sealog/acme\n\uff11\uff12\n{root}\n")
    line = bundle.entry_line(7, bytes(32), b'{"a":1}')
    assert bundle.parse_entry_line(line).index == 7
    for index in (b"+7", b" 7", b"0_7"):
        with pytest.raises(bundle.BundleError, match="index"):
            bundle.parse_entry_line(line.replace(b'"index":7', b'"index":' + index))


def test_the_signing_key_is_private_and_reused(settings, store, app):
    path = settings.resolved_signing_key_file
    assert path.stat().st_mode & 0o777 == 0o600
    again = checkpoint.load_signer(path, settings.log_host)
    assert again.verifier == app.state.signer.verifier


def test_no_checkpoint_is_signed_over_a_rewritten_tree(tenant, store, app):
    tenant.client.post("/api/v1/events", json={"events": [event()] * 5})
    signed(tenant)
    tenant.client.post("/api/v1/events", json={"events": [event()] * 3})
    with Tamper(store) as tamper:
        tamper.execute("UPDATE tree_nodes SET hash = ? WHERE org_id = 'acme' AND level = 2",
                       bytes(32))
    with pytest.raises(checkpoint.CheckpointError, match="not consistent"):
        checkpoint.sign_latest(store=store, signer=app.state.signer, host="sealog.local",
                               org_id="acme")


# -- tamper tests: a real database file, then `verify` as an auditor runs it --------------


@pytest.fixture
def audited(tenant, store, app, tmp_path) -> Iterator[tuple[Callable[[], audit.Report],
                                                             Tamper]]:
    """A log of 300 realistic events, checked once (so a state file exists)."""
    raw = list(generate_events(300, days=2))
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor())
    key = app.state.signer.verifier  # pinned as the auditor did, whatever signs later
    state = tmp_path / "state.json"

    def run() -> audit.Report:
        return verify_online(app, tenant.secret, state, pinned=key)

    first = run()
    assert first.ok and first.valid == first.total == 300, first.text()
    with Tamper(store) as tamper:
        yield run, tamper


def _altered(tamper: Tamper, index: int) -> bytes:
    """acme's event at index with its result changed."""
    return tamper.doc("acme", index).replace(b'"result":"', b'"result":"x', 1)


def kinds(report: audit.Report) -> list[tuple[str, int | None]]:
    return [(f.kind, f.index) for f in report.failures]


def test_a_changed_field_is_reported_as_modified(audited):
    run, tamper = audited
    tamper.set_doc("acme", 41, _altered(tamper, 41))
    report = run()
    assert kinds(report) == [("modified", 41)] and report.valid == 299 and not report.ok
    assert "299/300 events valid" in report.text()


def test_a_change_with_a_recomputed_leaf_hash_is_still_found(audited):
    run, tamper = audited
    tamper.set_doc("acme", 7, _altered(tamper, 7), with_leaf=True)
    report = run()
    assert kinds(report) == [("modified", 7)] and report.valid == 299


def test_a_change_rewritten_into_the_tree_leaves_names_the_pair(audited):
    run, tamper = audited
    doc = _altered(tamper, 7)
    tamper.set_doc("acme", 7, doc, with_leaf=True)
    tamper.execute("UPDATE tree_nodes SET hash = ? WHERE org_id = 'acme' AND level = 0 "
                   "AND idx = 7", merkle.leaf_hash(doc))
    report = run()
    # The proof of 6 now holds 7's rewritten hash: the pair is named, and nothing else.
    assert kinds(report) == [("modified", 6)] and report.valid == 298
    assert "or index 7" in report.text()


def test_a_deleted_event_is_reported_as_missing(audited):
    run, tamper = audited
    tamper.delete_event("acme", 150)
    report = run()
    assert kinds(report) == [("missing", 150)] and report.valid == 299


def test_swapped_events_are_reported_as_reordered(audited):
    run, tamper = audited
    tamper.swap_events("acme", 10, 20)
    report = run()
    assert kinds(report) == [("reordered", 10), ("reordered", 20)] and report.valid == 298


def test_deleting_the_last_events_is_reported_as_missing(audited):
    run, tamper = audited
    for index in range(295, 300):
        tamper.delete_event("acme", index)
    report = run()
    assert kinds(report) == [("missing", 295)] and "295 to 299" in report.text()
    assert report.valid == 295


def _rewrite_history(tamper: Tamper, index: int) -> None:
    """What an insider with database access does: change an event, rebuild every hash."""
    tamper.set_doc("acme", index, _altered(tamper, index), with_leaf=True)
    leaves = [bytes(r[0]) for r in tamper.execute(
        "SELECT leaf_hash FROM events WHERE org_id = 'acme' ORDER BY idx")]
    nodes: list[tuple[int, int, bytes]] = []
    compact = merkle.CompactRange()
    compact.extend(leaves, lambda level, i, h: nodes.append((level, i, h)))
    tamper.execute("DELETE FROM tree_nodes WHERE org_id = 'acme'")
    for node in nodes:
        tamper.execute("INSERT INTO tree_nodes (org_id, level, idx, hash) VALUES ('acme', ?, ?, ?)",
                       *node)
    tamper.execute("UPDATE orgs SET compact_range = ? WHERE id = 'acme'",
                   b"".join(compact.hashes))
    tamper.execute("DELETE FROM checkpoints WHERE org_id = 'acme'")


def test_history_re_signed_with_another_key_is_an_unknown_key(audited, store, app, settings):
    run, tamper = audited
    _rewrite_history(tamper, 3)
    app.state.signer = Signer.generate("sealog.local")
    report = run()
    assert [f.kind for f in report.failures] == ["unknown key"] and not report.ok


def test_history_re_signed_with_the_stolen_key_is_a_fork(audited, store):
    run, tamper = audited
    _rewrite_history(tamper, 3)
    report = run()
    assert [f.kind for f in report.failures] == ["inconsistent checkpoint"]
    assert "rewritten" in report.text()


def test_rotation_keeps_the_old_key_as_a_verifier(tmp_path, capsys):
    from sealog.cli import main

    db = ["--data-dir", str(tmp_path / "data")]
    assert main(["orgs", "create", "Acme", "--id", "acme", *db]) == 0
    assert main(["log-key", *db]) == 0
    first = capsys.readouterr().out.strip().splitlines()[-1]
    assert main(["log-key", "--rotate", *db]) == 0
    second = capsys.readouterr().out.strip()
    assert second != first and Verifier.parse(second).name == "sealog.local"
    assert main(["log-key", "--json", *db]) == 0
    listed = __import__("json").loads(capsys.readouterr().out)
    assert listed["current"] == second
    keys = {k["verifier_key"]: k["retired_at"] for k in listed["keys"]}
    assert keys[first] is not None and keys[second] is None
    assert list((tmp_path / "data").glob("signing.key.*.retired"))


# Characters that str.splitlines() takes for line ends; JSON carries each in a string.
LINE_BREAKERS = ["\u2028", "\u2029", "\x85", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\r",
                 "\n"]


def _completed_export(http: httpx.Client, fmt: str) -> bytes:
    job = http.post("/api/v1/exports", json={"name": f"all-{fmt}", "format": fmt}).json()
    deadline = time.monotonic() + 30
    while (state := http.get(f"/api/v1/exports/{job['id']}").json())["status"] != "completed":
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.05)
    return http.get(state["download_url"]).content


def _all_valid(report: str) -> int:
    """N of a report's "N/N events valid" line (0 when some are not valid)."""
    found = re.search(r"^(\d+)/(\d+) events valid$", report, re.MULTILINE)
    return int(found[1]) if found and found[1] == found[2] else 0


def test_every_json_string_character_survives_verify_and_exports(served, tmp_path, capsys):
    from sealog.cli import main

    process, secret = served
    texts = [f"line{c}break" for c in LINE_BREAKERS] + [f"{c}first" for c in LINE_BREAKERS]
    texts.append("a literal _x000D_ is not a carriage return")
    with httpx.Client(base_url=process.base, headers={"Authorization": f"Bearer {secret}"},
                      timeout=30) as http:
        sent = http.post("/api/v1/events", json={"events": [event(
            description=text, actor={"id": f"usr{text}", "name": text},
            resource={"type": "agent", "id": "a1", "name": text}, metadata={text: text},
            request={"method": "POST", "path": "/agents", "body": {"note": text}},
        ) for text in texts]})
        assert sent.status_code == 201, sent.text
        ids = [e["id"] for e in sent.json()["events"]]
        vkey = http.get("/api/v1/log/key").text.strip()
        deadline = time.monotonic() + 30
        while f"\n{len(texts)}\n" not in http.get("/api/v1/log/checkpoint").text:
            assert time.monotonic() < deadline, "no checkpoint covers the events"
            time.sleep(0.05)
        bundle, csv_file, workbook = (_completed_export(http, f)
                                      for f in ("jsonl", "csv", "xlsx"))

    code = main(["verify", "--url", process.base, "--api-key", secret, "--verifier-key", vkey,
                 "--state", str(tmp_path / "state.json")])
    out, err = capsys.readouterr()
    assert code == 0 and _all_valid(out) >= len(texts), out + err
    for event_id in ids[:3]:  # U+2028, U+2029, U+0085: JSON leaves them unescaped
        code = main(["verify", "--url", process.base, "--api-key", secret, "--verifier-key",
                     vkey, "--event-id", event_id])
        out, err = capsys.readouterr()
        assert code == 0 and "1/1 events valid" in out, out + err

    path = tmp_path / "all.jsonl"
    path.write_bytes(bundle)
    code = main(["verify", str(path), "--verifier-key", vkey])
    out, err = capsys.readouterr()
    assert code == 0 and _all_valid(out) >= len(texts), out + err

    rows = list(csv.reader(io.StringIO(csv_file.decode("utf-8-sig"), newline="")))
    by_id = {r[13]: r for r in rows[1:]}
    shown = ["'" + t if t.startswith("\r") else t for t in texts]  # a leading CR is neutralised
    assert [(by_id[i][3], by_id[i][6]) for i in ids] == [(t, t) for t in shown]

    # The workbook holds control characters as OOXML's _xHHHH_ escapes, which Excel reads
    # back and openpyxl leaves as they are.
    sheet = openpyxl.load_workbook(io.BytesIO(workbook)).active
    cells = {r[13]: [unescape(c) if isinstance(c, str) else c for c in r]
             for r in sheet.iter_rows(min_row=2, values_only=True)}
    assert [(cells[i][3], cells[i][6]) for i in ids] == [(t, t) for t in texts]


def test_a_checkpoint_lost_in_a_crash_is_signed_again_byte_for_byte(store):
    """Checkpoints commit without waiting for the disk: one lost is the one signed again."""
    auth.create_org(store=store, name="Acme", org_id="acme")
    ingest(store=store, org_id="acme", raw_events=list(generate_events(50)),
           redactor=Redactor())
    signer = Signer.generate("sealog.test")
    first = checkpoint.sign_latest(store=store, signer=signer, host="sealog.test",
                                   org_id="acme")
    with Tamper(store) as tamper:  # as a crash before the commit reached the disk
        tamper.execute("DELETE FROM checkpoints WHERE org_id = ?", "acme")
    assert store.latest_checkpoint("acme") is None
    again = checkpoint.sign_latest(store=store, signer=signer, host="sealog.test",
                                   org_id="acme")
    assert (again.size, again.root, again.note) == (first.size, first.root, first.note)
