"""What one training step of SASRec costs as the catalogue grows: the same batch (sequences
of 8 items) at several catalogue sizes, with and without item-table dropout, one thread. Each
step draws a dropout mask over the whole item table, takes its dense gradient and lets Adam
update every row, so a step costs in proportion to items x dim whatever the batch, and larger
batches (``--batch-sizes``) spread that cost over more targets. The model and training options
are a preset's (``--preset``; the published run: length_batched, batch 128) or, with
``--preset none``, today's defaults.

    python benchmarks/item_table_cost.py --out docs/results/item_table_cost.json
    python benchmarks/item_table_cost.py --preset none --items 100000 --batch-sizes 128 512 2048 \
        --out docs/results/item_table_batches.json
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import statistics
import sys
import time

import torch

from rsir.config import PRESETS, build_config
from rsir.models import build_backbone
from rsir.rundir import provenance
from rsir.training.trainer import LossStep, use_threads


def step_seconds(n_items: int, item_dropout: float, steps: int, preset: str, batch_size: int) -> float:
    """Median seconds of a whole training step (forward, backward, Adam) after one untimed step."""
    torch.manual_seed(0)
    config = build_config({} if preset == "none" else {"preset": preset})
    params = config.train
    options = {**config.model, "item_dropout": item_dropout}
    model = build_backbone("sasrec", n_items, options, seed=0).train()
    step = LossStep.for_training(model, params)
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, params.beta2))
    window = torch.randint(1, n_items + 1, (batch_size, 9))
    inputs, targets = window[:, :-1], window[:, 1:]
    weights = torch.ones_like(targets, dtype=torch.float32)
    times = []
    for _ in range(steps + 1):
        tick = time.perf_counter()
        loss = step(inputs, targets, weights, float(weights.sum()))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - tick)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, nargs="+", default=[12_101, 100_000, 1_000_000])
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128], help="sequences per step")
    parser.add_argument("--preset", default="length_batched", choices=[*PRESETS, "none"], help="none: today's defaults")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    use_threads(args.threads)
    rows = []
    for n_items in args.items:
        for batch_size in args.batch_sizes:
            with_dropout, without = (
                step_seconds(n_items, rate, args.steps, args.preset, batch_size) for rate in (0.2, 0.0)
            )
            rows.append(
                {
                    "items": n_items,
                    "batch_size": batch_size,
                    "seconds_per_step": {"item_dropout_0.2": with_dropout, "item_dropout_0": without},
                    "targets_per_second_item_dropout_0.2": batch_size * 8 / with_dropout,
                }
            )
            print(
                f"{n_items:>9} items, batch {batch_size:>5}: {with_dropout * 1000:7.0f} ms per step with item-table "
                f"dropout, {without * 1000:7.0f} ms without"
            )
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "rsir": provenance(),
        "machine": f"{platform.machine()}, {args.threads} thread(s)",
        "batch": f"{', '.join(map(str, args.batch_sizes))} sequences of 8 items",
        "preset": args.preset,
        "steps": args.steps,
        "rows": rows,
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")


if __name__ == "__main__":
    main()
