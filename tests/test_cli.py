"""The sealog command: administration output, JSON for scripts, help for every command."""

from __future__ import annotations

import argparse
import io
import json
import re

import orjson
import pytest

from sealog.cli import build_parser, main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def db(store_url) -> list[str]:
    return ["--database-url", store_url]


def test_orgs_and_keys_round_trip(capsys, db):
    code, out, _ = run(capsys, "orgs", "create", "Acme Robotics", "--id", "acme", *db)
    assert code == 0 and "acme" in out
    code, out, _ = run(capsys, "orgs", "list", "--json", *db)
    assert json.loads(out)[0]["id"] == "acme"
    code, out, _ = run(capsys, "keys", "create", "--org", "acme", "--scope", "events:write",
                       "--scope", "events:read", "--name", "billing", "--json", *db)
    created = json.loads(out)
    assert created["secret"].startswith("slg_key_") and created["scopes"] == [
        "events:write", "events:read"]
    code, out, _ = run(capsys, "keys", "list", "--org", "acme", *db)
    assert created["id"] in out and "active" in out and created["secret"] not in out
    code, out, _ = run(capsys, "keys", "revoke", "--org", "acme", created["id"], "--json", *db)
    assert json.loads(out)["revoked_at"] is not None
    code, out, _ = run(capsys, "keys", "list", "--org", "acme", "--json", *db)
    assert json.loads(out)[0]["revoked_at"] is not None


def test_errors_are_one_line_and_exit_2(capsys, db):
    code, _, err = run(capsys, "keys", "create", "--org", "ghost", "--scope", "admin", *db)
    assert code == 2 and "ghost" in err and "Traceback" not in err
    run(capsys, "orgs", "create", "Acme", "--id", "acme", *db)
    code, _, err = run(capsys, "orgs", "create", "Acme", "--id", "acme", *db)
    assert code == 2 and "already exists" in err
    code, _, err = run(capsys, "keys", "create", "--org", "acme", *db)
    assert code == 2 and "scope" in err
    code, _, err = run(capsys, "keys", "revoke", "--org", "acme", "key_nope", *db)
    assert code == 2 and "key_nope" in err
    code, _, err = run(capsys, "orgs", "list", "--database-url", "mysql://x")
    assert code == 2 and "sqlite:///" in err


