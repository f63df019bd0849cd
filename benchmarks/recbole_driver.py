"""RecBole 1.2.1 SASRec half of the side-by-side benchmark.

Runs inside the venv made by ``benchmarks/recbole_env.sh`` (never imports rsir):
converts an S3-Rec sequence file to a RecBole atomic ``.inter`` file, trains SASRec
with the paper-like config of shared/docs/peers.md under a wall-clock budget, keeps
the best-validation (NDCG@20) weights, tests them and writes one JSON report.
"""

from __future__ import annotations

import os

# RecBole reloads checkpoints it wrote itself with torch.load, which torch >= 2.6
# refuses by default (weights_only); this restores the old behaviour for this process
# only. It must be set before torch is imported.
os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"

import argparse
import copy
import json
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

# Known, harmless noise from RecBole's pinned dependencies (ray's pkg_resources import,
# RecBole's use of the deprecated torch.cuda.amp.GradScaler once per epoch).
warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
warnings.filterwarnings("ignore", category=FutureWarning, message=".*GradScaler")

import recbole  # noqa: E402  (imports follow the environment and warning setup)
import torch  # noqa: E402
from recbole.config import Config  # noqa: E402
from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import get_model, get_trainer, init_logger, init_seed  # noqa: E402
from recbole.utils.utils import calculate_valid_score  # noqa: E402

