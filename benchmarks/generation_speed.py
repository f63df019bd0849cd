"""Time one generation round: every training sequence of a data set, m attempts each, with
cached keys/values (incremental) and with the prefix re-encoded at every step, side by side.

    python benchmarks/generation_speed.py --checkpoint runs/protocol/Beauty-sasrec-sampled_softmax-s0/model.pt \
        --data ../shared/data/Beauty/Beauty.txt --attempts 5 --tau 10 --threads 1 \
        --out docs/results/generation_speed_beauty.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import sys
import time

import torch

from rsir.checkpoint import load_checkpoint
from rsir.data import leave_one_out, read_dataset
from rsir.generation import GenerationParams, generate
from rsir.io import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--attempts", type=int, default=5)
    parser.add_argument("--exploit-prob", type=float, default=0.5)
    parser.add_argument("--tau", type=float, nargs="+", default=[10.0])
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    model, _ = load_checkpoint(args.checkpoint)
    split = leave_one_out(read_dataset(args.data))
    rows = []
    for tau in args.tau:
        kept = {}
        for incremental in (True, False):
            params = GenerationParams(attempts=args.attempts, exploit_prob=args.exploit_prob, tau=tau, incremental=incremental)
            started = time.perf_counter()
            result = generate(model, split.train, params, progress=False)
            seconds = time.perf_counter() - started
            kept[incremental] = {tuple(s) for s in result.sequences.to_lists()}
            stats = {k: v for k, v in result.stats.items() if k not in ("acceptance_by_step", "checks_by_step")}
            rows.append({"tau": tau, "incremental": incremental, "wall_seconds": round(seconds, 2), **stats})
            print(json.dumps(rows[-1]), flush=True)
        same = len(kept[True] & kept[False]) / max(len(kept[True] | kept[False]), 1)
        speedup = rows[-1]["wall_seconds"] / rows[-2]["wall_seconds"]
        rows[-2].update(speedup_vs_reencoding=round(speedup, 2), same_sequences_share=round(same, 4))
        print(f"tau={tau}: incremental {speedup:.2f}x faster; {100 * same:.2f}% of kept sequences identical", flush=True)
    summary = {
        "command": "python " + shlex.join(sys.argv),
        "checkpoint": args.checkpoint, "data": args.data, "threads": torch.get_num_threads(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}",
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "runs": rows,
    }
    if args.out:
        write_json(args.out, summary)


if __name__ == "__main__":
    main()
