"""Upgrading a database written before a migration: nothing lost, nothing changed."""

from __future__ import annotations

import gzip
import shutil
import sqlite3
from pathlib import Path

import orjson
import pytest

from sealog import auth, times
from sealog.eventlog import count_events, find_events
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.ledger import merkle, tree
from sealog.search import build_filter
from sealog.store import open_store
from sealog.store.base import Conflict

# Written by Sealog at schema 0003 (events keyed by arrival, one full-text index for all
# orgs): 600 demo events in org acme, 42 in org globex.
OLD_DATABASE = Path(__file__).parent / "data" / "sealog-0003.db.gz"


def _old_copy(tmp_path: Path) -> Path:
    path = tmp_path / "sealog.db"
    with gzip.open(OLD_DATABASE) as src, path.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


def _old_events(path: Path) -> dict[str, tuple[str, bytes, bytes]]:
    with sqlite3.connect(path) as conn:
        return {r[0]: (r[1], r[2], r[3]) for r in conn.execute(
            "SELECT e.id, e.org_id, e.leaf_hash, d.doc FROM events e "
            "JOIN event_docs d ON d.seq = e.seq")}


def test_time_keys_migration_keeps_every_event_and_its_proofs(tmp_path):
    path = _old_copy(tmp_path)
    before = _old_events(path)
    assert len(before) == 642
    store = open_store(f"sqlite:///{path}")
    try:
        after = _old_events(path)
        assert after == before  # same documents, same leaf hashes, same orgs
        for org_id, size in (("acme", 600), ("globex", 42)):
            docs = list(store.iter_events_by_index(org_id, 0, size))
            assert [orjson.loads(d.doc)["index"] for d in docs] == list(range(size))
            leaves = [merkle.leaf_hash(d.doc) for d in docs]
            assert leaves == [d.leaf_hash for d in docs]
            assert merkle.root_of_leaves(leaves) == tree.head_root(store.log_head(org_id))

        # Search and counts run on the new per-org index, and agree with the documents.
        docs = [orjson.loads(d) for org, _, d in after.values() if org == "acme"]
        everything = {"range_preset": "custom", "start": "2000-01-01T00:00:00Z"}
        for q, wanted in (
            ("", lambda e: True),
            ("guard", lambda e: any(w.startswith("guard") for w in _words(e))),
            ("result:denied", lambda e: e["result"] == "denied"),
            ("action:policy.*", lambda e: e["action"].startswith("policy.")),
            ("-result:success", lambda e: e["result"] != "success"),
        ):
            flt = build_filter(org_id="acme", q=q, **everything)
            expected = sorted(
                (e for e in docs if wanted(e)),
                key=lambda e: (times.parse_rfc3339(e["occurred_at"]), e["id"]), reverse=True)
            assert count_events(store=store, flt=flt) == len(expected) > 0, q
            page = find_events(store=store, flt=flt, limit=50)
            assert [e.id for e in page.events] == [e["id"] for e in expected[:50]], q
        # Ingest goes on after the old events, at the next index.
        from sealog.events import Redactor
        from sealog.ingest import ingest

        accepted = ingest(store=store, org_id="globex", redactor=Redactor(),
                          raw_events=[{"action": "auth.login_succeeded", "result": "success",
                                       "actor": {"email": "dana@globex.example"}}])
        assert accepted[0].index == 42
        flt = build_filter(org_id="globex", q="dana", **everything)
        assert count_events(store=store, flt=flt) == 1
    finally:
        store.close()


def _words(doc: dict) -> list[str]:
    from sealog.search import search_words

    return search_words(doc)[0].split()


def _automerge_of_each_index(path: Path) -> dict[int, int | None]:
    with sqlite3.connect(path) as conn:
        return {
            num: (conn.execute(f"SELECT v FROM events_fts_{num}_config WHERE k = 'automerge'")
                  .fetchone() or (None,))[0]
            for (num,) in conn.execute("SELECT num FROM orgs")
        }


def test_every_org_index_merges_less_often_new_or_migrated(tmp_path):
    path = tmp_path / "sealog.db"
    store = open_store(f"sqlite:///{path}")
    auth.create_org(store=store, name="Acme", org_id="acme")
    auth.create_org(store=store, name="Globex", org_id="globex")
    store.close()
    assert _automerge_of_each_index(path) == {1: 8, 2: 8}

    # A database from before migration 0005: FTS5's default, and 0005 not yet applied.
    with sqlite3.connect(path) as conn:
        for num in (1, 2):
            conn.execute(f"DELETE FROM events_fts_{num}_config WHERE k = 'automerge'")
        conn.execute("DELETE FROM schema_migrations WHERE version = '0005_fts_automerge.sql'")
    assert _automerge_of_each_index(path) == {1: None, 2: None}
    open_store(f"sqlite:///{path}").close()
    assert _automerge_of_each_index(path) == {1: 8, 2: 8}


def test_the_time_keys_migration_builds_indexes_that_merge_less_often(tmp_path):
    path = _old_copy(tmp_path)
    open_store(f"sqlite:///{path}").close()
    assert _automerge_of_each_index(path) == {1: 8, 2: 8}


