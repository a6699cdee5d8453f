"""The bench scripts run end to end on a few thousand events and print every figure the
performance notes quote (the figures themselves are not checked: these machines are noisy)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent / "bench"

# Each script, small arguments, and the start of every line it must print with a figure.
SCRIPTS = {
    "ingest.py": (["--events", "3000", "--rounds", "2"], [
        "raw insert, events + FTS5 (no tree):",
        "raw insert, events + FTS5 + tree (floor):",
        "library ceiling, events prepared beforehand:",
        "library ingest, prepared in-process:",
        "library ingest, with a preparing process:",
        "HTTP ingest, batches of 500, 2 clients:",
        "sealog serve peak RSS during HTTP ingest:",
    ]),
    "query.py": (["--events", "3000", "--db", "{tmp}/query.db"], [
        "newest 50", "+ one category", "+ a free-text term", "+ a qualifier",
    ]),
    "export.py": (["--events", "3000", "--data", "{tmp}/export"], [
        "CSV:", "Excel:", "JSON Lines bundle with proofs:", "worker peak RSS exporting",
    ]),
    "verify.py": (["--events", "3000"], [
        "bare read + SHA-256 of each event (baseline):", "sealog verify of the bundle",
    ]),
    "middleware.py": (["--requests", "300"], ["added per request (ms):", "ratio:"]),
    "wal.py": (["--seconds", "3"], ["WAL with 1 writer(s)", "WAL with 4 writer(s)"]),
}


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_bench_script_prints_its_figures(script: str, tmp_path: Path) -> None:
    args, starts = SCRIPTS[script]
    args = [a.format(tmp=tmp_path) for a in args]
    done = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    for start in starts:
        line = next((li for li in lines if li.startswith(start)), None)
        assert line is not None, f"{script} printed no line starting {start!r}:\n{done.stdout}"
        assert re.search(r"\d", line[len(start):]), f"no figure in {line!r}"
