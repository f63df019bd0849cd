"""What packing rows could save (issue 49's lever "packing synthetic rows into fewer, longer
batches"): a training step of today's default as fit runs it (random rows, computed in length
groups, each group with its own loss), beside the same step on the batch's real positions
packed into full rows of max_len (one chunk, one loss over as many targets), interleaved in one
run. The encoder's forward and backward is also timed in both layouts, the part that padding
inflates.

The packed step is timed on rows of random items and targets without a block-diagonal mask:
with the default's attended padding the encoder builds a full attention mask whatever it
holds, and a packed encoder would have to build one too, with per-segment positions, so the
packed step is what packing could reach at best, not a packed training.

    python benchmarks/packing_step.py --data ../shared/data/Beauty/Beauty.txt --threads 1 \
        --round-dir RUN --out docs/results/packing_step.json

``--round-dir`` adds a loop run's round-0 synthetic sequences (its round 1's training set,
drawn as the default round draws it: one synthetic sequence per real one each epoch).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsir.config import build_config
from rsir.data import leave_one_out, read_dataset
from rsir.data.sequences import Sequences
from rsir.errors import RsirError
from rsir.files import write_json
from rsir.generation.loop import round_training_set
from rsir.models import build_backbone
from rsir.models.base import Backbone
from rsir.rundir import RunDir, provenance
from rsir.training.trainer import LossStep, TrainParams, epoch_batches, length_groups, use_threads

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]


def first_batches(train: Sequences, params: TrainParams, max_len: int, steps: int) -> list[Batch]:
    """The first ``steps`` batches of an epoch, as fit draws them with ``params``."""
    return list(itertools.islice(epoch_batches(train, params, max_len, np.random.default_rng(0)), steps))


def packed_batch(batch: Batch, max_len: int, n_items: int) -> Batch:
    """As many real positions as ``batch`` holds, in full rows of ``max_len`` random items, each
    position with a random target of weight 1, and the batch's loss divisor."""
    inputs, *_, batch_weight = batch
    rows = -(-int((inputs != 0).sum()) // max_len)
    packed = torch.randint(1, n_items + 1, (rows, max_len))
    return packed, torch.randint(1, n_items + 1, (rows, max_len)), torch.ones(rows, max_len), batch_weight


def encoder_pass(model: Backbone, chunks: list[torch.Tensor]) -> None:
    """The encoder's forward and backward over ``chunks``, as in a training step."""
    with model.training_step():
        total = torch.stack([model.encode(chunk).sum() for chunk in chunks]).sum()
    total.backward()
    model.zero_grad(set_to_none=True)


def measure(model: Backbone, params: TrainParams, batches: list[Batch], repeats: int) -> dict[str, Any]:
    """Time per step of the whole step and of the encoder, as trained and packed, interleaved
    so that all four see the same machine state."""
    trained_step = LossStep.for_training(model, params)
    packed_step = LossStep(model, trained_step.loss_fn, params.precision)  # one chunk: no length groups
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, params.beta2))
    model.train()
    packed = [packed_batch(batch, model.max_len, model.n_items) for batch in batches]
    groups = [
        [inputs[rows, :width] for rows, width in length_groups(inputs)] if trained_step.by_length_groups else [inputs]
        for inputs, *_ in batches
    ]

    def steps(step: LossStep, chosen: list[Batch]) -> Callable[[], None]:
        def run() -> None:
            for inputs, targets, weights, batch_weight in chosen:
                loss = step(inputs, targets, weights, batch_weight)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

        return run

    def encoder(chunks: list[list[torch.Tensor]]) -> Callable[[], None]:
        def run() -> None:
            for batch_chunks in chunks:
                encoder_pass(model, batch_chunks)

        return run

    runs = {
        "step": steps(trained_step, batches),
        "step_packed": steps(packed_step, packed),
        "encoder_as_trained": encoder(groups),
        "encoder_packed": encoder([[inputs] for inputs, *_ in packed]),
    }
    for run in runs.values():  # untimed: the first pass allocates
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            tick = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - tick)
    per_step = {name: statistics.median(values) / len(batches) for name, values in times.items()}
    real = sum(int((inputs != 0).sum()) for inputs, *_ in batches)
    area = sum(chunk.numel() for batch_chunks in groups for chunk in batch_chunks)
    return {
        "steps": len(batches),
        "repeats": repeats,
        "targets_per_step": real / len(batches),
        "padded_area_per_real_position": round(area / real, 3),
        "milliseconds_per_step": {name: round(1000 * value, 2) for name, value in per_step.items()},
        "packed_step_saving": round(1 - per_step["step_packed"] / per_step["step"], 4),
        "encoder_saving_share_of_step": round(
            (per_step["encoder_as_trained"] - per_step["encoder_packed"]) / per_step["step"], 4
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
    if args.steps < 1 or args.repeats < 1:
        parser.error("--steps and --repeats must be at least 1")
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
        if len(epochs["round"]) == len(split.train):
            parser.error(f"--round-dir {args.round_dir}: its round 0 kept no synthetic sequences")
    measured = {
        name: measure(model, params, first_batches(train, params, model.max_len, args.steps), args.repeats)
        for name, train in epochs.items()
    }
    write_json(
        args.out,
        {
            "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
            "rsir": provenance(),
            "machine": f"{platform.machine()}, {args.threads} thread(s)",
            "model": model.describe(),
            "train": {
                "batch_size": params.batch_size,
                "batching": params.batching,
                "synthetic_per_epoch": params.synthetic_per_epoch,
            },
            "epochs": measured,
        },
    )
    for name, row in measured.items():
        print(name, json.dumps(row))


if __name__ == "__main__":
    main()
