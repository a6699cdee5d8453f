"""`sealog copy`: a whole deployment into a new database (SQLite to PostgreSQL, and between
any two backends), every row the same through the Store interface, the log verified on the
copy with the same pinned key, a non-empty target refused, a failed copy leaving nothing."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from sealog import auth, times
from sealog.api.app import create_app
from sealog.config import Settings
from sealog.copying import CopyError, copy_deployment
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.ledger import audit, checkpoint
from sealog.ledger.note import Signer, Verifier
from sealog.sampledata import generate_events
from sealog.sealing import prepare_events, seal
from sealog.search import build_filter
from sealog.store import Store, open_store
from sealog.store.base import ROW_KINDS
from sealog.store.postgres.partitions import month_of, partition_name
from sealog.streams.delivery import StreamConfig, new_stream
from sealog.streams.secrets import SecretBox

from conftest import ALL_SCOPES, SealogProcess

BACKENDS = ["sqlite", "postgresql"]
DAY_US = 86_400_000_000
NOW_US = times.now_us()
# Months apart (three calendar months whatever today is), so that the events of the copy
# land in three of PostgreSQL's partitions.
RECEIVED = [NOW_US - 400 * DAY_US, NOW_US - 65 * DAY_US, NOW_US - 2 * DAY_US]
SEARCHES = ["guardrail", "pii", "action:policy.*", "result:denied", "actor:alice*",
            '"prompt injection"', "-result:success agent"]
PASSWORD = "correct horse battery staple"


@dataclass
class Deployment:
    """A SQLite deployment's data folder, an all-scopes secret of org acme, its log key."""

    data: Path
    secret: str
    verifier: Verifier

    @property
    def url(self) -> str:
        return f"sqlite:///{self.data / 'sealog.db'}"


def _event_id(org: int, n: int) -> str:
    return f"0193f8a0-{org:04x}-7000-8000-{n:012x}"


