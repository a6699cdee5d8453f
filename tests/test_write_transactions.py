"""The write transaction's contract, which every store backend keeps: a rule checked on the
rows a transaction locked still holds when it commits, a thread opens one transaction at a
time, and a write the database refuses is the store's Conflict."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import pytest

from sealog import auth, times
from sealog.events import Redactor
from sealog.store import Conflict, Store, open_store
from sealog.store.base import CheckpointRow, ExportRow, SessionRow, UserRow

from conftest import all_at_once

PASSWORD = "correct horse battery"
ROUNDS = 10
TOKEN_HASH = bytes(range(32))  # a session token's hash: 32 bytes
# Every change here records its audit event: on PostgreSQL too, the org row's lock.


@pytest.fixture
def two_stores(store_url: str) -> Iterator[tuple[Store, Store]]:
    """Two stores open on one database, as two server processes would be."""
    first, second = open_store(store_url), open_store(store_url)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _owner(store: Store, email: str) -> UserRow:
    return auth.create_user(store=store, org_id="acme", email=email, role="owner",
                            password=PASSWORD)


def _as(user: UserRow) -> auth.Principal:
    return auth.Principal(org_id=user.org_id, scopes=auth.ROLE_SCOPES[user.role], user=user)


def _one_refused_as_last_owner(outcomes: list[object]) -> None:
    """One change succeeded and the other was refused: as the last owner's, or, when the
    other was already demoted by then, as no longer an owner's."""
    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1, outcomes
    assert isinstance(refused[0], Conflict | auth.ScopeError), refused[0]
    assert "last owner" in str(refused[0]) or "no longer one" in str(refused[0])
    assert isinstance(next(o for o in outcomes if o is not refused[0]), UserRow)


def _owners(store: Store) -> list[UserRow]:
    return [u for u in store.list_users("acme") if u.role == "owner"]


def check_two_last_owners_demoted_at_once(here: Store, there: Store) -> None:
    """Each of the org's two owners demotes the other at the same moment, through a store of
    its own: one succeeds, the other is refused, and the org keeps an owner."""
    auth.create_org(store=here, name="Acme", org_id="acme")
    a, b = _owner(here, "a@acme.com"), _owner(here, "b@acme.com")
    for _ in range(ROUNDS):
        outcomes = all_at_once([
            partial(auth.change_role, store=here, redactor=Redactor(), by=_as(a),
                    user_id=b.id, role="admin"),
            partial(auth.change_role, store=there, redactor=Redactor(), by=_as(b),
                    user_id=a.id, role="admin"),
        ])
        _one_refused_as_last_owner(outcomes)
        (kept,) = _owners(here)
        demoted = b if kept.id == a.id else a
        auth.change_role(store=here, redactor=Redactor(), by=_as(kept), user_id=demoted.id,
                         role="owner")


def check_two_last_owners_removed_at_once(here: Store, there: Store) -> None:
    """As check_two_last_owners_demoted_at_once, each owner removing the other."""
    auth.create_org(store=here, name="Acme", org_id="acme")
    a = _owner(here, "a@acme.com")
    for round_ in range(ROUNDS):
        b = _owner(here, f"b{round_}@acme.com")
        outcomes = all_at_once([
            partial(auth.remove_member, store=here, redactor=Redactor(), by=_as(a),
                    user_id=b.id),
            partial(auth.remove_member, store=there, redactor=Redactor(), by=_as(b),
                    user_id=a.id),
        ])
        _one_refused_as_last_owner(outcomes)
        (a,) = _owners(here)


def test_two_last_owners_demoted_at_once_leave_the_org_an_owner(two_stores):
    check_two_last_owners_demoted_at_once(*two_stores)


def test_two_last_owners_removed_at_once_leave_the_org_an_owner(two_stores):
    check_two_last_owners_removed_at_once(*two_stores)


