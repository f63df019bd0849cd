"""One machine, end to end, at scale (issue 50): ``rsir improve`` on a large log with the epochs
capped, so that rates are measured rather than convergence, then ``rsir export`` of round 1.

    python benchmarks/scale_data.py --out docs/results/scale_data.json      # writes the log
    python benchmarks/scale_run.py --data /tmp/rsir_scale.parquet --out docs/results/scale_run.json

``--nproc 1 2`` runs it alone, then the same under ``torchrun --nproc-per-node 2`` (gloo), one
after the other, and gives the second's rates over the first's. Each command runs in a process
of its own; the peak memory reported is that of the largest process it started (for
torchrun, the largest rank). Per epoch the training log gives seconds and targets/s, and every
validation and test ranks the whole catalogue for every user (no sampling); generation gives
its items/s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from first_run import timed  # a sibling script: benchmarks/ is on the path when run

from rsir.files import write_json
from rsir.rundir import RunDir, provenance


def timed_run(command: list[str]) -> dict[str, Any]:
    """``command`` run to its end, its output shown: its wall time and the peak RSS of its
    largest process, or its exit status where it failed (killed for memory, say), so the
    result file still says what ran."""
    try:
        seconds, peak = timed(command, quiet=False)
    except subprocess.CalledProcessError as failed:
        return {"command": shlex.join(command), "failed_with_status": failed.returncode}
    return {"command": shlex.join(command), "wall_seconds": round(seconds, 1), "peak_rss_mb": round(peak / 1e3, 1)}


def rounds(run: RunDir) -> list[dict[str, Any]]:
    """Per round: its phases' seconds, each epoch's training rate and evaluation time, and the
    generation's rate."""
    found = []
    for record in json.loads(run.metrics_file.read_text())["rounds"]:
        epochs = [json.loads(line) for line in (run.round(record["round"]) / "log.jsonl").read_text().splitlines()]
        entry = {
            "round": record["round"],
            "train_sequences": record["train_sequences"],
            "train_interactions": record["train_interactions"],
            "seconds": record["seconds"],
            "epochs": [
                {key: epoch[key] for key in ("epoch", "train_seconds", "eval_seconds", "targets_per_second")}
                for epoch in epochs
            ],
            "test": {key: record["test"][key] for key in ("recall@10", "ndcg@10")},
        }
        if record.get("generation"):
            generation = record["generation"]
            entry["generation"] = {
                key: generation[key]
                for key in ("sources", "attempts", "kept", "generated_items", "seconds", "items_per_second")
            }
        found.append(entry)
    return found


def one_run(args: argparse.Namespace, nproc: int, work: Path) -> dict[str, Any]:
    """``rsir improve`` then ``rsir export`` of round 1 with ``nproc`` processes: their wall
    times and peak memory, and the improve run's per-round rates."""
    run = RunDir(work / f"run-{nproc}")
    launcher = (
        [sys.executable, "-m", "rsir.cli"]
        if nproc == 1
        else ["torchrun", "--standalone", f"--nproc-per-node={nproc}", "-m", "rsir.cli"]
    )
    improve = [
        *launcher,
        "improve",
        "--data",
        args.data,
        "--out",
        str(run.path),
        "--max-epochs",
        str(args.max_epochs),
        "--retrieval",
        "faiss",
        "--threads",
        str(args.threads),
        "--quiet",
        *args.options,
    ]
    trained = timed_run(improve)
    exported = timed_run(
        [
            sys.executable,
            "-m",
            "rsir.cli",
            "export",
            str(run.path),
            "--round",
            "1",
            "--out",
            str(work / f"export-{nproc}"),
        ]
    )
    return {
        "nproc": nproc,
        "improve": trained,
        "rounds": rounds(run) if run.metrics_file.exists() else [],
        "export": exported,
    }


def against_first(runs: list[dict[str, Any]], resumed: bool) -> list[dict[str, Any]]:
    """Each later run's rates over the first run's (more than 1: faster), where both finished:
    round 0's training targets/s, its generation's items/s (the data round 1 trains on) and,
    unless resumed (then a wall time is only the last process's), improve's whole wall time."""
    first = runs[0]

    def rates(entry: dict[str, Any]) -> dict[str, float] | None:
        if "wall_seconds" not in entry["improve"] or len(entry["rounds"]) < 2:
            return None
        return {
            "train_targets_per_second": entry["rounds"][0]["epochs"][0]["targets_per_second"],
            "generation_items_per_second": entry["rounds"][0]["generation"]["items_per_second"],
            **({} if resumed else {"improve_per_second": 1 / entry["improve"]["wall_seconds"]}),
        }

    base = rates(first)
    found = []
    for entry in runs[1:]:
        mine = rates(entry)
        if base and mine:
            ratios = {key: round(mine[key] / base[key], 3) for key in base}
            found.append({"nproc": entry["nproc"], "against_nproc": first["nproc"], **ratios})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the log (scale_data.py writes one)")
    parser.add_argument("--out", required=True, help="the result JSON")
    parser.add_argument(
        "--work", default="/tmp/rsir_scale_run", help="run and export directories (replaced unless --resume)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the improve runs already in --work (rsir resumes each from its last finished epoch "
        "or phase); its wall time and peak memory are then the last process's, its per-epoch rates whole",
    )
    parser.add_argument("--max-epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads per process (0: its share of the cores)")
    parser.add_argument(
        "--nproc",
        type=int,
        nargs="+",
        default=[1],
        help="process counts, run one after the other (1: no torchrun); later ones are compared with the first",
    )
    parser.add_argument("--note", default="", help="the machine's state while it ran")
    parser.add_argument("options", nargs="*", help="more `rsir improve` options, after --")
    args = parser.parse_args()
    work = Path(args.work)
    if not args.resume:
        shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    origin = provenance()  # the code the runs start with, not the checkout's when they end
    started = time.perf_counter()
    runs = [one_run(args, nproc, work) for nproc in args.nproc]
    write_json(
        args.out,
        {
            "name": Path(args.out).stem,
            "command": "python " + shlex.join(sys.argv),
            "rsir": origin,
            "seed": 0,
            "data": args.data,
            "data_mb": round(os.path.getsize(args.data) / 1e6, 1),
            "runs": runs,
            "against_first": against_first(runs, args.resume),
            "wall_seconds": round(time.perf_counter() - started, 1),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores" + (f"; {args.note}" if args.note else ""),
            "resumed": args.resume,
        },
    )


if __name__ == "__main__":
    main()
