"""Side-by-side benchmark: rsir SASRec against RecBole 1.2.1 SASRec, same budget and config.

Both sides train SASRec with the full-softmax (CE) loss, batch 256, d=64, 2 blocks, 2 heads,
feed-forward width 256, dropout 0.5, lr 1e-3, max_len 50, for the same wall-clock budget, one after the other, each
in its own process (so each peak RSS is its own). rsir then runs one round of RSIR generation
(the paper's defaults: m = 5 attempts per training user, p = 0.5, tau = 10) from its trained
model, work RecBole has no counterpart for. RecBole does not exclude seen items when
ranking, so rsir runs with exclude_seen=False for the comparison; rsir's numbers with seen
items excluded are reported on an extra line.

    python benchmarks/bench_vs_recbole.py --data ../shared/data/Beauty/Beauty.txt \
        --budget-s 1800 --seed 0 --out docs/results/bench_vs_recbole

Writes OUT.md (table) and OUT.json (raw results of both sides plus run metadata).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The RSIR paper's SASRec (rsir's "paper" preset, written out: the parent process does not
# import rsir or torch) with ffn_dim 256, RecBole's inner_size.
MODEL = {
    "dim": 64,
    "blocks": 2,
    "heads": 2,
    "dropout": 0.5,
    "item_dropout": 0.0,
    "block": "pre_ln",
    "init": "normal",
    "positions": "absolute",
    "pad_keys": "masked",
    "max_len": 50,
    "ffn_dim": 256,
}
MAX_EPOCHS, PATIENCE = 1000, 20


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="S3-Rec .txt file")
    p.add_argument("--budget-s", type=float, default=1800.0, help="wall-clock budget of each side's training loop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads of each side (0 = all cores)")
    p.add_argument("--out", type=Path, required=True, help="output prefix: writes OUT.md and OUT.json")
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: both sides multiply in bfloat16 under autocast (rsir train.precision, RecBole enable_amp)",
    )
    p.add_argument(
        "--recbole-precision",
        choices=("fp32", "bf16"),
        help="RecBole's own precision, if not --precision (on CPU its bf16 autocast is the slower one)",
    )
    p.add_argument(
        "--target-weighting",
        choices=("batch", "equal"),
        default="batch",
        help="rsir's train.target_weighting: batch (the paper preset's per-batch mean) or equal (every "
        "target of an epoch weighs the same, as each of RecBole's one-target prefix rows does)",
    )
    p.add_argument("--only", choices=("rsir", "recbole", "both"), default="both")
    p.add_argument(
        "--reuse-recbole", type=Path, help="RecBole driver JSON (or an earlier OUT.json) to use instead of a run"
    )
    p.add_argument("--recbole-workdir", type=Path, default=ROOT / ".bench" / "recbole-run")
    # Internal: the parent re-runs this file with this flag to train rsir in a fresh process.
    p.add_argument("--rsir-child", type=Path, help=argparse.SUPPRESS)
    return p.parse_args()


def write_atomic(path: Path, text: str) -> None:
    from rsir.files import atomic_open  # readers never see a half-written report

    with atomic_open(path) as handle:
        handle.write(text)


def rsir_child(args: argparse.Namespace) -> None:
    """Train and evaluate rsir in this (child) process and write its JSON report."""
    import torch  # imported here only: the parent process stays light

    from rsir.config import PRESETS
    from rsir.data import leave_one_out, read_dataset
    from rsir.data.batching import count_targets
    from rsir.evaluation import evaluate
    from rsir.generation.generate import GenerationParams, generate
    from rsir.models import build_backbone
    from rsir.training.trainer import TrainParams, fit

    started = time.perf_counter()  # like the driver's wall_seconds: data reading to test metrics
    data = read_dataset(args.data)
    split = leave_one_out(data)
    model = build_backbone("sasrec", data.n_items, MODEL, seed=args.seed)
    # RecBole's optimiser; the paper preset's per-batch mean loss (the published runs) unless
    # --target-weighting equal, the weighting RecBole's one-target rows get
    params = TrainParams(
        **{
            **PRESETS["paper"]["train"],
            "loss": "softmax",
            "lr": 1e-3,
            "max_epochs": MAX_EPOCHS,
            "patience": PATIENCE,
            "seed": args.seed,
            "exclude_seen": False,  # RecBole keeps seen items rankable
            "threads": args.threads,
            "precision": args.precision,
            "target_weighting": args.target_weighting,
        }
    )
    result = fit(model, split, params, run_dir=None, progress=False, time_budget=args.budget_s)
    # fit leaves the best-validation weights loaded: the same model, scored with exclusion on.
    test_excl = evaluate(model, split.test, exclude_seen=True).metrics
    fit_wall_seconds, fit_rss = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    targets_per_epoch, rows_per_epoch = count_targets(split.train, model.max_len)
    generation = generate(model, split.train, GenerationParams(), seed=args.seed, progress=False).stats
    if result.epochs >= MAX_EPOCHS:
        stopped_by = "epochs_max"
    elif result.epochs - result.best_epoch >= PATIENCE:
        stopped_by = "patience"
    else:
        stopped_by = "budget"
    report = {
        "library": "rsir",
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "budget_s": args.budget_s,
        "stopped_by": stopped_by,
        **result.summary(),
        "fit_wall_seconds": result.wall_seconds,
        "wall_seconds": fit_wall_seconds,  # to test metrics, as RecBole's; generation is extra
        "generation": {
            k: generation[k] for k in ("attempts", "kept", "generated_items", "seconds", "items_per_second")
        },
        "targets_per_epoch": int(targets_per_epoch),
        # One sequence per row, all its positions supervised: far fewer steps than RecBole's prefixes.
        "steps_per_epoch": math.ceil(rows_per_epoch / params.batch_size),
        "peak_rss_mb": fit_rss / 1024,  # KiB on Linux; training and evaluation, like RecBole's
        "peak_rss_mb_with_generation": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "excludes_seen_items": False,
        "test_excluding_seen": test_excl,
        "n_users": len(split.test.targets),
        "n_items": data.n_items,
        "history": result.history,
    }
    write_atomic(args.rsir_child, json.dumps(report, indent=2) + "\n")


def run_rsir(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rsir.json"
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--data",
            str(args.data),
            "--budget-s",
            str(args.budget_s),
            "--seed",
            str(args.seed),
            "--threads",
            str(args.threads),
            "--out",
            str(args.out),
            "--precision",
            args.precision,
            "--target-weighting",
            args.target_weighting,
            "--rsir-child",
            str(out),
        ]
        subprocess.run(cmd, check=True)
        return json.loads(out.read_text())


def run_recbole(args: argparse.Namespace) -> dict[str, Any]:
    # The env script logs to stderr and prints the venv's python on its last stdout line.
    env = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "recbole_env.sh")], check=True, stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    python = env.stdout.strip().splitlines()[-1]
    out = args.recbole_workdir.resolve() / f"result-{args.data.stem}-s{args.seed}-{args.recbole_precision}.json"
    cmd = [
        python,
        str(ROOT / "benchmarks" / "recbole_driver.py"),
        "--data",
        str(args.data.resolve()),
        "--budget-s",
        str(args.budget_s),
        "--workdir",
        str(args.recbole_workdir.resolve()),
        "--seed",
        str(args.seed),
        "--threads",
        str(args.threads),
        "--precision",
        args.recbole_precision,
        "--out",
        str(out),
    ]
    subprocess.run(cmd, check=True)
    log(f"RecBole result kept at {out} (pass it to --reuse-recbole to skip the rerun)")
    return json.loads(out.read_text())


def load_recbole(path: Path) -> dict[str, Any]:
    payload = json.loads(path.read_text())
    return payload if payload.get("library") == "recbole" else payload["recbole"]  # driver JSON or OUT.json


def epoch_stats(side: dict[str, Any]) -> dict[str, float]:
    """Per-epoch means from either side's per-epoch records (their keys differ)."""
    epochs = side.get("history") or side.get("per_epoch") or []
    valid = [e.get("eval_seconds", e.get("valid_seconds", 0.0)) for e in epochs]
    return {"train_s": side["train_seconds"] / max(side["epochs"], 1), "valid_s": sum(valid) / max(len(valid), 1)}