def test_a_write_transaction_opened_inside_another_on_one_thread_is_refused(two_stores):
    store, _ = two_stores
    auth.create_org(store=store, name="Acme", org_id="acme")
    with store.writing() as tx:
        with pytest.raises(RuntimeError, match="already has a write transaction open"):
            with store.writing():
                pass
        # What opens a transaction of its own is refused alike, rather than joining this one.
        with pytest.raises(RuntimeError, match="already has a write transaction open"):
            auth.create_user(store=store, org_id="acme", email="in@acme.com", role="auditor",
                             password=PASSWORD)
        tx.create_org(org_id="globex", name="Globex", created_at=times.now_us())
    assert [o.id for o in store.list_orgs()] == ["acme", "globex"]
    assert store.user_with_email("acme", "in@acme.com") is None
    auth.create_user(store=store, org_id="acme", email="in@acme.com", role="auditor",
                     password=PASSWORD)  # the thread may open one again


def _export_row(export_id: str) -> ExportRow:
    return ExportRow(
        id=export_id, org_id="acme", name="x", format="csv", params="{}", snapshot_size=0,
        status="queued", progress=0.0, row_count=None, size_bytes=None, sha256=None,
        error=None, created_by=None, created_at=times.now_us(), started_at=None,
        finished_at=None, expires_at=None, lease_owner=None, lease_expires_at=None,
        attempts=0, file_path=None,
    )


def test_a_duplicate_insert_is_the_stores_conflict_naming_what_is_taken(two_stores):
    store, _ = two_stores
    auth.create_org(store=store, name="Acme", org_id="acme")
    with pytest.raises(Conflict, match="org 'acme' already exists"):
        auth.create_org(store=store, name="Acme again", org_id="acme")
    key = auth.create_api_key(store=store, org_id="acme", scopes=["events:read"])
    with pytest.raises(Conflict, match=f"API key with id '{key.row.id}' already exists"):
        store.insert_api_key(key.row)
    user = auth.create_user(store=store, org_id="acme", email="a@acme.com", role="admin",
                            password=PASSWORD)
    with pytest.raises(Conflict, match="email 'a@acme.com' already exists in this org"):
        store.insert_user(user)
    session = SessionRow(id="ses_1", user_id=user.id, csrf_token="c",
                         created_at=times.now_us(), expires_at=times.now_us() + 10**9,
                         revoked_at=None)
    with store.writing() as tx:
        tx.insert_session(TOKEN_HASH, session)
    with pytest.raises(Conflict, match="session with this token or id .'ses_1'. already"):
        with store.writing() as tx:
            tx.insert_session(TOKEN_HASH, session)
    with store.writing() as tx:
        tx.insert_export(_export_row("exp_1"))
    # A refused write rolls back its whole transaction.
    with pytest.raises(Conflict, match="export with id 'exp_1' already exists"):
        with store.writing() as tx:
            tx.insert_export(_export_row("exp_2"))
            tx.insert_export(_export_row("exp_1"))
    assert [r.id for r in store.list_exports("acme")] == ["exp_1"]


def _synchronous(store: Store, tx) -> str:
    """How the transaction's commit waits for the disk, as its backend names it."""
    if store.url.startswith("postgresql://"):  # type: ignore[attr-defined]
        return tx.conn.execute("SHOW synchronous_commit").fetchone()[0]
    return {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
        tx.conn.execute("PRAGMA synchronous").fetchone()[0]]


def test_a_transaction_not_durable_commits_without_waiting_and_only_itself(two_stores):
    """durable=False commits without waiting for the disk, for that transaction alone; what
    it wrote is committed like any other's."""
    first, second = two_stores
    auth.create_org(store=first, name="Acme", org_id="acme")
    with first.writing() as tx:
        durable = _synchronous(first, tx)
    with first.writing(durable=False) as tx:
        assert _synchronous(first, tx) in ("off", "NORMAL")
        tx.insert_checkpoint(CheckpointRow("acme", 7, bytes(32), "a note", "a key", 1))
    with first.writing() as tx:  # as before (the test server may run without syncing)
        assert _synchronous(first, tx) == durable
    if not first.url.startswith("postgresql"):  # type: ignore[attr-defined]
        assert durable == "FULL"
    stored = second.latest_checkpoint("acme")
    assert stored is not None and stored.size == 7
