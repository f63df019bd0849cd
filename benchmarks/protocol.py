"""Train a backbone under the evaluation protocol on the shared benchmark files, several
seeds per dataset, and write a Markdown/JSON report of mean and standard deviation.

Each (dataset, loss, seed) cell is one ``rsir train`` run in its own directory; finished
cells are skipped and interrupted ones resume, so the script can be rerun at any time.

    python benchmarks/protocol.py --datasets Beauty Sports_and_Outdoors Toys_and_Games \
        --seeds 0 1 2 --loss sampled_softmax --jobs 2 --report docs/results/sasrec_protocol.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from rsir.io import atomic_open, write_json

METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20", "mrr@10")


def run_cell(args: argparse.Namespace, dataset: str, loss: str, seed: int) -> Path:
    out = Path(args.runs) / f"{dataset}-{args.backbone}-{loss}-s{seed}"
    if (out / "metrics.json").exists():
        return out
    command = [
        "rsir", "train", "--data", str(Path(args.data_root) / dataset / f"{dataset}.txt"),
        "--backbone", args.backbone, "--loss", loss, "--seed", str(seed),
        "--threads", str(args.threads), "--out", str(out), "--quiet", *args.extra,
    ]
    started = time.time()
    with open(Path(args.runs) / f"{out.name}.log", "a") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    print(f"{out.name}: done in {time.time() - started:.0f}s", flush=True)
    return out


def report(args: argparse.Namespace, cells: list[tuple[str, str, int]], command: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    _rows, raw = [], {}
    groups: dict[tuple[str, str], list[dict]] = {}
    for dataset, loss, seed in cells:
        path = Path(args.runs) / f"{dataset}-{args.backbone}-{loss}-s{seed}" / "metrics.json"
        if path.exists():
            groups.setdefault((dataset, loss), []).append({"seed": seed, **json.loads(path.read_text())})
    lines = [
        f"# {args.backbone} under the protocol",
        "",
        f"Command: `{command}`  ",
        f"Commit: `{commit or 'uncommitted'}`; machine: {args.machine}; threads per run: {args.threads}, "
        f"parallel runs: {args.jobs}.  ",
        "Test metrics at the best validation NDCG@20 epoch; mean ± standard deviation over seeds "
        "(full ranking, seen items excluded, pessimistic ties).",
        "",
        "| dataset | loss | seeds | " + " | ".join(f"test {m}" for m in METRICS)
        + " | best epoch | epochs | wall s / run |",
        "|---" * (6 + len(METRICS)) + "|",
    ]
    for (dataset, loss), runs in sorted(groups.items()):
        cells_text = []
        for metric in METRICS:
            values = np.array([r["test"][metric] for r in runs])
            cells_text.append(f"{values.mean():.4f} ± {values.std(ddof=1) if len(values) > 1 else 0:.4f}")
        seeds = ",".join(str(r["seed"]) for r in runs)
        lines.append(
            f"| {dataset} | {loss} | {seeds} | " + " | ".join(cells_text)
            + f" | {np.mean([r['best_epoch'] for r in runs]):.0f} | {np.mean([r['epochs'] for r in runs]):.0f}"
            f" | {np.mean([r['wall_seconds'] for r in runs]):.0f} |"
        )
        raw[f"{dataset}/{loss}"] = runs
    lines.append("")
    lines.append("Per seed (test recall@10 / ndcg@10, best epoch, wall seconds):")
    lines.append("")
    for key, runs in sorted(raw.items()):
        per_seed = "; ".join(
            f"seed {r['seed']}: {r['test']['recall@10']:.4f} / {r['test']['ndcg@10']:.4f}, epoch {r['best_epoch']}, "
            f"{r['wall_seconds']:.0f}s"
            for r in runs
        )
        lines.append(f"- {key}: {per_seed}")
    with atomic_open(args.report) as handle:
        handle.write("\n".join(lines) + "\n")
    write_json(Path(args.report).with_suffix(".json"), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Beauty", "Sports_and_Outdoors", "Toys_and_Games"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--losses", nargs="+", default=["sampled_softmax"])
    parser.add_argument("--backbone", default="sasrec")
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", default="runs/protocol")
    parser.add_argument("--report", default="docs/results/sasrec_protocol.md")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel (give each --threads cores)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads per run (0 = all cores)")
    parser.add_argument("--machine", default="2-core x86_64 CPU")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more `rsir train` flags")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    command = "python benchmarks/protocol.py " + " ".join(sys.argv[1:])
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    # Largest datasets first so parallel lanes finish together.
    cells = [(d, loss, s) for loss in args.losses for s in args.seeds for d in args.datasets]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_cell, args, *cell) for cell in cells]:
            future.result()
            report(args, cells, command)
    report(args, cells, command)
    print(Path(args.report).read_text())


if __name__ == "__main__":
    main()
