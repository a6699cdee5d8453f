"""The PostgreSQL server the tests get does what the PostgreSQL store needs, and the one
scripts/test starts for a run is its own: stopped at the end, cleaned up after a killed run."""

from __future__ import annotations

import glob
import os
import subprocess
import threading
from pathlib import Path

import psycopg
import pytest

from conftest import wait_for

REPO = Path(__file__).resolve().parents[1]


def test_server_has_what_the_store_needs(postgres_url: str) -> None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
        conn.execute("""CREATE TABLE events (org_id text NOT NULL, seq bigint NOT NULL,
                                             words text[] NOT NULL, PRIMARY KEY (org_id, seq))
                        PARTITION BY RANGE (seq)""")
        conn.execute("CREATE TABLE events_0 PARTITION OF events FOR VALUES FROM (0) TO (1000)")
        conn.execute("CREATE TABLE events_1 PARTITION OF events FOR VALUES FROM (1000) TO (2000)")
        conn.execute("CREATE INDEX events_words ON events USING gin (array_to_tsvector(words))")
        conn.execute("""INSERT INTO events VALUES ('acme', 7, ARRAY['guardrail', 'müller']),
                                                  ('acme', 1500, ARRAY['export'])""")
        rows = conn.execute("""SELECT tableoid::regclass::text, seq FROM events
                               WHERE array_to_tsvector(words) @@ 'müller'::tsquery""").fetchall()
        assert rows == [("events_0", 7)]
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("INSERT INTO events VALUES ('acme', 5000, ARRAY['late'])")

    # A transaction-scoped advisory lock: held until that transaction ends, by it alone.
    with psycopg.connect(postgres_url) as holder, psycopg.connect(postgres_url) as other:
        holder.execute("SELECT pg_advisory_xact_lock(42)")
        assert other.execute("SELECT pg_try_advisory_xact_lock(42)").fetchone() == (False,)
        other.rollback()
        got: list[tuple] = []
        waiter = threading.Thread(target=lambda: got.append(
            other.execute("SELECT 1 FROM pg_advisory_xact_lock(42)").fetchone()))
        waiter.start()

        def other_waits() -> bool:
            row = holder.execute("SELECT NOT granted FROM pg_locks WHERE locktype = 'advisory'"
                                 " AND pid = %s", [other.info.backend_pid]).fetchone()
            return row is not None and row[0]

        wait_for(other_waits, 10, "the second transaction to wait for the lock")
        assert not got
        holder.commit()
        waiter.join(10)
        assert got == [(1,)]
        other.rollback()


def _bootstrap(script: str) -> subprocess.CompletedProcess:
    """Runs bash with scripts/bootstrap.sh sourced and no PostgreSQL URL from the caller."""
    env = {k: v for k, v in os.environ.items() if k != "SEALOG_TEST_POSTGRES_URL"}
    return subprocess.run(["bash", "-c", f". scripts/bootstrap.sh\n{script}"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=5) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except psycopg.OperationalError:
        return False


@pytest.mark.slow
def test_own_server_stops_at_exit_and_is_cleaned_up_after_a_killed_run() -> None:
    if not glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"):
        pytest.skip("no PostgreSQL server installed (scripts/test installs Debian's)")
    report = 'echo "$SEALOG_TEST_POSTGRES_URL"; echo "$TEST_POSTGRES_DIR"'
    killed = _bootstrap(f"start_test_postgres\n{report}\nkill -KILL $$")
    assert killed.returncode == -9, killed.stderr
    killed_url, killed_dir = killed.stdout.split()
    try:
        assert _answers(killed_url)  # a run killed before its trap leaves its server running
        ended = _bootstrap(f"start_test_postgres\n{report}")
        assert ended.returncode == 0, ended.stderr
        assert f"stopping the PostgreSQL server a killed test run left in {killed_dir}" \
            in ended.stderr
        assert not _answers(killed_url) and not Path(killed_dir).exists()
        ended_url, ended_dir = ended.stdout.split()
        assert ended_url != killed_url and ended_url.startswith("postgresql://postgres@127.0.0.1:")
        assert not _answers(ended_url) and not Path(ended_dir).exists()
    finally:
        _bootstrap(f"TEST_POSTGRES_DIR={killed_dir} TEST_POSTGRES_BIN=$(postgres_bin_dir)\n"
                   "stop_test_postgres")


def test_a_url_the_caller_sets_is_kept_and_nothing_starts() -> None:
    given = "postgresql://someone@db.example:6543/admin"
    kept = _bootstrap('SEALOG_TEST_POSTGRES_URL=' + given + '\nstart_test_postgres\n'
                      'echo "$SEALOG_TEST_POSTGRES_URL|$TEST_POSTGRES_DIR"')
    assert kept.returncode == 0, kept.stderr
    assert kept.stdout.strip() == f"{given}|"
