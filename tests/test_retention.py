"""Retention, legal holds and purges, on each backend: a purge removes a prefix of the log
that the policy no longer keeps and no hold covers, and every checkpoint and every proof of
a retained event still verifies."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import orjson
import pytest
from fastapi.testclient import TestClient

from sealog import auth, copying, retention, search, times
from sealog.eventlog import count_events, find_events
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import audit, checkpoint, export, merkle, note, tree
from sealog.retention import DAY_US, RetentionError
from sealog.sampledata import generate_events
from sealog.search import build_filter
from sealog.store import Store, open_store
from sealog.store.base import Conflict, RetentionRow, wait_after
from sealog.store.postgres import partitions
from tamper import Tamper
from test_access import PASSWORD, sign_in

from conftest import event, verify_online, wait_for
from test_cli import run

HOST = "sealog.test"
OWNER = {"id": "usr_owner", "email": "owner@acme.com", "name": "Owner", "type": "user"}
NOW = times.now_us()
SIGNER = note.Signer.generate(HOST)


def _org(store: Store) -> None:
    auth.create_org(store=store, name="Acme", org_id="acme")


def _batch(store: Store, count: int, days_ago: float, *, seed: int = 0,
           occurred: str | None = None) -> None:
    """count events received days_ago (each batch later than the one before)."""
    received = NOW - int(days_ago * DAY_US)
    occurred = occurred or times.format_rfc3339(received - 10**6)
    raw = [{**e, "occurred_at": occurred} for e in generate_events(count, seed=seed)]
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor(),
           received_at_us=received)


def _actions(store: Store) -> list[str]:
    size = store.log_head("acme").size
    start = _retention(store).pruned_before
    return [orjson.loads(d.doc)["action"] for d in store.iter_events_by_index("acme", start,
                                                                                size)]


def _retention(store: Store) -> RetentionRow:
    row = store.get_retention("acme")
    assert row is not None
    return row


def _policy(store: Store, days: int | None, **kw) -> None:
    retention.set_policy(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         days=days, **kw)


def _purge(store: Store, *, signer: note.Signer = SIGNER, host: str = HOST,
           **kw) -> list[retention.PurgeStep]:
    """Signs the log, as serve's checkpointer does (a purge removes only signed events),
    then purges what the policy no longer keeps."""
    checkpoint.sign_latest(store=store, signer=signer, host=host, org_id="acme")
    return retention.purge(store=store, redactor=Redactor(), org_id="acme", now=NOW, **kw)


def test_a_policy_under_the_floor_is_refused_and_a_locked_one_only_lengthens(store):
    _org(store)
    with pytest.raises(RetentionError, match="at least 180"):
        _policy(store, 30, min_days=180)
    with pytest.raises(RetentionError, match="whole number"):
        _policy(store, "30")  # type: ignore[arg-type]
    _policy(store, 365, lock=True, min_days=180)
    row = _retention(store)
    assert (row.days, row.locked_at is not None) == (365, True)
    with pytest.raises(Conflict, match="locked at 365 days: it can only be lengthened"):
        _policy(store, 200)
    _policy(store, 400)  # longer: allowed, and it stays locked
    assert _retention(store).locked_at == row.locked_at
    _policy(store, None)  # forever is the longest of all
    with pytest.raises(Conflict, match="locked at keep forever"):
        _policy(store, 400)
    assert _actions(store) == ["retention.changed"] * 3


def test_a_purge_removes_the_prefix_received_before_the_cutoff_and_proofs_still_hold(
        store, tmp_path):
    _org(store)
    signer = checkpoint.load_signer(tmp_path / "log.key", HOST)
    _batch(store, 700, days_ago=100, seed=1)
    old = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    _batch(store, 600, days_ago=90, seed=2)
    _batch(store, 300, days_ago=10, seed=3)
    middle = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    purged_ids = [d.id for d in store.iter_events_by_index("acme", 0, 1300)]
    _policy(store, 60)

    steps = _purge(store, batch=500)
    ordered = steps[0]
    assert ordered.ordered and (ordered.start, ordered.stop) == (0, 1300)
    assert [(s.start, s.stop) for s in steps[1:]] == [(0, 500), (500, 1000), (1000, 1300)]
    row = _retention(store)
    assert (row.pruned_before, row.purge_to, row.purge_record) == (1300, 1300, 1601)
    size = store.log_head("acme").size
    assert size == 1602  # the policy's event, then the purge's
    record = orjson.loads(store.iter_events_by_index("acme", 1601, 1602).__next__().doc)
    assert record["action"] == "audit_log.purged"
    assert record["metadata"] == {
        "from_index": 0, "to_index": 1300, "count": 1300, "retained_from_index": 1300,
        "policy_days": 60, "cutoff": times.format_rfc3339(NOW - 60 * DAY_US)}
    assert all(store.get_event("acme", i) is None for i in purged_ids[::97])
    assert [d.index for d in store.iter_events_by_index("acme", 0, size)] == list(
        range(1300, size))
    assert _purge(store) == []  # nothing more is due

    # Every checkpoint signed before still verifies against the tree, and so does every
    # proof of a retained event.
    latest = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    for earlier in (old, middle):
        proof = tree.consistency_proof(store=store, org_id="acme", old=earlier.size,
                                       new=latest.size)
        merkle.verify_consistency(earlier.size, latest.size, proof, earlier.root,
                                  latest.root)
    maker = tree.ProofMaker(store=store, org_id="acme", size=latest.size)
    for doc in store.iter_events_by_index("acme", 1300, size):
        merkle.verify_inclusion(merkle.leaf_hash(doc.doc), doc.index, latest.size,
                                maker.inclusion(doc.index), latest.root)
    assert store.log_head("acme").size == latest.size


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """MTH of RFC 6962 section 2.1, by its definition, apart from sealog.ledger."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(b"\x01" + _rfc6962_root(leaves[:k]) + _rfc6962_root(leaves[k:])
                          ).digest()


