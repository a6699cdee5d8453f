"""The store's rows other than events, on each backend: users, API keys, sessions, sign-in
attempts and export jobs round trip alike, a taken key is the same Conflict, and what many
writers do at once (claiming jobs, counting attempts, the owner rule) stays right."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest

from sealog import auth, times
from sealog.events import Redactor
from sealog.ingest import ingest
from sealog.search import build_filter
from sealog.store import Conflict, NotFound, StorageFull, Store, Unavailable, open_store
from sealog.store.base import ExportRow, SessionRow, UserRow
from sealog.store.postgres.store import DEFAULT_POOL_SIZE, split_url

from conftest import all_at_once, event, fill_disk

PASSWORD = "correct horse battery"
WORKERS = 4


@pytest.fixture
def stores(store_url: str) -> Iterator[list[Store]]:
    """WORKERS stores open on one database, as that many server processes would be, in an
    org "acme"."""
    opened = [open_store(store_url) for _ in range(WORKERS)]
    try:
        auth.create_org(store=opened[0], name="Acme", org_id="acme")
        yield opened
    finally:
        for store in opened:
            store.close()


@pytest.fixture
def store(stores: list[Store]) -> Store:
    return stores[0]


def _user(store: Store, email: str, role: str = "admin", org_id: str = "acme") -> UserRow:
    return auth.create_user(store=store, org_id=org_id, email=email, role=role,
                            password=PASSWORD)


def _session(user: UserRow, session_id: str) -> SessionRow:
    return SessionRow(id=session_id, user_id=user.id, csrf_token="csrf", created_at=1_000,
                      expires_at=2_000, revoked_at=None)


def _token(n: int) -> bytes:
    return bytes([n]) * 32


def _export(export_id: str, *, org_id: str = "acme", created_at: int | None = None
            ) -> ExportRow:
    return ExportRow(
        id=export_id, org_id=org_id, name="x", format="csv", params="{}", snapshot_size=3,
        status="queued", progress=0.0, row_count=None, size_bytes=None, sha256=None,
        error=None, created_by=None,
        created_at=times.now_us() if created_at is None else created_at, started_at=None,
        finished_at=None, expires_at=None, lease_owner=None, lease_expires_at=None,
        attempts=0, file_path=None,
    )


def test_orgs_and_log_keys_round_trip(store):
    globex = auth.create_org(store=store, name="Globex", org_id="globex")
    assert store.get_org("globex") == globex
    assert [o.id for o in store.list_orgs()] == ["acme", "globex"]
    head = store.log_head("globex")
    assert (head.size, head.compact_range) == (0, ())
    with pytest.raises(NotFound):
        store.get_org("initech")
    with pytest.raises(NotFound):
        store.log_head("initech")
    store.add_log_key("vkey-a", 10)
    store.add_log_key("vkey-a", 11)  # known: no change
    store.add_log_key("vkey-b", 20)
    store.retire_log_key("vkey-a", 30)
    store.retire_log_key("vkey-a", 40)  # retired once
    assert store.log_keys() == [("vkey-a", 10, 30), ("vkey-b", 20, None)]


def test_users_round_trip_and_removal_frees_the_email_and_ends_sessions(store):
    first = _user(store, "a@acme.com", role="owner")
    second = _user(store, "b@acme.com")
    assert store.get_user(first.id) == first
    assert store.user_with_email("acme", "b@acme.com") == second
    assert [u.id for u in store.list_users("acme")] == [first.id, second.id]
    with store.writing() as tx:
        assert tx.get_user(second.id) == second
        assert [u.id for u in tx.lock_members("acme")] == [first.id, second.id]
        assert tx.set_user_role(org_id="acme", user_id=second.id, role="auditor").role == \
            "auditor"
        tx.insert_session(_token(1), _session(second, "ses_1"))
    auth.create_org(store=store, name="Globex", org_id="globex")
    with pytest.raises(NotFound, match="does not exist in org 'globex'"):
        with store.writing() as tx:
            tx.set_user_role(org_id="globex", user_id=second.id, role="admin")
    with store.writing() as tx:
        removed = tx.remove_user(org_id="acme", user_id=second.id, at=123)
    assert (removed.id, removed.role) == (second.id, "auditor")
    assert store.get_user(second.id).removed_at == 123
    assert store.get_session(_token(1)).revoked_at == 123
    assert store.user_with_email("acme", "b@acme.com") is None
    assert [u.id for u in store.list_users("acme")] == [first.id]
    with pytest.raises(NotFound):
        with store.writing() as tx:
            tx.remove_user(org_id="acme", user_id=second.id, at=124)
    again = _user(store, "b@acme.com")  # a removed user's email may be taken again
    assert store.user_with_email("acme", "b@acme.com") == again


def test_api_keys_round_trip_and_revocation(store):
    maker = _user(store, "a@acme.com")
    mine = auth.create_api_key(store=store, org_id="acme", scopes=["events:read"],
                               created_by=maker.id)
    operators = auth.create_api_key(store=store, org_id="acme",
                                    scopes=["events:read", "events:write"])
    assert store.get_api_key(mine.row.id) == mine.row
    assert store.get_api_key(operators.row.id).scopes == ("events:read", "events:write")
    assert [k.id for k in store.list_api_keys("acme")] == [mine.row.id, operators.row.id]
    store.touch_api_key(mine.row.id, 77)
    assert store.get_api_key(mine.row.id).last_used_at == 77
    auth.create_org(store=store, name="Globex", org_id="globex")
    with pytest.raises(NotFound):
        store.revoke_api_key(org_id="globex", key_id=mine.row.id, at=1)
    with store.writing() as tx:
        (revoked,) = tx.revoke_api_keys_created_by(org_id="acme", user_id=maker.id, at=88)
        assert tx.revoke_api_keys_created_by(org_id="acme", user_id=maker.id, at=89) == []
    assert (revoked.id, revoked.revoked_at) == (mine.row.id, 88)
    assert store.revoke_api_key(org_id="acme", key_id=mine.row.id, at=99).revoked_at == 88
    assert store.revoke_api_key(org_id="acme", key_id=operators.row.id,
                                at=99).revoked_at == 99


def test_sessions_round_trip_and_revocation(store):
    user = _user(store, "a@acme.com")
    with store.writing() as tx:
        tx.insert_session(_token(1), _session(user, "ses_1"))
        tx.insert_session(_token(2), _session(user, "ses_2"))
    assert store.get_session(_token(1)) == _session(user, "ses_1")
    assert store.get_session(_token(3)) is None
    with store.writing() as tx:
        tx.revoke_session(_token(1), 50)
        tx.revoke_session(_token(1), 60)  # revoked once
    assert store.get_session(_token(1)).revoked_at == 50
    assert store.get_session(_token(2)).revoked_at is None


def test_taken_keys_are_conflicts_naming_them_across_orgs_too(store):
    auth.create_org(store=store, name="Globex", org_id="globex")
    key = auth.create_api_key(store=store, org_id="acme", scopes=["events:read"])
    with pytest.raises(Conflict, match=f"API key with id '{key.row.id}' already exists"):
        store.insert_api_key(replace(key.row, org_id="globex"))
    user = _user(store, "a@acme.com")
    _user(store, "a@acme.com", org_id="globex")  # an email is unique within its org
    with pytest.raises(Conflict, match="email 'a@acme.com' already exists in this org"):
        _user(store, "a@acme.com")
    with store.writing() as tx:
        tx.insert_session(_token(1), _session(user, "ses_1"))
    with pytest.raises(Conflict, match=r"session with this token or id \('ses_2'\)"):
        with store.writing() as tx:
            tx.insert_session(_token(1), _session(user, "ses_2"))
    with pytest.raises(Conflict, match=r"session with this token or id \('ses_1'\)"):
        with store.writing() as tx:
            tx.insert_session(_token(2), _session(user, "ses_1"))
    with pytest.raises(Conflict, match="the database refused the write"):
        with store.writing() as tx:  # a session of no user
            tx.insert_session(_token(3), replace(_session(user, "ses_3"), user_id="usr_no"))
    with store.writing() as tx:
        tx.insert_export(_export("exp_1"))
    with pytest.raises(Conflict, match="export with id 'exp_1' already exists"):
        with store.writing() as tx:
            tx.insert_export(_export("exp_1", org_id="globex"))
    assert store.get_export("globex", "exp_1") is None
    assert store.get_session(_token(2)) is None


def test_sign_in_failures_count_per_org_and_email_and_are_forgotten(store):
    assert [store.record_login_attempt("acme", "a@x.com", at, since=0)
            for at in (10, 20, 30)] == [0, 1, 2]
    assert store.record_login_attempt("globex", "a@x.com", 31, since=0) == 0
    assert store.record_login_attempt("acme", "b@x.com", 32, since=0) == 0
    # Failures before `since` no longer count, of this account or any other.
    assert store.record_login_attempt("acme", "a@x.com", 40, since=25) == 1
    assert store.record_login_attempt("acme", "b@x.com", 41, since=35) == 0
    assert store.record_login_attempt("globex", "a@x.com", 42, since=35) == 0
    assert store.record_login_attempt("acme", "a@x.com", 43, since=35) == 1
    store.clear_login_failures("acme", "a@x.com")  # and of no other org
    assert store.record_login_attempt("acme", "a@x.com", 50, since=0) == 0
    assert store.record_login_attempt("globex", "a@x.com", 51, since=0) == 1


def test_concurrent_sign_in_attempts_each_count_those_before_it(stores):
    for round_ in range(3):
        email = f"r{round_}@acme.com"
        outcomes = all_at_once([
            lambda s=s, email=email: s.record_login_attempt("acme", email, times.now_us(),
                                                          since=0)
            for s in stores for _ in range(2)
        ])
        assert sorted(outcomes) == list(range(2 * WORKERS)), outcomes  # type: ignore[type-var]


def test_owners_demoting_each_other_at_once_leave_the_org_an_owner(stores):
    """The owner rule checked over lock_members holds at commit with concurrent writers."""
    store = stores[0]
    owners = [_user(store, f"o{i}@acme.com", role="owner") for i in range(WORKERS)]

    def demote_another(worker: int) -> object:
        with stores[worker].writing() as tx:
            members = tx.lock_members("acme")
            if sum(u.role == "owner" for u in members) == 1:
                raise Conflict("the org's last owner cannot be demoted or removed")
            target = owners[(worker + 1) % WORKERS]
            return tx.set_user_role(org_id="acme", user_id=target.id, role="admin")

    for _ in range(5):
        all_at_once([lambda w=w: demote_another(w) for w in range(WORKERS)])
        kept = [u for u in store.list_users("acme") if u.role == "owner"]
        assert len(kept) >= 1
        for user in owners:
            with store.writing() as tx:
                tx.set_user_role(org_id="acme", user_id=user.id, role="owner")


def test_export_jobs_are_claimed_renewed_finished_and_expired(store):
    with store.writing() as tx:
        tx.insert_export(_export("exp_old", created_at=100))
        tx.insert_export(_export("exp_new", created_at=200))
    assert [r.id for r in store.list_exports("acme")] == ["exp_new", "exp_old"]
    claimed = store.claim_export(owner="w1", now=1_000, lease_us=500)
    assert (claimed.id, claimed.status, claimed.lease_owner, claimed.lease_expires_at,
            claimed.attempts, claimed.started_at) == ("exp_old", "running", "w1", 1_500, 1,
                                                      1_000)
    assert store.renew_export(export_id="exp_old", owner="w1", now=1_400, lease_us=500,
                              progress=0.5)
    assert not store.renew_export(export_id="exp_old", owner="w2", now=1_400, lease_us=500,
                                  progress=0.9)
    # w1's lease lapses: its job, the oldest, is taken over first, then the queued one.
    taken = store.claim_export(owner="w2", now=1_950, lease_us=500)
    assert (taken.id, taken.attempts, taken.started_at, taken.progress) == \
        ("exp_old", 2, 1_000, 0.0)
    assert store.claim_export(owner="w2", now=1_950, lease_us=500).id == "exp_new"
    assert store.claim_export(owner="w3", now=1_950, lease_us=500) is None
    assert not store.finish_export(export_id="exp_old", owner="w1", status="completed",
                                   finished_at=2_000)
    assert store.finish_export(export_id="exp_old", owner="w2", status="completed",
                               finished_at=2_000, row_count=3, size_bytes=10, sha256="ab",
                               expires_at=5_000, file_path="/x.csv")
    done = store.get_export("acme", "exp_old")
    assert (done.status, done.progress, done.row_count, done.expires_at, done.lease_owner) == \
        ("completed", 0.0, 3, 5_000, None)
    assert store.finish_export(export_id="exp_new", owner="w2", status="failed",
                               finished_at=2_000, progress=0.25, error="boom")
    assert store.get_export("acme", "exp_new").progress == 0.25
    assert store.expire_exports(4_999) == []
    assert [r.id for r in store.expire_exports(5_000)] == ["exp_old"]
    assert store.get_export("acme", "exp_old").status == "expired"


def test_an_export_is_cancelled_only_while_queued_or_running(store):
    with store.writing() as tx:
        tx.insert_export(_export("exp_1"))
        assert tx.lock_export("acme", "exp_1").status == "queued"
        assert tx.lock_export("acme", "exp_none") is None
    with store.writing() as tx:
        cancelled = tx.cancel_export(org_id="acme", export_id="exp_1", now=9)
    assert (cancelled.status, cancelled.finished_at) == ("cancelled", 9)
    with pytest.raises(Conflict, match="exp_1 is cancelled; only a queued or running"):
        with store.writing() as tx:
            tx.cancel_export(org_id="acme", export_id="exp_1", now=10)
    with pytest.raises(NotFound):
        with store.writing() as tx:
            tx.cancel_export(org_id="acme", export_id="exp_none", now=10)


def test_workers_claiming_at_once_never_take_the_same_job(stores):
    jobs = 6 * WORKERS
    with stores[0].writing() as tx:
        for n in range(jobs):
            tx.insert_export(_export(f"exp_{n:02}", created_at=n))

    def drain(worker: int) -> list[str]:
        claimed = []
        while (job := stores[worker].claim_export(owner=f"w{worker}", now=times.now_us(),
                                                  lease_us=10**9)) is not None:
            claimed.append(job.id)
        return claimed

    outcomes = all_at_once([lambda w=w: drain(w) for w in range(WORKERS)])
    claimed = [job for outcome in outcomes for job in outcome]  # type: ignore[union-attr]
    assert sorted(claimed) == [f"exp_{n:02}" for n in range(jobs)], outcomes
    assert {r.attempts for r in stores[0].list_exports("acme")} == {1}


def test_the_pool_size_comes_from_the_url_and_is_not_passed_on():
    assert split_url("postgresql://db/sealog?pool_size=3&sslmode=require") == \
        ("postgresql://db/sealog?sslmode=require", 3)
    assert split_url("postgres://db/sealog") == ("postgres://db/sealog", DEFAULT_POOL_SIZE)
    for bad in ("0", "x", "2.5"):
        with pytest.raises(ValueError, match="pool_size in the database URL"):
            split_url(f"postgresql://db/sealog?pool_size={bad}")
    with pytest.raises(ValueError, match="not a PostgreSQL URL"):
        split_url("sqlite:///x.db")


def test_a_store_of_one_connection_serves_reads_and_writes(postgres_url):
    store = open_store(f"{postgres_url}?pool_size=1")
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        user = _user(store, "a@acme.com")
        assert store.get_user(user.id) == user
    finally:
        store.close()
    with pytest.raises(RuntimeError, match="closed"):
        store.get_user(user.id)


def test_every_connection_of_the_store_runs_without_jit(postgres_url):
    """A server's JIT compiles a large search's plan in tens of milliseconds the search does
    not win back: the store turns it off on each connection it opens, for reads and writes."""
    store = open_store(f"{postgres_url}?pool_size=2")
    try:
        read = lambda: store._one("SELECT current_setting('jit'), pg_sleep(0.2)")  # noqa: E731
        settings = all_at_once([read, read])  # both connections of the pool at once
        with store.writing() as tx:
            settings.append(tx._one("SELECT current_setting('jit'), NULL"))
        assert [s[0] for s in settings] == ["off"] * 3
    finally:
        store.close()


def test_a_stream_read_ahead_gives_its_connection_back_and_passes_on_a_lost_one(postgres_url):
    """An export's read, fetched ahead on a thread of the store: dropped after a few rows it
    gives its connection back (a store of one connection reads again at once); the
    connection lost mid-read is the caller's Unavailable; read whole, every row in order."""
    store = open_store(f"{postgres_url}?pool_size=1")
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        for first in (0, 750):
            ingest(store=store, org_id="acme", redactor=Redactor(),
                   raw_events=[event(description=f"{n}") for n in range(first, first + 750)])
        flt = build_filter(org_id="acme", range_preset="24h")
        rows = store.iter_events_in_index_order(flt, batch=100)
        assert [next(rows).index for _ in range(5)] == [0, 1, 2, 3, 4]
        rows.close()
        assert store.log_head("acme").size == 1500  # the one connection is free again

        rows = store.iter_events_in_index_order(flt, batch=100)
        next(rows)
        with psycopg.connect(split_url(store.url)[0], autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                          "datname = current_database() AND pid <> pg_backend_pid()")
        with pytest.raises(Unavailable):
            for _ in rows:
                pass
        assert [d.index for d in store.iter_events_in_index_order(flt, batch=100)] == \
            list(range(1500))
    finally:
        store.close()


