from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rsir.cli import main
from rsir.data import leave_one_out, make_synthetic
from rsir.generation.loop import load_synthetic
from rsir.models.checkpoint import read_checkpoint
from rsir.training.trainer import TrainParams

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

# The small self-improvement run shared by the loop and reliability tests: 300 users,
# 80 items, three rounds (0, 1, 2) of 4 epochs each.
LOOP = [
    "--synthetic-users",
    "300",
    "--synthetic-items",
    "80",
    "--dim",
    "16",
    "--blocks",
    "1",
    "--heads",
    "1",
    "--max-len",
    "20",
    "--max-epochs",
    "4",
    "--negatives",
    "16",
    "--batch-size",
    "64",
    "--lr",
    "0.003",
    "--rounds",
    "2",
    "--tau",
    "10",
    "--quiet",
]
LOOP_ROUNDS = 3


def quick(**changes) -> TrainParams:
    """Training options small enough for a test: 8 epochs on the small data."""
    return TrainParams(**{"max_epochs": 8, "patience": 8, "batch_size": 64, "lr": 3e-3, "negatives": 64, **changes})


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_dataset():
    return make_synthetic(600, 120, n_clusters=8, seed=3)


@pytest.fixture(scope="session")
def small_split(small_dataset):
    return leave_one_out(small_dataset)


@pytest.fixture(scope="session")
def finished(tmp_path_factory):
    """An uninterrupted ``rsir improve`` run with the LOOP options."""
    out = tmp_path_factory.mktemp("loop") / "run"
    assert main(["improve", "--out", str(out), *LOOP]) == 0
    return out


def without_timings(value):
    """A report with every wall-time field removed (they differ between runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if "seconds" not in k and "per_second" not in k}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def _json(path: Path):
    return json.loads(path.read_text())


def _log(path: Path) -> list[dict]:
    return [without_timings(json.loads(line)) for line in path.read_text().splitlines()]


def assert_same_run(expected: Path, actual: Path, rounds: int = LOOP_ROUNDS) -> None:
    """Two improve run directories hold the same results: metrics, training logs, final
    weights, synthetic data and its exports (wall times and the writing commit aside); no
    temporary file is left."""
    mine, theirs = (without_timings(_json(run / "metrics.json")) for run in (actual, expected))
    assert {**mine, "rsir": None} == {**theirs, "rsir": None}
    for k in range(rounds):
        a, b = expected / f"round-{k}", actual / f"round-{k}"
        assert without_timings(_json(b / "metrics.json")) == without_timings(_json(a / "metrics.json")), k
        assert _log(b / "log.jsonl") == _log(a / "log.jsonl"), k
        weights_a, weights_b = read_checkpoint(a / "model.pt")["state"], read_checkpoint(b / "model.pt")["state"]
        assert weights_a.keys() == weights_b.keys() and all(torch.equal(weights_a[n], weights_b[n]) for n in weights_a)
        if k == rounds - 1:
            assert not (b / "synthetic.npz").exists()  # the last round only trains
            continue
        sa, sb = load_synthetic(a / "synthetic.npz"), load_synthetic(b / "synthetic.npz")
        for field in ("items", "offsets", "users", "origin"):
            assert np.array_equal(getattr(sa, field), getattr(sb, field)), (k, field)
        for name in ("synthetic.txt", "synthetic.inter"):
            assert (b / name).read_bytes() == (a / name).read_bytes(), (k, name)
        assert without_timings(_json(b / "generation.json")) == without_timings(_json(a / "generation.json"))
    assert not list(actual.rglob("*.tmp"))
