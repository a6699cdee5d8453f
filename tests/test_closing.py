"""Deleting an org (offboarding a tenant), on each backend: its log is closed by a record
signed in a final checkpoint, its events, members, keys, exports, streams and settings
leave the data folder and the tables, and an auditor who holds an older checkpoint is shown,
offline, that the log was closed, not forked."""

from __future__ import annotations

import base64
import json

import orjson
import pytest
from fastapi.testclient import TestClient

from sealog import auth, closing, retention
from sealog.events import Redactor
from sealog.exports import jobs
from sealog.ingest import ingest
from sealog.ledger import audit
from sealog.ledger.verify import INCONSISTENT
from sealog.store import Store
from sealog.store.base import Conflict
from sealog.streams import manage
from sealog.streams.secrets import SecretBox
from test_access import PASSWORD, sign_in
from test_erasure import EMAIL, _fill, _found_in_storage

from conftest import event, verify_online
from test_cli import run

OWNER = {"id": "usr_owner", "email": "owner@acme.com", "name": "Owner", "type": "user"}


def _others(store: Store) -> None:
    """beta: another org, which a deletion of acme leaves alone."""
    auth.create_org(store=store, name="Beta", org_id="beta")
    ingest(store=store, org_id="beta", raw_events=[event(description=f"beta {n}")
                                                   for n in range(20)], redactor=Redactor())


def _acme_rows(store: Store) -> dict[str, int]:
    counts = {"users": len(store.list_all_users("acme")),
              "keys": len(store.list_api_keys("acme")),
              "sessions": len(store.list_sessions("acme")),
              "exports": len(store.list_exports("acme")),
              "streams": len(store.list_streams("acme")),
              "holds": len(store.list_holds("acme")),
              "retention": store.get_retention("acme") is not None}
    return {k: int(v) for k, v in counts.items()}


def _close(store: Store, app, **kw) -> closing.Closure:
    return closing.close_org(store=store, redactor=Redactor(), signer=app.state.signer,
                             host=app.state.settings.log_host, org_id="acme", actor=OWNER,
                             **kw)


@pytest.fixture
def busy_acme(tenant, store, app, tmp_path):
    """acme with events naming MARKER, a member signed in, an export file, a stream, a
    policy and a released hold, verified once by an auditor (state in tmp_path)."""
    _fill(store)
    _others(store)
    auth.create_user(store=store, org_id="acme", email=EMAIL, role="owner",
                     password=PASSWORD, name="Bob Zq")
    sign_in(TestClient(app), EMAIL)
    jobs.create_export(store=store, redactor=Redactor(), org_id="acme",
                       actor=jobs.Actor("usr_owner", "owner@acme.com"), name="all",
                       format="csv", range_preset="custom", start="2000-01-01T00:00:00Z")
    assert jobs.Worker(store=store, folder=tmp_path / "data" / "exports", signer=None,
                       host="sealog.local").run_one()
    manage.create_stream(store=store, box=SecretBox.load(tmp_path / "data" / "streams.key"),
                         redactor=Redactor(), policy=manage.Policy(allow_http=True,
                                                                   allow_private=True),
                         org_id="acme", actor=OWNER, name="SIEM",
                         url="http://127.0.0.1:9/hook")
    retention.set_policy(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         days=365)
    hold = retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                                name="Audit 2026", reason="annual audit")
    retention.release_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                           hold_id=hold.id)
    state = tmp_path / "auditor-state.json"
    report = verify_online(app, tenant.secret, state_path=state)
    assert report.ok, report.text()
    return state


