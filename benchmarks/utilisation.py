"""How close rsir's hot paths run to this machine's limit: floating-point work counted by
torch's FlopCounterMode for one training epoch's batches, one full-ranking evaluation and
one generation step, divided by their measured time, against the float32 matrix-multiply
throughput measured in the same run. With ``--loss softmax`` the epoch is also timed with the
textbook full-softmax loss (the whole logit matrix materialised, ``F.cross_entropy``), the
reference for rsir's blocked one. The epoch is timed again with ``train.precision = "bf16"``
(products in bfloat16 under autocast), against the bfloat16 matrix-multiply throughput.
``train_epoch_fit`` is one epoch of the library's own training (``fit``) at today's defaults
(``--preset NAME``: a preset's), its batches, negatives and loss as ``rsir train`` runs them;
``train_epoch_fit_bf16`` the same with ``train.precision = "bf16"``.
``--device cuda`` measures the same on a GPU.

    python benchmarks/utilisation.py --data ../shared/data/Beauty/Beauty.txt --threads 1 \
        --out docs/results/utilisation_beauty.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from rsir.config import build_config
from rsir.data import leave_one_out, read_dataset
from rsir.data.batching import next_item_batches
from rsir.data.source import load_dataset
from rsir.distributed import resolve_device
from rsir.evaluation import evaluate
from rsir.files import write_json
from rsir.generation.generate import GenerationParams, generate
from rsir.models import PAPER_MODEL, build_backbone
from rsir.rundir import provenance
from rsir.training.callbacks import Callback, TrainingRun
from rsir.training.losses import build_loss
from rsir.training.trainer import LossStep, fit, use_threads


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, dtype: torch.dtype = torch.float32, seconds: float = 3.0) -> float:
    """The device's matrix-multiply throughput (GFLOP/s) in ``dtype`` (on a CPU, at the current
    thread count); a GPU gets products large enough to fill it."""
    size = 8192 if device.type == "cuda" else 2048
    a, b = (torch.randn(size, size, dtype=dtype, device=device) for _ in range(2))
    a @ b
    synchronize(device)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
        synchronize(device)
    return 2 * size**3 * count / (time.perf_counter() - started) / 1e9


def measure(fn, device: torch.device) -> tuple[float, float]:
    """(GFLOP counted, seconds) of one call; counted and timed in separate calls."""
    with FlopCounterMode(display=False) as counter:
        fn()
    synchronize(device)
    started = time.perf_counter()
    fn()
    synchronize(device)
    return counter.get_total_flops() / 1e9, time.perf_counter() - started


class CountEpochFlops(Callback):
    """Counts the floating-point work of an epoch's training, not of its validation (the last
    epoch's: entering the counter clears it)."""

    def __init__(self) -> None:
        self.counter = FlopCounterMode(display=False)

    def on_epoch_start(self, run: TrainingRun) -> None:
        self.counter.__enter__()

    def on_epoch_trained(self, run: TrainingRun) -> None:
        self.counter.__exit__(None, None, None)


def library_epoch(data: str, preset: str | None, threads: int, device: str, precision: str) -> tuple[float, float]:
    """(GFLOP counted, seconds) of one epoch of ``fit`` at the defaults (or ``preset``'s), each
    from its own fresh model of the same seed; validation and test are left out of both."""
    config = build_config({"data": {"path": data}, **({"preset": preset} if preset else {})})
    config.train.max_epochs, config.train.threads, config.train.device = 1, threads, device
    config.train.precision = precision
    dataset = load_dataset(config.data)
    split = config.train.training_split(leave_one_out(dataset), dataset.n_items)  # as rsir train prepares it
    n_items = dataset.n_items
    counted = CountEpochFlops()
    fit(
        build_backbone(config.backbone, n_items, config.model, seed=0),
        split,
        config.train,
        progress=False,
        callbacks=[counted],
    )
    timed = fit(build_backbone(config.backbone, n_items, config.model, seed=0), split, config.train, progress=False)
    return counted.counter.get_total_flops() / 1e9, timed.train_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True)
    parser.add_argument("--loss", default="sampled_softmax")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--preset", help="train_epoch_fit at a preset's options instead of today's defaults")
    parser.add_argument("--note", default="", help="the machine's state while it ran")
    parser.add_argument("--out")
    args = parser.parse_args()
    use_threads(args.threads)
    device = resolve_device(args.device)
    dataset = read_dataset(args.data)
    split = leave_one_out(dataset)
    model = build_backbone("sasrec", dataset.n_items, PAPER_MODEL, seed=0).to(device)  # the model of the published runs
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = build_loss(args.loss)

    def train_epoch(loss_fn=loss_fn, precision: str = "fp32") -> None:
        model.train()
        step = LossStep(model, loss_fn, precision)
        for inputs, targets, weights, total in next_item_batches(
            split.train, model.max_len, 256, np.random.default_rng(0)
        ):
            loss = step(inputs.to(device), targets.to(device), weights.to(device), total)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def unfused_softmax(model, hidden, inputs, targets, weights):
        logits = model.score_all(hidden[targets != 0])
        logits[:, 0] = float("-inf")
        return F.cross_entropy(logits, targets[targets != 0], reduction="sum")

    peak = {"fp32": matmul_gflops(device), "bf16": matmul_gflops(device, torch.bfloat16)}
    rows = {}
    # Each path's (GFLOP counted, seconds), in the order they run: the paper model's paths train
    # one model in turn.
    timed = [
        ("train_epoch", lambda: measure(train_epoch, device)),
        ("train_epoch_bf16", lambda: measure(lambda: train_epoch(precision="bf16"), device)),
        ("evaluate_valid", lambda: measure(lambda: evaluate(model, split.valid), device)),
        (
            "generate_round_tau10",
            lambda: measure(lambda: generate(model, split.train, GenerationParams(), progress=False), device),
        ),
        ("train_epoch_fit", lambda: library_epoch(args.data, args.preset, args.threads, args.device, "fp32")),
        ("train_epoch_fit_bf16", lambda: library_epoch(args.data, args.preset, args.threads, args.device, "bf16")),
    ]
    if args.loss == "softmax":
        timed.insert(
            1, ("train_epoch_unfused_reference", lambda: measure(lambda: train_epoch(unfused_softmax), device))
        )
    for name, run in timed:
        gflop, seconds = run()
        rows[name] = {
            "gflop": round(gflop, 1),
            "seconds": round(seconds, 2),
            "gflops": round(gflop / seconds, 1),
            "share_of_matmul_peak": round(gflop / seconds / peak["bf16" if "bf16" in name else "fp32"], 3),
        }
        print(name, json.dumps(rows[name]), flush=True)
    report = {
        "command": "python " + shlex.join(sys.argv),
        "rsir": provenance(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}" + (f"; {args.note}" if args.note else ""),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "matmul_peak_gflops": round(peak["fp32"], 1),
        "matmul_peak_gflops_bf16": round(peak["bf16"], 1),
        "loss": args.loss,
        "train_epoch_fit_preset": args.preset or "today's defaults",
        **rows,
    }
    if args.out:
        write_json(args.out, report)


if __name__ == "__main__":
    main()
