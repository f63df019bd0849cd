"""The experiment runner on the built-in data, its aggregation on known inputs, and the
augmentation baselines."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rsir.cli import main
from rsir.config import build_config
from rsir.data import Sequences, leave_one_out
from rsir.data.augmentation import AUGMENTED, augmented, insert, reorder, strongest_successors
from rsir.errors import ConfigError
from rsir.experiments.archive import archive_cells, restore_cells
from rsir.experiments.report import _plot_curves, aggregate, head_to_head, write_report
from rsir.experiments.runner import Cell, Spec, load_spec
from rsir.generation.loop import RunResult, load_synthetic
from rsir.models.sasrec import SASRecParams

from .conftest import without_timings

SPEC = """
name = "tiny"
datasets = ["synthetic"]
seeds = [0, 1]
baseline = "plain"

[common]
data = { synthetic_users = 200, synthetic_items = 60 }
model = { dim = 16, blocks = 1, heads = 1, max_len = 20 }
train = { max_epochs = 2, negatives = 16, batch_size = 64, lr = 0.003, threads = 1 }

[variants.plain]
command = "train"

[variants.reordering]
command = "train"
train = { augment = "reorder" }

[variants.rsir]
command = "improve"
improve = { rounds = 1 }
train = { synthetic_weight = 0.5 }  # acts on synthetic data only: round 0 is still the plain training