def _rfc9162_inclusion_root(leaf: bytes, index: int, size: int, path: list[bytes]) -> bytes:
    """The root an inclusion path leads to, by RFC 9162 section 2.1.3.2's algorithm."""
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            raise AssertionError("the path is too long")
        if fn & 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    assert sn == 0, "the path is too short"
    return r


def test_after_a_purge_an_independent_rfc6962_check_agrees_with_every_checkpoint(
        store, tmp_path):
    _org(store)
    signer = checkpoint.load_signer(tmp_path / "log.key", HOST)
    _batch(store, 513, days_ago=100, seed=1)
    before = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    _batch(store, 200, days_ago=1, seed=2)
    _policy(store, 30)
    nodes = store.read_tree_range("acme", 0, 0, 714)
    leaves = [nodes[(0, i)] for i in range(714)]  # read before the purge prunes the tree
    _purge(store, batch=100)
    latest = checkpoint.sign_latest(store=store, signer=signer, host=HOST, org_id="acme")
    leaves.append(store.read_tree_nodes("acme", [(0, 714)])[(0, 714)])  # the purge record
    assert latest.size == len(leaves) == 715
    assert _rfc6962_root(leaves[:before.size]) == before.root
    assert _rfc6962_root(leaves) == latest.root
    # Of the pruned 513 leaves' subtrees only what 513 is made of stays: [0, 512), [512, 513).
    kept = [(level, i) for level in range(11)
            for (_, i) in store.read_tree_range("acme", level, 0, 513 >> level)]
    assert kept == [(0, 512), (9, 0)]
    proof = tree.consistency_proof(store=store, org_id="acme", old=513, new=latest.size)
    merkle.verify_consistency(513, latest.size, proof, before.root, latest.root)
    for doc in store.iter_events_by_index("acme", 513, latest.size):
        assert hashlib.sha256(b"\x00" + doc.doc).digest() == leaves[doc.index]
        path = tree.inclusion_proof(store=store, org_id="acme", index=doc.index,
                                    size=latest.size)
        assert _rfc9162_inclusion_root(leaves[doc.index], doc.index, latest.size,
                                       path) == latest.root


def test_background_work_waits_as_long_as_its_last_transaction_took():
    """So that a purge holds SQLite's one writer at most half the time, however long its
    transactions take on a large log."""
    stop = threading.Event()
    began = time.monotonic()
    wait_after(began - 0.3, 0.01, stop)  # a transaction of 0.3 s
    assert time.monotonic() - began >= 0.29
    began = time.monotonic()
    wait_after(began, 0.05, stop)  # a quick one: the pause
    assert time.monotonic() - began >= 0.049
    began = time.monotonic()
    wait_after(began - 5, 0, stop)  # no pause asked for (a purge alone): none
    assert time.monotonic() - began < 0.05


def test_a_hold_on_the_whole_log_blocks_purges_and_a_range_hold_stops_one_before_it(store):
    _org(store)
    _batch(store, 400, days_ago=100, seed=1, occurred="2020-01-01T00:00:00Z")
    _batch(store, 400, days_ago=95, seed=2, occurred="2020-06-01T00:00:00Z")
    _batch(store, 100, days_ago=1, seed=3)
    _policy(store, 30)
    whole = retention.place_hold(store=store, redactor=Redactor(), org_id="acme",
                                 actor=OWNER, name="Audit 2026", reason="regulator's request")
    assert _purge(store) == []
    retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         name="June 2020", reason="litigation",
                         occurred_from="2020-05-01T00:00:00Z", occurred_to="2020-07-01T00:00:00Z")
    retention.release_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                           hold_id=whole.id)
    with pytest.raises(Conflict, match="was released"):
        retention.release_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                               hold_id=whole.id)
    steps = _purge(store)
    assert _retention(store).pruned_before == 400  # June 2020 starts at 400
    assert steps[0].stop == 400
    assert _actions(store)[-5:] == ["retention.changed", "legal_hold.placed",
                                    "legal_hold.placed", "legal_hold.released",
                                    "audit_log.purged"]


