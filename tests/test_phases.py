"""Phase identities against real runs: two phases share an identity exactly when they compute
the same thing, so changing one option invalidates the phases downstream of what reads it
and nothing else."""

from __future__ import annotations

import copy
import itertools
import json
import math

import numpy as np
import pytest
import torch

from rsir.config import build_config
from rsir.generation.loop import load_synthetic
from rsir.generation.phases import GENERATION_FILES, POOL_FILES, plan
from rsir.jobs import IMPROVE_SECTIONS, TRAIN_SECTIONS, improve_run, train_run
from rsir.models.checkpoint import read_checkpoint
from rsir.training.callbacks import RECORDING_ONLY

BASE = {
    "data": {"synthetic_users": 150, "synthetic_items": 50},
    "model": {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20},
    "train": {"max_epochs": 2, "negatives": 16, "batch_size": 64, "lr": 0.003, "threads": 1},
    "generate": {"attempts": 2},
    "improve": {"rounds": 1, "acquire_share": 0.5},  # a cut pool: the acquisition options act
}
# One change per option class: every other option counts wherever it is read.
CHANGES = {
    "synthetic weight": ("train", "synthetic_weight", 0.5),  # synthetic rows only: from round 1
    "budget": ("train", "synthetic_per_epoch", 0.5),  # non-real rows only: from round 1
    "budget unit": ("train", "budget_unit", "targets"),  # likewise
    "distillation": ("train", "distill_weight", 0.5),  # the previous round as teacher: round 1
    "augmentation": ("train", "augment", "insert"),  # a successor's treatment: round 1
    "successor": ("improve", "successor", "scratch"),  # round 1 only
    "acquisition": ("improve", "acquire_by", "random"),  # after the pool
    "generation": ("generate", "exploit_prob", 0.9),  # the pool and after
    "learning rate": ("train", "lr", 0.002),  # everything
}


def _config(change: tuple[str, str, object] | None = None, **improve: object) -> dict:
    sections = copy.deepcopy(BASE)
    sections["improve"].update(improve)
    if change:
        section, key, value = change
        sections[section][key] = value
    return build_config(sections, source="test").to_dict(IMPROVE_SECTIONS)


def _outputs(run, phase) -> list[np.ndarray]:
    folder = run / phase.path
    if phase.kind == "train":
        return [t.numpy() for t in read_checkpoint(folder / "model.pt")["state"].values()]
    store = folder / (POOL_FILES[0] if phase.kind == "pool" else GENERATION_FILES[0])
    seqs = load_synthetic(store)
    return [seqs.items, seqs.offsets, seqs.users, seqs.origin]


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("phases")
    configs = {"base": _config(), **{name: _config(change) for name, change in CHANGES.items()}}
    for name, config in configs.items():
        improve_run(build_config(config, source=name), root / name, progress=False)
    return root, configs


def test_a_phase_keeps_its_identity_exactly_when_it_computes_the_same(runs):
    root, configs = runs
    base = plan(configs["base"])
    changed = {}
    for name in CHANGES:
        phases = plan(configs[name])
        assert [p.name for p in phases] == [p.name for p in base]
        changed[name] = []
        for mine, theirs in zip(phases, base):
            same_outputs = _same(_outputs(root / name, mine), _outputs(root / "base", theirs))
            assert (mine.identity == theirs.identity) == same_outputs, (name, mine.name)
            if not same_outputs:
                changed[name].append(mine.name)
    pool, acquired, successor = "generate round 0 (before acquisition)", "generate round 0", "train round 1"
    assert changed == {
        "synthetic weight": [successor],
        "budget": [successor],
        "budget unit": [successor],
        "distillation": [successor],
        "augmentation": [successor],
        "successor": [successor],
        "acquisition": [acquired, successor],
        "generation": [pool, acquired, successor],
        "learning rate": ["train round 0", pool, acquired, successor],
    }


def test_a_plain_training_is_the_loops_round_0_and_ignores_what_it_does_not_read(runs, tmp_path):
    root, configs = runs
    loop = plan(configs["base"])[0]
    for name, change in (("plain", None), ("plain, other synthetic weight", CHANGES["synthetic weight"])):
        sections = {key: value for key, value in _config(change).items() if key in TRAIN_SECTIONS}
        train_run(build_config(sections, source=name), tmp_path / name, progress=False)
        (phase,) = plan(sections)
        assert phase.identity == loop.identity
        assert _same(_outputs(tmp_path / name, phase), _outputs(root / "base", loop))


def test_an_acquisition_that_keeps_the_whole_pool_reads_none_of_its_options():
    whole = [
        _config(None, acquire_share=1.0, acquire_by=by, mc_samples=n) for by, n in (("disagreement", 8), ("random", 4))
    ]
    assert [p.identity for p in plan(whole[0])] == [p.identity for p in plan(whole[1])]


