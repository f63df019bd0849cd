"""The benchmark scripts that read runs, on real runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rsir.cli import main

from .conftest import LOOP

ROOT = Path(__file__).resolve().parent.parent


def test_the_successor_replay_reads_the_test_gain_of_probed_runs(tmp_path):
    """A default round run with train.test_probes: the replay gives, at every cap, the test gain
    of the epoch the cap keeps, and as run exactly the round's own test gain."""
    data = tmp_path / "log.txt"
    assert main(["data", "synth", str(data), "--users", "300", "--items", "80", "--seed", "1"]) == 0
    options = [o for o in LOOP[4:] if o not in ("--rounds", "2", "--tau", "10")]  # the default round
    run = tmp_path / "runs" / "study" / "run"
    assert main(["improve", "--data", str(data), "--out", str(run), "--test-probes", *options]) == 0
    out = tmp_path / "replay.json"
    subprocess.run(
        [sys.executable, "benchmarks/successor_budget.py", "--runs", str(tmp_path / "runs"), "--out", str(out)],
        cwd=ROOT,
        check=True,
    )
    (row,) = json.loads(out.read_text())["runs"]
    rounds = json.loads((run / "metrics.json").read_text())["rounds"]
    for metric in ("recall@10", "ndcg@10"):
        gain = rounds[1]["test"][metric] / rounds[0]["test"][metric] - 1
        assert row["as_run"]["test_gain"][metric] == pytest.approx(gain)
    # every replayed point: the test gain of the first best validation epoch within its epochs
    log = [json.loads(line) for line in (run / "round-1" / "log.jsonl").read_text().splitlines()]
    points = [row["as_run"], *row["within_cost"].values(), *row["patience"].values()]
    for point in points:
        scores = [r["valid_ndcg@20"] for r in log[: point["epochs"]]]
        kept = log[scores.index(max(scores))]
        gain = kept["test_ndcg@10"] / rounds[0]["test"]["ndcg@10"] - 1
        assert point["test_gain"]["ndcg@10"] == pytest.approx(gain)