@pytest.fixture
def postgres_small_tablespace(postgres_url: str) -> Iterator[tuple[str, Path]]:
    """A tablespace (its name and folder) on an 8 MiB filesystem of its own (tmpfs, root to
    mount); skips unless the server runs here as the OS user postgres."""
    import psycopg

    try:
        server_user = pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("no OS user postgres: the server does not run on this machine")
    folder = Path(tempfile.mkdtemp(prefix="sealog-pg-disk-"))
    name = f"sealog_small_{os.getpid()}"  # tablespaces are the server's, not the database's
    folder.chmod(0o755)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o",
         f"size=8m,uid={server_user.pw_uid},gid={server_user.pw_gid},mode=0700",
         "tmpfs", str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.rmdir()
        pytest.skip(f"cannot mount a small filesystem: {mounted.stderr.strip()}")
    try:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            try:
                conn.execute(f"CREATE TABLESPACE {name} LOCATION '{folder}'")
            except psycopg.Error as exc:
                pytest.skip(f"the server cannot make a tablespace in {folder}: {exc}")
        try:
            yield name, folder
        finally:
            with psycopg.connect(postgres_url, autocommit=True) as conn:
                for (table,) in conn.execute(
                        "SELECT relname FROM pg_class WHERE reltablespace = "
                        "(SELECT oid FROM pg_tablespace WHERE spcname = %s) "
                        "AND relkind = 'r'", (name,)).fetchall():
                    conn.execute(f"ALTER TABLE {table} SET TABLESPACE pg_default")
                conn.execute(f"DROP TABLESPACE {name}")
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)
        folder.rmdir()