def test_a_deleted_org_leaves_nothing_but_its_signed_closing_and_an_auditor_sees_it_closed(
        busy_acme, tenant, store, app, tmp_path):
    state = busy_acme
    seen = json.loads(state.read_text())
    (seen_size,) = [v["size"] for v in seen.values()]
    assert all(_acme_rows(store).values())  # there before, so the checks below can fail
    assert _found_in_storage(store, tmp_path)
    beta_before = store.log_head("beta")

    done = _close(store, app, batch=50)
    record_index = done.record_index
    assert done.checkpoint.size == record_index + 1 == store.log_head("acme").size
    assert done.deleted == record_index  # every event before the closing record
    assert not any(_acme_rows(store).values()), _acme_rows(store)
    assert _found_in_storage(store, tmp_path) == []
    assert not list((tmp_path / "data" / "exports").iterdir())
    (record,) = store.iter_events_by_index("acme", 0, record_index + 1)
    assert orjson.loads(record.doc)["action"] == "audit_log.closed"
    assert store.latest_checkpoint("acme") == done.checkpoint
    assert store.log_head("beta") == beta_before  # another org's log is untouched
    assert len(list(store.iter_events_by_index("beta", 0, beta_before.size))) == 20

    # Nobody reaches it, nothing is written to it, and its id is never another log's.
    assert tenant.client.get("/api/v1/events").status_code == 401
    with pytest.raises(Conflict, match="was closed"):
        ingest(store=store, org_id="acme", raw_events=[event()], redactor=Redactor())
    with pytest.raises(Conflict, match="already exists"):
        auth.create_org(store=store, name="Acme again", org_id="acme")
    with pytest.raises(Conflict, match="was closed"):
        auth.create_api_key(store=store, org_id="acme", scopes=["events:read"])
    with pytest.raises(Conflict, match="was closed"):
        auth.create_user(store=store, org_id="acme", email="new@acme.com", role="owner",
                         password=PASSWORD)
    assert store.get_org("acme").closed_at == done.closed_at

    # The auditor's checkpoint, seen before, is a prefix of the final one.
    path = tmp_path / "closure.jsonl"
    with path.open("wb") as out:
        closing.write_closure(out, store=store, org_id="acme",
                              host=app.state.settings.log_host, from_sizes=[seen_size, 3])
    report = audit.verify_bundle_file(path, [app.state.signer.verifier], state_path=state)
    assert report.ok, report.text()
    assert (f"Consistent with the checkpoint of size {seen_size} seen before: the log was "
            "closed, not forked") in report.text()
    assert f"index {record_index}, is its closing record" in report.text()
    (after,) = json.loads(state.read_text()).values()
    assert after["size"] == done.checkpoint.size  # the state moves on to the final one

    # A history rewritten after the auditor's checkpoint: a fork.
    forked = {origin: {"size": seen_size, "root": base64.b64encode(b"\1" * 32).decode()}
              for origin in seen}
    state.write_text(json.dumps(forked))
    report = audit.verify_bundle_file(path, [app.state.signer.verifier], state_path=state)
    assert not report.ok and [f.kind for f in report.failures] == [INCONSISTENT]
    assert "a fork" in report.text()
    # A checkpoint the file holds no proof from: unproven, and the way to get one.
    state.write_text(json.dumps({o: {**v, "size": 7} for o, v in seen.items()}))
    report = audit.verify_bundle_file(path, [app.state.signer.verifier], state_path=state)
    assert not report.ok and "--from-size 7" in report.text()


def test_a_closure_file_whose_last_event_is_no_closing_record_fails(busy_acme, store, app,
                                                                   tmp_path):
    _close(store, app)
    path = tmp_path / "closure.jsonl"
    with path.open("wb") as out:
        closing.write_closure(out, store=store, org_id="acme",
                              host=app.state.settings.log_host)
    lines = path.read_bytes().split(b"\n")
    header = orjson.loads(lines[0])
    header["closed"]["record_index"] -= 1  # the file says the record is elsewhere
    path.write_bytes(b"\n".join([orjson.dumps(header), *lines[1:]]))
    report = audit.verify_bundle_file(path, [app.state.signer.verifier],
                                      state_path=tmp_path / "none.json")
    assert not report.ok and "not a closing record" in report.text()


def test_a_legal_hold_refuses_the_deletion_and_nothing_is_deleted(busy_acme, store, app):
    size = store.log_head("acme").size
    retention.place_hold(store=store, redactor=Redactor(), org_id="acme", actor=OWNER,
                         name="Litigation 7", reason="court order")
    before = _acme_rows(store)
    with pytest.raises(Conflict, match="Litigation 7"):
        _close(store, app)
    assert _acme_rows(store) == before
    assert store.get_org("acme").closed_at is None
    assert store.log_head("acme").size == size + 1  # the hold's own event alone


def test_a_deletion_cut_short_finishes_when_run_again(busy_acme, store, app, tmp_path):
    class Crash(Exception):
        pass

    def crash(done: int) -> None:
        raise Crash

    with pytest.raises(Crash):
        _close(store, app, batch=40, progress=crash)
    assert store.get_org("acme").closed_at is not None
    assert store.retention_work() == []  # its policy is still there, but no purge runs
    assert _found_in_storage(store, tmp_path)  # half-way: more to delete
    done = _close(store, app, batch=40)
    assert done.deleted == done.record_index - 40
    assert _found_in_storage(store, tmp_path) == [] and not any(_acme_rows(store).values())