def best_within_budget(side: dict[str, Any]) -> tuple[float, int] | None:
    """Best validation NDCG@20 among the epochs that ended within the budget, and its 1-based epoch.

    Both loops check the clock after each epoch, so the last epoch may end past the budget;
    this is the strict reading of "within the same budget"."""
    epochs = side.get("history") or side.get("per_epoch") or []
    elapsed, best = 0.0, None
    for number, e in enumerate(epochs, start=1):
        elapsed += e["train_seconds"] + e.get("eval_seconds", e.get("valid_seconds", 0.0))
        if elapsed > side["budget_s"]:
            break
        if best is None or e["valid_ndcg@20"] > best[0]:
            best = (e["valid_ndcg@20"], number)
    return best


def early_stop_note(rs: dict[str, Any]) -> str:
    """How rsir's own early stopping went: when it stopped, or that the budget cut it short."""
    loop = [e["train_seconds"] + e["eval_seconds"] for e in rs["history"]]
    to_best = sum(loop[: rs["best_epoch"]])
    if rs["stopped_by"] == "patience":
        when = "before" if sum(loop) <= rs["budget_s"] else "in the epoch that also used up"
        return (
            f"rsir stopped early (patience {PATIENCE}) after {rs['epochs']} epochs, {sum(loop):.0f} s of "
            f"training+validation, {when} the {rs['budget_s']:.0f} s budget; its best model (epoch "
            f"{rs['best_epoch']}) was reached after {to_best:.0f} s."
        )
    return (
        f"rsir was still improving (within patience) at the budget (stopped by {rs['stopped_by']} after {rs['epochs']} epoch(s), "
        f"best epoch {rs['best_epoch']} reached after {to_best:.0f} s; patience {PATIENCE} not exhausted)."
    )


