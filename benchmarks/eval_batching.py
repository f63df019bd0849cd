"""Full-ranking evaluation batched by width class of history lengths against one batch per
``eval_batch_size`` rows padded to its longest history (the earlier batching), side by side
in one process, on the built-in data and on a benchmark file: same ranks, time of each.

    python benchmarks/eval_batching.py --data ../shared/data/Beauty/Beauty.txt --out docs/results/eval_batching.json
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

from rsir.data import leave_one_out, make_synthetic, read_dataset
from rsir.data.batching import bucket_batches
from rsir.evaluation import pessimistic_ranks, score_histories
from rsir.files import write_json
from rsir.models import build_backbone
from rsir.rundir import provenance


def one_batch_per_chunk(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """The earlier evaluation batches: rows in length order, ``batch_size`` at a time."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def time_batches(model, eval_set, batches: list[np.ndarray], repeats: int) -> tuple[float, np.ndarray]:
    ranks = np.zeros(len(eval_set.targets), dtype=np.int64)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for rows in batches:
            scores = score_histories(model, eval_set.history, rows)
            ranks[rows] = pessimistic_ranks(scores, torch.from_numpy(eval_set.targets[rows])).numpy()
        best = min(best, time.perf_counter() - started)
    return best, ranks.copy()


def measure(name: str, dataset, batch_size: int, repeats: int) -> dict:
    split = leave_one_out(dataset)
    model = build_backbone("sasrec", dataset.n_items, {}, seed=0).eval()
    lengths = np.minimum(split.valid.history.lengths, model.max_len)
    old_seconds, old_ranks = time_batches(model, split.valid, one_batch_per_chunk(lengths, batch_size), repeats)
    new_seconds, new_ranks = time_batches(model, split.valid, bucket_batches(lengths, batch_size, None), repeats)
    return {
        "data": name,
        "users": int(len(lengths)),
        "mean_history": round(float(lengths.mean()), 2),
        "one_padded_batch_per_chunk_s": round(old_seconds, 3),
        "width_classes_s": round(new_seconds, 3),
        "speedup": round(old_seconds / new_seconds, 2),
        "same_ranks": bool(np.array_equal(old_ranks, new_ranks)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/Beauty/Beauty.txt")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--note", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    results = [
        measure("synthetic, 1,000 users x 500 items", make_synthetic(1000, 500, seed=0), args.batch_size, args.repeats),
        measure(Path(args.data).stem, read_dataset(args.data), args.batch_size, args.repeats),
    ]
    write_json(
        args.out,
        {
            "name": "eval_batching",
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "threads": args.threads,
            "model": "sasrec, today's default size, untrained (timing and ranks only)",
            "results": results,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "note": args.note,
        },
    )


if __name__ == "__main__":
    main()
