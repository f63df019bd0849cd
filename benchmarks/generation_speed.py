"""Time one generation round: every training sequence of a data set, m attempts each.

    python benchmarks/generation_speed.py --checkpoint runs/protocol/Beauty-sasrec-sampled_softmax-s0/model.pt \
        --data ../shared/data/Beauty/Beauty.txt --attempts 5 --tau 10
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import torch

from rsir.checkpoint import load_checkpoint
from rsir.data import leave_one_out, read_dataset
from rsir.generation import GenerationParams, generate


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
        params = GenerationParams(attempts=args.attempts, exploit_prob=args.exploit_prob, tau=tau)
        started = time.perf_counter()
        result = generate(model, split.train, params, progress=False)
        seconds = time.perf_counter() - started
        stats = {k: v for k, v in result.stats.items() if k not in ("acceptance_by_step", "checks_by_step")}
        rows.append({"tau": tau, "wall_seconds": round(seconds, 2), **stats})
        print(json.dumps(rows[-1]))
    summary = {
        "checkpoint": args.checkpoint, "data": args.data, "threads": torch.get_num_threads(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}", "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "runs": rows,
    }
    if args.out:
        with open(args.out + ".tmp", "w") as handle:
            json.dump(summary, handle, indent=1)
        os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
