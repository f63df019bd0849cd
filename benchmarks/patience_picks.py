"""Which epoch each finished training would have kept under a shorter patience: early stopping
does not change a training's path, so every patience up to the one it ran with can be read off
its validation log. RecTools' recipe (the original block, recency positions) is counted apart
from the earlier models, at each of its widths (d 256, then d 64, the default since 2026-12-06).
Over the finished trainings under the ``--runs`` folders, as JSON.

    python benchmarks/patience_picks.py --runs runs/experiments runs/improve --out docs/results/patience_picks.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from rsir.files import write_json
from rsir.rundir import provenance
from rsir.training.callbacks import SELECT_METRIC

PATIENCES = (5, 10, 20)


def kept_epoch(validated: list[tuple[int, float]], patience: int) -> int:
    """The epoch early stopping keeps (the rule of ``EarlyStopping`` in rsir.training.callbacks):
    the best so far, once ``patience`` epochs have passed without a better one."""
    best, kept = float("-inf"), 0
    for epoch, score in validated:
        if score > best:
            best, kept = score, epoch
        elif epoch - kept >= patience:
            break
    return kept


def training(log: Path, root: Path) -> dict[str, Any] | None:
    """A finished training's row, or None for an unfinished one."""
    records = [json.loads(line) for line in log.read_text().splitlines()]
    config_file = next(
        (p / "config.yaml" for p in (log.parent, log.parent.parent) if (p / "config.yaml").exists()), None
    )
    if config_file is None or not (log.parent / "test_ranks.npy").exists():
        return None
    config = yaml.safe_load(config_file.read_text())
    key = f"valid_{config['train'].get('select_metric', SELECT_METRIC)}"  # the metric the run stopped on
    validated = [(r["epoch"], r[key]) for r in records if key in r]
    if not validated:
        return None
    ran_with = config["train"]["patience"]
    return {
        "run": str(log.parent.relative_to(root)),
        "block": config["model"].get("block"),
        "positions": config["model"].get("positions"),
        "dim": config["model"].get("dim"),
        "patience_run": ran_with,
        "epochs": validated[-1][0],
        # Only a shorter patience than the run's own can be replayed (an equal one agrees by construction).
        "kept": {str(p): kept_epoch(validated, p) for p in PATIENCES if p < ran_with},
        "kept_as_run": kept_epoch(validated, ran_with),
        "scores": [score for _, score in validated],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", nargs="+", required=True, help="folders of runs (experiment outputs, run directories)"
    )
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows, seen = [], set()
    for root in map(Path, args.runs):
        # A training's own folder before the copies that loops made of it as their round 0.
        for log in sorted(root.rglob("log.jsonl"), key=lambda path: (path.parent.name == "round-0", path)):
            row = training(log, root.parent)
            # A loop's round 0 reused from a plain training, or one spec's cell repeated by
            # another, has the same log: each training counts once.
            if row is None or tuple(row["scores"]) in seen:
                continue
            seen.add(tuple(row.pop("scores")))
            rows.append(row)

    def group_of(row: dict[str, Any]) -> str:
        recipe = (row["block"], row["positions"]) == ("original", "recency")
        return f"rectools_d{row['dim']}" if recipe else "earlier_models"

    summary = {}
    for name in ("rectools_d256", "rectools_d64", "earlier_models"):
        group = [r for r in rows if group_of(r) == name]
        summary[name] = {
            "trainings": len(group),
            **{
                f"at_{p}": {
                    "replayed": sum(str(p) in r["kept"] for r in group),
                    "same": sum(r["kept"].get(str(p)) == r["kept_as_run"] for r in group),
                }
                for p in PATIENCES
            },
        }
    write_json(
        args.out,
        {
            "name": "patience_picks",
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "summary": summary,
            "trainings": rows,
        },
    )


if __name__ == "__main__":
    main()