VALID_METRIC = "ndcg@20"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, required=True, help="S3-Rec .txt file")
    p.add_argument(
        "--budget-s",
        type=float,
        default=1800.0,
        help="wall-clock budget of the train+validate loop, checked after each epoch",
    )
    p.add_argument("--workdir", type=Path, default=Path("runs/recbole"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = all cores)")
    p.add_argument("--out", type=Path, required=True, help="JSON report path")
    p.add_argument("--epochs-max", type=int, default=1000)
    p.add_argument(
        "--precision",
        choices=("fp32", "bf16"),
        default="fp32",
        help="bf16: RecBole's enable_amp (torch.autocast, bfloat16 on CPU)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=1000,
        help="epochs without validation gain before stopping (large = budget only)",
    )
    args = p.parse_args()
    # RecBole's Config also parses sys.argv ("--key=value" overrides config): hide ours.
    sys.argv = sys.argv[:1]
    return args


def convert_s3rec(src: Path, data_root: Path) -> str:
    """Write <data_root>/<name>/<name>.inter; the position in the sequence is the timestamp."""
    name = src.stem
    dst = data_root / name / f"{name}.inter"
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_suffix(".inter.tmp")
    with src.open() as fin, tmp.open("w") as fout:
        fout.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for line in fin:
            user, *items = line.split()
            for pos, item in enumerate(items):
                fout.write(f"{user}\t{item}\t{pos}\n")
    os.replace(tmp, dst)  # never leave a half-written file for a later run to reuse
    return name


def make_config(dataset: str, data_root: Path, workdir: Path, seed: int, epochs: int, precision: str) -> Config:
    cfg: dict[str, Any] = {
        "data_path": str(data_root),
        "dataset": dataset,
        "checkpoint_dir": str(workdir / "saved"),
        "USER_ID_FIELD": "user_id",
        "ITEM_ID_FIELD": "item_id",
        "TIME_FIELD": "timestamp",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "MAX_ITEM_LIST_LENGTH": 50,
        # Leave-one-out by time, full ranking: the protocol of the S3-Rec line of work.
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
        "train_neg_sample_args": None,  # CE over the full catalogue needs no negatives
        "loss_type": "CE",
        "train_batch_size": 256,
        "eval_batch_size": 4096,
        "hidden_size": 64,
        "inner_size": 256,
        "n_layers": 2,
        "n_heads": 2,
        "hidden_dropout_prob": 0.5,
        "attn_dropout_prob": 0.5,
        "learning_rate": 0.001,
        "weight_decay": 0.0,
        "epochs": epochs,
        "stopping_step": 10**6,  # our loop decides when to stop
        "eval_step": 1,
        "valid_metric": "NDCG@20",
        "metrics": ["Recall", "NDCG", "MRR"],
        "topk": [5, 10, 20],
        "device": "cpu",
        "use_gpu": False,
        "gpu_id": "",  # empty gpu_id makes RecBole pick torch.device("cpu")
        "worker": 0,
        "seed": seed,
        "reproducibility": True,
        "show_progress": False,
        "log_wandb": False,
        "enable_amp": precision == "bf16",
    }
    return Config(model="SASRec", config_dict=cfg)


def as_floats(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()}


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(f"[recbole_driver] {msg}", file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    wall_start = time.perf_counter()
    data_src = args.data.resolve()
    out = args.out.resolve()
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    # RecBole writes ./log and ./log_tensorboard relative to the cwd: keep them in workdir.
    os.chdir(workdir)

    dataset_name = convert_s3rec(data_src, workdir / "data")
    config = make_config(dataset_name, workdir / "data", workdir, args.seed, args.epochs_max, args.precision)
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    logging.getLogger().setLevel(logging.WARNING)  # our own progress lines suffice
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)

    dataset = create_dataset(config)
    # RecBole counts its [PAD] id as a user and an item. Count now: data_preparation
    # turns inter_feat into the augmented prefix samples.
    n_users, n_items, n_inters = dataset.user_num - 1, dataset.item_num - 1, dataset.inter_num
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])  # same model init as run_recbole
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    trainer.eval_collector.data_collect(train_data)  # what Trainer.fit does before epochs

    # One training sample per sequence prefix; with CE only its last position is supervised.
    targets_per_epoch = len(train_data._dataset)
    # Sequential full-sort loaders pass no history index, so seen items stay rankable.
    excludes_seen = not getattr(test_data, "is_sequential", False)
    log(
        f"{dataset_name}: {n_users} users, {n_items} items, {n_inters} interactions, "
        f"{targets_per_epoch} training targets/epoch, {threads} threads"
    )

    per_epoch: list[dict[str, Any]] = []
    best_score, best_epoch = float("-inf"), -1
    best_valid: dict[str, float] = {}
    best_state: dict[str, torch.Tensor] | None = None
    train_seconds = eval_seconds = 0.0
    stopped_by = "epochs_max"
    loop_start = time.perf_counter()
    for epoch in range(args.epochs_max):
        t0 = time.perf_counter()
        loss = trainer._train_epoch(train_data, epoch, show_progress=False)
        t1 = time.perf_counter()
        _, valid_result = trainer._valid_epoch(valid_data, show_progress=False)
        t2 = time.perf_counter()
        train_seconds += t1 - t0
        eval_seconds += t2 - t1
        valid = as_floats(valid_result)
        score = calculate_valid_score(valid_result, VALID_METRIC)
        if score > best_score:
            # Keep the best weights in memory: no checkpoint reload needed for the test.
            best_score, best_epoch, best_valid = score, epoch, valid
            best_state = copy.deepcopy(model.state_dict())
        loss_value = float(sum(loss) if isinstance(loss, tuple) else loss)
        per_epoch.append(
            {
                "epoch": epoch,
                "train_seconds": t1 - t0,
                "valid_seconds": t2 - t1,
                "loss": loss_value / len(train_data),  # mean per batch
                "loss_sum": loss_value,
                f"valid_{VALID_METRIC}": valid[VALID_METRIC],
                "valid": valid,
            }
        )
        elapsed = time.perf_counter() - loop_start
        log(
            f"epoch {epoch}: train {t1 - t0:.1f}s valid {t2 - t1:.1f}s "
            f"loss {loss_value / len(train_data):.4f} {VALID_METRIC} {valid[VALID_METRIC]:.4f} "
            f"(elapsed {elapsed:.0f}s of {args.budget_s:.0f}s)"
        )
        if elapsed >= args.budget_s:
            stopped_by = "budget"
            break
        if epoch - best_epoch >= args.patience:
            stopped_by = "patience"
            break
    loop_seconds = time.perf_counter() - loop_start

    assert best_state is not None
    model.load_state_dict(best_state)
    t0 = time.perf_counter()
    test = as_floats(trainer.evaluate(test_data, load_best_model=False, show_progress=False))
    test_seconds = time.perf_counter() - t0
    eval_seconds += test_seconds
    epochs = len(per_epoch)
    log(f"best epoch {best_epoch}; test " + ", ".join(f"{k} {v:.4f}" for k, v in test.items()))

    report: dict[str, Any] = {
        "library": "recbole",
        "version": recbole.__version__,
        "torch_version": torch.__version__,
        "model": "SASRec",
        "dataset": dataset_name,
        "data": str(data_src),
        "seed": args.seed,
        "threads": threads,
        "budget_s": args.budget_s,
        "stopped_by": stopped_by,
        "epochs": epochs,
        "train_seconds": train_seconds,
        "eval_seconds": eval_seconds,
        "test_seconds": test_seconds,
        "loop_seconds": loop_seconds,
        "wall_seconds": time.perf_counter() - wall_start,
        "targets_per_epoch": targets_per_epoch,
        "targets_per_second": targets_per_epoch * epochs / train_seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
        "excludes_seen_items": excludes_seen,
        "n_users": n_users,  # without RecBole's [PAD] ids
        "n_items": n_items,
        "n_interactions": n_inters,
        "best_epoch": best_epoch,
        "best_valid": best_valid,
        "test": test,
        "per_epoch": per_epoch,
    }
    write_json_atomic(out, report)
    log(f"wrote {out}")


if __name__ == "__main__":
    main()
