"""What packing rows could save at most (issue 49's lever "packing synthetic rows into fewer,
longer batches"): a training step of today's default as fit runs it, beside the part that
packing could shrink, the encoder's forward and backward, on each batch's layout as trained
(random rows, computed in length groups) and on the batch's real positions packed into full
rows of max_len. Packing leaves the loss's product of the targets with the item table as it
is, so the difference of the two encoder times, as a share of the step, bounds its saving.

The packed layout is timed on rows of random items without a block-diagonal mask: with the
default's attended padding the encoder builds a full attention mask whatever it holds, and
a packed encoder would have to build one too, so this is its least possible time.

    python benchmarks/packing_bound.py --data ../shared/data/Beauty/Beauty.txt --threads 1 \
        --round-dir RUN --out docs/results/packing_bound.json

``--round-dir`` adds a loop run's round-0 synthetic sequences (its round 1's training set,
drawn as the default round draws it: one synthetic sequence per real one each epoch).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from rsir.config import build_config
from rsir.data import leave_one_out, read_dataset
from rsir.data.batching import next_item_batches
from rsir.data.sequences import Sequences
from rsir.errors import RsirError
from rsir.generation.loop import round_training_set
from rsir.models import build_backbone
from rsir.models.base import Backbone
from rsir.rundir import RunDir, provenance
from rsir.training.trainer import LossStep, TrainParams, length_groups, use_threads

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]


def epoch_batches(train: Sequences, params: TrainParams, max_len: int, steps: int) -> list[Batch]:
    """The first ``steps`` batches of an epoch, as fit draws them with ``params``."""
    batches = next_item_batches(
        train,
        max_len,
        params.batch_size,
        np.random.default_rng(0),
        synthetic_weight=params.synthetic_weight,
        by_length=params.batching == "length",
        equal_weight=params.target_weighting == "equal",
        synthetic_per_epoch=params.synthetic_per_epoch,
        budget_unit=params.budget_unit,
    )
    return [batch for _, batch in zip(range(steps), batches)]


def layouts(
    inputs: torch.Tensor, max_len: int, n_items: int, by_groups: bool
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A batch's encoder inputs as the step computes them (its length groups, or the whole
    padded batch), and its real positions packed into full rows of ``max_len`` items."""
    if by_groups:
        trained = [inputs[rows, :width] for rows, width in length_groups(inputs)]
    else:
        trained = [inputs]
    real = int((inputs != 0).sum())
    packed = torch.randint(1, n_items + 1, (-(-real // max_len), max_len))
    return trained, packed


def encoder_pass(model: Backbone, chunks: list[torch.Tensor]) -> None:
    """The encoder's forward and backward over ``chunks``, as in a training step."""
    with model.training_step():
        total = sum(model.encode(chunk).sum() for chunk in chunks)
    total.backward()
    model.zero_grad(set_to_none=True)


def seconds(run: Callable[[], None]) -> float:
    tick = time.perf_counter()
    run()
    return time.perf_counter() - tick


def measure(model: Backbone, params: TrainParams, batches: list[Batch], repeats: int) -> dict:
    """Time per step of the whole step and of the encoder in both layouts, interleaved
    so that all three see the same machine state."""
    step = LossStep.for_training(model, params)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, params.beta2))
    model.train()
    laid_out = [layouts(inputs, model.max_len, model.n_items, step.by_length_groups) for inputs, *_ in batches]

    def whole_steps() -> None:
        for inputs, targets, weights, batch_weight in batches:
            loss = step(inputs, targets, weights, batch_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    runs = {
        "step": whole_steps,
        "encoder_as_trained": lambda: [encoder_pass(model, trained) for trained, _ in laid_out],
        "encoder_packed": lambda: [encoder_pass(model, [packed]) for _, packed in laid_out],
    }
    for run in runs.values():  # untimed: the first pass allocates
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(seconds(run))
    per_step = {name: statistics.median(values) / len(batches) for name, values in times.items()}
    real = sum(int((inputs != 0).sum()) for inputs, *_ in batches)
    area = sum(sum(chunk.numel() for chunk in trained) for trained, _ in laid_out)
    return {
        "steps": len(batches),
        "targets_per_step": real / len(batches),
        "padded_area_per_real_position": round(area / real, 3),
        "milliseconds_per_step": {name: round(1000 * value, 2) for name, value in per_step.items()},
        "bound_share_of_step": round(
            max(per_step["encoder_as_trained"] - per_step["encoder_packed"], 0.0) / per_step["step"], 4
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60, help="batches of the epoch timed")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timings of each, the median kept")
    parser.add_argument("--round-dir", help="a loop run whose round-0 synthetic sequences make a round's epoch")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.round_dir:
        written = (RunDir(args.round_dir).saved_config(("data",)) or {}).get("data", {}).get("path")
        if written is None or Path(written).resolve() != Path(args.data).resolve():
            parser.error(f"--round-dir {args.round_dir} is not a loop run on {args.data} (its data: {written})")
    use_threads(args.threads)
    torch.manual_seed(0)
    data = read_dataset(args.data)
    split = leave_one_out(data)
    config = build_config({})
    params = config.train
    model = build_backbone(config.backbone, data.n_items, config.model, seed=0)
    epochs = {"plain": split.train}
    if args.round_dir:
        try:
            epochs["round"] = round_training_set(args.round_dir, split.train, 1)
        except RsirError as error:
            parser.error(str(error))
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "rsir": provenance(),
        "machine": f"{platform.machine()}, {args.threads} thread(s)",
        "model": model.describe(),
        "train": {
            "batch_size": params.batch_size,
            "batching": params.batching,
            "synthetic_per_epoch": params.synthetic_per_epoch,
        },
        "epochs": {
            name: measure(model, params, epoch_batches(train, params, model.max_len, args.steps), args.repeats)
            for name, train in epochs.items()
        },
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    for name, row in result["epochs"].items():
        print(name, json.dumps(row))


if __name__ == "__main__":
    main()
