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