def test_a_full_disk_is_storage_full_and_the_write_succeeds_once_space_is_freed(
        postgres_url, postgres_small_tablespace):
    import psycopg

    tablespace, folder = postgres_small_tablespace
    store = open_store(postgres_url)
    try:
        auth.create_org(store=store, name="Acme", org_id="acme")
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"ALTER TABLE exports SET TABLESPACE {tablespace}")
        ballast = fill_disk(folder)
        big = replace(_export("exp_big"), params=os.urandom(64 * 1024).hex())
        with pytest.raises(StorageFull, match="no room to write"):
            with store.writing() as tx:
                tx.insert_export(big)
        assert store.get_export("acme", "exp_big") is None
        ballast.unlink()
        with store.writing() as tx:
            tx.insert_export(big)
        assert store.get_export("acme", "exp_big") == big
    finally:
        store.close()


@pytest.mark.backends("postgresql")
def test_lost_connections_are_503s_and_the_app_recovers(store, tenant):
    """The database drops every connection (a restart, a failover): requests in the
    meantime are answered 503 with Retry-After, never 500, and each is whole or not at
    all; the pool then connects again and the same requests succeed."""
    import psycopg

    from sealog.store.postgres.store import split_url as conninfo_of

    from conftest import event

    with psycopg.connect(conninfo_of(store.url)[0], autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE "
                      "datname = current_database() AND pid <> pg_backend_pid()")
    answers = []
    for i in range(12):
        r = tenant.client.post("/api/v1/events", json={"events": [event(description=f"{i}")]})
        answers.append(r.status_code)
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and "send the request again" in r.text
    assert set(answers) <= {201, 503} and 503 in answers and answers[-1] == 201, answers
    stored = tenant.client.get("/api/v1/events/count", params={"range": "24h"}).json()
    assert stored["count"] == answers.count(201)
    assert tenant.client.get("/readyz").status_code == 200
