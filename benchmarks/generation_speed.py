"""Time one generation round: every training sequence of a data set, m attempts each, with
cached keys/values (incremental) and with the prefix re-encoded at every step, side by side;
with ``--faiss-probe``, also with the FAISS index instead of the exact catalogue scan, and
how many kept sequences and first-step decisions it shares with the exact scan. With several
``--attempt-batch`` sizes, each is timed in the same run, against the first (their random
streams differ, so their kept sequences are not compared); ``--repeats N`` times every run N
times, all runs in turn, and keeps the median.

    python benchmarks/generation_speed.py --checkpoint runs/protocol/Beauty-sasrec-sampled_softmax-s0/model.pt \
        --data ../shared/data/Beauty/Beauty.txt --attempts 5 --tau 10 --threads 1 \
        --out docs/results/generation_speed_beauty.json
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import time

import numpy as np
import torch

from rsir.data import leave_one_out, read_dataset
from rsir.distributed import resolve_device
from rsir.files import write_json
from rsir.generation.generate import GenerationParams, GenerationResult, generate
from rsir.models.checkpoint import load_checkpoint
from rsir.rundir import provenance
from rsir.training.trainer import use_threads


def _kept(result: GenerationResult) -> set[tuple[int, ...]]:
    """The distinct sequences a generation kept."""
    return {tuple(sequence) for sequence in result.sequences.to_lists()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--exploit-prob", type=float, default=0.5)
    parser.add_argument("--tau", type=float, nargs="+", default=[10.0])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--sources", type=int, default=0, help="generate from the first N training sequences only (0 = all)"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument(
        "--attempt-batch",
        type=int,
        nargs="+",
        default=[GenerationParams.attempt_batch],
        help="attempts advanced together (several: each timed, against the first)",
    )
    parser.add_argument(
        "--faiss-probe", type=int, nargs="*", default=[], help="also generate with faiss at these probes"
    )
    parser.add_argument(
        "--cached-only",
        action="store_true",
        help="skip the re-encoding mode (a backbone that re-encodes anyway, as today's SASRec, runs it twice)",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="times each run is timed, all runs in turn; the median is kept"
    )
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    use_threads(args.threads)
    device = resolve_device(args.device)
    model = load_checkpoint(args.checkpoint)[0].to(device)
    split = leave_one_out(read_dataset(args.data))
    sources = split.train.select(np.arange(min(args.sources, len(split.train)))) if args.sources else split.train
    modes = [("exact", True, 0)] + [("exact", False, 0)] * (not args.cached_only)
    modes += [("faiss", True, probe) for probe in args.faiss_probe]
    runs = list(itertools.product(args.tau, args.attempt_batch, modes))
    seconds: dict[tuple, list[float]] = {run: [] for run in runs}
    results = {}
    for _ in range(args.repeats):  # every run once per repeat, in turn: all see the same machine states
        for run in runs:
            tau, attempt_batch, (retrieval, incremental, probe) = run
            params = GenerationParams(
                attempts=args.attempts,
                exploit_prob=args.exploit_prob,
                tau=tau,
                attempt_batch=attempt_batch,
                incremental=incremental,
                retrieval=retrieval,
                faiss_probe=probe or 16,
            )
            started = time.perf_counter()
            results[run] = generate(model, sources, params, progress=False)  # the same on every repeat
            seconds[run].append(time.perf_counter() - started)
    kept = functools.cache(lambda run: _kept(results[run]))  # each run's set once, however often compared
    rows = []
    for run in runs:
        tau, attempt_batch, (retrieval, incremental, probe) = run
        median = statistics.median(seconds[run])
        stats = {k: v for k, v in results[run].stats.items() if k not in ("checks_by_step", "seconds")}
        stats["acceptance_by_step"] = stats["acceptance_by_step"][:3]
        row = {
            "tau": tau,
            "retrieval": retrieval,
            "faiss_probe": probe or None,
            "incremental": incremental,
            "attempt_batch": attempt_batch,
            "wall_seconds": round(median, 2),
            "wall_seconds_each": [round(value, 2) for value in seconds[run]],
            **stats,
            "items_per_second": round(results[run].stats["generated_items"] / median, 1),
        }
        reference = (tau, attempt_batch, modes[0])  # the cached exact scan of the same size
        if run != reference:
            mine, theirs = kept(run), kept(reference)
            row["same_sequences_share_vs_cached_exact"] = round(len(mine & theirs) / max(len(mine | theirs), 1), 4)
            row["seconds_vs_cached_exact"] = round(median / statistics.median(seconds[reference]), 2)
        if len(args.attempt_batch) > 1:
            first = statistics.median(seconds[(tau, args.attempt_batch[0], (retrieval, incremental, probe))])
            row["seconds_vs_first_attempt_batch"] = round(median / first, 2)
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {
        "command": "python " + shlex.join(sys.argv),
        "rsir": provenance(),
        "checkpoint": args.checkpoint,
        "data": args.data,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "runs": rows,
    }
    if args.out:
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
