"""What a shorter successor would have kept (issue 49): for every finished default round on a real log (its
successor fine-tuned from round 0's model, with generated data), the cost and the validation
gain over round 0 had round 1's training stopped earlier. Stopping does not change a
training's path, so every cap on its epochs and every shorter patience can be read off its
validation log. Test numbers are read only where the run probed them (``train.test_probes``:
the test metrics of every new best validation epoch): then each row also gives the test gain
of the epoch a cap or a patience keeps, and its share of the gain as run.

The cost at a cap is the report's (``cost_vs_round_0``): the generation plus round 1's epochs up
to the cap (training and validation seconds from its log) against round 0's training and
evaluation. A cap keeps the last epoch within it (a time budget would run one epoch more). The retained share is the validation gain (best ``SELECT_METRIC`` up to the cap,
minus round 0's best) over the gain of the run as it ran. ``within_cost_cap`` gives the same
at the epoch where ``--cost-cap C`` (``improve.cost_cap``) would stop the successor: its
next-item targets within C times round 0's whole training, each round's targets per epoch
taken from its recorded throughput (``targets_per_second`` x training seconds / epochs).

    python benchmarks/successor_budget.py --runs runs/experiments --out docs/results/successor_budget.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from patience_picks import kept_epoch  # a sibling script: benchmarks/ is on the path when run

from rsir.files import write_json
from rsir.generation.loop import capped_epochs
from rsir.rundir import provenance
from rsir.training.callbacks import SELECT_METRIC

COSTS = (1.0, 1.25, 1.5, 2.0)  # caps on the round's cost, in round 0's trainings
PATIENCES = (10, 20)
SHARE = 0.9  # the share of the gain issue 49 asks a cheaper round to keep
TEST_METRICS = ("recall@10", "ndcg@10")


def replay(run: Path, root: Path) -> dict[str, Any] | None:
    """A finished default round's row (``run`` shown from ``root``), or None for another kind
    of run or an unfinished one."""
    config = yaml.safe_load((run / "config.yaml").read_text())
    if (
        config.get("improve", {}).get("successor") != "finetune"
        or config["train"].get("synthetic_per_epoch") != 1.0
        or config["train"].get("budget_unit", "sequences") != "sequences"
        or not config["data"].get("path")  # real logs only: the built-in data are a demonstration
        or config["train"].get("eval_every", 1) != 1
        or not config.get("generate", {}).get("attempts")
        or not (run / "round-1" / "test_ranks.npy").exists()
    ):
        return None
    recorded = json.loads((run / "metrics.json").read_text())
    round0, round1 = recorded["rounds"][:2]
    key = config["train"].get("select_metric", SELECT_METRIC)
    epochs = [json.loads(line) for line in (run / "round-1" / "log.jsonl").read_text().splitlines()]
    scores = [e[f"valid_{key}"] for e in epochs]
    plain_seconds = round0["seconds"]["train"] + round0["seconds"]["evaluate"]
    generation = round0["seconds"].get("generate", 0.0)
    # The round's own seconds spread over its epochs in proportion to the logged epoch times.
    epoch_seconds = np.array([e["train_seconds"] + e["eval_seconds"] for e in epochs])
    spent = (
        np.cumsum(epoch_seconds) * (round1["seconds"]["train"] + round1["seconds"]["evaluate"]) / epoch_seconds.sum()
    )
    cost = (generation + spent) / plain_seconds
    base = round0["valid"][key]
    best = np.maximum.accumulate(scores)
    full_gain = best[-1] - base

    def point(index: int) -> dict[str, Any]:
        gain = best[index] - base
        return {
            "epochs": index + 1,
            "cost": round(float(cost[index]), 3),
            "valid_gain": float(gain / base),
            "retained": float(gain / full_gain) if full_gain > 0 else None,
            **probed(epochs[int(np.argmax(scores[: index + 1]))]),  # the first best, as early stopping keeps
        }

    def probed(kept: dict[str, Any]) -> dict[str, Any]:
        """The kept epoch's test gain over round 0 and its share of the gain as run, where probed."""
        if not all(f"test_{m}" in kept for m in TEST_METRICS):
            return {}
        as_run = {m: round1["test"][m] / round0["test"][m] - 1 for m in TEST_METRICS}
        gain = {m: kept[f"test_{m}"] / round0["test"][m] - 1 for m in TEST_METRICS}
        return {
            "test_gain": gain,
            "test_retained": {m: gain[m] / as_run[m] if as_run[m] > 0 else None for m in TEST_METRICS},
        }

    within = {f"{c}": point(int(np.searchsorted(cost, c, side="right")) - 1) for c in COSTS if cost[0] <= c}
    per_epoch = [epoch_targets(run / f"round-{k}" / "metrics.json") for k in (0, 1)]
    capped = (
        {}
        if None in per_epoch  # a plain run reused as round 0 recorded no throughput
        else {
            f"{c}": point(min(len(scores), capped_epochs(c * round0["epochs"] * per_epoch[0], per_epoch[1])) - 1)
            for c in COSTS
        }
    )
    enough = np.flatnonzero(best - base >= SHARE * full_gain) if full_gain > 0 else np.array([], dtype=int)
    return {
        "run": str(run.relative_to(root)),
        "dataset": recorded["dataset"],
        "seed": config["train"]["seed"],
        "plain_seconds": round(plain_seconds, 1),
        "generation_seconds": round(generation, 1),
        "plain_valid": base,
        "as_run": point(len(scores) - 1),
        "within_cost": within,
        "within_cost_cap": capped,
        "patience": {
            # kept_epoch counts epochs from 1; a patience stops p epochs after the kept one.
            str(p): point(min(kept_epoch(list(enumerate(scores, 1)), p) - 1 + p, len(scores) - 1))
            for p in PATIENCES
            if p < config["train"]["patience"]
        },
        f"first_at_{int(SHARE * 100)}_percent": point(int(enough[0])) if len(enough) else None,
    }