def test_a_hold_placed_while_a_purge_is_under_way_stops_it_at_the_first_held_event(store):
    _org(store)
    _batch(store, 1000, days_ago=100, seed=1, occurred="2020-01-01T00:00:00Z")
    _batch(store, 500, days_ago=99, seed=2, occurred="2020-06-01T00:00:00Z")
    _policy(store, 30)
    checkpoint.sign_latest(store=store, signer=SIGNER, host=HOST, org_id="acme")
    ordered = retention.purge_step(store=store, redactor=Redactor(), org_id="acme", now=NOW,
                                   batch=500)
    assert ordered is not None and (ordered.start, ordered.stop) == (0, 1500)
    first = retention.purge_step(store=store, redactor=Redactor(), org_id="acme", now=NOW,
                                 batch=500)
    assert first is not None and (first.start, first.stop) == (0, 500)
    retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         name="June", reason="litigation",
                         occurred_from="2020-05-01T00:00:00Z")
    _purge(store, batch=500)
    row = _retention(store)
    assert (row.pruned_before, row.purge_to) == (1000, 1000)
    assert store.iter_events_by_index("acme", 0, 2000).__next__().index == 1000


def _count(store: Store, q: str) -> int:
    flt = build_filter(org_id="acme", q=q, range_preset="custom", start="2000-01-01T00:00:00Z")
    return count_events(store=store, flt=flt)


def _zebras(store: Store, count: int, days_ago: float, marker: str) -> None:
    received = NOW - int(days_ago * DAY_US)
    raw = [event(description=f"zebra {marker} {n}", occurred_at=times.format_rfc3339(
        received - 10**6)) for n in range(count)]
    ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor(),
           received_at_us=received)


def test_purged_events_leave_the_search_index_and_it_still_finds_the_rest(store):
    _org(store)
    _zebras(store, 300, days_ago=100, marker="old")
    _zebras(store, 200, days_ago=1, marker="new")
    assert (_count(store, "zebra"), _count(store, "old"), _count(store, "actor:usr_1")) == (
        500, 300, 500)
    _policy(store, 30)
    _purge(store, batch=128)
    assert (_count(store, "zebra"), _count(store, "old"), _count(store, "actor:usr_1")) == (
        200, 0, 200)
    _zebras(store, 50, days_ago=0, marker="newer")
    assert (_count(store, "zebra"), _count(store, "newer")) == (250, 50)
    page = find_events(store=store, flt=build_filter(org_id="acme", q="zebra",
                                                     range_preset="custom",
                                                     start="2000-01-01T00:00:00Z"))
    assert all("old" not in orjson.loads(e.doc)["description"] for e in page.events)
    if store.url.startswith("sqlite:"):  # type: ignore[attr-defined]
        with Tamper(store) as tamper:  # the index's own check of its structure
            (table,) = tamper.execute("SELECT 'events_fts_' || num FROM orgs")[0]
            tamper.execute(f"INSERT INTO {table} ({table}) VALUES ('integrity-check')")


def test_a_copy_of_a_purged_log_keeps_its_policy_holds_and_retained_events(store, tmp_path):
    _org(store)
    _batch(store, 300, days_ago=100, seed=1)
    _batch(store, 200, days_ago=1, seed=2)
    _policy(store, 30, lock=True)
    retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         name="Audit", reason="regulator", occurred_from="2000-01-01T00:00:00Z",
                         occurred_to="2001-01-01T00:00:00Z")
    _purge(store)
    target = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        copied = copying.copy_deployment(source=store, target=target)
        assert (copied["retention"], copied["legal holds"], copied["events"]) == (
            1, 1, store.log_head("acme").size - 300)
        assert target.get_retention("acme") == _retention(store)
        assert target.list_holds("acme") == store.list_holds("acme")
        size = store.log_head("acme").size
        assert [d.doc for d in target.iter_events_by_index("acme", 0, size)] == [
            d.doc for d in store.iter_events_by_index("acme", 0, size)]
        assert target.row_counts() == store.row_counts()
    finally:
        target.close()


@pytest.fixture
def pruned_log(tenant, store, app):
    """acme's log of 700 events received 100 days ago and 300 since, the first 700 purged
    under a 30-day policy; and a function that verifies it as `sealog verify` does."""
    _batch(store, 700, days_ago=100, seed=1)
    _batch(store, 300, days_ago=1, seed=2)
    _policy(store, 30)
    _purge(store, signer=app.state.signer, host="sealog.local")
    return lambda: verify_online(app, tenant.secret)


