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
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import BACKBONES, backbone_class

# Bumped when a recipe changes, so that identities recorded by another rsir never match.
RECIPE_VERSION = 1
PHASES_FILE = "phases.json"

# A phase's files; the last one is written last and marks the phase finished.
TRAINING_FILES = ("model.pt", "log.jsonl", "test_ranks.npy", "curve.png", "metrics.json")
GENERATION_FILES = ("synthetic.npz", "synthetic.txt", "synthetic.inter", "generation.json")
POOL_FILES = ("generated.npz", "generated.json")
# What the generation stats add after acquisition; the rest describes the pool.
AFTER_ACQUISITION = ("acquired", "acquisition_seconds", "analysis", "analysis_seconds")


def round_dir(run: Path, k: int) -> Path:
    """Round ``k``'s folder in the loop run ``run`` (its training, generation and exports)."""
    return Path(run) / f"round-{k}"


@dataclass(frozen=True)
class Phase:
    """One phase of a run: what it is, where its files lie in the run, and its identity."""

    name: str  # "train round 0", "train round 0 generator", "generate round 0 (before acquisition)", ...
    kind: str  # train | pool | generate
    path: str  # its folder inside the run directory ("" for a train run's only phase)
    identity: str

    @property
    def files(self) -> tuple[str, ...]:
        return {"train": TRAINING_FILES, "pool": POOL_FILES, "generate": GENERATION_FILES}[self.kind]

    def finished_in(self, run: Path) -> bool:
        return (run / self.path / self.files[-1]).exists()


def _round(k: int) -> str:
    return round_dir(Path(), k).as_posix()


def _digest(*parts: Any) -> str:
    text = json.dumps([RECIPE_VERSION, *parts], sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def training_inputs(train: dict[str, Any], *, synthetic: bool, teacher: bool) -> dict[str, Any]:
    """The train options a training reads: those for synthetic rows only where it has some,
    those of augmented copies only with an augmentation, the budget where either exists, and
    distillation's only with a teacher."""
    unread = set()
    if not synthetic:
        unread.add("synthetic_weight")
    if train["augment"] == "none":
        unread |= {"augment_rate", "augment_copies", "augment_weight"}
        if not synthetic:
            unread.add("synthetic_per_epoch")
    if not teacher or train["distill_weight"] == 0:
        unread |= {"distill_weight", "distill_temperature"}
    return {key: value for key, value in train.items() if key not in unread}


def plan(config: dict[str, Any]) -> list[Phase]:
    """The phases of a run of ``config`` (its sections, as a run's config.yaml holds them), in
    the order they run, each with its identity."""
    data, model, train = config["data"], config["model"], config["train"]
    if "improve" not in config:
        teacher = bool(train["teacher"])
        options = training_inputs(train, synthetic=False, teacher=teacher)
        return [Phase("train round 0", "train", "", _digest("train", _digest("data", data), model, options))]
    generate, improve = config["generate"], config["improve"]
    run_on = {key: train[key] for key in ("seed", "threads", "device")}  # what every phase of the run shares
    phases: list[Phase] = []
    train_set, previous, has_synthetic = _digest("data", data), None, False
    for k in range(improve["rounds"] + 1):
        # Round 0 never distils (without a named teacher); later rounds distil from the previous model.
        distils_previous = previous is not None and train["distill_weight"] > 0 and not train["teacher"]
        reads: list[Any] = [
            train_set,
            model,
            training_inputs(train, synthetic=has_synthetic, teacher=bool(train["teacher"]) or distils_previous),
        ]
        if previous is not None and improve["successor"] == "finetune":
            reads.append({"starts_from": previous})
        if distils_previous:
            reads.append({"teacher": previous})
        current = _digest("train", *reads)
        phases.append(Phase(f"train round {k}", "train", _round(k), current))
        if k < improve["rounds"] and generate["attempts"] > 0:
            generator = current
            if improve["generator"] in BACKBONES:
                generator_model = {
                    "backbone": improve["generator"],
                    **dataclasses.asdict(backbone_class(improve["generator"]).Params()),
                }
                options = training_inputs(train, synthetic=has_synthetic, teacher=bool(train["teacher"]))
                generator = _digest("train", train_set, generator_model, options)
                phases.append(Phase(f"train round {k} generator", "train", f"{_round(k)}/generator", generator))
            elif improve["generator"]:  # a fixed checkpoint
                generator = _digest("checkpoint", improve["generator"])
            elif improve["retain"] > 0 and previous is not None:
                generator = _digest("retained", current, previous, improve["retain"])
            sources = _digest("data", data) if improve["sources"] == "real" else train_set
            pool = _digest("pool", generator, sources, generate, run_on, k)
            phases.append(Phase(f"generate round {k} (before acquisition)", "pool", _round(k), pool))
            acquisition = {key: improve[key] for key in ("acquire_share", "acquire_by", "mc_samples")}
            if improve["acquire_share"] == 1:  # keeps the whole pool: how it would choose is not read
                acquisition = {"acquire_share": 1.0}
            # The stats and the export also read the training set they join (its size, its pseudo-user ids).
            acquired = _digest("generate", pool, acquisition, improve["sources"], train_set, run_on, k)
            phases.append(Phase(f"generate round {k}", "generate", _round(k), acquired))
            train_set, has_synthetic = _digest("joined", train_set, acquired), True
        previous = current
    return phases


def record(run: Path, config: dict[str, Any]) -> None:
    """Write the identities of ``config``'s phases into ``run``'s phases.json (when they are
    not already there), for other runs to find them by (see :func:`finished_phases`)."""
    from ..files import write_json

    identities = {phase.name: phase.identity for phase in plan(config)}
    path = run / PHASES_FILE
    if not path.exists() or json.loads(path.read_text()) != identities:
        write_json(path, identities)


def finished_phases(run: Path, config: dict[str, Any]) -> dict[str, Phase]:
    """The finished phases of the run in ``run`` by identity: identities as the run recorded
    them (else as ``config``, its saved config, gives them). A loop that acquired its whole
    pool also holds that pool, as its synthetic data."""
    recorded = json.loads((run / PHASES_FILE).read_text()) if (run / PHASES_FILE).exists() else {}
    found: dict[str, Phase] = {}
    for phase in plan(config):
        phase = dataclasses.replace(phase, identity=recorded.get(phase.name, phase.identity))
        whole_pool = phase.kind == "pool" and config["improve"]["acquire_share"] == 1
        if phase.finished_in(run) or (whole_pool and (run / phase.path / GENERATION_FILES[-1]).exists()):
            found[phase.identity] = phase
    return found