def test_a_key_stored_before_creators_were_recorded_keeps_working_as_the_operators(
        tmp_path):
    path = _old_copy(tmp_path)
    secret = "slg_key_old0_" + "s" * 43
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO api_keys (id, org_id, name, secret_hash, scopes, created_at) "
                     "VALUES ('key_old0', 'acme', 'old', ?, 'admin', 1)",
                     (auth._hash_secret(secret),))
    store = open_store(f"sqlite:///{path}")
    try:
        old = store.get_api_key("key_old0")
        assert old is not None and old.created_by is None and old.scopes == ("admin",)
        principal = auth.KeyAuthenticator(store).authenticate(secret)
        assert principal.key_creator is None and principal.scopes == {"admin"}
        admin = auth.create_user(store=store, org_id="acme", email="ana@acme.com",
                                 role="admin", password="correct horse battery")
        made = auth.create_api_key(store=store, org_id="acme", scopes=["events:read"],
                                   created_by=admin.id)
        assert store.get_api_key(made.row.id).created_by == admin.id
    finally:
        store.close()


def test_after_the_upgrade_an_email_may_belong_to_a_user_of_each_org(tmp_path):
    path = _old_copy(tmp_path)  # written when an email was unique across all orgs
    store = open_store(f"sqlite:///{path}")
    try:
        for org_id in ("acme", "globex"):
            auth.create_user(store=store, org_id=org_id, email="pat@example.com",
                             role="auditor", password=f"the {org_id} password")
        accounts = [store.user_with_email(org_id, "pat@example.com") for org_id in (
            "acme", "globex")]
        assert [u.org_id for u in accounts] == ["acme", "globex"]
        assert accounts[0].password_hash != accounts[1].password_hash
        with pytest.raises(Conflict, match="already exists in this org"):
            auth.create_user(store=store, org_id="acme", email="pat@example.com",
                             role="member", password="another password")
    finally:
        store.close()


def test_failed_sign_ins_before_the_upgrade_go_on_counting_in_the_org_of_their_email(
        tmp_path):
    """Counted per email before migration 0008, per org and email after it: an email's
    recent failures still count for its account, and for no other org's."""
    path = _old_copy(tmp_path)
    now = times.now_us()
    with sqlite3.connect(path) as conn:  # the schema of 0003, where an email had one account
        conn.execute("INSERT INTO users (id, org_id, email, name, role, password_hash, "
                     "created_at) VALUES ('usr_pat', 'acme', 'pat@example.com', 'Pat', "
                     "'auditor', ?, 1)", (auth._HASHER.hash("the old password"),))
        conn.executemany("INSERT INTO login_failures (email, at) VALUES (?, ?)",
                         [("pat@example.com", now - n) for n in range(4)]
                         + [("nobody@example.com", now)])
    store = open_store(f"sqlite:///{path}")
    try:
        since = now - 3600 * 10**6
        assert store.record_login_attempt("acme", "pat@example.com", now, since=since) == 4
        assert store.record_login_attempt("globex", "pat@example.com", now, since=since) == 0
        with sqlite3.connect(path) as conn:
            assert conn.execute("SELECT count(*) FROM login_failures WHERE email = ?",
                                ("nobody@example.com",)).fetchone() == (0,)
    finally:
        store.close()


def test_each_org_goes_on_from_the_received_at_of_its_newest_event_after_the_upgrade(
        tmp_path):
    """Migration 0009 gives each log head the received_at of its newest event, which the
    next batch may not go below."""
    path = _old_copy(tmp_path)
    store = open_store(f"sqlite:///{path}")
    try:
        newest = {}
        for org_id, size in (("acme", 600), ("globex", 42)):
            (doc,) = store.iter_events_by_index(org_id, size - 1, size)
            newest[org_id] = orjson.loads(doc.doc)["received_at"]
            assert store.log_head(org_id).last_received_us == times.parse_rfc3339(
                newest[org_id])
        earlier = times.parse_rfc3339(newest["globex"]) - 3600 * 10**6
        ingest(store=store, org_id="globex", raw_events=[{
            "action": "guardrail.created", "result": "success", "actor": {"id": "usr_1"}}],
               redactor=Redactor(), received_at_us=earlier)
        (added,) = store.iter_events_by_index("globex", 42, 43)
        assert orjson.loads(added.doc)["received_at"] == newest["globex"]
    finally:
        store.close()


_OPENER = """
import sys
from sealog.store import open_store
open_store(sys.argv[1]).close()
"""


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_apply_each_migration_once(tmp_path):
    import subprocess
    import sys

    for attempt in range(3):
        url = f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}"
        openers = [subprocess.Popen([sys.executable, "-c", _OPENER, url],
                                    stderr=subprocess.PIPE, text=True) for _ in range(4)]
        failures = [p.stderr.read() for p in openers if p.wait(timeout=120) != 0]
        for p in openers:
            p.stderr.close()
        assert not failures, failures[0]
        with sqlite3.connect(url.removeprefix("sqlite:///")) as conn:
            versions = [v for (v,) in conn.execute("SELECT version FROM schema_migrations")]
        assert len(versions) == len(set(versions)) >= 8
