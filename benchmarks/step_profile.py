"""Where a training step of SASRec spends its time: torch's profiler over ``--steps`` batches
of one epoch (after ``--warmup`` untimed ones), operators by their own CPU time, as JSON.
Today's default, or a preset's model and training (``--preset``). Shares are robust to a
loaded machine; absolute times are not.

    python benchmarks/step_profile.py --data ../shared/data/Beauty/Beauty.txt --threads 1 \
        --out docs/results/step_profile_default_beauty.json
    python benchmarks/step_profile.py --data ../shared/data/Beauty/Beauty.txt --threads 1 \
        --preset length_batched --out docs/results/step_profile_beauty.json   # the previous default's
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys

import numpy as np
import torch
from torch.profiler import ProfilerActivity, profile

from rsir.config import PRESETS, build_config
from rsir.data import leave_one_out, read_dataset
from rsir.models import build_backbone
from rsir.rundir import provenance
from rsir.training.losses import NEGATIVES_PER
from rsir.training.trainer import LossStep, epoch_batches, use_threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), help="a preset's model and training instead of the defaults"
    )
    parser.add_argument("--dim", type=int, help="model.dim, over the defaults or the preset's")
    parser.add_argument("--negatives-per", choices=NEGATIVES_PER, help="train.negatives_per, likewise")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    use_threads(args.threads)
    torch.manual_seed(0)
    data = read_dataset(args.data)
    split = leave_one_out(data)
    config = build_config(
        {
            **({"preset": args.preset} if args.preset else {}),
            "model": {"dim": args.dim} if args.dim else {},
            "train": {"negatives_per": args.negatives_per} if args.negatives_per else {},
        }
    )
    params = config.train
    model = build_backbone(config.backbone, data.n_items, config.model, seed=0).train()
    step = LossStep.for_training(model, params)  # as fit trains: length groups for random batches
    optimizer = torch.optim.Adam(model.parameters(), lr=params.lr, betas=(0.9, params.beta2))
    batches = list(epoch_batches(split.train, params, model.max_len, np.random.default_rng(0)))[
        : args.warmup + args.steps
    ]

    def train(chosen: list) -> None:
        for inputs, targets, weights, batch_weight in chosen:
            loss = step(inputs, targets, weights, batch_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    train(batches[: args.warmup])
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        train(batches[args.warmup :])
    events = sorted(profiled.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    result = {
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
        "rsir": provenance(),
        "machine": f"{platform.machine()}, {args.threads} thread(s)",
        "model": model.describe(),
        "train": {
            "batch_size": params.batch_size,
            "loss": params.loss,
            "negatives": params.negatives,
            "negatives_per": params.negatives_per,
            "batching": params.batching,
        },
        "n_items": data.n_items,
        "steps": len(batches) - args.warmup,
        "targets_per_step": float(np.mean([int((b[1] != 0).sum()) for b in batches[args.warmup :]])),
        "seconds_per_step": total / 1e6 / (len(batches) - args.warmup),
        "operators": [
            {"name": e.key, "share": e.self_cpu_time_total / total, "calls": e.count} for e in events[: args.top]
        ],
    }
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=2)
        handle.write("\n")
    for row in result["operators"]:
        print(f"{row['share']:6.1%}  {row['calls']:5d}  {row['name']}")


if __name__ == "__main__":
    main()
