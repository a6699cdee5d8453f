"""Erasure, on each backend: the matched events' content leaves every file of the data
folder (SQLite: the database, its WAL and free pages) and every PostgreSQL table, their
places and leaf hashes stay, and verify names them as erased."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from fastapi.testclient import TestClient

from sealog import erasure, retention
from sealog.eventlog import count_events
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.ledger import audit, merkle, tree
from sealog.sampledata import generate_events
from sealog.search import build_filter
from sealog.store import Store
from sealog.store.base import Conflict
from tamper import Tamper
from test_access import PASSWORD, sign_in

from conftest import event, verify_online
from test_cli import run

MARKER = "Plantedmarker-7f3a9c"
EMAIL = "bob-zq81@acme.com"
OWNER = {"id": "usr_owner", "email": "owner@acme.com", "name": "Owner", "type": "user"}
QUERY = "actor:usr_bob"  # by id: the query is recorded with the request


def _fill(store: Store) -> None:
    """acme's log: 200 generated events with 30 of Bob's among them, each naming MARKER."""
    raw = list(generate_events(200, days=2))
    for n in range(30):
        raw[n * 6] = event(actor={"id": "usr_bob", "email": EMAIL, "name": "Bob Zq"},
                           description=f"{MARKER} note {n}",
                           metadata={"note": f"{MARKER} {n}"},
                           occurred_at=raw[n * 6]["occurred_at"])
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor())


def _found_in_storage(store: Store, folder: Path) -> list[str]:
    """Where MARKER or Bob's email still is: files of folder (SQLite) holding their bytes,
    in any case, or PostgreSQL columns holding them."""
    needles = [n.encode() for n in (MARKER, MARKER.lower(), EMAIL, "zq81")]
    if not store.url.startswith("postgresql"):  # type: ignore[attr-defined]
        return [str(p) for p in folder.rglob("*") if p.is_file()
                and any(n in p.read_bytes() for n in needles)]
    found = []
    with Tamper(store) as tamper:
        for table, column in (("event_docs", "convert_from(doc, 'UTF8')"),
                              ("events", "concat_ws(' ', actor_email, actor_name, search_text, "
                                         "words::text, pairs::text, fields::text)")):
            for needle in ("plantedmarker", "zq81"):
                (n,), = tamper.execute(f"SELECT count(*) FROM {table} WHERE "
                                       f"strpos(lower({column}), ?) > 0", needle)
                if n:
                    found.append(f"{table}: {n} rows with {needle}")
    return found


def _count(store: Store, q: str) -> int:
    flt = build_filter(org_id="acme", q=q, range_preset="custom", start="2000-01-01T00:00:00Z")
    return count_events(store=store, flt=flt)


def test_erased_content_leaves_every_file_and_table_and_verify_names_it(
        tenant, store, app, tmp_path):
    _fill(store)
    size = store.log_head("acme").size
    matched = erasure.matching(store, "acme", QUERY)
    assert len(matched.events) == 30 and matched.held == []
    indexes = sorted(d.index for d in matched.events)
    leaves = {d.index: d.leaf_hash for i in indexes
              for d in store.iter_events_by_index("acme", i, i + 1)}
    export = jobs.create_export(store=store, redactor=Redactor(), org_id="acme",
                                actor=jobs.Actor("usr_owner", "owner@acme.com"), name="all",
                                format="csv", range_preset="custom",
                                start="2000-01-01T00:00:00Z")
    assert jobs.Worker(store=store, folder=tmp_path / "exports", signer=None,
                       host="sealog.local").run_one()
    done_export = store.get_export("acme", export.id)
    assert done_export is not None and MARKER.encode() in Path(
        done_export.file_path or "").read_bytes()
    assert _found_in_storage(store, tmp_path)  # there before, so the check can fail

    done = erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         query=QUERY, reason="GDPR request 14", expected=30)
    assert done.request_index == size + 1  # after the export's own audit event
    assert done.indexes == indexes
    assert _found_in_storage(store, tmp_path) == []
    withdrawn = store.get_export("acme", export.id)
    assert withdrawn is not None and withdrawn.status == "expired"
    assert not Path(done_export.file_path or "").exists()
    size += 1

    for index in indexes:
        (stored,) = store.iter_events_by_index("acme", index, index + 1)
        doc = orjson.loads(stored.doc)
        assert doc["erased"]["request_index"] == size and doc["index"] == index
        assert stored.leaf_hash == leaves[index]  # the place and the hash stay
    assert (_count(store, MARKER.lower()), _count(store, QUERY)) == (0, 0)
    assert _count(store, "category:agent_operations") > 0
    request = orjson.loads(next(iter(store.iter_events_by_index("acme", size, size + 1))).doc)
    assert request["action"] == "audit_log.erased"
    assert {k: request["metadata"][k] for k in ("query", "reason", "count")} == {
        "query": QUERY, "reason": "GDPR request 14", "count": 30}

    report = verify_online(app, tenant.secret)
    assert report.ok, report.text()
    assert (report.valid, report.erased, report.total) == (size + 1 - 30, 30, size + 1)
    assert f"30 events erased (request at index {size})" in report.text()
    latest = store.latest_checkpoint("acme")
    assert latest is not None
    for index in indexes[:5]:  # an erased event's inclusion proof still holds its hash
        merkle.verify_inclusion(leaves[index], index, latest.size, tree.inclusion_proof(
            store=store, org_id="acme", index=index, size=latest.size), latest.root)


def test_a_hold_or_a_changed_count_refuses_the_erasure_and_nothing_changes(store, tenant):
    _fill(store)
    before = [d.doc for d in store.iter_events_by_index("acme", 0, 200)]
    with pytest.raises(Conflict, match="matches 30 events now, not 29"):
        erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                      query=QUERY, reason="r", expected=29)
    retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         name="Case", reason="litigation")
    assert len(erasure.matching(store, "acme", QUERY).held) == 30
    with pytest.raises(Conflict, match="30 of the 30 events are under a legal hold"):
        erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                      query=QUERY, reason="r", expected=30)
    with pytest.raises(erasure.ErasureError, match="an empty query would erase"):
        erasure.matching(store, "acme", "  ")
    assert [d.doc for d in store.iter_events_by_index("acme", 0, 200)] == before


def test_a_tombstone_the_request_does_not_list_is_a_failure(tenant, store, app):
    _fill(store)
    done = erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         query=QUERY, reason="r", expected=30)
    other = next(i for i in range(200) if i not in done.indexes)
    (doc,) = store.iter_events_by_index("acme", other, other + 1)
    forged = erasure.tombstone(doc, done.request_index, "2026-01-01T00:00:00.000000Z")
    with Tamper(store) as tamper:
        tamper.set_doc("acme", other, forged)
    report = verify_online(app, tenant.secret)
    assert not report.ok
    assert [(f.kind, f.index) for f in report.failures] == [("modified", done.request_index)]
    assert "lists 30 events, and the tombstones naming it are 31" in report.text()
    with Tamper(store) as tamper:  # naming a request that is not there
        tamper.set_doc("acme", other, forged.replace(
            f'"request_index":{done.request_index}'.encode(), b'"request_index":3'))
    report = verify_online(app, tenant.secret)
    assert ("modified", other) in [(f.kind, f.index) for f in report.failures]


def test_only_a_signed_in_owner_erases_through_the_api_after_a_preview(store, tenant, app):
    from sealog import auth

    _fill(store)
    for role in ("owner", "admin"):
        auth.create_user(store=store, org_id="acme", email=f"{role}@acme.com", role=role,
                         password=PASSWORD)
    owner, admin = TestClient(app), TestClient(app)
    sign_in(owner, "owner@acme.com")
    sign_in(admin, "admin@acme.com")
    assert admin.post("/api/v1/erasures/preview", json={"query": QUERY}).status_code == 403
    assert tenant.client.post("/api/v1/erasures/preview",
                              json={"query": QUERY}).status_code == 403
    shown = owner.post("/api/v1/erasures/preview", json={"query": QUERY}).json()
    assert (shown["count"], shown["held"]) == (30, 0)
    r = owner.post("/api/v1/erasures", json={"query": QUERY, "reason": "GDPR",
                                             "expected_count": 31})
    assert r.status_code == 409
    r = owner.post("/api/v1/erasures", json={"query": "", "reason": "GDPR",
                                             "expected_count": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "query"
    r = owner.post("/api/v1/erasures", json={"query": QUERY, "reason": "GDPR",
                                             "expected_count": 30})
    assert r.status_code == 201 and r.json()["count"] == 30
    erased = tenant.client.get("/api/v1/events", params={
        "q": "action:erased", "range": "custom", "from": "2000-01-01T00:00:00Z"}).json()
    assert len(erased["data"]) == 30 and all("erased" in e for e in erased["data"])


def test_the_command_line_erases_what_it_was_told_to_expect(capsys, store, store_url,
                                                            tmp_path, tenant):
    _fill(store)
    db = ["--database-url", store_url, "--data-dir", str(tmp_path / "data")]
    code, _, err = run(capsys, "erase", "--org", "acme", "--query", QUERY, "--reason", "GDPR",
                       *db)
    assert code == 2 and "matches 30 events; give --expect 30" in err
    code, _, err = run(capsys, "erase", "--org", "acme", "--query", QUERY, "--reason", "GDPR",
                       "--expect", "12", *db)
    assert code == 2 and "not 12; nothing was erased" in err
    code, out, _ = run(capsys, "erase", "--org", "acme", "--query", QUERY, "--reason", "GDPR",
                       "--expect", "30", "--json", *db)
    assert code == 0 and json.loads(out)["count"] == 30
    assert erasure.matching(store, "acme", QUERY).events == []


def test_bundles_holding_erased_events_verify_offline_naming_them(tenant, store, app,
                                                                   tmp_path):
    from sealog.ledger import checkpoint, export

    _fill(store)
    done = erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         query=QUERY, reason="GDPR", expected=30)
    signed = checkpoint.sign_latest(store=store, signer=app.state.signer, host="sealog.local",
                                    org_id="acme")
    whole, some = tmp_path / "all.jsonl", tmp_path / "some.jsonl"
    with whole.open("wb") as out:
        export.write_bundle(out, store=store, org_id="acme", host="sealog.local",
                            signed=signed)
    report = audit.verify_bundle_file(whole, [app.state.signer.verifier])
    assert report.ok and report.erased == 30, report.text()
    assert f"30 events erased (request at index {done.request_index})" in report.text()
    docs = [d for d in store.iter_events_by_index("acme", 0, signed.size)
            if d.index in done.indexes[:5] or d.index < 3]
    with some.open("wb") as out:  # a selection, as an export job writes it
        export.write_bundle(out, store=store, org_id="acme", host="sealog.local",
                            signed=signed, docs=docs, count=len(docs))
    report = audit.verify_bundle_file(some, [app.state.signer.verifier])
    assert report.ok and (report.erased, report.valid) == (5, len(docs) - 5), report.text()
    assert f"requests at index {done.request_index}" in report.text()


def test_an_erasure_of_many_events_holds_a_page_of_them_in_memory_not_all(tenant, store):
    import tracemalloc

    raw = [event(actor={"id": "usr_bob", "email": EMAIL, "name": "Bob Zq"},
                 description=f"{MARKER} {n}", metadata={"note": "x" * 2000})
           for n in range(8000)]
    for start in range(0, len(raw), 1000):
        ingest(store=store, org_id="acme", raw_events=raw[start:start + 1000],
               redactor=Redactor())
    count = len(erasure.matching(store, "acme", QUERY).events)
    assert count == 8000
    tracemalloc.start()
    try:
        erasure.erase(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                      query=QUERY, reason="GDPR", expected=count)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # 8,000 documents of over 2 kB are 17 MB (all of them held took 80 MB); a page of
    # 1,000 of them in its few forms (rows, documents, tombstones) about 15.
    assert peak < 25 * 2**20, f"{peak / 2**20:.1f} MB"