[sweep]
variants = ["rsir"]
"generate.tau" = [5, 10]
"""


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    root = tmp_path_factory.mktemp("experiment")
    (root / "spec.toml").write_text(SPEC)
    assert main(["experiment", str(root / "spec.toml"), "--out", str(root / "out"), "--jobs", "2", "--quiet"]) == 0
    return root


def test_every_cell_runs_once_and_is_reported(experiment):
    report = json.loads((experiment / "out" / "report.json").read_text())
    assert report["cells"] == report["cells_done"] == 8  # (plain, reordering, rsir x 2 taus) x 2 seeds
    rows = {(r["variant"], r["round"]): r for r in report["rows"]}
    assert set(rows) == {
        ("plain", 0),
        ("reordering", 0),
        ("rsir[generate.tau=5]", 0),
        ("rsir[generate.tau=5]", 1),
        ("rsir[generate.tau=10]", 0),
        ("rsir[generate.tau=10]", 1),
    }
    assert all(r["seeds"] == [0, 1] for r in rows.values())
    # Round 0 of an improve cell is the plain training of the same seed, reused, not retrained.
    assert rows[("rsir[generate.tau=5]", 0)]["recall@10"]["mean"] == rows[("plain", 0)]["recall@10"]["mean"]
    round_zero = experiment / "out" / "synthetic" / "rsir[generate.tau=5]" / "s0" / "run" / "round-0"
    plain = experiment / "out" / "synthetic" / "plain" / "s0" / "run"
    assert (round_zero / "model.pt").read_bytes() == (plain / "model.pt").read_bytes()
    assert not (round_zero / "last.pt").exists()  # no epoch of round 0 ran here
    assert "gain" not in rows[("plain", 0)]["recall@10"] and "gain" in rows[("reordering", 0)]["recall@10"]
    assert (experiment / "out" / "report.png").stat().st_size > 0
    assert (experiment / "out" / "curves.png").stat().st_size > 0  # one numeric option swept: tau
    assert "| synthetic | reordering | 0 | 2 |" in (experiment / "out" / "report.md").read_text()
    # Every seed's value is in the report, as the cell's own result recorded it.
    for seed in (0, 1):
        result = json.loads((experiment / "out" / "synthetic" / "reordering" / f"s{seed}" / "result.json").read_text())
        assert rows[("reordering", 0)]["ndcg@10"]["values"][seed] == result["rounds"][0]["test"]["ndcg@10"]


def test_the_report_tables_a_reference_over_all_users_and_over_the_users_it_scored(experiment, tmp_path):
    """A spec with a published reference that scored some users only: report.md gives each
    variant's mean and gap over all users, then over those users, from report.json's numbers."""
    out = tmp_path / "out"
    shutil.copytree(experiment / "out", out)
    spec = SPEC + '\n[reference]\nsource = "a paper"\nusers = "known_new_targets"\nsynthetic = { "recall@10" = 0.2 }\n'
    (tmp_path / "spec.toml").write_text(spec)
    assert main(["experiment", str(tmp_path / "spec.toml"), "--out", str(out), "--report-only", "--quiet"]) == 0
    report, text = json.loads((out / "report.json").read_text()), (out / "report.md").read_text()
    plain = next(r for r in report["reference"] if r["variant"] == "plain")
    over_all, over_scored = text.split("The same over the users the published protocol scored")
    assert f"| synthetic | plain | 2 | {plain['recall@10']['mean']:.4f} | 0.2000 |" in over_all
    kept = plain["its_users"]
    assert kept["users"] == kept["of"] > 0  # the built-in data: every test item is known and new to its user
    assert f"| synthetic | plain | {kept['users']} of {kept['of']} | {kept['recall@10']['mean']:.4f} |" in over_scored


def test_rerun_skips_finished_cells_and_redoes_an_unrecorded_one(experiment, capsys):
    out = experiment / "out"
    before = {p: p.read_text() for p in out.rglob("result.json")}
    lost = out / "synthetic" / "reordering" / "s1" / "result.json"
    lost.unlink()  # as if the runner was killed after that cell's run finished
    first_attempt = json.loads((lost.parent / "elapsed.json").read_text())["seconds"]
    assert 0 < first_attempt == json.loads(before[lost])["wall_seconds"]
    (lost.parent / "elapsed.json").write_text(json.dumps({"seconds": 1000.0}))  # as if it had run longer
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "7 of 8 cells done; 1 to run, 1 at a time" in err and "synthetic/reordering/s1 done" in err
    after = {p: p.read_text() for p in out.rglob("result.json")}
    assert {p: t for p, t in after.items() if p != lost} == {p: t for p, t in before.items() if p != lost}
    assert json.loads(after[lost])["rounds"] == json.loads(before[lost])["rounds"]
    assert 1000 < json.loads(after[lost])["wall_seconds"] < 1000 + first_attempt + 60  # both attempts count


def test_an_unfinished_loop_reports_its_finished_rounds_as_interim(experiment, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(experiment / "out", out)
    cell = out / "synthetic" / "rsir[generate.tau=5]" / "s1"
    (cell / "result.json").unlink()  # as if the loop were still running, with round 0 done
    metrics = json.loads((cell / "run" / "metrics.json").read_text())
    (cell / "run" / "metrics.json").write_text(json.dumps({"rounds": metrics["rounds"][:1]}))
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(out), "--report-only"]) == 0
    report = json.loads((out / "report.json").read_text())
    rows = {(r["variant"], r["round"]): r for r in report["rows"]}
    assert report["cells_done"] == 7 and report["cells_interim"] == ["synthetic/rsir[generate.tau=5]/s1"]
    assert rows[("rsir[generate.tau=5]", 0)]["seeds"] == [0, 1] and rows[("rsir[generate.tau=5]", 0)][
        "interim_seeds"
    ] == [1]
    assert (
        rows[("rsir[generate.tau=5]", 1)]["seeds"] == [0] and rows[("rsir[generate.tau=5]", 1)]["interim_seeds"] == []
    )
    assert "| synthetic | rsir[generate.tau=5] | 0 | 2 (1 interim) |" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")
def test_a_gpu_spec_reports_on_a_cpu_machine_but_does_not_run(experiment, tmp_path, capsys):
    gpu_spec = tmp_path / "spec.toml"
    gpu_spec.write_text(SPEC.replace("threads = 1 }", 'threads = 1, device = "cuda" }'))
    out = tmp_path / "out"
    shutil.copytree(experiment / "out", out)
    (out / "report.json").unlink()
    assert main(["experiment", str(gpu_spec), "--out", str(out), "--report-only"]) == 0
    assert json.loads((out / "report.json").read_text())["cells_done"] == 8
    capsys.readouterr()
    (out / "synthetic" / "plain" / "s0" / "result.json").unlink()
    assert main(["experiment", str(gpu_spec), "--out", str(out), "--quiet"]) == 2
    assert "has no usable CUDA GPU" in capsys.readouterr().err
    assert not (out / "synthetic" / "plain" / "s0" / "result.json").exists()


def test_only_runs_the_matching_cells(experiment, tmp_path, capsys):
    spec = str(experiment / "spec.toml")
    assert main(["experiment", spec, "--out", str(tmp_path), "--only", "synthetic/plain/s1", "*/reordering/s0"]) == 0
    assert sorted(str(p.parent.relative_to(tmp_path)) for p in tmp_path.rglob("result.json")) == [
        "synthetic/plain/s1",
        "synthetic/reordering/s0",
    ]
    assert json.loads((tmp_path / "report.json").read_text())["cells_done"] == 2
    assert main(["experiment", spec, "--out", str(tmp_path), "--only", "Beauty/*"]) == 2
    assert "match no cell (keys look like synthetic/plain/s0)" in capsys.readouterr().err


def test_a_finished_loop_given_more_rounds_continues_after_its_last_round(experiment, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(experiment / "out", out)
    cell, spec = out / "synthetic" / "rsir[generate.tau=5]" / "s0", str(experiment / "spec.toml")
    before = json.loads((cell / "result.json").read_text())["rounds"]
    round_one = (cell / "run" / "round-1" / "model.pt").read_bytes()
    only = ["--only", "synthetic/rsir[[]generate.tau=5]/s0"]
    assert main(["experiment", spec, "--out", str(out), "--set", "variants.rsir.improve.rounds=2", *only]) == 0
    assert "0 of 1 cells done; 1 to run" in capsys.readouterr().err
    after = json.loads((cell / "result.json").read_text())["rounds"]
    assert [r["round"] for r in after] == [0, 1, 2]
    # Rounds 0-1 kept (round 1 has since generated round 2's data), round 2 added.
    assert [{k: v for k, v in r.items() if k != "generate_seconds"} for r in after[:2]] == [
        {k: v for k, v in r.items() if k != "generate_seconds"} for r in before
    ]
    assert before[1]["generate_seconds"] == 0 < after[1]["generate_seconds"]
    assert (cell / "run" / "round-1" / "model.pt").read_bytes() == round_one
    loop = json.loads((cell / "run" / "metrics.json").read_text())["rounds"]
    assert loop[2]["train_interactions"] > loop[1]["train_interactions"]  # round 1's synthetic data added
    # The spec's own single round is part of the longer loop: the cell counts as done.
    assert main(["experiment", spec, "--out", str(out), *only]) == 0
    assert "1 of 1 cells done; 0 to run" in capsys.readouterr().err


def test_a_finished_cell_whose_config_changed_is_refused(experiment, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(experiment / "out", out)
    results = {p: p.read_text() for p in out.rglob("result.json")}
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(out), "--set", "common.train.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "synthetic/plain/s0 finished with train.lr = 0.003 and the spec now gives 0.01" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    # A variant switched to the other command would read a training's folder as a loop's.
    switched = ["--set", "variants.plain.command=improve", "--only", "synthetic/plain/s0"]
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(out), *switched]) == 2
    err = capsys.readouterr().err
    assert "holds a training (rsir train), not a loop (rsir improve); delete" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert {p: p.read_text() for p in out.rglob("result.json")} == results  # nothing ran or was rewritten


def test_archived_cells_restore_to_the_same_report_and_are_never_reused(experiment, tmp_path, capsys):
    """A study outlives its run directory: its archive holds no model, restores into an empty
    output directory as finished cells that report to the last digit, bootstrap intervals
    included, and an experiment beside them trains rather than copying a phase from them."""
    spec = load_spec(experiment / "spec.toml")
    archive, out = tmp_path / "archive", tmp_path / "experiments" / "restored"
    assert len(archive_cells(spec, experiment / "out", archive)) == 8
    assert not [p for p in archive.rglob("*") if p.suffix in (".pt", ".npz") and p.stem != "test_ranks"]
    assert restore_cells(spec, out, archive) == [cell.key for cell in spec.cells]
    assert restore_cells(spec, out, archive) == []  # what is there is left alone
    assert archive_cells(spec, out, archive) == []  # restored cells are not archived again over their source
    original = json.loads((experiment / "out" / "report.json").read_text())
    write_report(spec, out)
    report = json.loads((out / "report.json").read_text())
    assert any("ci" in row["recall@10"] for row in report["rows"])  # the ranks came back
    assert {k: v for k, v in report.items() if k != "rsir"} == {k: v for k, v in original.items() if k != "rsir"}
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(out)]) == 0
    assert "8 of 8 cells done; 0 to run" in capsys.readouterr().err
    beside = _run(tmp_path / "experiments", "beside", '[variants.plain]\ncommand = "train"\n')
    assert (beside / "plain" / "s0" / "run" / "last.pt").exists()  # trained here, not copied
    assert "reused" not in json.loads((beside / "plain" / "s0" / "result.json").read_text())


TINY = SPEC.split("[variants.plain]")[0].replace("seeds = [0, 1]", "seeds = [0]").replace('baseline = "plain"\n', "")


def _run(root: Path, name: str, variants: str, *flags: str) -> Path:
    root.mkdir(exist_ok=True)
    (root / f"{name}.toml").write_text(TINY.replace('"tiny"', f'"{name}"') + variants)
    assert main(["experiment", str(root / f"{name}.toml"), "--out", str(root / name), "--quiet", *flags]) == 0
    return root / name / "synthetic"


def test_finished_phases_of_another_experiment_are_reused_not_rerun(tmp_path):
    loop = '[variants.rsir]\ncommand = "improve"\nimprove = { rounds = ROUNDS, successor = "scratch" }\ngenerate = { tau = 5 }\n'
    recursion = _run(tmp_path, "recursion", loop.replace("ROUNDS", "2"))
    main_table = _run(
        tmp_path,
        "main_table",
        '[variants.plain]\ncommand = "train"\n'
        + loop.replace("ROUNDS", "1")
        + loop.replace("rsir]", "rsir_finetune]").replace("ROUNDS", "1").replace("scratch", "finetune")
        + '[variants.weak_to_strong]\ncommand = "improve"\nmodel = { backbone = "hstu" }\n'
        'improve = { rounds = 1, generator = "sasrec" }\n'
        + f"[variants.sasrec]\nmodel = {{ dim = {SASRecParams.dim}, blocks = 1, heads = 1, max_len = 50 }}\n",
    )
    source = recursion / "rsir" / "s0"
    plain, rsir, finetune = (main_table / v / "s0" for v in ("plain", "rsir", "rsir_finetune"))

    def same(a: Path, b: Path) -> bool:
        return a.read_bytes() == b.read_bytes()

    # The plain training is the recursion's round 0; the one-round loop is its first round.
    assert same(plain / "run" / "model.pt", source / "run" / "round-0" / "model.pt")
    assert json.loads((plain / "result.json").read_text())["reused"] == {"train round 0": "recursion/synthetic/rsir/s0"}
    # It is recorded as a plain run, with the loop's round 0 as its round
    (round_0,) = RunResult.read(plain / "run" / "metrics.json").rounds
    looped = RunResult.read(source / "run" / "metrics.json").rounds[0]
    training_seconds = {k: looped.seconds[k] for k in ("train", "evaluate")}
    assert round_0 == dataclasses.replace(looped, generation=None, seconds=training_seconds)
    assert set(json.loads((rsir / "result.json").read_text())["reused"]) == {
        "train round 0",
        "generate round 0",
        "train round 1",
    }
    for k in (0, 1):
        assert same(rsir / "run" / f"round-{k}" / "model.pt", source / "run" / f"round-{k}" / "model.pt")
    assert not list((rsir / "run").rglob("last.pt")) and not list(plain.rglob("last.pt"))  # nothing trained
    assert not (rsir / "run" / "round-1" / "synthetic.npz").exists()  # its last round generates nothing
    # Fine-tuning shares round 0 and its generation, then trains its own round 1.
    assert same(finetune / "run" / "round-0" / "synthetic.npz", source / "run" / "round-0" / "synthetic.npz")
    assert (finetune / "run" / "round-1" / "last.pt").exists()
    assert set(json.loads((finetune / "result.json").read_text())["reused"]) == {"train round 0", "generate round 0"}
    assert not same(finetune / "run" / "round-1" / "model.pt", source / "run" / "round-1" / "model.pt")
    # A generator trained inside another backbone's loop (at the backbone's default size) is
    # the plain training of that backbone at that size.
    generator = main_table / "weak_to_strong" / "s0" / "run" / "round-0" / "generator"
    assert same(generator / "model.pt", main_table / "sasrec" / "s0" / "run" / "model.pt")
    assert not (generator / "last.pt").exists()
    assert json.loads((main_table / "weak_to_strong" / "s0" / "result.json").read_text())["reused"] == {
        "train round 0 generator": "synthetic/sasrec/s0"
    }
    # What is copied is what running gives: the same cells run from scratch match to the last digit.
    fresh = _run(tmp_path / "apart", "fresh", loop.replace("ROUNDS", "1"), "--no-reuse")
    assert without_timings(
        json.loads((fresh / "rsir" / "s0" / "result.json").read_text())["rounds"]
    ) == without_timings(json.loads((rsir / "result.json").read_text())["rounds"])
    assert (fresh / "rsir" / "s0" / "run" / "round-1" / "last.pt").exists()
    report = json.loads((tmp_path / "main_table" / "report.json").read_text())
    assert report["cells_reusing"] == [
        "synthetic/plain/s0",
        "synthetic/rsir/s0",
        "synthetic/rsir_finetune/s0",
        "synthetic/weak_to_strong/s0",
    ]
    assert "not counting the phases 4 of them reused" in (tmp_path / "main_table" / "report.md").read_text()


def test_a_capped_round_acquires_from_the_pool_of_the_uncapped_round(tmp_path):
    loop = '[variants.NAME]\ncommand = "improve"\nimprove = { rounds = 1OPTIONS }\ngenerate = { tau = 5 }\n'
    uncapped = _run(tmp_path, "uncapped", loop.replace("NAME", "rsir").replace("OPTIONS", ""))
    capped_loop = loop.replace("NAME", "capped").replace("OPTIONS", ', acquire_share = 0.5, acquire_by = "random"')
    capped = _run(tmp_path, "capped", capped_loop)
    cell = capped / "capped" / "s0"
    assert json.loads((cell / "result.json").read_text())["reused"] == {
        "train round 0": "uncapped/synthetic/rsir/s0",
        "generate round 0 (before acquisition)": "uncapped/synthetic/rsir/s0",
    }
    pool = load_synthetic(uncapped / "rsir" / "s0" / "run" / "round-0" / "synthetic.npz")
    kept = load_synthetic(cell / "run" / "round-0" / "synthetic.npz")
    assert len(kept) == math.ceil(len(pool) / 2)
    # What acquiring from the copied pool gives is what generating and acquiring gives.
    fresh = _run(tmp_path / "apart", "fresh", capped_loop, "--no-reuse") / "capped" / "s0"
    assert (fresh / "run" / "round-0" / "generated.npz").exists()  # a capped run keeps its pool
    regenerated = load_synthetic(fresh / "run" / "round-0" / "synthetic.npz")
    assert np.array_equal(regenerated.items, kept.items) and np.array_equal(regenerated.users, kept.users)
    assert without_timings(json.loads((fresh / "result.json").read_text())["rounds"]) == without_timings(
        json.loads((cell / "result.json").read_text())["rounds"]
    )


def test_aggregation_on_known_inputs():
    cells = [Cell("d", v, s, "train", {}) for v in ("base", "new") for s in (0, 1, 2)]
    recall = {"base": [0.10, 0.20, 0.30], "new": [0.11, 0.22, 0.36]}
    results = {c.key: {"rounds": [{"round": 0, "test": {"recall@10": recall[c.variant][c.seed]}}]} for c in cells}
    rows = aggregate(Spec("t", cells, "base", ["recall@10"]), results)
    base, new = (r["recall@10"] for r in rows)
    assert math.isclose(base["mean"], 0.2) and math.isclose(base["std"], 0.1)
    assert base["values"] == [0.10, 0.20, 0.30] and new["values"] == [0.11, 0.22, 0.36]
    assert math.isclose(new["gain"], (0.1 + 0.1 + 0.2) / 3)  # per-seed relative gains, averaged
    differences = np.array([0.01, 0.02, 0.06])
    t = differences.mean() / (differences.std(ddof=1) / math.sqrt(3))
    assert t > 0 and 0.05 < new["p"] < 0.5  # two-sided, 2 degrees of freedom
    assert math.isclose(new["p"], 2 * (1 - _t_cdf(t, 2)), rel_tol=1e-6)


def test_a_swept_baseline_pairs_each_point_with_its_own():
    cells = [
        Cell("d", f"{v}[data.noise={n}]", s, "train", {}, (("data.noise", n),))
        for v in ("plain", "rsir")
        for n in (0.0, 0.2)
        for s in (0, 1)
    ]
    recall = {("plain", 0.0): 0.10, ("plain", 0.2): 0.05, ("rsir", 0.0): 0.11, ("rsir", 0.2): 0.06}
    results = {
        c.key: {
            "rounds": [
                {
                    "round": 0,
                    "test": {
                        "recall@10": recall[(c.variant.removesuffix(c.point), c.setting[0][1])] * (1 + c.seed / 100)
                    },
                }
            ]
        }
        for c in cells
    }
    rows = {r["variant"]: r["recall@10"] for r in aggregate(Spec("t", cells, "plain", ["recall@10"]), results)}
    assert "gain" not in rows["plain[data.noise=0.2]"]
    assert math.isclose(rows["rsir[data.noise=0.0]"]["gain"], 0.1)
    assert math.isclose(rows["rsir[data.noise=0.2]"]["gain"], 0.2)  # against plain at noise 0.2, not 0.0


@pytest.mark.parametrize("values, drawn", [((5, 10, float("inf")), True), (("first", "prefix"), False)])
def test_curves_are_drawn_for_a_numeric_sweep_only(values, drawn, tmp_path):
    cells = [Cell("d", "plain", 0, "train", {})] + [
        Cell("d", f"rsir[generate.x={v}]", 0, "improve", {}, (("generate.x", v),)) for v in values
    ]
    results = {
        c.key: {
            "rounds": [{"round": 0, "test": {"recall@10": 0.1}}]
            + ([{"round": 1, "test": {"recall@10": 0.1 + i / 100}}] if c.setting else [])
        }
        for i, c in enumerate(cells)
    }
    spec = Spec("t", cells, "plain", ["recall@10"])
    _plot_curves(tmp_path / "curves.png", spec, aggregate(spec, results))
    assert (tmp_path / "curves.png").exists() == drawn  # the infinite point is left off the axis, not an error


def test_a_variant_pairs_against_its_own_baseline():
    variants = {"sasrec": 0.10, "hstu": 0.12, "hstu_rsir": 0.132}
    cells = [Cell("d", v, s, "train", {}) for v in variants for s in (0, 1)]
    results = {c.key: {"rounds": [{"round": 0, "test": {"recall@10": variants[c.variant]}}]} for c in cells}
    spec = Spec("t", cells, "sasrec", ["recall@10"], baselines={"hstu_rsir": "hstu"})
    rows = {r["variant"]: r["recall@10"] for r in aggregate(spec, results)}
    assert math.isclose(rows["hstu"]["gain"], 0.2)  # against the spec's baseline
    assert math.isclose(rows["hstu_rsir"]["gain"], 0.1)  # against its own, not against sasrec (0.32)


def test_head_to_head_pairs_final_rounds_of_two_variants():
    rounds = {"reordering": [0.10, 0.20], "rsir": [0.30, 0.12, 0.24]}  # rsir: rounds 0..2 of two seeds
    cells = [Cell("d", v, s, "train" if v == "reordering" else "improve", {}) for v in rounds for s in (0, 1)]
    results = {
        c.key: {
            "rounds": [
                {"round": r, "test": {"recall@10": rounds[c.variant][c.seed] * (1 + r / 10)}}
                for r in range(3 if c.variant == "rsir" else 1)
            ]
        }
        for c in cells
    }
    spec = Spec("t", cells, "reordering", ["recall@10"], compare=[("rsir", "reordering")])
    (row,) = head_to_head(spec, results)
    assert row["against"] == "reordering" and row["seeds"] == [0, 1]
    assert math.isclose(row["recall@10"]["gain"], ((0.30 * 1.2) / 0.10 - 1 + (0.12 * 1.2) / 0.20 - 1) / 2)
    # A loop that has only its round 0 (the plain training) so far has nothing to compare.
    started = {key: {"rounds": result["rounds"][:1]} for key, result in results.items()}
    assert head_to_head(spec, started, interim={c.key for c in cells if c.variant == "rsir"}) == []


def test_head_to_head_pairs_two_loops_round_by_round_with_interim_seeds():
    final = {"with_check": 3, "without_check": 2}  # without_check seed 1 stopped after round 1
    cells = [Cell("d", v, s, "improve", {}) for v in final for s in (0, 1)]

    def test(variant: str, seed: int, r: int) -> dict[str, float]:
        return {"recall@10": 0.1 + 0.01 * r * (2 if variant == "without_check" else 1) + 0.001 * seed}

    results = {
        c.key: {
            "rounds": [
                {"round": r, "test": test(c.variant, c.seed, r)}
                for r in range((1 if c.key == "d/without_check/s1" else final[c.variant]) + 1)
            ]
        }
        for c in cells
    }
    spec = Spec("t", cells, "with_check", ["recall@10"], compare=[("without_check", "with_check")])
    rows = head_to_head(spec, results, interim={"d/without_check/s1"})
    assert [(r["round"], r["against_round"], r["seeds"], r["interim_seeds"]) for r in rows] == [
        (1, 1, [0, 1], [1]),
        (2, 2, [0], []),
    ]  # round 3 of with_check has no partner
    assert math.isclose(rows[0]["recall@10"]["gain"], (0.12 / 0.11 - 1 + 0.121 / 0.111 - 1) / 2)
    assert math.isclose(rows[1]["recall@10"]["gain"], 0.14 / 0.12 - 1)


def _t_cdf(t: float, dof: int) -> float:
    assert dof == 2  # closed form of Student's t with 2 degrees of freedom
    return 0.5 + t / (2 * math.sqrt(2 + t * t))


@pytest.mark.parametrize(
    "bad, message",
    [
        ("colour = 1", "unknown spec key 'colour'"),
        ('[sweep]\nvariants = ["nope"]', "sweep names unknown variant 'nope'"),
        ("[variants.x]\ntrain = { lr = -1 }", "lr must be > 0"),
        ('baseline = "other"', "baseline 'other' is not one of the variants"),
        ('[variants.x]\nbaseline = "nope"', "variant 'x': baseline 'nope' must be another variant"),
        ('compare = [["plain", "nope"]]', "compare names 'nope', not a variant"),
        ('compare = [["plain", "plain"]]', "compare must list pairs of two different variants"),
        ('compare = [["plain", ["x"]]]', "compare must list pairs of two different variants"),
        ("compare = 3", "compare must list pairs of two different variants"),
        ('seeds = "0"', "'seeds' must be a list of integers, got '0'"),
        ("seeds = [0, 1, 0]", "'seeds' lists 0 twice"),
        ('datasets = "Beauty"', "'datasets' must be a list of names, got 'Beauty'"),
        ('datasets = ["Nope"]\ndata_root = "."', "Nope/Nope.txt: no such data file"),
    ],
)
def test_bad_spec_is_refused_before_anything_runs(bad, message, tmp_path, capsys):
    spec = tmp_path / "spec.toml"
    defaults = "".join(
        f"{line}\n" for line in ('datasets = ["synthetic"]', "seeds = [0]") if line.split()[0] not in bad
    )
    spec.write_text(
        f'{bad}\n{defaults}[variants.plain]\ncommand = "train"\n'
        if not bad.startswith("[")
        else f'{defaults}[variants.plain]\ncommand = "train"\n{bad}\n'
    )
    assert main(["experiment", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_set_edits_the_spec_before_its_cells_are_built(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        SPEC.replace('datasets = ["synthetic"]', 'datasets = ["synthetic", "Beauty"]\ndata_root = "../shared/data"')
    )
    cells = load_spec(
        spec,
        [
            "seeds=[0, 1, 2]",
            "data_root=/elsewhere",
            "variants.rsir.generate.attempts=7",
            "common.generate.tau=inf",
            "sweep.variants=[]",
        ],
    ).cells
    assert sorted({cell.seed for cell in cells}) == [0, 1, 2]
    assert {cell.config["data"]["path"] for cell in cells} == {"", "/elsewhere/Beauty/Beauty.txt"}
    rsir = [cell for cell in cells if cell.command == "improve"]
    assert {cell.variant for cell in rsir} == {"rsir"}  # the sweep no longer applies to it
    assert all(cell.config["generate"]["attempts"] == 7 and cell.config["generate"]["tau"] == math.inf for cell in rsir)
    assert {cell.config["data"]["path"] for cell in load_spec(spec).cells} == {"", "../shared/data/Beauty/Beauty.txt"}


@pytest.mark.parametrize(
    "override, message",
    [
        ("seeds", "expected KEY=VALUE"),
        ("variants.nope.train.lr=1", "no variant 'nope' (variants: plain, reordering, rsir)"),
        ("seeds.first=1", "seeds is a value, not a section"),
        ("colour=red", "unknown spec key 'colour'"),
        ("common.train.lr=fast", "option train.lr must be float, got 'fast'"),
        ("seeds=[0", "seeds: '[0' is not a TOML value"),
    ],
)
def test_a_bad_set_is_refused_before_anything_runs(override, message, experiment, tmp_path, capsys):
    assert main(["experiment", str(experiment / "spec.toml"), "--out", str(tmp_path / "out"), "--set", override]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def sequences() -> Sequences:
    rng = np.random.default_rng(0)
    return Sequences.from_lists([rng.permutation(np.arange(1, 41))[:n] for n in rng.integers(1, 25, 300)])


def test_reorder_shuffles_one_contiguous_block_of_each_sequence():
    seqs = sequences()
    out = reorder(seqs, 0.4, np.random.default_rng(1))
    assert (out.origin == AUGMENTED).all() and np.array_equal(out.lengths, seqs.lengths)
    changed = 0
    for before, after in zip(seqs.to_lists(), out.to_lists()):
        assert sorted(before) == sorted(after)
        moved = [i for i, (a, b) in enumerate(zip(before, after)) if a != b]
        if moved:
            changed += 1
            block = max(2, math.floor(0.4 * len(before)))
            assert moved[-1] - moved[0] < block  # inside one block of that size
    assert changed > 0.5 * (seqs.lengths >= 3).sum()


def test_insert_adds_each_items_strongest_successor_after_it():
    seqs = sequences()
    successor = strongest_successors(seqs, 40)
    out = insert(seqs, 0.3, np.random.default_rng(1), 40)
    counts = np.clip(np.floor(0.3 * seqs.lengths), 1, seqs.lengths)
    assert np.array_equal(out.lengths, seqs.lengths + counts)
    for before, after, count in zip(seqs.to_lists(), out.to_lists(), counts):
        assert _insertions_explain(before, after, successor, int(count))
    both = augmented(seqs, "insert", 0.3, seed=0, n_items=40)
    assert len(both) == 2 * len(seqs) and (both.origin[: len(seqs)] == 0).all()


def _insertions_explain(before: list, after: list, successor: np.ndarray, count: int) -> bool:
    """``after`` is ``before`` with ``count`` items inserted, each right after an original
    item and equal to that item's strongest successor."""
    if not before:
        return not after and count == 0
    if not after or after[0] != before[0]:
        return False
    if _insertions_explain(before[1:], after[1:], successor, count):
        return True
    return (
        count > 0
        and len(after) > 1
        and after[1] == successor[before[0]]
        and _insertions_explain(before[1:], after[2:], successor, count - 1)
    )


