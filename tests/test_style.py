"""Lint, format and type checks run with the tests, so CI (which runs exactly the test
command) enforces them: ruff's rules and formatter, and mypy on the package's type hints."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "command",
    [
        ["ruff", "check", "rsir", "tests", "docs", "benchmarks"],
        ["ruff", "format", "--check", "rsir", "tests", "docs", "benchmarks"],
        ["mypy", "rsir"],
    ],
    ids=["ruff-check", "ruff-format", "mypy"],
)
def test_the_tree_passes(command):
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]


def test_importing_rsir_changes_nothing_in_the_process():
    """No import-time side effects: the umask, the environment and torch's threads stay as
    they were, whichever of the library's packages a host program imports."""
    probe = (
        "import os, torch; torch.set_num_threads(1); os.umask(0o027); env = dict(os.environ)\n"
        "import rsir, rsir.cli, rsir.experiments, rsir.generation, rsir.training, rsir.files\n"
        "assert os.umask(0o027) == 0o027 and dict(os.environ) == env and torch.get_num_threads() == 1\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_finished_files_get_the_processs_usual_mode(tmp_path):
    import os

    from rsir.files import write_json

    old = os.umask(0o027)
    try:
        write_json(tmp_path / "a.json", {"a": 1})
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert not list(tmp_path.glob(".*.tmp"))