def render(meta: dict[str, Any], rs: dict[str, Any] | None, rb: dict[str, Any] | None) -> str:
    sides = {"rsir": rs, "RecBole": rb}

    def row(label: str, get: Callable[[dict[str, Any]], Any], fmt: str, ratio: bool = False) -> str:
        vals = {name: (get(s) if s else None) for name, s in sides.items()}
        cells = [format(v, fmt) if v is not None else "n/a" for v in vals.values()]
        r = f"{vals['rsir'] / vals['RecBole']:.2f}x" if ratio and rs and rb and vals["RecBole"] else ""
        return f"| {label} | " + " | ".join(cells) + f" | {r} |"

    lines = [
        f"# rsir vs RecBole {rb['version'] if rb else '1.2.1'}: SASRec, full softmax, {meta['dataset']}",
        "",
        f"Command: `{meta['command']}`  ",
        (
            f"Commit: `{meta['commit']}`{' (with uncommitted changes)' if meta['worktree_dirty'] else ''}; "
            f"date: {meta['date']}; machine: {meta['machine']}; load average at start {meta['loadavg']}, "
            f"at end {meta.get('loadavg_end', 'n/a')}.  "
        ),
        (
            f"Same config on both sides: batch 256, d=64, 2 blocks, 2 heads, dropout 0.5, lr 1e-3, max_len 50, "
            f"feed-forward width rsir {meta['model'].get('ffn_dim') or meta['model']['dim']}, RecBole 256, "
            f"precision rsir {meta.get('precision', 'fp32')}, RecBole {meta.get('recbole_precision', meta.get('precision', 'fp32'))} "
            f"(bf16: rsir's train.precision, RecBole's enable_amp), rsir's target weighting "
            f"{meta.get('target_weighting', 'batch')} (batch: each batch's mean; equal: every target the same, "
            f"as RecBole's one-target rows), seed {meta['seed']}, wall-clock budget {meta['budget_s']:.0f} s of training+validation (checked after "
            f"each epoch), run one after the other.  "
        ),
        (
            "Like-for-like evaluation: RecBole's sequential full-sort evaluation leaves the user's seen items "
            "rankable, so rsir is run with `exclude_seen=False` here; full ranking over the catalogue. "
            "Test metrics are of the best-validation-NDCG@20 model of all epochs run."
        ),
        "",
        "| | rsir | RecBole | rsir/RecBole |",
        "|---|---|---|---|",
        row("training throughput (targets/s, pure training time)", lambda s: s["targets_per_second"], ",.0f", True),
        row("supervised next-item targets per epoch", lambda s: s["targets_per_epoch"], ",d"),
        # The driver does not record its batch count; one prefix per row, batches of 256.
        row(
            "optimizer steps per epoch",
            lambda s: s.get("steps_per_epoch", math.ceil(s["targets_per_epoch"] / 256)),
            ",d",
        ),
        row("train seconds / epoch", lambda s: epoch_stats(s)["train_s"], ".1f", True),
        row("validation seconds / epoch", lambda s: epoch_stats(s)["valid_s"], ".1f", True),
        row("epochs run (clock checked after each)", lambda s: s["epochs"], "d"),
        # RecBole numbers epochs from 0, rsir from 1.
        row("best epoch (1-based)", lambda s: s["best_epoch"] + (s["library"] == "recbole"), "d"),
        row("peak memory (RSS, MB)", lambda s: s["peak_rss_mb"], ",.0f", True),
        row("torch threads", lambda s: s["threads"], "d"),
        row("best valid NDCG@20, all epochs run", lambda s: s["best_valid"]["ndcg@20"], ".4f"),
        row(
            "best valid NDCG@20, epochs ended within budget", lambda s: (best_within_budget(s) or (math.nan,))[0], ".4f"
        ),
        row("its epoch (1-based)", lambda s: (best_within_budget(s) or (0, 0))[1], "d"),
        row("test Recall@10", lambda s: s["test"]["recall@10"], ".4f"),
        row("test NDCG@10", lambda s: s["test"]["ndcg@10"], ".4f"),
        row("wall seconds (data reading to test metrics)", lambda s: s["wall_seconds"], ",.0f"),
        "",
    ]
    if rs:
        ex = rs["test_excluding_seen"]
        lines.append(
            f"rsir with seen items excluded (its default; same final model, not comparable with RecBole): "
            f"test Recall@10 {ex['recall@10']:.4f}, NDCG@10 {ex['ndcg@10']:.4f}.  "
        )
        lines.append(early_stop_note(rs))
        g = rs.get("generation")
        if g:
            lines.append(
                f"rsir generation, one RSIR round from the trained model (m = 5, p = 0.5, tau = 10): "
                f"{g['attempts']:,} attempts, {g['generated_items']:,} items generated in {g['seconds']:.1f} s "
                f"({g['items_per_second']:,.0f} items/s), {g['kept']:,} sequences kept; peak RSS with it "
                f"{rs['peak_rss_mb_with_generation']:,.0f} MB.  "
            )
    if rb and rb.get("excludes_seen_items"):
        lines.append("WARNING: this RecBole result says it excluded seen items; the comparison is not like-for-like.")
    # A reused RecBole file may come from another setting than this run.
    for key in ("dataset", "seed", "budget_s"):
        if rb and rb.get(key) != meta[key]:
            lines.append(f"WARNING: RecBole {key} is {rb.get(key)!r}, this run's is {meta[key]!r}.")
    if rs and rb:
        lines.append(
            f"Targets per epoch differ slightly: rsir supervises the last {MODEL['max_len']} positions of "
            "each training sequence, RecBole one target per prefix of every length."
        )
    return "\n".join(lines) + "\n"


