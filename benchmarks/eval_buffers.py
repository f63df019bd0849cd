"""Full-ranking evaluation on a large catalogue: a fresh score matrix and an integer count of a
fresh comparison mask per batch (rsir before the change) against ``evaluate``'s one reused
score matrix, which each batch's comparison overwrites and a float32 sum counts, side by side
in one process, with the page faults each way takes: same ranks, time of each.

    python benchmarks/scale_data.py --users 100000 --items 100000 --file /tmp/rsir_scale_100k.parquet --out /tmp/d.json
    python benchmarks/eval_buffers.py --data /tmp/rsir_scale_100k.parquet --out docs/results/eval_buffers.json
"""

from __future__ import annotations

import argparse
import resource
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rsir.data import leave_one_out, read_dataset
from rsir.data.batching import bucket_batches
from rsir.evaluation import evaluate, score_histories
from rsir.files import write_json
from rsir.models import build_backbone
from rsir.rundir import provenance


def page_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def ranks_before_the_change(model, eval_set, batches: list[np.ndarray]) -> np.ndarray:
    """The earlier evaluation: per batch, a fresh score matrix and a fresh mask summed as int32."""
    ranks = np.zeros(len(eval_set.targets), dtype=np.int64)
    for rows in batches:
        scores = score_histories(model, eval_set.history, rows)
        target_scores = scores.gather(1, torch.from_numpy(eval_set.targets[rows]).unsqueeze(1))
        ranks[rows] = ((scores >= target_scores).sum(1, dtype=torch.int32).long() - 1).numpy()
    return ranks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=0, help="0: every core")
    parser.add_argument("--note", default="", help="the machine's state while it ran")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads or torch.get_num_threads())
    started = time.perf_counter()
    dataset = read_dataset(args.data)
    split = leave_one_out(dataset)
    model = build_backbone("sasrec", dataset.n_items, {}, seed=0).eval()
    lengths = np.minimum(split.valid.history.lengths, model.max_len)
    batches = bucket_batches(lengths, args.batch_size, rng=None)
    ranks_before_the_change(model, split.valid, batches[:1])  # one-time start-up costs fall on neither way
    faults, tick = page_faults(), time.perf_counter()
    fresh_ranks = ranks_before_the_change(model, split.valid, batches)
    fresh_seconds, fresh_faults, faults = time.perf_counter() - tick, page_faults() - faults, page_faults()
    tick = time.perf_counter()
    reused_ranks = evaluate(model, split.valid, batch_size=args.batch_size).ranks
    reused_seconds, reused_faults = time.perf_counter() - tick, page_faults() - faults
    write_json(
        args.out,
        {
            "name": args.out.stem,
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "threads": torch.get_num_threads(),
            "model": "sasrec, today's default size, untrained (timing and ranks only)",
            "users": int(len(lengths)),
            "items": int(dataset.n_items),
            "batch_size": args.batch_size,
            "fresh_matrices_s": round(fresh_seconds, 1),
            "reused_buffers_s": round(reused_seconds, 1),
            "speedup": round(fresh_seconds / reused_seconds, 2),
            "fresh_page_faults": fresh_faults,
            "reused_page_faults": reused_faults,
            "same_ranks": bool(np.array_equal(fresh_ranks, reused_ranks)),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{args.threads or torch.get_num_threads()} threads" + (f"; {args.note}" if args.note else ""),
        },
    )


if __name__ == "__main__":
    main()