def test_every_option_is_read_by_some_phase_and_changes_everything_after_it():
    """Structurally, over every option of a two-round loop: a change leaves the phases before
    its first reader alone and changes every phase from there on."""
    base = _config(None, rounds=2)
    base["train"].update(augment="insert", distill_weight=0.5)  # so that their options are read
    names = [p.name for p in plan(base)]
    alternatives = {
        bool: lambda v: not v,
        int: lambda v: v + 1,
        float: lambda v: 5.0 if math.isinf(v) else v / 2 if v else 0.5,
    }
    skipped = {("improve", "rounds"), ("improve", "generator"), ("train", "teacher"), ("data", "path")}
    skipped |= {("train", key) for key in RECORDING_ONLY}  # checked on their own below
    for section, options in base.items():
        for key, value in options.items():
            if (section, key) in skipped or type(value) not in alternatives:
                continue
            changed = copy.deepcopy(base)
            changed[section][key] = alternatives[type(value)](value)
            flags = [a.identity != b.identity for a, b in zip(plan(changed), plan(base))]
            first = flags.index(True) if True in flags else None
            assert first is not None, f"{section}.{key} is read by no phase"
            assert all(flags[first:]), (f"{section}.{key}", list(itertools.compress(names, flags)))


def test_a_checkpoint_is_read_by_its_content_and_distilling_without_a_teacher_is_not_plain(tmp_path):
    teacher = tmp_path / "teacher.pt"
    teacher.write_bytes(b"weights one")
    sections = {key: value for key, value in _config(None).items() if key in TRAIN_SECTIONS}
    distilling = copy.deepcopy(sections)
    distilling["train"].update(distill_weight=0.5, teacher=str(teacher))
    first = plan(distilling)[0].identity
    teacher.write_bytes(b"weights two")  # retrained at the same path
    assert plan(distilling)[0].identity != first
    # Without a teacher, distilling fails; it must not look like the plain training it would reuse.
    distilling["train"]["teacher"] = ""
    assert plan(distilling)[0].identity != plan(sections)[0].identity
    # A named teacher that nothing distils from is not read.
    unread = copy.deepcopy(sections)
    unread["train"]["teacher"] = str(teacher)
    assert plan(unread)[0].identity == plan(sections)[0].identity


def test_other_runs_are_read_with_the_config_they_ran_with_and_recorded_identities_stay(tmp_path):
    from rsir.experiments.runner import Cell, _candidate_sources
    from rsir.generation.phases import finished_phases, record
    from rsir.rundir import RunDir

    ran, now = _config(None), _config(("generate", "tau", 5.0))
    cell_dir = tmp_path / "other" / "synthetic" / "rsir" / "s0"
    cell_dir.mkdir(parents=True)
    RunDir(cell_dir).write_config(now)  # the spec changed since the run started
    RunDir(cell_dir / "run").write_config(ran)
    out = tmp_path / "mine"
    out.mkdir()
    (key, run, config), *_ = _candidate_sources(Cell("synthetic", "x", 0, "improve", now), out, [])
    assert (
        key == "other/synthetic/rsir/s0"
        and run == cell_dir / "run"
        and config["generate"]["tau"] == ran["generate"]["tau"]
    )
    record(run, ran)
    (run / "round-0").mkdir()
    (run / "round-0" / "metrics.json").write_text("{}")  # round 0 finished
    assert list(finished_phases(run, config)) == [plan(ran)[0].identity]
    # Entries already recorded stay as the run computed them; new phases are added.
    recorded = json.loads((run / "phases.json").read_text())
    more = copy.deepcopy(ran)
    more["improve"]["rounds"] = 2
    record(run, more)
    assert json.loads((run / "phases.json").read_text()) == {**{p.name: p.identity for p in plan(more)}, **recorded}


def test_an_option_added_later_keeps_recorded_identities_at_its_former_behaviour():
    """A run recorded before train.select_metric existed kept its best epoch by ndcg@20: that
    value leaves every identity as recorded, another value is another computation."""
    today = _config()
    before = copy.deepcopy(today)
    del before["train"]["select_metric"], before["train"]["budget_unit"]
    recall = _config(("train", "select_metric", "recall@10"))
    assert [p.identity for p in plan(today)] == [p.identity for p in plan(before)]
    assert all(a.identity != b.identity for a, b in zip(plan(recall), plan(today)))
    targets = _config(("train", "budget_unit", "targets"))  # read only where non-real rows are drawn
    assert [p.identity == q.identity for p, q in zip(plan(targets), plan(today))] == [True, True, True, False]
    unbudgeted = _config(("train", "synthetic_per_epoch", 0.0))  # every row each epoch: no unit to count
    counted = copy.deepcopy(unbudgeted)
    counted["train"]["budget_unit"] = "targets"
    assert [p.identity for p in plan(counted)] == [p.identity for p in plan(unbudgeted)]


def test_test_probes_add_to_the_log_and_leave_every_identity():
    """Probing the test set changes what a training records, not what it computes (the training
    test checks that), so a phase recorded without probes is the same phase with them."""
    probed = _config(("train", "test_probes", True))
    assert [p.identity for p in plan(probed)] == [p.identity for p in plan(_config())]