def test_the_command_line_deletes_after_confirming_the_id_and_writes_the_closure(
        capsys, busy_acme, store, store_url, tmp_path):
    db = ["--database-url", store_url, "--data-dir", str(tmp_path / "data")]
    code, _, err = run(capsys, "orgs", "delete", "acme", *db)
    assert code == 2 and "give --confirm acme" in err
    code, _, err = run(capsys, "orgs", "delete", "acme", "--confirm", "beta", *db)
    assert code == 2 and "nothing was deleted" in err
    assert store.get_org("acme").closed_at is None
    code, _, err = run(capsys, "orgs", "closure", "acme", "-o", str(tmp_path / "c.jsonl"), *db)
    assert code == 2 and "is open" in err

    code, out, _ = run(capsys, "orgs", "delete", "acme", "--confirm", "acme", "--json", *db)
    assert code == 0, out
    closed = json.loads(out)
    assert closed["deleted_events"] == closed["record_index"] > 200
    code, out, _ = run(capsys, "orgs", "list", *db)
    assert "acme\tAcme" in out and "\tclosed " in out
    (seen,) = json.loads(busy_acme.read_text()).values()
    path = tmp_path / "closure.jsonl"
    code, _, _ = run(capsys, "orgs", "closure", "acme", "--from-size", str(seen["size"]),
                     "-o", str(path), *db)
    assert code == 0
    verifier = json.loads(run(capsys, "log-key", "--json", *db)[1])["current"]
    code, out, _ = run(capsys, "verify", str(path), "--verifier-key", verifier, "--state",
                       str(busy_acme))
    assert code == 0 and "closed, not forked" in out, out


def test_a_closed_org_is_copied_closed_and_its_closure_still_verifies(
        busy_acme, store, app, tmp_path):
    from sealog import copying
    from sealog.store import open_store

    done = _close(store, app)
    target = open_store(f"sqlite:///{tmp_path / 'copy.db'}")
    try:
        copied = copying.copy_deployment(source=store, target=target)
        assert copied["events"] == 1 + 20  # acme's closing record, and beta's log
        assert target.get_org("acme").closed_at == done.closed_at
        with pytest.raises(Conflict, match="was closed"):
            ingest(store=target, org_id="acme", raw_events=[event()], redactor=Redactor())
        path = tmp_path / "closure.jsonl"
        (seen,) = json.loads(busy_acme.read_text()).values()
        with path.open("wb") as out:
            closing.write_closure(out, store=target, org_id="acme",
                                  host=app.state.settings.log_host, from_sizes=[seen["size"]])
    finally:
        target.close()
    report = audit.verify_bundle_file(path, [app.state.signer.verifier], state_path=busy_acme)
    assert report.ok and "closed, not forked" in report.text(), report.text()


def test_a_tombstone_posing_as_the_closing_record_of_an_open_log_is_refused(
        busy_acme, store, app, tmp_path):
    """A tombstone's leaf hash is taken as stored: one that names itself a closing record,
    over the real last leaf of an open log, must not pass for its closure."""
    from sealog.ledger import bundle, checkpoint, export

    signed = checkpoint.sign_latest(store=store, signer=app.state.signer,
                                    host=app.state.settings.log_host, org_id="acme")
    last = signed.size - 1
    path = tmp_path / "forged.jsonl"
    with path.open("wb") as out:
        export.write_bundle(out, store=store, org_id="acme",
                            host=app.state.settings.log_host, signed=signed,
                            docs=store.iter_events_by_index("acme", last, signed.size),
                            count=1)
    header, line, note = path.read_bytes().split(b"\n")[:3]
    entry = bundle.parse_entry_line(line)
    forged = orjson.dumps({"erased": {"request_index": 0, "erased_at": "2026-01-01T00:00:00Z"},
                           "action": "audit_log.closed", "recorded_by": {"type": "sealog"},
                           "index": last, "org_id": "acme"})
    fields = orjson.loads(header)
    fields["closed"] = {"record_index": last, "closed_at": 0, "consistency": []}
    path.write_bytes(b"\n".join([orjson.dumps(fields), bundle.entry_line(
        last, entry.leaf_hash, forged, entry.proof).rstrip(b"\n"), note, b""]))
    report = audit.verify_bundle_file(path, [app.state.signer.verifier],
                                      state_path=busy_acme)
    assert not report.ok and "not a closing record" in report.text(), report.text()