def test_strongest_successor_counts_transitions():
    seqs = Sequences.from_lists([[1, 2, 3], [1, 2], [1, 3], [3, 3, 1]])
    successor = strongest_successors(seqs, 4)
    assert successor[1] == 2 and successor[2] == 3 and successor[3] == 1  # 3 -> 3 is not a transition
    assert successor[4] == 1  # never followed: the most frequent item


@pytest.mark.parametrize(
    "spec", sorted((Path(__file__).parents[1] / "experiments").glob("*.toml")), ids=lambda p: p.stem
)
def test_shipped_specs_are_valid(spec):
    loaded = load_spec(spec)
    assert loaded.baseline in {cell.variant.removesuffix(cell.point) for cell in loaded.cells}
    assert len({cell.key for cell in loaded.cells}) == len(loaded.cells)  # every cell has its own directory
    for cell in loaded.cells:  # every option value is one its command accepts
        config = build_config(cell.config)
        for params in (config.train, config.generate, config.improve):
            params.validate()


def test_the_report_picks_on_validation_and_sets_published_numbers_beside():
    """select: per data set the variant with the best mean validation NDCG@20 is picked,
    whatever its test metrics; reference: each variant's gap to the published value."""
    from rsir.experiments.report import against_reference, select_on_validation

    cells = [Cell("d", v, s, "train", {}) for v in ("a", "b", "c") for s in (0, 1)]
    valid = {"a": [0.05, 0.07], "b": [0.065, 0.066], "c": [0.09, 0.09]}
    test = {"a": [0.30, 0.30], "b": [0.10, 0.12], "c": [0.20, 0.22]}
    results = {
        c.key: {
            "rounds": [
                {
                    "round": 0,
                    "test": {"recall@10": test[c.variant][c.seed]},
                    "valid": {"ndcg@20": valid[c.variant][c.seed]},
                }
            ]
        }
        for c in cells
    }
    spec = Spec(
        "t",
        cells,
        "a",
        ["recall@10"],
        select={"pick": ["a", "b"]},
        reference={"source": "paper", "d": {"recall@10": 0.1}},
    )
    rows = aggregate(spec, results)
    (picked,) = select_on_validation(spec, rows)
    assert picked["pick"] == "b" and [c["variant"] for c in picked["candidates"]] == ["a", "b"]  # c is no candidate
    assert math.isclose(picked["test"]["recall@10"]["mean"], 0.11)
    gaps = {r["variant"]: r["recall@10"] for r in against_reference(spec, rows)}
    assert math.isclose(gaps["b"]["gap"], 0.1) and math.isclose(
        gaps["b"]["gap_sd"], 0.01 / np.std([0.10, 0.12], ddof=1)
    )
    assert math.isclose(gaps["a"]["gap"], 2.0) and gaps["a"]["gap_sd"] is None  # no spread over seeds


