"""The self-improvement loop on the shared benchmark files: several seeds and fidelity
thresholds, each paired with the same seed's plain model (round 0), with a paired t-test.

Each (dataset, tau, seed) cell is one ``rsir improve`` run directory; finished phases are
skipped and interrupted ones resume. Round 0 of a cell is the plain model, so when
``benchmarks/protocol.py`` already trained that seed with the same settings its files are
reused instead of training it again.

    python benchmarks/loop_study.py --datasets Beauty --seeds 0 1 2 --taus 10 inf --rounds 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from scipy import stats

from rsir.io import atomic_open, write_json


def cell_dir(args: argparse.Namespace, dataset: str, tau: str, seed: int) -> Path:
    return Path(args.runs) / f"{dataset}-tau{tau}-r{args.rounds}-s{seed}"


def run_cell(args: argparse.Namespace, dataset: str, tau: str, seed: int) -> None:
    out = cell_dir(args, dataset, tau, seed)
    plain = Path(args.plain_runs) / f"{dataset}-sasrec-sampled_softmax-s{seed}"
    if not (out / "round-0").exists() and (plain / "metrics.json").exists():
        # Same data, model, training options and seed as round 0 of this cell.
        shutil.copytree(plain, out / "round-0", ignore=shutil.ignore_patterns("config.yaml"))
    command = [
        "rsir", "improve", "--data", str(Path(args.data_root) / dataset / f"{dataset}.txt"), "--seed", str(seed),
        "--tau", tau, "--rounds", str(args.rounds), "--threads", str(args.threads), "--out", str(out), "--quiet",
        *args.extra,
    ]
    started = time.time()
    with open(Path(args.runs) / f"{out.name}.log", "a") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
    print(f"{out.name}: done in {time.time() - started:.0f}s", flush=True)


def report(args: argparse.Namespace, command: str) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [
        "# Self-improvement rounds, paired with the plain model of the same seed",
        "",
        f"Command: `{command}`  ",
        f"Commit: `{commit}`; machine: {args.machine}; threads per run: {args.threads}; parallel runs: {args.jobs}.  ",
        "Round 0 is the plain model. Gains are relative to round 0 of the same seed (paired); p is a two-sided "
        "paired t-test over seeds on the metric itself (needs >= 2 seeds).",
        "",
        "| dataset | tau | round | seeds | test recall@10 | test ndcg@10 | gain recall@10 | p | gain ndcg@10 | p "
        "| synthetic seqs | train s | generate s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    raw: dict[str, list] = {}
    for dataset in args.datasets:
        for tau in args.taus:
            runs = {}
            for seed in args.seeds:
                path = cell_dir(args, dataset, tau, seed) / "metrics.json"
                if path.exists():
                    runs[seed] = json.loads(path.read_text())["rounds"]
            raw[f"{dataset}/tau{tau}"] = runs
            for k in range(args.rounds + 1):
                have = {s: r for s, r in runs.items() if len(r) > k}
                if not have:
                    continue
                base = {m: np.array([have[s][0]["test"][m] for s in have]) for m in ("recall@10", "ndcg@10")}
                now = {m: np.array([have[s][k]["test"][m] for s in have]) for m in ("recall@10", "ndcg@10")}
                cells = []
                for m in ("recall@10", "ndcg@10"):
                    gain = 100 * (now[m].mean() / base[m].mean() - 1)
                    p = stats.ttest_rel(now[m], base[m]).pvalue if len(have) >= 2 and k > 0 else float("nan")
                    cells += [f"{gain:+.1f}%", "-" if np.isnan(p) else f"{p:.3f}"]
                mean_std = [f"{now[m].mean():.4f} ± {now[m].std(ddof=1) if len(have) > 1 else 0:.4f}" for m in now]
                synth = np.mean([have[s][k]["synthetic_sequences"] for s in have])
                train_s = np.mean([have[s][k]["seconds"]["train"] for s in have])
                gen_s = np.mean([have[s][k]["seconds"].get("generate", 0) for s in have])
                lines.append(
                    f"| {dataset} | {tau} | {k} | {','.join(map(str, have))} | {mean_std[0]} | {mean_std[1]} | "
                    f"{cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} | {synth:.0f} | {train_s:.0f} | {gen_s:.0f} |"
                )
    with atomic_open(args.report) as handle:
        handle.write("\n".join(lines) + "\n")
    write_json(Path(args.report).with_suffix(".json"), raw)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["Beauty", "Sports_and_Outdoors"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--taus", nargs="+", default=["10", "inf"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--runs", default="runs/loop")
    parser.add_argument("--plain-runs", default="runs/protocol", help="benchmarks/protocol.py runs to reuse as round 0")
    parser.add_argument("--report", default="docs/results/loop_sasrec.md")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--machine", default="2-core x86_64 CPU")
    parser.add_argument("--report-only", action="store_true", help="rewrite the report from finished rounds")
    parser.add_argument("extra", nargs=argparse.REMAINDER, help="after --: more `rsir improve` flags")
    args = parser.parse_args()
    args.extra = [a for a in args.extra if a != "--"]
    command = "python benchmarks/loop_study.py " + " ".join(sys.argv[1:])
    Path(args.runs).mkdir(parents=True, exist_ok=True)
    if args.report_only:
        report(args, command)
        return
    cells = [(d, t, s) for s in args.seeds for t in args.taus for d in args.datasets]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_cell, args, *cell) for cell in cells]:
            future.result()
            report(args, command)
    report(args, command)
    print(Path(args.report).read_text())


if __name__ == "__main__":
    main()