def test_verify_names_the_pruned_prefix_apart_from_valid_events(pruned_log, store):
    report = pruned_log()
    size = store.log_head("acme").size
    assert report.ok, report.text()
    assert (report.total, report.valid, report.pruned) == (size, size - 700, 700)
    assert ("700 events pruned under the retention policy (indexes 0–699, purge recorded "
            f"at index {size - 1})") in report.text()
    assert f"{size - 700}/{size - 700} retained events valid, 700 pruned of {size}" in \
        report.text()


def test_a_retained_event_deleted_by_hand_is_still_missing(pruned_log, store):
    with Tamper(store) as tamper:
        tamper.delete_event("acme", 700)
        tamper.delete_event("acme", 850)
    report = pruned_log()
    assert [(f.kind, f.index) for f in report.failures] == [("missing", 700),
                                                            ("missing", 850)]
    assert report.pruned == 700 and not report.ok


def test_a_prefix_removed_beyond_what_the_purge_record_says_is_missing(pruned_log, store):
    with Tamper(store) as tamper:  # as if the purge had gone on, unrecorded
        for index in range(700, 800):
            tamper.delete_event("acme", index)
        tamper.execute("UPDATE retention SET pruned_before = 800, purge_to = 800")
    report = pruned_log()
    assert [(f.kind, f.index) for f in report.failures] == [("missing", 0)]
    assert "no purge record of the retention policy explains" in report.text()
    assert report.pruned == 0 and not report.ok


def test_a_purge_record_sent_by_a_client_explains_nothing(tenant, store, app):
    forged = event(action="audit_log.purged", category="system_events",
                   metadata={"retained_from_index": 1})
    tenant.client.post("/api/v1/events", json={"events": [forged]}).raise_for_status()
    _batch(store, 200, days_ago=0)
    with Tamper(store) as tamper:  # event 0 gone, as if purged, explained by the forgery
        tamper.execute("INSERT INTO retention (org_id, pruned_before, purge_to, updated_at) "
                       "VALUES ('acme', 1, 1, 1)")
        tamper.delete_event("acme", 0)
    report = verify_online(app, tenant.secret)
    assert [(f.kind, f.index) for f in report.failures] == [("missing", 0)]


def _browser(app) -> TestClient:
    return TestClient(app)