def test_the_gap_to_a_reference_that_scored_some_users_is_also_given_over_those_users(tmp_path, caplog):
    """With ``users = "known_new_targets"`` and every seed's ranks at hand, the report also
    gives the metric over the users whose test item occurs in training and is new to them,
    from the runs' own ranks of the built-in data."""
    from rsir.data.source import DataParams, load_dataset
    from rsir.evaluation import metrics_from_ranks
    from rsir.experiments.report import against_reference

    split = leave_one_out(load_dataset(DataParams()))
    rng = np.random.default_rng(0)
    cells = [Cell("synthetic", "a", seed, "train", {"data": {"path": ""}}) for seed in (0, 1)]
    ranks, results = {}, {}
    for cell in cells:
        path = tmp_path / f"ranks{cell.seed}.npy"
        np.save(path, rng.integers(0, 40, len(split.test.targets)).astype(np.int32))
        ranks.setdefault(("synthetic", "a", 0), {})[cell.seed] = path
        results[cell.key] = {"rounds": [{"round": 0, "test": metrics_from_ranks(np.load(path)), "valid": {}}]}
    reference = {"source": "paper", "users": "known_new_targets", "synthetic": {"recall@10": 0.2}}
    spec = Spec("t", cells, "a", ["recall@10"], reference=reference)
    (entry,) = against_reference(spec, aggregate(spec, results), ranks)
    scored = [
        target in set(split.test.history.items.tolist()) and target not in history
        for target, history in zip(split.test.targets.tolist(), split.test.history.to_lists())
    ]
    over_scored = [float((np.load(ranks[("synthetic", "a", 0)][s])[scored] < 10).mean()) for s in (0, 1)]
    assert entry["its_users"]["users"] == sum(scored) < entry["its_users"]["of"] == len(scored)
    assert math.isclose(entry["its_users"]["recall@10"]["mean"], np.mean(over_scored))
    assert math.isclose(entry["its_users"]["recall@10"]["gap"], np.mean(over_scored) / 0.2 - 1)
    assert not math.isclose(entry["recall@10"]["mean"], entry["its_users"]["recall@10"]["mean"])
    assert "its_users" not in against_reference(spec, aggregate(spec, results))[0]  # no ranks, no subset
    elsewhere = [dataclasses.replace(c, config={"data": {"path": str(tmp_path / "gone.txt")}}) for c in cells]
    spec = Spec("t", elsewhere, "a", ["recall@10"], reference=reference)
    with caplog.at_level("WARNING"):
        assert "its_users" not in against_reference(spec, aggregate(spec, results), ranks)[0]
    assert "gone.txt is not here; the comparison over the reference's users is left out" in caplog.text


