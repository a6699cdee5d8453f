"""SEALOG_FAIL_ON_SKIP=1, which .ci/run sets, turns every kind of skip into a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

SKIPPING = {
    "test_skip_call.py": "import pytest\n\ndef test_x():\n    pytest.skip('no browser')\n",
    "test_skip_mark.py": "import pytest\n\n@pytest.mark.skip(reason='no browser')\n"
                         "def test_x():\n    pass\n",
    "test_skip_module.py": "import pytest\n\npytest.skip('no browser', allow_module_level=True)\n"
                           "\ndef test_x():\n    pass\n",
    "test_skip_import.py": "import pytest\n\npytest.importorskip('no_such_module_here')\n\n"
                           "def test_x():\n    pass\n",
}


def run_pytest(folder: Path, *, fail_on_skip: bool) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
    env.pop("SEALOG_FAIL_ON_SKIP", None)
    if fail_on_skip:
        env["SEALOG_FAIL_ON_SKIP"] = "1"
    # The project's conftest loaded as a plugin, over test files outside the project.
    return subprocess.run([sys.executable, "-m", "pytest", "-c", os.devnull, "-p", "conftest",
                           "-p", "no:cacheprovider",
                           "--continue-on-collection-errors", "-rA", str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=120)


def test_every_kind_of_skip_fails_when_skips_are_forbidden(tmp_path: Path) -> None:
    for name, text in SKIPPING.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "test_passing.py").write_text("def test_y():\n    pass\n")

    allowed = run_pytest(tmp_path, fail_on_skip=False)
    assert allowed.returncode == 0, allowed.stdout
    assert "1 passed, 4 skipped" in allowed.stdout, allowed.stdout

    forbidden = run_pytest(tmp_path, fail_on_skip=True)
    assert forbidden.returncode == 1, forbidden.stdout
    failed = [line for line in forbidden.stdout.splitlines()
              if line.startswith(("FAILED", "ERROR")) and "SEALOG_FAIL_ON_SKIP=1" in line]
    for name in SKIPPING:
        assert any(name in line for line in failed), forbidden.stdout
    assert "PASSED test_passing.py::test_y" in forbidden.stdout