def test_the_api_shows_the_policy_to_readers_and_lets_owners_alone_change_it(
        app, store, tenant):
    for role in ("owner", "admin"):
        auth.create_user(store=store, org_id="acme", email=f"{role}@acme.com", role=role,
                         password=PASSWORD)
    owner, admin = _browser(app), _browser(app)
    sign_in(owner, "owner@acme.com")
    sign_in(admin, "admin@acme.com")
    shown = tenant.client.get("/api/v1/retention").json()
    assert (shown["days"], shown["locked"], shown["retained_from_index"], shown["holds"]) == (
        None, False, 0, [])

    r = admin.put("/api/v1/retention", json={"days": 90})
    assert r.status_code == 403 and "only an owner" in r.json()["detail"]
    r = tenant.client.put("/api/v1/retention", json={"days": 90})  # no API key may
    assert r.status_code == 403 and "no API key may" in r.json()["detail"]
    r = owner.put("/api/v1/retention", json={"days": 0})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "days"
    r = owner.put("/api/v1/retention", json={"days": 90, "lock": True})
    assert r.status_code == 200 and (r.json()["days"], r.json()["locked"]) == (90, True)
    r = owner.put("/api/v1/retention", json={"days": 30})
    assert r.status_code == 409 and "can only be lengthened" in r.json()["detail"]

    r = owner.post("/api/v1/legal-holds", json={"name": "Case 12", "reason": "litigation",
                                                "from": "2026-01-01T00:00:00Z",
                                                "to": "not a time"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "to"
    r = owner.post("/api/v1/legal-holds", json={"name": "Case 12", "reason": "litigation",
                                                "from": "2026-01-01T00:00:00Z"})
    assert r.status_code == 201, r.text
    hold = r.json()
    assert (hold["occurred_from"], hold["occurred_to"], hold["active"]) == (
        "2026-01-01T00:00:00.000000Z", None, True)
    assert admin.post(f"/api/v1/legal-holds/{hold['id']}/release").status_code == 403
    assert tenant.client.get("/api/v1/legal-holds").json()["data"] == [hold]
    r = owner.post(f"/api/v1/legal-holds/{hold['id']}/release")
    assert r.status_code == 200 and r.json()["active"] is False
    assert owner.post(f"/api/v1/legal-holds/{hold['id']}/release").status_code == 409
    assert owner.post("/api/v1/legal-holds/hold_nope/release").status_code == 404
    actions = [e["action"] for e in tenant.client.get(
        "/api/v1/events", params={"q": "category:user_actions"}).json()["data"]]
    assert actions == ["legal_hold.released", "legal_hold.placed", "retention.changed"]


def test_proofs_that_need_the_pruned_part_are_gone_and_say_what_is_still_proven(
        pruned_log, store, tenant):
    size = store.log_head("acme").size
    r = tenant.client.get("/api/v1/log/proof/inclusion", params={"index": 699})
    assert r.status_code == 410 and r.json()["detail"] == (
        "the event at index 699 was removed under the retention policy (the log is "
        "retained from index 700)")
    r = tenant.client.get("/api/v1/log/proof/consistency", params={"from": 500, "to": size})
    assert r.status_code == 410 and "500 is not one" in r.json()["detail"]
    assert tenant.client.get("/api/v1/log/proof/inclusion",
                             params={"index": 700}).status_code == 200
    assert tenant.client.get("/api/v1/log/proof/consistency",
                             params={"from": 700, "to": size}).status_code == 200


def test_a_purge_removes_only_what_a_signed_checkpoint_covers(store):
    _org(store)
    _batch(store, 600, days_ago=100, seed=1)
    checkpoint.sign_latest(store=store, signer=SIGNER, host=HOST, org_id="acme")
    _batch(store, 400, days_ago=99, seed=2)
    _policy(store, 30)
    steps = retention.purge(store=store, redactor=Redactor(), org_id="acme", now=NOW)
    assert (steps[0].start, steps[0].stop) == (0, 600)  # the 400 after await a checkpoint
    assert _retention(store).pruned_before == 600
    steps = _purge(store)  # signs first
    assert (steps[0].start, steps[0].stop) == (600, 1000)
    # In transactions of the backend's size: SQLite's one writer takes fewer at a time.
    assert [s.stop - s.start for s in steps[1:]] == {250: [250, 150], 1000: [400]}[
        store.purge_batch]


class _StaleReads:
    """The store as a signer saw it before a purge: its first reads of the latest
    checkpoint and the log head give what they were then."""

    def __init__(self, store: Store, last, head):
        self._store, self._last, self._head = store, [last], [head]

    def latest_checkpoint(self, org_id):
        return self._last.pop() if self._last else self._store.latest_checkpoint(org_id)

    def log_head(self, org_id):
        return self._head.pop() if self._head else self._store.log_head(org_id)

    def __getattr__(self, name):
        return getattr(self._store, name)


def test_a_signer_whose_reads_a_purge_overtook_signs_from_the_newer_checkpoint(store):
    _org(store)
    _batch(store, 300, days_ago=100, seed=1)
    first = checkpoint.sign_latest(store=store, signer=SIGNER, host=HOST, org_id="acme")
    _batch(store, 150, days_ago=100, seed=2)
    stale_head = store.log_head("acme")  # 450 events, never signed
    _batch(store, 150, days_ago=100, seed=3)
    _batch(store, 100, days_ago=1, seed=4)
    _policy(store, 30)
    _purge(store)  # signs 701, removes the 600 old events and the nodes of size 450
    latest = store.latest_checkpoint("acme")
    assert latest is not None and _retention(store).pruned_before == 600
    signed = checkpoint.sign_latest(store=_StaleReads(store, first, stale_head),
                                    signer=SIGNER, host=HOST, org_id="acme")
    assert signed.size == store.log_head("acme").size > latest.size


def test_a_window_reaching_before_the_retained_events_says_they_were_removed(
        pruned_log, tenant):
    r = tenant.client.get("/api/v1/events", params={"range": "custom",
                                                    "from": "2000-01-01T00:00:00Z"})
    assert r.json()["retained_from"] == {
        "index": 700, "received_at": times.format_rfc3339(NOW - DAY_US), "policy_days": 30}
    recent = times.format_rfc3339(NOW - DAY_US // 2)
    r = tenant.client.get("/api/v1/events", params={"range": "custom", "from": recent})
    assert r.json()["retained_from"] is None


def test_the_command_line_sets_shows_holds_and_purges(capsys, store, store_url, tmp_path,
                                                      monkeypatch):
    """`sealog retention` and `sealog holds` over the same functions as the API, each change
    an audit event of the operator's; a refused setting exits 2 naming it."""
    monkeypatch.setenv("SEALOG_RETENTION_MIN_DAYS", "30")
    db = ["--database-url", store_url, "--data-dir", str(tmp_path / "data")]
    _org(store)
    _batch(store, 400, days_ago=100, seed=1, occurred="2020-01-01T00:00:00Z")
    _batch(store, 100, days_ago=1, seed=2)

    code, _, err = run(capsys, "retention", "set", "--org", "acme", "--days", "7", *db)
    assert code == 2 and "days: at least 30" in err
    code, out, _ = run(capsys, "retention", "set", "--org", "acme", "--days", "60", *db)
    assert code == 0 and "Policy: 60 days (the deployment keeps at least 30 days)" in out
    code, out, _ = run(capsys, "holds", "place", "--org", "acme", "--name", "Case 12",
                       "--reason", "litigation", "--from", "2019-01-01T00:00:00Z", "--to",
                       "2021-01-01T00:00:00Z", "--json", *db)
    assert code == 0
    hold = json.loads(out)
    code, out, _ = run(capsys, "retention", "purge", "--org", "acme", *db)
    assert code == 0 and out.startswith("Removed 0 events of org acme.")
    assert f"Legal hold {hold['id']} \"Case 12\" on events that occurred from " in out
    code, out, _ = run(capsys, "holds", "release", "--org", "acme", hold["id"], *db)
    assert code == 0 and f"Released legal hold {hold['id']}." in out
    code, out, _ = run(capsys, "retention", "purge", "--org", "acme", "--json", *db)
    assert code == 0 and json.loads(out)["removed"] == 400
    assert json.loads(out)["retained_from_index"] == 400
    code, out, _ = run(capsys, "holds", "list", "--org", "acme", *db)
    assert code == 0 and "released\tCase 12" in out
    code, out, _ = run(capsys, "retention", "show", "--org", "acme", *db)
    assert "Removed under the policy: indexes 0-399" in out
    actors = {orjson.loads(d.doc)["actor"]["id"] for d in store.iter_events_by_index(
        "acme", 500, store.log_head("acme").size)}
    assert actors == {"sealog-cli", "sealog"}


def test_a_worker_killed_mid_purge_leaves_what_verify_explains_and_another_finishes(
        tenant, store, store_url, app, tmp_path):
    """`sealog worker` purges in transactions of 100 events; SIGKILLed half-way, the log is
    what verify explains (the removed part pruned, the rest valid); a worker started after
    finishes the purge."""
    for seed in range(5):
        _batch(store, 1000, days_ago=100 - seed, seed=seed)
    _batch(store, 100, days_ago=1, seed=9)
    _policy(store, 30)
    command = [sys.executable, "-m", "sealog", "worker", "--data-dir", str(tmp_path / "data")]
    env = {**os.environ, "SEALOG_DATABASE_URL": store_url, "SEALOG_EXPORT_WORKERS": "0",
           "SEALOG_STREAM_WORKERS": "0", "SEALOG_PURGE_INTERVAL_SECONDS": "1",
           "SEALOG_PURGE_BATCH": "100"}
    first = subprocess.Popen(command, env=env)
    try:
        wait_for(lambda: 0 < _retention(store).pruned_before, 60, "the purge to begin")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        first.kill()
    row = _retention(store)
    assert 0 < row.pruned_before < row.purge_to == 5000, row
    report = verify_online(app, tenant.secret)
    assert report.ok and report.pruned == row.pruned_before, report.text()
    assert "the purge it ordered reaches 4999" in report.text()

    second = subprocess.Popen(command, env=env)
    try:
        wait_for(lambda: _retention(store).pruned_before == 5000, 120, "the purge to end")
    finally:
        second.terminate()
        second.wait(30)
    report = verify_online(app, tenant.secret)
    assert report.ok and report.pruned == 5000, report.text()
    assert report.valid == store.log_head("acme").size - 5000


@pytest.mark.backends("postgresql")
def test_a_month_partition_emptied_by_a_purge_is_dropped(tenant, store, app):
    old = NOW - 150 * DAY_US
    store.prepare_for_events(received_from=old, received_until=NOW)
    _batch(store, 500, days_ago=150, seed=1)
    _batch(store, 100, days_ago=1, seed=2)
    year, month = partitions.month_of(old)
    names = [partitions.partition_name(t, (year, month)) for t in ("events", "event_docs")]

    def existing() -> list[str]:
        with Tamper(store) as tamper:
            return [n for n in names
                    if tamper.execute("SELECT to_regclass(?) IS NOT NULL", n)[0][0]]

    assert existing() == names
    _policy(store, 30)
    _purge(store, signer=app.state.signer, host="sealog.local")
    assert existing() == []
    report = verify_online(app, tenant.secret)
    assert report.ok and report.pruned == 500, report.text()


def _tree_bytes(store: Store) -> int:
    """The tree's table and its index on disk."""
    with Tamper(store) as tamper:
        if tamper.postgres:
            return tamper.execute("SELECT pg_total_relation_size('tree_nodes')")[0][0]
        return tamper.execute("SELECT sum(pgsize) FROM dbstat WHERE name = 'tree_nodes' "
                              "OR name LIKE 'sqlite_autoindex_tree_nodes%'")[0][0]


def test_the_tree_nodes_a_purge_deletes_leave_room_that_the_next_events_take(tenant, store):
    """Refilling what a purge removed does not grow the tree: on PostgreSQL its rows and the
    index pages they emptied are reusable as the purge ends, not at autovacuum's whim."""
    for k in range(20):
        _batch(store, 1000, days_ago=100 - k / 10, seed=k)
    built = _tree_bytes(store)
    _policy(store, 30)
    _purge(store)
    assert _retention(store).pruned_before == 20_000
    for k in range(20):
        _batch(store, 1000, days_ago=1 - k / 100, seed=100 + k)
    assert _tree_bytes(store) <= built * 1.03, (built, _tree_bytes(store))


def _tree_vacuums(store: Store) -> int:
    """How many times the tree's table was vacuumed by hand (PostgreSQL)."""
    with Tamper(store) as tamper:
        return tamper.execute("SELECT pg_stat_get_vacuum_count('tree_nodes'::regclass)")[0][0]


@pytest.mark.backends("postgresql")
def test_a_purge_of_a_small_part_of_the_tree_leaves_its_vacuum_to_autovacuum(tenant, store):
    """Vacuuming reads the tree's whole index: purges that deleted under a tenth of the
    tree do not; once they deleted more, the purge as it ends does, once."""
    _batch(store, 100, days_ago=100, seed=1)
    for k in range(5):
        _batch(store, 1000, days_ago=50 - k, seed=2 + k)
    with Tamper(store) as tamper:
        tamper.execute("ANALYZE tree_nodes")
    _policy(store, 60)
    _purge(store)
    assert _retention(store).pruned_before == 100
    assert _tree_vacuums(store) == 0
    _policy(store, 30)
    _purge(store)
    assert _retention(store).pruned_before == 5100
    assert _tree_vacuums(store) == 2


@pytest.mark.backends("postgresql")
def test_a_tree_vacuum_that_cannot_run_is_logged_and_the_purge_stands(tenant, store,
                                                                       caplog):
    """A purge is not undone, nor its round failed, by the vacuum after it: one kept
    waiting for a lock on the tree's table gives up, and the next purge vacuums."""
    caplog.set_level(logging.WARNING, logger="sealog.store")
    for k in range(4):
        _batch(store, 500, days_ago=100 - k, seed=k)
    _batch(store, 500, days_ago=50, seed=8)
    _batch(store, 500, days_ago=1, seed=9)
    with Tamper(store) as holder:
        holder.execute("BEGIN")
        holder.execute("LOCK TABLE tree_nodes IN SHARE UPDATE EXCLUSIVE MODE")
        _policy(store, 60)
        _purge(store)
        holder.execute("ROLLBACK")
    assert _retention(store).pruned_before == 2000
    assert "vacuuming the tree after a purge failed" in caplog.text
    assert "lock timeout" in caplog.text
    _policy(store, 30)
    _purge(store)
    assert _retention(store).pruned_before == 2500
    assert _tree_vacuums(store) == 2


def test_a_complete_bundle_of_a_pruned_log_verifies_offline_naming_the_pruned_part(
        pruned_log, store, app, tmp_path):
    signed = checkpoint.sign_latest(store=store, signer=app.state.signer,
                                    host="sealog.local", org_id="acme")
    path = tmp_path / "all.jsonl"
    with path.open("wb") as out:
        written = export.write_bundle(out, store=store, org_id="acme", host="sealog.local",
                                      signed=signed)
    assert written == signed.size - 700
    header = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["pruned"]["retained_from_index"] == 700
    report = audit.verify_bundle_file(path, [app.state.signer.verifier])
    assert report.ok and (report.pruned, report.valid) == (700, signed.size - 700), \
        report.text()
    assert "700 events pruned under the retention policy" in report.text()
    lines = path.read_bytes().split(b"\n")
    lines.pop(3)  # an event gone from the file: missing, pruned or not
    path.write_bytes(b"\n".join(lines))
    report = audit.verify_bundle_file(path, [app.state.signer.verifier])
    assert not report.ok and ("missing", 702) in [(f.kind, f.index) for f in report.failures]


@pytest.mark.parametrize("format", ["csv", "xlsx"])
def test_an_export_reaching_before_the_retained_events_says_they_were_removed(
        pruned_log, store, tmp_path, format):
    import csv

    import openpyxl

    from sealog.exports import jobs

    def written(start: str) -> tuple[int, list[list[str]]]:
        flt = build_filter(org_id="acme", range_preset="custom", start=start)
        path = tmp_path / f"{start[:10]}.{format}"
        count = jobs.write_file(store=store, org_id="acme", format=format, flt=flt,
                                path=path, signer=None, host=HOST, selection={})
        if format == "csv":
            with path.open(encoding="utf-8-sig", newline="") as f:
                return count, list(csv.reader(f))
        book = openpyxl.load_workbook(path, read_only=True)
        try:
            return count, [[str(c) for c in row if c is not None]
                           for row in book.active.iter_rows(values_only=True)]
        finally:
            book.close()

    kept = store.log_head("acme").size - 700
    count, rows = written("2000-01-01T00:00:00Z")
    first_kept = orjson.loads(next(iter(store.iter_events_by_index("acme", 700, 701))).doc)
    notice = (f"Note: the events before index 700, received before "
              f"{first_kept['received_at']}, were removed under the organization's "
              "retention policy of 30 days; this file holds the events kept.")
    assert count == kept
    if format == "csv":
        assert rows[0][0] == "Timestamp" and rows[-1] == [notice] and len(rows) == kept + 2
    else:
        assert notice in rows[0] and len(rows) == kept + 1
    # A window from the first kept event's receipt on says nothing of it (it holds the
    # policy change and the purge record).
    count, rows = written(first_kept["received_at"])
    assert count == 2 and not any("Note:" in cell for row in rows for cell in row)


@pytest.mark.backends("sqlite")
def test_a_purge_of_a_quarter_or_more_merges_the_full_text_index_and_frees_its_pages(
        tenant, store):
    """FTS5 keeps a deleted entry, and a delete entry beside it, until the segments holding
    them merge: a purge that removed a quarter of the kept events or more merges the org's
    index, which then holds only what the kept events need; searches answer as before."""
    for k in range(5):  # 3,000 received 100 days ago, 2,000 a day ago
        _batch(store, 1000, days_ago=100 - k / 100 if k < 3 else 1 - k / 100, seed=k)

    def index_bytes() -> int:
        with Tamper(store) as tamper:
            ((data,),) = tamper.execute("SELECT name FROM sqlite_master WHERE name LIKE "
                                        "'events_fts_%_data'")
            return tamper.execute(f"SELECT sum(length(block)) FROM {data}")[0][0]

    def deleted() -> list[tuple]:
        with Tamper(store) as tamper:
            return tamper.execute("SELECT org_id, deleted FROM fts_deleted")

    def counts() -> list[int]:
        return [count_events(store=store, flt=build_filter(
            org_id="acme", q=q, range_preset="custom",
            start=times.format_rfc3339(NOW - 2 * DAY_US)))
            for q in ("agent", "deploy*", "category:security_events", "-result:success")]

    recent = counts()
    built = index_bytes()
    _policy(store, 30)
    _purge(store, batch=500)
    assert _retention(store).pruned_before == 3000
    assert index_bytes() < built * 0.55, (built, index_bytes())  # 2,002 of 5,002 kept
    assert counts() == recent and recent[0] > 0
    assert deleted() == []

    # Fewer than a quarter of the kept events deleted since: no merge yet, they are counted.
    for k in range(9):
        _batch(store, 1000, days_ago=0.5 - k / 100, seed=10 + k)
    before = index_bytes()
    retention.purge(store=store, redactor=Redactor(), org_id="acme", now=NOW + 59 * DAY_US // 2,
                    batch=500)
    assert _retention(store).pruned_before == 5000
    assert deleted() == [("acme", 2000)] and index_bytes() >= before


@pytest.mark.backends("sqlite")
def test_a_purge_that_leaves_few_events_indexes_them_again(tenant, store):
    """A merge would read everything deleted in one step, writing nothing: an org left
    with few events gets an index of those alone, in one short transaction."""
    _batch(store, 1000, days_ago=100, seed=1)
    _batch(store, 1000, days_ago=99, seed=2)
    _batch(store, 10, days_ago=1, seed=3)
    flt = build_filter(org_id="acme", range_preset="custom",
                       start=times.format_rfc3339(NOW - 2 * DAY_US))
    queries = ("agent", "deploy*", "category:security_events", "-result:success")

    def counts() -> list[int]:
        return [count_events(store=store, flt=dataclasses.replace(
            flt, query=search.parse_query(q))) for q in queries]

    def index_bytes() -> int:
        with Tamper(store) as tamper:
            ((data,),) = tamper.execute("SELECT name FROM sqlite_master WHERE name LIKE "
                                        "'events_fts_%_data'")
            return tamper.execute(f"SELECT sum(length(block)) FROM {data}")[0][0]

    recent, built = counts(), index_bytes()
    _policy(store, 30)
    _purge(store)
    assert _retention(store).pruned_before == 2000
    assert index_bytes() < built / 20, (built, index_bytes())  # the old one dropped
    with Tamper(store) as tamper:
        assert tamper.execute("SELECT count(*) FROM fts_retired") == [(0,)]
    assert counts() == recent
    every = build_filter(org_id="acme", range_preset="custom", start="2000-01-01T00:00:00Z")
    assert count_events(store=store, flt=dataclasses.replace(
        every, query=search.parse_query("audit_log.purged"))) == 1