def test_candidates_run_on_more_seeds_are_compared_on_the_seeds_all_ran():
    """A candidate with one seed meets the others on that seed, not their mean over more: here
    'a' is better on seed 0 (the one 'b' ran) though worse on average over its three."""
    from rsir.experiments.report import select_on_validation

    cells = [Cell("d", "a", s, "train", {}) for s in (0, 1, 2)] + [Cell("d", "b", 0, "train", {})]
    valid = {("a", 0): 0.075, ("a", 1): 0.070, ("a", 2): 0.071, ("b", 0): 0.074}
    results = {
        c.key: {"rounds": [{"round": 0, "test": {"recall@10": 0.1}, "valid": {"ndcg@20": valid[c.variant, c.seed]}}]}
        for c in cells
    }
    spec = Spec("t", cells, "a", ["recall@10"], select={"pick": ["a", "b"]})
    (picked,) = select_on_validation(spec, aggregate(spec, results))
    assert picked["pick"] == "a" and picked["compared_on_seeds"] == [0]
    assert {c["variant"]: c["valid"] for c in picked["candidates"]} == {"a": 0.075, "b": 0.074}
    assert picked["seeds"] == [0, 1, 2]  # the pick's test metrics are over all of its seeds


def test_groups_pick_on_validation_and_each_pick_meets_the_first_groups_pick_by_seed():
    """select groups: sweep points count as candidates of their variant; every group's pick is
    compared with the first group's pick, paired by seed, with Holm-adjusted p-values."""
    from rsir.experiments.report import picks_head_to_head, picks_missing, select_on_validation

    labels = {
        "plain": "train",
        "wide": "train",
        "round[train.synthetic_weight=0.1]": "improve",
        "round[train.synthetic_weight=0.5]": "improve",
        "distil": "train",
    }
    valid = {
        "plain": 0.05,
        "wide": 0.06,
        "round[train.synthetic_weight=0.1]": 0.07,
        "round[train.synthetic_weight=0.5]": 0.08,
        "distil": 0.055,
    }
    test = {
        "plain": 0.10,
        "wide": 0.20,
        "round[train.synthetic_weight=0.1]": 0.40,
        "round[train.synthetic_weight=0.5]": 0.22,
        "distil": 0.19,
    }
    cells = [Cell("d", v, s, kind, {}) for v, kind in labels.items() for s in (0, 1, 2)]

    spread = {"plain": 0.05, "wide": 0.05, "round[train.synthetic_weight=0.1]": 0.05}
    spread |= {"round[train.synthetic_weight=0.5]": 0.08, "distil": 0.02}  # unequal p-values for Holm

    def record(variant: str, seed: int, r: int) -> dict:
        scale = 1 + spread[variant] * seed
        return {
            "round": r,
            "test": {"recall@10": test[variant] * scale if r or labels[variant] == "train" else 0.2 * scale},
            "valid": {"ndcg@20": valid[variant]},
        }

    results = {
        c.key: {"rounds": [record(c.variant, c.seed, r) for r in range(2 if c.command == "improve" else 1)]}
        for c in cells
    }
    spec = Spec(
        "t",
        cells,
        "plain",
        ["recall@10"],
        select={"plain": ["plain", "wide"], "round": ["round"], "distil": ["distil"]},
        rivals={"round": ["distil"]},
    )
    selection = select_on_validation(spec, aggregate(spec, results))
    assert [(r["group"], r["pick"]) for r in selection] == [
        ("plain", "wide"),
        ("round", "round[train.synthetic_weight=0.5]"),
        ("distil", "distil"),
    ]
    rows = picks_head_to_head(spec, selection, results, set(), {})
    assert [(r["group"], r["variant"], r["against_group"], r["against"], r["round"]) for r in rows] == [
        ("round", "round[train.synthetic_weight=0.5]", "plain", "wide", 1),
        ("distil", "distil", "plain", "wide", 0),
        ("round", "round[train.synthetic_weight=0.5]", "distil", "distil", 1),  # the named rival
    ]
    gains = [r["recall@10"]["gain"] for r in rows]
    scaled = np.array([1, 1.08, 1.16]), np.array([1, 1.05, 1.1]), np.array([1, 1.02, 1.04])
    assert gains == pytest.approx(
        [
            np.mean(0.22 * scaled[0] / (0.20 * scaled[1])) - 1,
            np.mean(0.19 * scaled[2] / (0.20 * scaled[1])) - 1,
            np.mean(0.22 * scaled[0] / (0.19 * scaled[2])) - 1,
        ]
    )
    assert len(set(r["recall@10"]["p"] for r in rows)) == 3
    p_values = np.array([r["recall@10"]["p"] for r in rows])
    order = np.argsort(p_values)  # Holm over all three headline comparisons
    stepped = np.maximum.accumulate(np.minimum(1.0, (3 - np.arange(3)) * p_values[order]))
    assert [r["recall@10"]["p_holm"] for r in rows] == pytest.approx(list(stepped[np.argsort(order)]))
    # Without distil's pick, its two comparisons are named as missing, not silently dropped.
    without = [r for r in selection if r["group"] != "distil"]
    assert picks_missing(spec, without) == ["d: distil against plain", "d: round against distil"]
    assert picks_missing(spec, selection) == []