def epoch_targets(metrics: Path) -> float | None:
    """A training's next-item targets per epoch, from its round's metrics.json (None where it
    recorded no throughput)."""
    fitted = json.loads(metrics.read_text())
    if not fitted.get("targets_per_second") or not fitted.get("epochs"):
        return None
    return float(fitted["targets_per_second"] * fitted["train_seconds"] / fitted["epochs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", required=True, help="folders holding run directories")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = [
        row
        for root in map(Path, args.runs)
        for metrics in sorted(root.rglob("metrics.json"))
        if (metrics.parent / "round-1").is_dir() and (row := replay(metrics.parent, root.parent)) is not None
    ]
    write_json(
        args.out,
        {
            "name": Path(args.out).stem,
            "command": "python " + shlex.join(sys.argv),
            "rsir": provenance(),
            "metric": f"valid {SELECT_METRIC}",
            "summary": summary(rows),
            "runs": rows,
        },
    )


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Over the runs whose round gained on validation: what a cost of 1.5 plain trainings and
    a patience of 20 would have kept, and the cost of keeping 90% of the gain."""
    gained = [r for r in rows if r["as_run"]["valid_gain"] > 0]
    capped = [r["within_cost"]["1.5"] for r in gained if "1.5" in r["within_cost"]]
    option = [r["within_cost_cap"]["1.5"] for r in gained if r["within_cost_cap"]]
    patient = [r["patience"]["20"] for r in gained if "20" in r["patience"]]
    enough = [r[f"first_at_{int(SHARE * 100)}_percent"]["cost"] for r in gained]
    if not (capped and patient):
        return {"runs": len(rows), "runs_with_gain": len(gained)}
    return {
        "runs": len(rows),
        "runs_with_gain": len(gained),
        "without_gain": [f"{r['dataset']} seed {r['seed']}" for r in rows if r["as_run"]["valid_gain"] <= 0],
        "as_run_cost": [min(r["as_run"]["cost"] for r in gained), max(r["as_run"]["cost"] for r in gained)],
        "at_cost_1.5": {
            "runs": len(capped),
            "keep_90_percent": sum(c["retained"] >= SHARE for c in capped),
            "retained": [min(c["retained"] for c in capped), max(c["retained"] for c in capped)],
        },
        "at_patience_20": {
            "runs": len(patient),
            "retained": [min(c["retained"] for c in patient), max(c["retained"] for c in patient)],
            "cost": [min(c["cost"] for c in patient), max(c["cost"] for c in patient)],
        },
        "cost_for_90_percent": [min(enough), max(enough)],
        **(
            {
                "at_cost_cap_1.5": {
                    "runs": len(option),
                    "cost": [min(c["cost"] for c in option), max(c["cost"] for c in option)],
                    "retained": [min(c["retained"] for c in option), max(c["retained"] for c in option)],
                    **tested(option),
                }
            }
            if option
            else {}
        ),
    }


def tested(points: list[dict[str, Any]]) -> dict[str, Any]:
    """Where every point was probed: the range of its test gain's share of the gain as run,
    and how many kept nine tenths of it, per metric."""
    if not points or not all("test_retained" in p for p in points):
        return {}
    shares = {m: [p["test_retained"][m] for p in points] for m in TEST_METRICS}
    return {
        "test_retained": {m: [min(v), max(v)] for m, v in shares.items() if None not in v},
        "test_keep_90_percent": {m: sum(x >= SHARE for x in v) for m, v in shares.items() if None not in v},
    }


if __name__ == "__main__":
    main()
