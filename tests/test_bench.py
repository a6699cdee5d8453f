"""The bench scripts run end to end on a few thousand events and print every figure the
performance notes quote, for SQLite and for PostgreSQL (the figures themselves are not
checked: these machines are noisy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"

# Each script, small arguments, and the start of every line it must print with a figure.
SCRIPTS = {
    "ingest.py": (["--events", "3000", "--rounds", "2", "--postgres", "{postgres}"], [
        "raw insert, events + FTS5 (no tree):",
        "raw insert, events + FTS5 + tree (floor):",
        "library ceiling, events prepared beforehand:",
        "library ingest, prepared in-process:",
        "library ingest, with a preparing process:",
        "PostgreSQL bare COPY, events + tokens + tree (floor):",
        "PostgreSQL library ceiling, events prepared beforehand:",
        "PostgreSQL library ingest, prepared in-process:",
        "PostgreSQL library ingest, with a preparing process:",
        "HTTP ingest, batches of 500, 2 clients:",
        "sealog serve peak RSS during HTTP ingest:",
        "PostgreSQL HTTP ingest, batches of 500, 2 API processes, 4 clients:",
        "PostgreSQL sealog serve --workers 2 peak RSS:",
    ]),
    "query.py": (["--events", "3000", "--db", "{tmp}/query.db", "--postgres", "{postgres}"], [
        "newest 50", "+ one category", "+ a free-text term", "+ a qualifier",
        "PostgreSQL newest 50", "PostgreSQL + one category", "PostgreSQL + a free-text term",
        "PostgreSQL + a qualifier",
    ]),
    "export.py": (["--events", "3000", "--data", "{tmp}/export", "--postgres", "{postgres}"], [
        "CSV:", "Excel:", "JSON Lines bundle with proofs:", "worker peak RSS exporting",
        "PostgreSQL CSV:", "PostgreSQL Excel:", "PostgreSQL JSON Lines bundle with proofs:",
        "PostgreSQL worker peak RSS exporting",
    ]),
    "verify.py": (["--events", "3000"], [
        "bare read + SHA-256 of each event (baseline):", "sealog verify of the bundle",
    ]),
    "middleware.py": (["--requests", "300"], ["added per request (ms):", "ratio:"]),
    "streams.py": (["--events", "3000", "--live-seconds", "2", "--ingest-events", "4000",
                    "--rounds", "2", "--postgres", "{postgres}"], [
        "read + serialise (floor):", "PostgreSQL read + serialise (floor):",
        "lag at", "PostgreSQL lag at", "HTTP ingest, no stream",
        "PostgreSQL HTTP ingest, no stream",
    ]),
    "retention.py": (["--events", "4000", "--seconds", "2", "--postgres", "{postgres}"], [
        "ingest at 1,000 events/s alone:", "ingest at 1,000 events/s beside purge:",
        "purge by sealog serve:", "space:", "PostgreSQL ingest at 1,000 events/s alone:",
        "PostgreSQL ingest at 1,000 events/s beside purge:", "PostgreSQL purge by sealog serve:",
        "PostgreSQL space:",
    ]),
    "wal.py": (["--seconds", "3"], ["WAL with 1 writer(s)", "WAL with 4 writer(s)"]),
}


def run(script: str, args: list[str]) -> tuple[int, str]:
    """Runs a bench script to its end; its pid and output. Fails on a non-zero exit."""
    proc = subprocess.Popen([sys.executable, str(BENCH / script), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=240)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-2000:]
    return proc.pid, out


def bench_databases(admin_url: str, pid: int) -> list[str]:
    """The databases a bench script's process made (their names carry its pid)."""
    import psycopg

    with psycopg.connect(admin_url) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                            (f"sealog_bench_%\\_{pid}\\_%",)).fetchall()
    return [r[0] for r in rows]


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_prints_its_figures(script: str, tmp_path: Path,
                                         request: pytest.FixtureRequest) -> None:
    args, starts = SCRIPTS[script]
    postgres = request.getfixturevalue("postgres_server") if "{postgres}" in args else ""
    pid, out = run(script, [a.format(tmp=tmp_path, postgres=postgres) for a in args])
    lines = out.splitlines()
    for start in starts:
        line = next((li for li in lines if li.startswith(start)), None)
        assert line is not None, f"{script} printed no line starting {start!r}:\n{out}"
        assert re.search(r"\d", line[len(start):]), f"no figure in {line!r}"
    if postgres:
        assert bench_databases(postgres, pid) == [], "the throwaway databases were left"


def test_postgres_none_measures_sqlite_alone(tmp_path: Path) -> None:
    _, out = run("query.py", ["--events", "500", "--db", str(tmp_path / "query.db"),
                              "--postgres", "none"])
    lines = out.splitlines()
    assert "PostgreSQL: skipped (--postgres none)" in lines
    assert any(li.startswith("newest 50") for li in lines)
    assert not any(li.startswith(("PostgreSQL newest", "(warm-up) PostgreSQL")) for li in lines)