def test_a_spec_with_a_bad_reference_or_selection_is_refused(tmp_path):
    spec = tmp_path / "s.toml"
    base = 'datasets = ["d"]\nseeds = [0]\n[variants.a]\ncommand = "train"\n'
    spec.write_text(base + '[reference]\nd = { "recall@10" = 0.1 }\n')
    with pytest.raises(ConfigError, match="reference must name a source"):
        load_spec(spec)
    spec.write_text(base + '[reference]\nsource = "p"\nusers = "some"\nd = { "recall@10" = 0.1 }\n')
    with pytest.raises(ConfigError, match="reference users must be one of all, known_new_targets, got 'some'"):
        load_spec(spec)
    spec.write_text('select = ["b"]\n' + base)
    with pytest.raises(ConfigError, match=r"select names 'b', not a variant \(variants: a\)"):
        load_spec(spec)
    spec.write_text("select = [[]]\n" + base)
    with pytest.raises(ConfigError, match="select must list variants"):
        load_spec(spec)
    base += '[variants.b]\ncommand = "train"\n[variants.c]\ncommand = "train"\n'
    groups = 'select = { x = ["a"], y = ["b"], z = ["c"] }\n'
    for rivals in ('{ y = ["w"] }', '{ x = ["y"] }', '{ y = ["x"] }', '{ y = ["z", "z"] }', '{ y = ["z"], z = ["y"] }'):
        spec.write_text(groups + f"rivals = {rivals}\n" + base)  # unknown, first group, twice, both ways
        with pytest.raises(ConfigError, match="rivals must map a select group to other select groups"):
            load_spec(spec)
    spec.write_text(groups + 'rivals = { y = ["z"] }\n' + base)
    assert load_spec(spec).rivals == {"y": ["z"]}