def _fill(store: Store, settings: Settings, signer: Signer) -> str:
    """Three orgs with users (one removed), keys (one revoked, one used), sessions (one
    ended), a failed sign-in, thousands of events in batches received months apart (some
    retried), a checkpoint after each batch, a retired log key and a finished export.
    Returns an all-scopes secret of acme."""
    redactor = Redactor()
    old = Signer.generate(settings.log_host)
    store.add_log_key(old.verifier.text(), NOW_US - 500 * DAY_US)
    store.retire_log_key(old.verifier.text(), NOW_US - 450 * DAY_US)
    store.add_log_key(signer.verifier.text(), NOW_US - 450 * DAY_US)
    for org_id in ("acme", "beta", "gamma"):
        auth.create_org(store=store, name=org_id.title() + " Inc.", org_id=org_id)
    owner = auth.create_user(store=store, org_id="acme", email="olga@acme.com", role="owner",
                             password=PASSWORD, name="Olga Owner")
    gone = auth.create_user(store=store, org_id="acme", email="rex@acme.com", role="admin",
                            password=PASSWORD)
    auth.create_user(store=store, org_id="beta", email="rex@acme.com", role="auditor",
                     password=PASSWORD)
    secret = auth.create_api_key(store=store, org_id="acme", scopes=ALL_SCOPES,
                                 name="ops").secret
    used = auth.create_api_key(store=store, org_id="acme", scopes=["events:write"],
                               created_by=gone.id)
    store.touch_api_key(used.row.id, NOW_US - DAY_US)
    revoked = auth.create_api_key(store=store, org_id="beta", scopes=["events:read"])
    auth.revoke_api_key(store=store, org_id="beta", key_id=revoked.row.id)

    for org_number, org_id in enumerate(("acme", "beta")):
        sizes = [1500, 1200, 300] if org_id == "acme" else [40, 300, 200]
        n = 0
        for k, (received, size) in enumerate(zip(RECEIVED, sizes, strict=True)):
            batch = list(generate_events(size, days=20, seed=10 * org_number + k,
                                         now_us=received))
            for e in batch[: size // 2]:  # ids of the producer's, half of each batch
                e["id"] = _event_id(org_number, n)
                n += 1
            for start in range(0, size, 500):
                ingest(store=store, org_id=org_id, raw_events=batch[start : start + 500],
                       redactor=redactor, received_at_us=received)
            retried = ingest(store=store, org_id=org_id, raw_events=batch[:100],
                             redactor=redactor, received_at_us=received + 1)
            assert all(a.duplicate for a in retried[: min(100, size // 2)])
            checkpoint.sign_latest(store=store, signer=signer, host=settings.log_host,
                                   org_id=org_id)
    checkpoint.sign_latest(store=store, signer=signer, host=settings.log_host,
                           org_id="gamma")  # the empty tree's

    throttle = auth.LoginThrottle(sleep=lambda _: None)
    session = auth.sign_in(store=store, redactor=redactor, throttle=throttle, org_id="acme",
                           email=owner.email, password=PASSWORD)
    auth.sign_in(store=store, redactor=redactor, throttle=throttle, org_id="acme",
                 email=gone.email, password=PASSWORD)
    auth.sign_out(store=store, redactor=redactor, token=session.token,
                  principal=auth.authenticate_session(store, session.token).principal)
    with store.writing() as tx:
        tx.remove_user(org_id="acme", user_id=gone.id, at=times.now_us())
    with pytest.raises(auth.SignInError):
        auth.sign_in(store=store, redactor=redactor, throttle=throttle, org_id="acme",
                     email=owner.email, password="wrong")
    with pytest.raises(auth.SignInError):
        auth.sign_in(store=store, redactor=redactor, throttle=throttle, org_id="nobody",
                     email="who@nowhere.com", password="wrong")

    export = jobs.create_export(store=store, redactor=redactor, org_id="acme",
                                actor=jobs.Actor(id=owner.id, name=owner.name, type="user",
                                                 email=owner.email),
                                name="last month", format="csv", range_preset="30d")
    worker = jobs.Worker(store=store, folder=settings.resolved_export_dir, signer=signer,
                         host=settings.log_host)
    assert worker.run_one()
    assert store.get_export("acme", export.id).status == "completed"
    stream, _ = new_stream(
        org_id="acme", name="SIEM", box=SecretBox.load(settings.data_dir / "streams.key"),
        config=StreamConfig("https://siem.example.com/hook", categories=("security_events",)),
        start_index=3, headers={"Authorization": "Bearer t"})
    with store.writing() as tx:
        tx.insert_stream(stream)
    # acme's latest checkpoint covers its whole log; beta's log has grown past its own.
    checkpoint.sign_latest(store=store, signer=signer, host=settings.log_host, org_id="acme")
    ingest(store=store, org_id="beta", raw_events=list(generate_events(20, days=1, seed=3)),
           redactor=redactor)
    return secret


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Deployment:
    data = tmp_path_factory.mktemp("source") / "data"
    settings = Settings(data_dir=data)
    signer = checkpoint.load_signer(settings.resolved_signing_key_file, settings.log_host)
    store = open_store(f"sqlite:///{data / 'sealog.db'}")
    try:
        secret = _fill(store, settings, signer)
    finally:
        store.close()
    return Deployment(data, secret, signer.verifier)


@pytest.fixture
def deployment(built: Deployment, tmp_path: Path) -> Deployment:
    """A copy of the built deployment's folder of this test's own."""
    data = tmp_path / "source"
    shutil.copytree(built.data, data)
    return Deployment(data, built.secret, built.verifier)


@pytest.fixture
def source(deployment: Deployment) -> Iterator[Store]:
    store = open_store(deployment.url)
    yield store
    store.close()


@pytest.fixture
def target(store_url: str) -> Iterator[Store]:
    """An empty store on each backend."""
    with closing(open_store(store_url)) as store:
        yield store


def _everything(store: Store) -> dict:
    """All a store holds, read through the Store interface."""
    seen: dict = {"orgs": store.list_orgs(), "log keys": store.log_keys(),
                  "failed sign-ins": store.login_failures(), "counts": store.row_counts()}
    for org in seen["orgs"]:
        head = store.log_head(org.id)
        seen[org.id] = {
            "users": store.list_all_users(org.id),
            "live users": store.list_users(org.id),
            "keys": store.list_api_keys(org.id),
            "sessions": store.list_sessions(org.id),
            "exports": store.list_exports(org.id),
            "streams": store.list_streams(org.id),
            "head": head,
            "rows": list(store.iter_event_rows(org.id, 0, head.size)),
            "docs": list(store.iter_events_by_index(org.id, 0, head.size)),
            "tree": [store.read_tree_range(org.id, level, 0, head.size >> level)
                     for level in range(head.size.bit_length())],
            "checkpoints": list(store.iter_checkpoints(org.id)),
            "latest": store.latest_checkpoint(org.id),
        }
    return seen


def _verify(store: Store, deployment: Deployment, data: Path, tmp_path: Path
            ) -> tuple[audit.Report, str]:
    """`sealog verify` of acme's log as an auditor runs it, against an API on store whose
    data folder holds the deployment's signing key; and the checkpoint it was given."""
    data.mkdir(parents=True, exist_ok=True)
    shutil.copy2(deployment.data / "signing.key", data / "signing.key")
    app = create_app(Settings(data_dir=data), store=store)
    client = TestClient(app, base_url="http://testserver/api/v1")
    server = audit.Server("", deployment.secret, client=client)
    try:
        report = audit.verify_server(server, [deployment.verifier],
                                     state_path=tmp_path / "verify-state.json")
        return report, server.checkpoint()
    finally:
        server.close()


def _searches(store: Store, org_id: str) -> list:
    found = []
    for q in SEARCHES:
        flt = build_filter(org_id=org_id, range_preset="custom",
                           start="2000-01-01T00:00:00Z", q=q)
        found.append((q, store.count_events(flt),
                      store.list_events(flt, cursor=None, limit=100)))
    return found


def test_a_copy_holds_everything_the_source_does_and_its_log_verifies(
        source, target, deployment, tmp_path):
    before = _everything(source)
    copied = copy_deployment(source=source, target=target)
    after = _everything(target)
    assert after == before
    assert copied == before["counts"]
    counts = before["counts"]
    assert counts["orgs"] == 3 and counts["failed sign-ins"] == 2 and counts["exports"] == 1
    assert counts["log keys"] == 2 and counts["sessions"] == 2
    assert counts["events"] == sum(after[o.id]["head"].size for o in after["orgs"]) > 3540
    acme = after["acme"]
    assert [u.email for u in acme["users"] if u.removed_at] == ["rex@acme.com"]
    assert [u.email for u in acme["live users"]] == ["olga@acme.com"]
    assert any(k.last_used_at for k in acme["keys"])
    assert any(k.revoked_at for k in after["beta"]["keys"])
    assert len(acme["checkpoints"]) == 4 and acme["latest"].size == acme["head"].size
    assert after["beta"]["latest"].size < after["beta"]["head"].size
    assert after["gamma"]["checkpoints"][0].size == 0

    report, note = _verify(target, deployment, tmp_path / "copy", tmp_path)
    assert report.ok and report.valid == report.total == acme["head"].size, report.text()
    assert note == before["acme"]["latest"].note  # the same checkpoint, byte for byte
    assert target.latest_checkpoint("acme") == before["acme"]["latest"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_search_on_a_copy_finds_what_it_finds_on_the_source(source, backend, request,
                                                            tmp_path):
    url = (request.getfixturevalue("postgres_url") if backend == "postgresql"
           else f"sqlite:///{tmp_path / 'copy.db'}")
    with closing(open_store(url)) as target:
        copy_deployment(source=source, target=target)
        for org_id in ("acme", "beta"):
            found = _searches(source, org_id)
            assert all(count for _, count, _ in found), found
            assert _searches(target, org_id) == found


def test_a_copy_through_postgresql_back_to_sqlite_is_the_source_again(
        source, postgres_url, tmp_path):
    """PostgreSQL's rows read back whole: the same rows, tokens and search on SQLite."""
    with closing(open_store(postgres_url)) as middle, closing(open_store(
            f"sqlite:///{tmp_path / 'back.db'}")) as back:
        copy_deployment(source=source, target=middle)
        copy_deployment(source=middle, target=back)
        assert _everything(back) == _everything(source)
        assert _searches(back, "acme") == _searches(source, "acme")


def test_events_of_past_months_land_in_their_months_partitions(source, postgres_url):
    import psycopg

    with closing(open_store(postgres_url)) as target:
        copy_deployment(source=source, target=target)
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT count(*) FROM events_default").fetchone() == (0,)
        months = {r[0] for r in conn.execute(
            "SELECT DISTINCT tableoid::regclass::text FROM events")}
    # Those of the batches, and the current month's (the sign-ins, the export).
    assert months == {partition_name("events", month_of(us)) for us in (*RECEIVED, NOW_US)}


def test_rows_read_back_are_those_ingest_sealed(store_url):
    """The tokens no backend stores as text come back as ingest made them."""
    raw = list(generate_events(300, days=3, seed=5))
    for n, e in enumerate(raw):
        e["id"] = _event_id(9, n)
    prepared = prepare_events(raw, org_id="acme", received_at_us=NOW_US, redactor=Redactor())
    sealed = [seal(item, org_id="acme", index=i) for i, item in enumerate(prepared)]
    with closing(open_store(store_url)) as store:
        auth.create_org(store=store, name="Acme", org_id="acme")
        ingest(store=store, org_id="acme", raw_events=raw, redactor=Redactor(),
               received_at_us=NOW_US)
        assert list(store.iter_event_rows("acme", 0, 300)) == sealed
        assert list(store.iter_event_rows("acme", 120, 130)) == sealed[120:130]


@pytest.mark.parametrize("what", ["org", "log key"])
def test_a_target_that_is_not_empty_is_refused_and_left_as_it_was(source, target, what):
    if what == "org":
        auth.create_org(store=target, name="Other", org_id="other")
    else:  # as a server started on it leaves
        target.add_log_key(Signer.generate("sealog.local").verifier.text(), NOW_US)
    before = _everything(target)
    with pytest.raises(CopyError, match=f"not empty: it holds 1 {what};"):
        copy_deployment(source=source, target=target)
    assert _everything(target) == before


def test_a_copy_that_fails_half_way_leaves_the_target_empty(deployment, target):
    # A source whose log lacks an event: found after thousands were written to the target.
    conn = sqlite3.connect(deployment.data / "sealog.db")
    conn.execute("DELETE FROM events WHERE org_id = 'beta' AND idx = 500")
    conn.commit()
    conn.close()
    with closing(open_store(deployment.url)) as source:
        with pytest.raises(CopyError, match="beta.*lacks event 500"):
            copy_deployment(source=source, target=target)
    assert set(target.row_counts().values()) == {0}


def test_an_empty_source_is_refused(target, tmp_path):
    with closing(open_store(f"sqlite:///{tmp_path / 'empty.db'}")) as empty:
        with pytest.raises(CopyError, match="no org"):
            copy_deployment(source=empty, target=target)


# -- the command -------------------------------------------------------------------------


def _sealog(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sealog", *args], capture_output=True,
                          text=True, timeout=300, **kwargs)


def test_the_command_copies_and_verify_passes_against_a_server_on_the_copy(
        deployment, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    done = _sealog("copy", "--from", deployment.url, "--to", f"sqlite:///{copy / 'sealog.db'}")
    assert done.returncode == 0, done.stderr
    assert "Copying acme" in done.stderr and "Copying gamma" in done.stderr
    assert "Copied 3 orgs" in done.stdout and "signing key" in done.stdout
    shutil.copy2(deployment.data / "signing.key", copy / "signing.key")
    with closing(open_store(deployment.url)) as source:
        note = source.latest_checkpoint("acme").note
    server = SealogProcess(copy)
    server.start()
    try:
        verified = _sealog("verify", "--url", server.base, "--api-key", deployment.secret,
                           "--verifier-key", deployment.verifier.text(),
                           "--state", str(tmp_path / "state.json"))
        assert verified.returncode == 0, verified.stdout + verified.stderr
        given = httpx.get(f"{server.base}/api/v1/log/checkpoint",
                          headers={"Authorization": f"Bearer {deployment.secret}"})
        assert given.text == note
    finally:
        server.stop()
        print(server.output())


def test_the_command_copies_to_postgresql_once(deployment, postgres_url, tmp_path):
    done = _sealog("copy", "--from", deployment.url, "--to", postgres_url, "--json")
    assert done.returncode == 0, done.stderr
    copied = json.loads(done.stdout)
    assert set(copied) == set(ROW_KINDS) and copied["orgs"] == 3
    again = _sealog("copy", "--from", deployment.url, "--to", postgres_url)
    assert again.returncode == 2
    assert "not empty: it holds 3 orgs" in again.stderr and "Traceback" not in again.stderr
    with closing(open_store(postgres_url)) as target, \
            closing(open_store(deployment.url)) as source:
        assert _everything(target) == _everything(source)


def test_a_copy_killed_half_way_leaves_nothing_and_can_be_made_again(
        deployment, store_url, tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "sealog", "copy", "--from",
                             deployment.url, "--to", store_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if line.startswith("Copying acme"):  # its first batch is being written
                break
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    with closing(open_store(store_url)) as target:
        assert set(target.row_counts().values()) == {0}
    done = _sealog("copy", "--from", deployment.url, "--to", store_url)
    assert done.returncode == 0, done.stderr


def test_the_command_refuses_a_source_that_is_not_there(tmp_path):
    missing = tmp_path / "typo.db"
    done = _sealog("copy", "--from", f"sqlite:///{missing}",
                   "--to", f"sqlite:///{tmp_path / 'new.db'}")
    assert done.returncode == 2 and "no SQLite database" in done.stderr
    assert not missing.exists()

