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
    of the epoch the cap keeps, and as run exactly the round's own test gain; the other finished
    rounds beside it are left out."""
    data = tmp_path / "log.txt"
    assert main(["data", "synth", str(data), "--users", "300", "--items", "80", "--seed", "1"]) == 0
    options = [o for o in LOOP[4:] if o not in ("--rounds", "2", "--tau", "10")]  # the default round
    run = tmp_path / "runs" / "study" / "run"
    assert main(["improve", "--data", str(data), "--out", str(run), "--test-probes", *options]) == 0
    # Not default rounds on a real log, so not replayed: the built-in data, a budget counted in
    # targets, and fine-tuning without generated data.
    others = {
        "builtin": ["--synthetic-users", "300", "--synthetic-items", "80"],
        "targets": ["--data", str(data), "--budget-unit", "targets"],
        "no_generation": ["--data", str(data), "--attempts", "0"],
    }
    for name, more in others.items():
        assert main(["improve", "--out", str(tmp_path / "runs" / "study" / name), *more, *options]) == 0
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
    # The replay's --cost-cap epochs are the ones a capped run of the same round stops at
    capped = tmp_path / "capped"
    assert main(["improve", "--data", str(data), "--out", str(capped), "--cost-cap", "1.0", *options]) == 0
    epochs = json.loads((capped / "metrics.json").read_text())["rounds"][1]["epochs"]
    assert row["within_cost_cap"]["1.0"]["epochs"] == epochs < len(log)


def test_the_scale_run_resumes_with_whole_rates_and_no_wall_time_ratio(tmp_path, monkeypatch):
    """``scale_run --resume`` continues the improve run in --work: the per-epoch rates it reports
    come from the run's logs, whole, while a wall time is then only the last process's, so no
    ratio of wall times is formed from it."""
    data = tmp_path / "log.txt"
    assert main(["data", "synth", str(data), "--users", "300", "--items", "80", "--seed", "1"]) == 0
    work, small = tmp_path / "work", ["--dim", "16", "--negatives", "16", "--attempts", "1", "--quiet"]
    command = [sys.executable, "benchmarks/scale_run.py", "--data", str(data), "--work", str(work), "--threads", "1"]
    first, again = tmp_path / "first.json", tmp_path / "again.json"
    subprocess.run([*command, "--out", str(first), "--", *small], cwd=ROOT, check=True, capture_output=True)
    subprocess.run([*command, "--resume", "--out", str(again), "--", *small], cwd=ROOT, check=True, capture_output=True)
    first_run, resumed = json.loads(first.read_text()), json.loads(again.read_text())
    assert not first_run["resumed"] and resumed["resumed"]
    assert resumed["runs"][0]["rounds"] == first_run["runs"][0]["rounds"] != []
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    from scale_run import against_first

    pair = [first_run["runs"][0], {**first_run["runs"][0], "nproc": 2}]
    assert against_first(pair, resumed=False)[0]["improve_per_second"] == 1.0
    assert "improve_per_second" not in against_first(pair, resumed=True)[0]
    assert against_first(pair, resumed=True)[0]["train_targets_per_second"] == 1.0


def test_the_recbole_side_by_side_trains_and_reports_rsirs_side(tmp_path):
    """The benchmark's rsir side on a small log (RecBole's side needs its own environment): it
    trains the paper's SASRec with the full softmax and the chosen target weighting, keeps the
    best validation epoch and counts the epoch's targets and steps as the trainer does."""
    from rsir.data import leave_one_out, read_dataset
    from rsir.data.batching import count_targets

    data = tmp_path / "log.txt"
    assert main(["data", "synth", str(data), "--users", "300", "--items", "80", "--seed", "1"]) == 0
    out, equal = tmp_path / "side_by_side", tmp_path / "equal_weight"
    command = ["benchmarks/bench_vs_recbole.py", "--data", str(data), "--budget-s", "3", "--threads", "1"]
    subprocess.run([sys.executable, *command, "--only", "rsir", "--out", str(out)], cwd=ROOT, check=True)
    more = ["--only", "rsir", "--target-weighting", "equal", "--out", str(equal)]
    subprocess.run([sys.executable, *command, *more], cwd=ROOT, check=True)
    report, other = (json.loads(path.with_suffix(".json").read_text()) for path in (out, equal))
    # the weighting reaches the training: the same seed's first epoch trains another loss
    assert (report["target_weighting"], other["target_weighting"]) == ("batch", "equal")
    assert report["rsir"]["history"][0]["loss"] != other["rsir"]["history"][0]["loss"]
    rsir, history = report["rsir"], report["rsir"]["history"]
    assert report["recbole"] is None and "| n/a |" in out.with_suffix(".md").read_text()
    targets, rows = count_targets(leave_one_out(read_dataset(data)).train, 50)
    assert rsir["targets_per_epoch"] == targets and rsir["steps_per_epoch"] == -(-rows // 256)
    best = max(history, key=lambda r: r["valid_ndcg@20"])
    assert rsir["best_epoch"] == best["epoch"] and rsir["epochs"] == len(history)
    assert rsir["stopped_by"] in ("budget", "patience") and rsir["generation"]["kept"] > 0


def test_the_packing_step_times_the_trained_step_against_full_rows(tmp_path):
    """The packing estimate on a default round's real and synthetic rows: the plain and the
    round's epoch (which holds the synthetic rows too) are timed, the whole step and its
    encoder as trained and packed; bad options and a run on other data are one line, exit 2,
    nothing written."""
    data = tmp_path / "log.txt"
    assert main(["data", "synth", str(data), "--users", "300", "--items", "80", "--seed", "1"]) == 0
    run = tmp_path / "run"
    options = ["--dim", "16", "--max-epochs", "2", "--negatives", "16", "--max-len", "20", "--quiet"]
    assert main(["improve", "--data", str(data), "--out", str(run), *options]) == 0
    out = tmp_path / "packing.json"
    command = [sys.executable, "benchmarks/packing_step.py", "--data", str(data), "--steps", "3", "--repeats", "1"]
    subprocess.run([*command, "--round-dir", str(run), "--out", str(out)], cwd=ROOT, check=True, capture_output=True)
    epochs = json.loads(out.read_text())["epochs"]
    assert set(epochs) == {"plain", "round"}
    assert epochs["round"]["targets_per_step"] != epochs["plain"]["targets_per_step"]
    for row in epochs.values():
        # timings of a few milliseconds on a shared machine: their order is not tested
        assert row["steps"] == 3 and row["repeats"] == 1 and min(row["milliseconds_per_step"].values()) > 0
        assert set(row["milliseconds_per_step"]) == {"step", "step_packed", "encoder_as_trained", "encoder_packed"}
    other = tmp_path / "other.txt"
    assert main(["data", "synth", str(other), "--users", "50", "--items", "40", "--seed", "2"]) == 0
    for bad, says in (
        (["--data", str(other), "--round-dir", str(run)], "is not a loop run on"),
        (["--steps", "0"], "must be at least 1"),
    ):
        refused = subprocess.run(
            [*command, *bad, "--out", str(tmp_path / "no.json")], cwd=ROOT, capture_output=True, text=True
        )
        assert refused.returncode == 2 and says in refused.stderr.splitlines()[-1]
        assert not (tmp_path / "no.json").exists()