def test_the_report_gives_a_bootstrap_interval_where_runs_kept_their_users_ranks(tmp_path):
    cells = [Cell("d", v, s, "train", {}) for v in ("base", "new") for s in (0, 1)]
    rng = np.random.default_rng(1)
    ranks, results = {}, {}
    for cell in cells:
        user_ranks = rng.integers(0, 30 if cell.variant == "base" else 20, 500)
        path = tmp_path / f"{cell.variant}{cell.seed}.npy"
        np.save(path, user_ranks)
        ranks.setdefault(("d", cell.variant, 0), {})[cell.seed] = path
        results[cell.key] = {"rounds": [{"round": 0, "test": {"recall@10": float((user_ranks < 10).mean())}}]}
    rows = aggregate(Spec("t", cells, "base", ["recall@10"]), results, ranks=ranks)
    gain = rows[1]["recall@10"]
    assert gain["ci"][0] < gain["gain"] < gain["ci"][1] and gain["ci"][0] > 0
    assert (
        "ci" not in aggregate(Spec("t", cells, "base", ["recall@10"]), results)[1]["recall@10"]
    )  # no ranks, no interval


def test_holm_adjusts_a_family_of_p_values():
    from rsir.experiments.report import holm

    adjusted = holm([0.01, 0.04, None, 0.03])
    assert adjusted[2] is None
    assert (
        adjusted[0] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    )
    assert holm([0.5, 0.9]) == [1.0, 1.0]