def log(msg: str) -> None:
    print(f"[bench_vs_recbole] {msg}", file=sys.stderr, flush=True)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], check=False, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def main() -> None:
    args = parse_args()
    args.recbole_precision = args.recbole_precision or args.precision
    if args.rsir_child:
        rsir_child(args)
        return
    meta = {
        "command": "python " + shlex.join(sys.argv),
        "commit": git("rev-parse", "--short", "HEAD") or "unknown",
        "worktree_dirty": bool(git("status", "--porcelain")),  # the commit alone may not be the code that ran
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {platform.platform()}, Python {platform.python_version()}",
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),  # the cores may be shared: say how busy
        "dataset": args.data.stem,
        "seed": args.seed,
        "budget_s": args.budget_s,
        "threads_per_side": args.threads or os.cpu_count(),
        "precision": args.precision,
        "recbole_precision": args.recbole_precision,
        "target_weighting": args.target_weighting,
        "model": MODEL,
    }
    rs = rb = None
    if args.only in ("rsir", "both"):
        log(f"training rsir for up to {args.budget_s:.0f} s")
        tick = time.perf_counter()
        rs = run_rsir(args)
        log(f"rsir done in {time.perf_counter() - tick:.0f} s")
    if args.reuse_recbole:
        rb = load_recbole(args.reuse_recbole)
        meta["recbole_reused_from"] = str(args.reuse_recbole)
    elif args.only in ("recbole", "both"):
        log(f"training RecBole for up to {args.budget_s:.0f} s")
        rb = run_recbole(args)
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    markdown = render(meta, rs, rb)
    out = args.out
    write_atomic(out.with_name(out.name + ".md"), markdown)
    write_atomic(out.with_name(out.name + ".json"), json.dumps({**meta, "rsir": rs, "recbole": rb}, indent=2) + "\n")
    print(markdown)
    log(f"wrote {out}.md and {out}.json")


if __name__ == "__main__":
    main()
