"""The phases of a run and the identity of each: a hash of exactly the inputs it reads.

A ``rsir train`` run is one phase. A loop runs, per round k, the training of f_k, then (before
the last round) the generation of a pool of sequences from it and their acquisition into the
round's synthetic data; a loop whose generator is a backbone also trains that generator. Each
phase's identity hashes the options it reads, the data, and the identities of the phases it
reads from (the model it generates with, the synthetic data it trains on, the model it starts
from or distils). Two phases with the same identity compute the same thing, so a finished one
is reused wherever the identity recurs: across the cells of an experiment and across
experiments (:func:`rsir.experiments.runner.run_experiment`).

What a phase reads is said once, here, beside the loop's structure: an option for rows a
training does not have (synthetic or augmented), for a teacher it has not, or for an
acquisition that keeps everything, is not part of its identity. ``tests/test_phases.py``
checks each classification against real runs.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import BACKBONES, backbone_class
from ..rundir import RunDir
from ..training.callbacks import RECORDING_ONLY, SELECT_METRIC
from ..training.trainer import TrainParams

# Bumped when a recipe changes, so that identities recorded by another rsir never match.
RECIPE_VERSION = 2

# A phase's files; the last one is written last and marks the phase finished.
TRAINING_FILES = ("model.pt", "log.jsonl", "test_ranks.npy", "curve.png", "metrics.json")
GENERATION_FILES = ("synthetic.npz", "synthetic.txt", "synthetic.inter", "generation.json")
POOL_FILES = ("generated.npz", "generated.json")
# What the generation stats add after acquisition; the rest describes the pool.
AFTER_ACQUISITION = ("acquired", "acquisition_seconds", "analysis", "analysis_seconds")


@dataclass(frozen=True)
class Phase:
    """One phase of a run: what it is, where its files lie in the run, its identity, and the
    phases whose results it reads (by name)."""

    name: str  # "train round 0", "train round 0 generator", "generate round 0 (before acquisition)", ...
    kind: str  # train | pool | generate
    path: str  # its folder inside the run directory ("" for a train run's only phase)
    identity: str
    reads: tuple[str, ...] = ()

    @property
    def files(self) -> tuple[str, ...]:
        return {"train": TRAINING_FILES, "pool": POOL_FILES, "generate": GENERATION_FILES}[self.kind]

    def finished_in(self, run: Path) -> bool:
        return (run / self.path / self.files[-1]).exists()


def _round(k: int) -> str:
    return RunDir("").round(k).as_posix()


def _digest(*parts: Any) -> str:
    text = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _checkpoint(path: str) -> str:
    """A checkpoint file by its content (a file retrained at the same path is another input)."""
    file = Path(path)
    if not file.is_file():
        return path
    stat = file.stat()
    return _file_digest(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.cache
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


# Train options added after runs were recorded, with the value that computes what those runs
# computed: at that value an option stays out of the identity, so the recorded phases still match.
ADDED_LATER = {"select_metric": SELECT_METRIC, "budget_unit": "sequences"}


def training_inputs(train: dict[str, Any], *, synthetic: bool, teacher: bool) -> dict[str, Any]:
    """The train options a training reads: those for synthetic rows only where it has some,
    those of augmented copies only with an augmentation, the budget where either exists, and
    distillation's only with a teacher (a named teacher by the checkpoint's content)."""
    unread = {key for key, value in ADDED_LATER.items() if train.get(key, value) == value} | RECORDING_ONLY
    if not synthetic:
        unread.add("synthetic_weight")
    if train["augment"] == "none":
        unread |= {"augment_rate", "augment_copies", "augment_weight"}
        if not synthetic:
            unread |= {"synthetic_per_epoch", "budget_unit"}
    # No budget (or a run from before it, which drew every row): nothing for its unit to count.
    if train.get("synthetic_per_epoch", 0.0) == 0:
        unread.add("budget_unit")
    if not teacher or train["distill_weight"] == 0:
        unread |= {"distill_weight", "distill_temperature", "teacher"}
    options = {key: value for key, value in train.items() if key not in unread}
    if options.get("teacher"):
        options["teacher"] = _checkpoint(options["teacher"])
    return options


def plan(config: dict[str, Any]) -> list[Phase]:
    """The phases of a run of ``config`` (its sections, as a run's config.yaml holds them), in
    the order they run, each with its identity."""
    data, model, train = config["data"], config["model"], config["train"]
    named_teacher = bool(train["teacher"])
    if "improve" not in config:
        # A training without a teacher that asks to distil fails; its options keep it apart from one that does not.
        options = training_inputs(train, synthetic=False, teacher=named_teacher or train["distill_weight"] > 0)
        return [Phase("train round 0", "train", "", _digest("train", _digest("data", data), model, options))]
    generate, improve = (
        config["generate"],
        config["improve"],
    )  # in a loop, a training without a teacher distils from the previous round
    run_on = {key: train[key] for key in ("seed", "threads", "device")}  # what every phase of the run shares
    phases: list[Phase] = []
    train_set, previous, has_synthetic = _digest("data", data), None, False
    joined: tuple[str, ...] = ()  # the phase whose synthetic data the training set last joined
    for k in range(improve["rounds"] + 1):
        # Round 0 never distils (without a named teacher); later rounds distil from the previous model.
        distils_previous = previous is not None and train["distill_weight"] > 0 and not named_teacher
        trains_with = train if previous is not None else dataclasses.asdict(TrainParams(**train).for_first_round())
        reads: list[Any] = [
            train_set,
            model,
            training_inputs(trains_with, synthetic=has_synthetic, teacher=named_teacher or distils_previous),
        ]
        read_phases = joined
        if previous is not None and improve["successor"] == "finetune":
            reads.append({"starts_from": previous.identity})
            read_phases += (previous.name,)
        if previous is not None and distils_previous:
            reads.append({"teacher": previous.identity})
            read_phases = tuple(dict.fromkeys(read_phases + (previous.name,)))
        if previous is not None and improve.get("cost_cap", 0.0) > 0:  # its epochs follow round 0's
            reads.append({"cost_cap": improve["cost_cap"], "round_0": phases[0].identity})
            read_phases = tuple(dict.fromkeys(read_phases + (phases[0].name,)))
        current = Phase(f"train round {k}", "train", _round(k), _digest("train", *reads), read_phases)
        phases.append(current)
        if k < improve["rounds"] and generate["attempts"] > 0:
            generator: tuple[str, tuple[str, ...]] = (current.identity, (current.name,))
            if improve["generator"] in BACKBONES:
                generator_model = {
                    "backbone": improve["generator"],
                    **dataclasses.asdict(backbone_class(improve["generator"]).Params()),
                }
                options = training_inputs(
                    train, synthetic=has_synthetic, teacher=bool(train["teacher"]) or train["distill_weight"] > 0
                )
                trained = Phase(
                    f"train round {k} generator",
                    "train",
                    f"{_round(k)}/generator",
                    _digest("train", train_set, generator_model, options),
                    joined,
                )
                phases.append(trained)
                generator = (trained.identity, (trained.name,))
            elif improve["generator"]:  # a fixed checkpoint
                generator = (_digest("checkpoint", _checkpoint(improve["generator"])), ())
            elif improve["retain"] > 0 and previous is not None:
                generator = (
                    _digest("retained", current.identity, previous.identity, improve["retain"]),
                    (current.name, previous.name),
                )
            sources = _digest("data", data) if improve["sources"] == "real" else train_set
            pool_reads = generator[1] + (joined if improve["sources"] == "all" else ())
            pool = Phase(
                f"generate round {k} (before acquisition)",
                "pool",
                _round(k),
                _digest("pool", generator[0], sources, generate, run_on, k),
                pool_reads,
            )
            phases.append(pool)
            acquisition = {key: improve[key] for key in ("acquire_share", "acquire_by", "mc_samples")}
            if improve["acquire_share"] == 1:  # keeps the whole pool: how it would choose is not read
                acquisition = {"acquire_share": 1.0}
            elif improve["acquire_by"] == "random":
                acquisition.pop("mc_samples")
            # The stats and the export also read the training set they join (its size, its
            # pseudo-user ids). The pool is read from its own phase or, where that phase was
            # not kept, as it is regenerated: what the pool reads, the generation reads too.
            acquired = Phase(
                f"generate round {k}",
                "generate",
                _round(k),
                _digest("generate", pool.identity, acquisition, train_set, run_on, k),
                tuple(dict.fromkeys(pool_reads + joined)),
            )
            phases.append(acquired)
            train_set, has_synthetic, joined = _digest("joined", train_set, acquired.identity), True, (acquired.name,)
        previous = current
    return phases


def record(run: Path, config: dict[str, Any]) -> None:
    """Add the identities of ``config``'s phases to ``run``'s phases.json, for other runs to find
    them by (see :func:`finished_phases`). Entries already there stay: they name what the
    run computed, perhaps under an earlier recipe."""
    from ..files import write_json

    path = RunDir(run).phases_file
    recorded = json.loads(path.read_text()) if path.exists() else {}
    identities = {phase.name: phase.identity for phase in plan(config)}
    if any(name not in recorded for name in identities):
        write_json(path, {**identities, **recorded})


def finished_phases(run: Path, config: dict[str, Any]) -> dict[str, Phase]:
    """The finished phases of the run in ``run`` by identity: identities as the run recorded
    them (else as ``config``, its saved config, gives them). A loop that acquired its whole
    pool also holds that pool, as its synthetic data."""
    path = RunDir(run).phases_file
    recorded = json.loads(path.read_text()) if path.exists() else {}
    found: dict[str, Phase] = {}
    for phase in plan(config):
        phase = dataclasses.replace(phase, identity=recorded.get(phase.name, phase.identity))
        whole_pool = phase.kind == "pool" and config["improve"]["acquire_share"] == 1
        if phase.finished_in(run) or (whole_pool and (run / phase.path / GENERATION_FILES[-1]).exists()):
            found[phase.identity] = phase
    return found