def test_the_runner_stands_on_the_library_not_the_command_line():
    """Cells run rsir.jobs in processes of their own: the runner imports no CLI code."""
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, rsir.experiments.runner; print(sorted(m for m in sys.modules if m.startswith('rsir')))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "'rsir.jobs'" in imported and "rsir.cli" not in imported


def test_a_loops_cost_is_its_later_rounds_and_generations_against_round_0(tmp_path):
    """The report's cost column: generation after round 0 plus round 1's training and
    evaluation, over round 0's training and evaluation, read from the run's metrics.json."""
    from rsir.experiments.report import round_metrics

    record = {"valid": {}, "test": {"recall@10": 0.1}, "epochs": 10, "best_epoch": 5}
    metrics = {
        "rounds": [
            {**record, "round": 0, "seconds": {"train": 100.0, "evaluate": 10.0, "generate": 5.0}},
            {**record, "round": 1, "seconds": {"train": 150.0, "evaluate": 20.0}},
        ]
    }
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    cell = Cell("d", "loop", 0, "improve", {})
    spec = Spec("t", [cell], "loop", ["recall@10"])
    rows = aggregate(spec, {cell.key: {"rounds": round_metrics(tmp_path / "metrics.json")}})
    assert "cost_vs_round_0" not in rows[0] and math.isclose(rows[1]["cost_vs_round_0"], (5 + 150 + 20) / 110)
