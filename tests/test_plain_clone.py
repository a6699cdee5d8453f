"""The suite runs in a copy of the repository with nothing beside it, as in a plain clone."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _repository_files() -> list[str]:
    """The files a clone has: tracked ones, and new ones not ignored (a change not yet
    committed)."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (REPO / name).is_file()]


@pytest.mark.slow
def test_tests_need_nothing_outside_the_repository(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    for name in _repository_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, clone / name)
    env = {**os.environ, "PYTHONPATH": str(clone / "src")}
    env.pop("SEALOG_FAIL_ON_SKIP", None)

    def pytest_in_clone(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                              cwd=clone, env=env, capture_output=True, text=True, timeout=240)

    collected = pytest_in_clone("--collect-only", "-q")
    assert collected.returncode == 0, collected.stdout[-3000:] + collected.stderr[-2000:]
    # The tests that read data files: each must find its data inside the clone.
    ran = pytest_in_clone("-q", "tests/test_merkle.py", "tests/test_note.py")
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-2000:]
    assert " passed" in ran.stdout and "skipped" not in ran.stdout
