"""The self-improvement loop end to end on synthetic data, and resuming after a hard kill."""

from __future__ import annotations

import json
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest
import torch

from rsir.cli import main
from rsir.data import leave_one_out, read_dataset
from rsir.evaluation import per_user
from rsir.generation.generate import GenerationParams
from rsir.generation.loop import LoopSpec, RoundResult, RunResult, improve, load_synthetic

from .conftest import LOOP, quick, without_timings


def with_rounds(options: list[str], rounds: int) -> list[str]:
    at = options.index("--rounds") + 1
    return [*options[:at], str(rounds), *options[at + 1 :]]


def test_two_rounds_write_a_complete_run_dir(finished):
    report = json.loads((finished / "metrics.json").read_text())
    rounds = report["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[0]["synthetic_sequences"] == 0
    assert 0 < rounds[1]["synthetic_sequences"] < rounds[2]["synthetic_sequences"]
    assert rounds[2]["train_interactions"] > rounds[1]["train_interactions"] > rounds[0]["train_interactions"]
    for r in rounds:
        assert set(r["seconds"]) >= {"train", "evaluate"} and 0 <= r["test"]["ndcg@10"] <= 1
    for k in (0, 1):
        gen = rounds[k]["generation"]
        assert gen["kept"] == len(load_synthetic(finished / f"round-{k}" / "synthetic.npz"))
        assert set(gen["analysis"]) >= {
            "length_histogram",
            "density_before",
            "density_after",
            "novel_transition_share",
            "apen_synthetic",
            "own_item_share",
        }
        assert gen["analysis"]["density_after"] != gen["analysis"]["density_before"]
        assert all(0 <= a <= 1 for a in gen["acceptance_by_step"])
    assert (finished / "metrics.md").read_text().count("\n") == 9  # 3 rounds, and two lines in words
    assert (finished / "metrics.png").read_bytes()[:4] == b"\x89PNG"
    assert not (finished / "round-2" / "synthetic.npz").exists()  # the last round only trains


def test_exports_are_readable_in_original_ids(finished):
    stored = load_synthetic(finished / "round-0" / "synthetic.npz")
    for name in ("synthetic.txt", "synthetic.inter"):
        data = read_dataset(finished / "round-0" / name)
        assert data.sequences.n_interactions == stored.n_interactions
        # Pseudo-users are new ids after the real ones (300 real users, ids 1..300).
        assert int(np.min(data.user_ids)) > 300


def test_pseudo_users_of_different_rounds_never_share_an_id(finished):
    real = set(read_dataset(finished / "round-0" / "synthetic.inter").user_ids) & set(range(1, 301))
    ids = [set(read_dataset(finished / f"round-{k}" / "synthetic.inter").user_ids) for k in (0, 1)]
    assert not real and ids[0] and ids[1] and not ids[0] & ids[1]


def test_recbole_benchmark_export_keeps_synthetic_users_in_train_and_rsirs_split(finished, tmp_path, capsys):
    out = tmp_path / "recbole" / "toy"
    assert main(["export", str(finished), "--round", "2", "--out", str(out), "--max-len", "20"]) == 0
    assert "dataset: toy" in capsys.readouterr().out
    parts = {}
    for part in ("train", "valid", "test"):  # RecBole's atomic format: a typed header, tab-separated
        frame = pd.read_csv(out / f"toy.{part}.inter", sep="\t", dtype=str, keep_default_na=False)
        assert list(frame.columns) == ["user_id:token", "item_id_list:token_seq", "item_id:token"]
        parts[part] = frame.set_axis(["user", "history", "item"], axis=1)
    round0 = read_dataset(finished / "round-0" / "synthetic.inter")  # pseudo-users of round 0
    real = dataset_of(finished)
    split = leave_one_out(real)
    assert parts["test"].user.tolist() == real.user_ids[split.users].astype(str).tolist()
    assert parts["test"].item.tolist() == real.item_ids[split.test.targets - 1].astype(str).tolist()
    assert parts["valid"].item.tolist() == real.item_ids[split.valid.targets - 1].astype(str).tolist()
    histories = [
        " ".join(real.item_ids[np.asarray(row[-20:]) - 1].astype(str)) for row in split.test.history.to_lists()
    ]
    assert parts["test"].history.tolist() == histories
    # Every synthetic sequence of rounds 0 and 1 is in train, under the id its round's file gave it.
    synthetic = set(parts["train"].user) - set(parts["test"].user)
    exported = {str(u) for k in (0, 1) for u in read_dataset(finished / f"round-{k}" / "synthetic.inter").user_ids}
    assert synthetic == exported and set(round0.user_ids.astype(str)) <= synthetic
    rounds = json.loads((finished / "metrics.json").read_text())["rounds"]
    assert len(parts["train"]) == rounds[2]["train_interactions"] - rounds[2]["train_sequences"]  # one row per target
    first = parts["train"][parts["train"].user == str(round0.user_ids[0])]
    assert first.item.tolist() == round0.item_ids[round0.sequences[0][1:] - 1].astype(str).tolist()


def dataset_of(run):
    from rsir.recommender import Recommender

    return Recommender.load(run / "round-0" / "model.pt").dataset


def test_the_library_resumes_only_a_run_of_the_same_options(tmp_path, small_dataset):
    """improve() from Python checks the run directory as the command line does: the same
    options resume (here: return the finished rounds), other options are refused in one line."""
    import dataclasses

    import pytest

    from rsir.errors import ConfigError

    spec = LoopSpec(model={"dim": 16, "blocks": 1}, train=quick(max_epochs=2), generate=GenerationParams(attempts=1))
    first = improve(small_dataset, spec, tmp_path / "run", progress=False)
    again = improve(small_dataset, spec, tmp_path / "run", progress=False)
    assert without_timings(again.to_dict()) == without_timings(first.to_dict())
    for changed, name in (
        (dataclasses.replace(spec, train=quick(max_epochs=3)), "train.max_epochs 2, now 3"),
        (dataclasses.replace(spec, generate=GenerationParams(attempts=1, tau=10)), "generate.tau inf, now 10"),
    ):
        with pytest.raises(ConfigError, match=f"holds a run with a different config: {name}"):
            improve(small_dataset, changed, tmp_path / "run", progress=False)


def test_a_rerun_of_a_finished_run_does_no_work(finished, capsys):
    before = (finished / "metrics.json").read_text()
    started = time.perf_counter()
    assert main(["improve", "--out", str(finished), *LOOP]) == 0
    assert time.perf_counter() - started < 10
    assert (finished / "metrics.json").read_text() == before


def test_more_rounds_extend_a_finished_run_and_fewer_are_refused(finished, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    assert main(["improve", "--out", str(out), *with_rounds(LOOP, 3)]) == 0
    before = json.loads((finished / "metrics.json").read_text())["rounds"]
    after = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in after] == [0, 1, 2, 3]
    assert without_timings(after[:2]) == without_timings(before[:2])  # finished rounds kept, not redone
    assert after[2]["generation"]["kept"] > 0 and (out / "round-2" / "synthetic.npz").exists()
    assert after[3]["train_interactions"] > after[2]["train_interactions"]
    assert main(["improve", "--out", str(out), *with_rounds(LOOP, 1)]) == 2
    assert "different config" in capsys.readouterr().err


def test_a_resumed_loop_generates_with_the_threads_asked_for(tmp_path):
    # Round 0 is finished, so the resumed run generates before it trains anything.
    out, options = tmp_path / "run", [*LOOP, "--threads", "1"]
    assert main(["improve", "--out", str(out), *with_rounds(options, 0)]) == 0
    torch.set_num_threads(2)
    assert main(["improve", "--out", str(out), *options]) == 0
    assert json.loads((out / "round-0" / "generation.json").read_text())["threads"] == 1


# Hard kills at many points of a run, and their resume, are tested in test_reliability.py.


def test_resume_without_a_run_is_an_error(tmp_path, capsys):
    assert main(["improve", "--out", str(tmp_path / "none"), "--resume", *LOOP]) == 2
    assert "holds no run to resume" in capsys.readouterr().err


def test_the_loop_from_python_needs_only_the_options_it_changes(small_dataset, tmp_path):
    spec = LoopSpec(
        model={"dim": 16, "blocks": 1, "heads": 1, "max_len": 20},
        train=quick(max_epochs=2),
        generate=GenerationParams(attempts=2, tau=10),
    )
    assert (spec.backbone, spec.improve.rounds) == ("sasrec", 1)  # the command line's defaults
    report = improve(small_dataset, spec, tmp_path / "loop", progress=False)
    first, second = report.rounds
    assert (first.round, second.round) == (0, 1)
    assert first.generation is not None and second.generation is None  # the last round generates nothing
    assert second.synthetic_sequences == first.generation["kept"] > 0
    assert second.train_sequences == first.train_sequences + first.generation["kept"]
    assert {"train", "evaluate", "generate", "analyse"} <= set(first.seconds)
    # What it returns is what it wrote, in the same types
    assert RunResult.read(tmp_path / "loop" / "metrics.json") == report


def test_a_cost_cap_bounds_the_successors_targets_by_round_0s(small_dataset, tmp_path):
    """improve.cost_cap: the successor trains whole epochs while their next-item targets stay
    within the cap times round 0's whole training; round 0 and the uncapped run are unchanged."""
    from rsir.generation.loop import ImproveParams
    from rsir.training.trainer import targets_per_epoch

    def spec(cap: float) -> LoopSpec:
        return LoopSpec(
            model={"dim": 16, "blocks": 1, "heads": 1, "max_len": 20},
            train=quick(max_epochs=6, patience=6),
            generate=GenerationParams(attempts=2),
            improve=ImproveParams(cost_cap=cap),
        )

    capped = improve(small_dataset, spec(1.0), tmp_path / "capped", progress=False)
    free = improve(small_dataset, spec(0.0), tmp_path / "free", progress=False)
    assert (capped.rounds[0].test, capped.rounds[0].epochs) == (free.rounds[0].test, free.rounds[0].epochs)
    real = leave_one_out(small_dataset).train
    plain = capped.rounds[0].epochs * targets_per_epoch(real, spec(1.0).train, 20)
    successor = real.concat(load_synthetic(tmp_path / "capped" / "round-0" / "synthetic.npz"))
    per_epoch = targets_per_epoch(successor, spec(1.0).train, 20)
    epochs = capped.rounds[1].epochs
    assert per_epoch > plain / 6  # a successor's epoch costs more than a plain one: the cap binds
    assert epochs * per_epoch <= plain < (epochs + 1) * per_epoch
    assert 1 <= epochs < free.rounds[1].epochs == 6
    from rsir.errors import ConfigError

    with pytest.raises(ConfigError, match="cost_cap must be >= 0"):
        ImproveParams(cost_cap=-1.0).validate()


def test_a_round_without_generation_distils_from_the_previous_round(tmp_path):
    """attempts = 0 with distill_weight > 0: self-distillation, the cheap rival of a round.
    Round 1 trains on the real data alone, with round 0's model as its teacher; round 0 is
    the plain training (no teacher yet), equal to a run without distillation."""
    common = [
        "--synthetic-users",
        "200",
        "--synthetic-items",
        "60",
        "--dim",
        "16",
        "--blocks",
        "1",
        "--heads",
        "1",
        "--max-epochs",
        "3",
        "--negatives",
        "16",
        "--batch-size",
        "64",
        "--rounds",
        "1",
        "--successor",
        "scratch",
        "--quiet",
    ]
    distilled, plain = tmp_path / "distilled", tmp_path / "plain"
    assert main(["improve", "--out", str(distilled), *common, "--attempts", "0", "--distill-weight", "0.5"]) == 0
    assert main(["improve", "--out", str(plain), *common, "--attempts", "0"]) == 0
    rounds = json.loads((distilled / "metrics.json").read_text())["rounds"]
    assert [r["synthetic_sequences"] for r in rounds] == [0, 0] and not (
        distilled / "round-0" / "synthetic.npz"
    ).exists()
    other = json.loads((plain / "metrics.json").read_text())["rounds"]
    assert rounds[0]["test"] == other[0]["test"]  # round 0 has no teacher
    assert rounds[1]["test"] != other[1]["test"]  # round 1 learns from round 0's model as well
    assert other[1]["test"] == other[0]["test"]  # without a teacher the retrained round repeats round 0


def test_the_report_gives_each_rounds_gain_with_its_interval_over_users(finished):
    """metrics.md: each round's gain over round 0 from the saved test ranks, a bootstrap
    interval over users around it, and the last round's verdict in words from that interval."""
    report = (finished / "metrics.md").read_text().splitlines()
    ranks = [np.load(finished / f"round-{k}" / "test_ranks.npy") for k in (0, 2)]
    base, last = (per_user(r, "recall@10") for r in ranks)
    cell = report[4].split("|")[9].strip()  # round 2's "vs round 0" cell
    gain, low, high = (float(x) for x in re.findall(r"[-+]\d+\.\d", cell.split("/")[0]))
    assert gain == pytest.approx(round(100 * (last.mean() / base.mean() - 1), 1), abs=0.051)
    assert low <= gain <= high and low < high
    changed = "rose" if low > 0 else "fell" if high < 0 else "did not change beyond noise"
    assert report[-3].startswith("Round 2 against round 0") and f"recall@10 {changed}" in report[-3]


def test_the_report_names_the_round_validation_prefers(finished):
    """metrics.md's last line names the model to use: the round with the best validation
    score on the metric that picks epochs, as metrics.json records it (round 0 when no round
    beats it)."""
    rounds = json.loads((finished / "metrics.json").read_text())["rounds"]
    scores = [r["valid"]["ndcg@20"] for r in rounds]
    best = scores.index(max(scores))
    last = (finished / "metrics.md").read_text().splitlines()[-1]
    assert last.startswith("On validation ndcg@20")
    assert (f"round {best} is the best: use round-{best}/model.pt" in last) == (best > 0)
    assert ("no round improved on round 0" in last) == (best == 0)
    table = [line.split("|") for line in (finished / "metrics.md").read_text().splitlines()[2:5]]
    assert [float(row[4]) for row in table] == pytest.approx(scores, abs=5e-5)


def test_the_best_round_is_the_best_on_validation_and_the_earliest_of_equals():
    def result(*scores: float) -> RunResult:
        rounds = [
            RoundResult(k, 10, 10, 0, 1, 1, {"ndcg@20": v, "recall@10": 1 - v}, {}, {}) for k, v in enumerate(scores)
        ]
        return RunResult({}, "d", "sasrec", rounds)

    assert result(0.2, 0.3, 0.25).best_round() == 1
    assert result(0.3, 0.2).best_round() == 0  # a round that did not help leaves the plain model
    assert result(0.2, 0.3, 0.3).best_round() == 1
    assert result(0.2, 0.3).best_round("recall@10") == 0
    assert result(0.2, 0.3).best_round("mrr@10") is None  # not recorded: nothing to compare