def _commands(parser: argparse.ArgumentParser, path=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from _commands(sub, (*path, name))


def test_every_command_has_help_with_an_example():
    commands = list(_commands(build_parser()))
    assert {c for c, _ in commands} >= {("serve",), ("demo",), ("orgs", "create"),
                                        ("keys", "create"), ("keys", "revoke")}
    for name, sub in commands:
        assert "Example: sealog" in sub.format_help(), name


def test_demo_refuses_a_non_empty_folder(capsys, tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    code, _, err = run(capsys, "demo", "--data-dir", str(tmp_path), "--no-serve",
                       "--events", "10")
    assert code == 2 and "--fresh" in err
    assert (tmp_path / "keep.txt").exists()


def test_demo_replaces_its_own_folder(capsys, tmp_path):
    folder = tmp_path / "demo"
    for _ in range(2):
        code, out, _ = run(capsys, "demo", "--data-dir", str(folder), "--no-serve",
                           "--events", "10")
        assert code == 0 and "10 events" in out


def test_demo_seeds_realistic_events(capsys, tmp_path):
    folder = tmp_path / "demo"
    code, out, _ = run(capsys, "demo", "--data-dir", str(folder), "--no-serve",
                       "--events", "3000")
    assert code == 0 and "3,000 events" in out and "slg_key_" in out
    # The sign-in block has all the form asks for, and a link that fills in the org.
    assert "/?org=acme and sign in" in out
    assert re.search(r"^    org       acme\n    email     admin@acme\.example\n"
                     r"    password  \S{10,}$", out, re.M), out
    from sealog.search import build_filter
    from sealog.store import open_store

    store = open_store(f"sqlite:///{folder / 'sealog.db'}")
    try:
        for category in ("agent_operations", "policy_changes", "user_actions",
                         "security_events", "system_events"):
            flt = build_filter(org_id="acme", range_preset="custom",
                               start="2000-01-01T00:00:00Z", categories=[category])
            assert store.count_events(flt) > 0, category
        for result in ("success", "failed", "denied", "warning", "approved", "allowed"):
            flt = build_filter(org_id="acme", range_preset="custom",
                               start="2000-01-01T00:00:00Z", results=[result])
            assert store.count_events(flt) > 0, result
        [key] = store.list_api_keys("acme")
        senders = {orjson.loads(d.doc)["recorded_by"]["id"]
                   for d in store.iter_events_by_index("acme", 0, 3000)}
        assert senders == {key.id}  # the platform's events came through its key
    finally:
        store.close()


def test_export_command_writes_a_file_and_logs_it(capsys, tmp_path):
    import csv as csvmod

    from sealog.ledger import audit
    from sealog.ledger.note import Verifier

    folder = tmp_path / "demo"
    run(capsys, "demo", "--data-dir", str(folder), "--no-serve", "--events", "300",
        "--days", "2")
    db = ["--data-dir", str(folder)]
    out = tmp_path / "week.csv"
    code, printed, _ = run(capsys, "export", "--org", "acme", "--range", "7d",
                           "--category", "security_events", "-o", str(out), *db)
    assert code == 0 and "Wrote" in printed
    rows = list(csvmod.reader(io.StringIO(out.read_text(encoding="utf-8-sig"), newline="")))
    assert len(rows) > 1 and {r[2] for r in rows[1:]} == {"security_events"}
    bundle = tmp_path / "all.jsonl"
    assert run(capsys, "export", "--org", "acme", "--range", "30d", "-o", str(bundle), *db)[0] == 0
    code, printed, _ = run(capsys, "log-key", *db)
    report = audit.verify_bundle_file(bundle, [Verifier.parse(printed.strip())])
    assert report.ok, report.text()
    code, _, err = run(capsys, "export", "--org", "acme", "-o", str(tmp_path / "x.pdf"), *db)
    assert code == 2 and "format" in err


def test_serve_tunes_the_garbage_collector_for_batches():
    import gc

    from sealog.cli import tune_gc_for_serving

    before = gc.get_threshold()
    try:
        tune_gc_for_serving()
        assert gc.get_threshold()[0] >= 50_000
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


@pytest.mark.slow
def test_demo_shows_its_login_at_once_when_its_output_is_a_pipe(tmp_path):
    """A service manager or `| tee` reads the sign-in block while the demo serves."""
    import os
    import subprocess
    import sys
    import threading
    import time

    from conftest import free_port

    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "sealog", "demo", "--data-dir", str(tmp_path / "demo"),
         "--events", "200", "--days", "1", "--port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                              daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while not any("API key" in line for line in lines) and time.monotonic() < deadline:
            assert proc.poll() is None, "".join(lines)
            time.sleep(0.1)
        assert proc.poll() is None, "".join(lines)  # still serving
        assert any("API key (admin, shown once): slg_key_" in line for line in lines), lines
        assert any("password" in line for line in lines)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        reader.join(timeout=10)
        proc.stdout.close()


def test_migrate_applies_what_is_pending_once(capsys, tmp_path, postgres_url):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code, out, _ = run(capsys, "migrate", "--database-url", url, "--json")
    assert code == 0 and "0001_init.sql" in json.loads(out)["applied"]
    code, out, _ = run(capsys, "migrate", "--database-url", url)
    assert code == 0 and out.strip() == "Nothing to apply: up to date"
    code, out, _ = run(capsys, "migrate", "--database-url", postgres_url)
    assert code == 0 and out.startswith("Applied 0001_init.sql")
    assert run(capsys, "migrate", "--database-url", postgres_url)[1].strip() == (
        "Nothing to apply: up to date")
    code, _, err = run(capsys, "migrate", "--database-url", "mysql://db/sealog")
    assert code == 2 and "sqlite:///" in err
