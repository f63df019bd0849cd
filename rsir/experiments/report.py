"""The report of an experiment: the finished cells' test metrics aggregated over seeds (mean,
standard deviation, the per-seed values), paired relative gains against each variant's
baseline with a paired t-test, head-to-head comparisons, and the Markdown, JSON and PNG
files that hold them. Unfinished loop cells contribute their finished rounds, marked
interim, so that long studies report as they go.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..evaluation import RANKS_FILE, bootstrap_gain_ci, metrics_from_ranks, paired_gain, per_user
from ..files import atomic_open, save_figure, write_json
from ..rundir import RunDir, provenance
from ..training.callbacks import SELECT_METRIC  # early stopping's metric is also what a spec's select chooses by

if TYPE_CHECKING:
    from .runner import Spec

logger = logging.getLogger(__name__)


def round_metrics(metrics_path: Path) -> list[dict[str, Any]]:
    """Test metrics and the best epoch's validation metrics per round: a training is round 0,
    an improve run lists its rounds."""
    metrics = json.loads(metrics_path.read_text())
    if "rounds" in metrics:
        return [
            {
                "round": r["round"],
                "test": r["test"],
                "valid": r.get("valid", {}),
                **({"epochs": r["epochs"], "train_seconds": r["seconds"]["train"]} if "epochs" in r else {}),
                **(
                    {"round_seconds": r["seconds"]["train"] + r["seconds"]["evaluate"]}
                    if "evaluate" in r.get("seconds", {})
                    else {}
                ),
                "generate_seconds": r.get("seconds", {}).get("generate", 0.0),
            }
            for r in metrics["rounds"]
        ]
    # A training written before train and improve shared one layout.
    cost = {"epochs": metrics["epochs"], "train_seconds": metrics["train_seconds"]} if "epochs" in metrics else {}
    return [{"round": 0, "test": metrics["test"], "valid": metrics.get("best_valid", {}), **cost}]


def compare_runs(runs: list[Path], metrics: list[str]) -> pd.DataFrame:
    """Finished runs of ``rsir train`` or ``rsir improve`` side by side: one row per run and
    round, with its validation NDCG@20, the chosen test metrics and its epochs."""
    rows = []
    for run in runs:
        path = RunDir(run).metrics_file
        if not path.exists():
            raise ConfigError(f"{run}: no finished run there (no {path.name})")
        try:
            records = round_metrics(path)
            for record in records:
                unknown = [m for m in metrics if m not in record["test"]]
                if unknown:
                    raise ConfigError(f"unknown metric {unknown[0]!r} (known: {', '.join(record['test'])})")
                rows.append(
                    {
                        "run": str(run),
                        "round": record["round"],
                        f"valid {SELECT_METRIC}": record["valid"].get(SELECT_METRIC),
                        **{f"test {m}": record["test"][m] for m in metrics},
                        "epochs": record.get("epochs"),
                    }
                )
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # JSONDecodeError is a ValueError
            raise ConfigError(f"{path}: not an rsir metrics file ({type(exc).__name__}: {exc})") from None
    frame = pd.DataFrame(rows)
    frame["epochs"] = frame["epochs"].astype("Int64")  # blank where a run's records lack it
    return frame


def markdown_table(frame: pd.DataFrame, digits: int = 4) -> str:
    """A DataFrame as a Markdown table, floats to ``digits`` places, missing values blank."""

    def cell(value: Any) -> str:
        if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
            return ""
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(frame.columns) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def _by_seed(
    spec: Spec, results: dict[str, dict[str, Any]], interim: AbstractSet[str] = frozenset()
) -> tuple[
    dict[tuple[str, str, int], dict[int, dict[str, float]]],
    dict[tuple[str, str], int],
    dict[tuple[str, str, int], list[int]],
]:
    """Test metrics by (dataset, variant, round) and seed; each variant's final round; the
    seeds of each row that come from unfinished loops."""
    values: dict[tuple[str, str, int], dict[int, dict[str, float]]] = {}
    unfinished: dict[tuple[str, str, int], list[int]] = {}
    for cell in spec.cells:
        records = results.get(cell.key, {}).get("rounds", [])
        spent = 0.0  # rounds after 0: their trainings and evaluations, and the generations before them
        for previous, record in zip([None, *records], records):
            metrics = {**{f"valid_{k}": v for k, v in record.get("valid", {}).items()}, **record["test"]}
            if record.get("epochs"):  # a training's cost: its epochs and the seconds each took
                metrics.update(
                    epochs=record["epochs"],
                    train_seconds=record["train_seconds"],
                    seconds_per_epoch=record["train_seconds"] / record["epochs"],
                )
            if previous is not None and "round_seconds" in record and records[0].get("round_seconds"):
                spent += record["round_seconds"] + previous.get("generate_seconds", 0.0)
                metrics["cost_vs_round_0"] = spent / records[0]["round_seconds"]
            values.setdefault((cell.dataset, cell.variant, record["round"]), {})[cell.seed] = metrics
            if cell.key in interim:
                unfinished.setdefault((cell.dataset, cell.variant, record["round"]), []).append(cell.seed)
    finals: dict[tuple[str, str], int] = {}
    for dataset, variant, round_ in values:
        finals[(dataset, variant)] = max(round_, finals.get((dataset, variant), 0))
    return values, finals, unfinished


def head_to_head(
    spec: Spec,
    results: dict[str, dict[str, Any]],
    interim: AbstractSet[str] = frozenset(),
    ranks: dict[tuple[str, str, int], dict[int, Path]] | None = None,
    pairs: list[tuple[str, str, str]] | None = None,
) -> list[dict[str, Any]]:
    """For each ``compare`` pair and dataset (or each (dataset, variant, against) of ``pairs``),
    paired by seed (relative gain and paired t-test per metric, Holm-adjusted over the rows):
    two loops round by round (round k against round k, for every k >= 1 both reached),
    otherwise each variant's final round against the other's. Seeds of unfinished loops take
    part with their finished rounds and are listed as interim."""
    values, finals, unfinished = _by_seed(spec, results, interim)
    loops = {cell.variant for cell in spec.cells if cell.command == "improve"}
    rows = []
    if pairs is None:
        pairs = [
            (dataset, variant, against)
            for dataset in dict.fromkeys(cell.dataset for cell in spec.cells)
            for variant, against in spec.compare
        ]
    for dataset, variant, against in pairs:
        last, their_last = finals.get((dataset, variant), 0), finals.get((dataset, against), 0)
        if (variant in loops and not last) or (against in loops and not their_last):
            continue  # a loop's round 0 is the plain training: nothing of the loop to compare yet
        rounds = [(k, k) for k in range(1, min(last, their_last) + 1)] if last and their_last else [(last, their_last)]
        for mine_round, their_round in rounds:
            mine, theirs = (
                values.get((dataset, variant, mine_round), {}),
                values.get((dataset, against, their_round), {}),
            )
            paired = sorted(set(mine) & set(theirs))
            if not paired:
                continue
            late = set(unfinished.get((dataset, variant, mine_round), [])) | set(
                unfinished.get((dataset, against, their_round), [])
            )
            row: dict[str, Any] = {
                "dataset": dataset,
                "variant": variant,
                "round": mine_round,
                "against": against,
                "against_round": their_round,
                "seeds": paired,
                "interim_seeds": sorted(late & set(paired)),
            }
            for metric in spec.metrics:
                row[metric] = paired_gain(
                    np.array([mine[s][metric] for s in paired]), np.array([theirs[s][metric] for s in paired])
                )
                interval = _interval(
                    ranks or {}, (dataset, variant, mine_round), (dataset, against, their_round), paired, metric
                )
                if interval:
                    row[metric]["ci"] = interval
            rows.append(row)
    for metric in spec.metrics:  # the head-to-head pairs are a study's headline comparisons
        adjusted = holm([row[metric].get("p") for row in rows])
        for row, p in zip(rows, adjusted):
            row[metric]["p_holm"] = p
    return rows


def _interval(
    ranks: dict[tuple[str, str, int], dict[int, Path]],
    mine: tuple[str, str, int],
    theirs: tuple[str, str, int],
    seeds: list[int],
    metric: str,
) -> tuple[float, float] | None:
    """The bootstrap interval of a paired gain, where every paired run kept its users' ranks."""
    mine_ranks, their_ranks = ranks.get(mine, {}), ranks.get(theirs, {})
    if not seeds or not all(s in mine_ranks and s in their_ranks for s in seeds):
        return None
    return bootstrap_gain_ci(
        [per_user(np.load(mine_ranks[s]), metric) for s in seeds],
        [per_user(np.load(their_ranks[s]), metric) for s in seeds],
    )


def holm(p_values: list[float | None]) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None: no test, left out)."""
    tested = sorted((p, i) for i, p in enumerate(p_values) if p is not None)
    adjusted: list[float | None] = [None] * len(p_values)
    running = 0.0
    for position, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - position) * p))
        adjusted[i] = running
    return adjusted


def aggregate(
    spec: Spec,
    results: dict[str, dict[str, Any]],
    interim: AbstractSet[str] = frozenset(),
    ranks: dict[tuple[str, str, int], dict[int, Path]] | None = None,
) -> list[dict[str, Any]]:
    """One row per (dataset, variant, round): mean and std over seeds, and for every row
    the relative gain over the baseline variant's final round, paired seed by seed, with a
    paired t-test when at least two seeds pair up. When the baseline itself is swept, each
    sweep point is paired with the baseline at the same point (noise 0.2 against noise 0.2).
    With ``ranks`` (each user's test rank, by row and seed) a gain also gets a 95% seed x user
    bootstrap interval."""
    ranks = ranks or {}
    values, finals, unfinished = _by_seed(spec, results, interim)
    points = {cell.variant: cell.point for cell in spec.cells}
    names = {cell.variant: cell.variant.removesuffix(cell.point) for cell in spec.cells}
    rows = []
    for (dataset, variant, round_), by_seed in values.items():
        row: dict[str, Any] = {
            "dataset": dataset,
            "variant": variant,
            "round": round_,
            "seeds": sorted(by_seed),
            "interim_seeds": sorted(unfinished.get((dataset, variant, round_), [])),
        }
        baseline = spec.baseline_of(names[variant]) + points.get(variant, "")
        if baseline not in points:
            baseline = spec.baseline_of(names[variant])
        base = values.get((dataset, baseline, finals.get((dataset, baseline), 0)), {})
        paired = sorted(set(by_seed) & set(base))
        for metric in spec.metrics:
            sample = np.array([by_seed[s][metric] for s in sorted(by_seed)])
            row[metric] = {
                "mean": float(sample.mean()),
                "std": float(sample.std(ddof=1)) if len(sample) > 1 else 0.0,
                "values": sample.tolist(),
            }  # per seed, in the order of ``seeds``: the evidence travels with the report
            if paired and variant != baseline:
                mine = np.array([by_seed[s][metric] for s in paired])
                theirs = np.array([base[s][metric] for s in paired])
                row[metric].update(paired_gain(mine, theirs))
                interval = _interval(
                    ranks,
                    (dataset, variant, round_),
                    (dataset, baseline, finals.get((dataset, baseline), 0)),
                    paired,
                    metric,
                )
                if interval:
                    row[metric]["ci"] = interval
        for cost in ("epochs", "train_seconds", "seconds_per_epoch", "cost_vs_round_0"):
            if all(cost in by_seed[s] for s in by_seed):
                row[cost] = float(np.mean([by_seed[s][cost] for s in by_seed]))
        chosen_by = f"valid_{SELECT_METRIC}"
        if all(chosen_by in by_seed[s] for s in by_seed):  # runs made before validation was recorded lack it
            row[chosen_by] = {
                "mean": float(np.mean([by_seed[s][chosen_by] for s in by_seed])),
                "values": [by_seed[s][chosen_by] for s in sorted(by_seed)],
            }
        rows.append(row)
    order = {cell.variant: i for i, cell in reversed(list(enumerate(spec.cells)))}
    datasets = list(dict.fromkeys(cell.dataset for cell in spec.cells))
    return sorted(rows, key=lambda r: (datasets.index(r["dataset"]), order[r["variant"]], r["round"]))


def write_report(spec: Spec, out: Path) -> dict[str, Any]:
    """Aggregate the finished cells, plus the finished rounds of loop cells still running
    (or interrupted), which are counted as interim so that long studies report as they go."""
    results, interim = {}, {}
    for cell in spec.cells:
        path, partial = out / cell.key / "result.json", RunDir(out / cell.key / "run").metrics_file
        if path.exists():
            results[cell.key] = json.loads(path.read_text())
            if partial.exists():  # the run's own file also has the validation metrics older results lack
                results[cell.key]["rounds"] = round_metrics(partial)
        elif cell.command == "improve" and partial.exists():
            interim[cell.key] = {"rounds": round_metrics(partial)}
    ranks: dict[tuple[str, str, int], dict[int, Path]] = {}
    for cell in spec.cells:
        for record in {**interim, **results}.get(cell.key, {}).get("rounds", []):
            run = out / cell.key / "run"
            path = (RunDir(run).round(record["round"]) if cell.command == "improve" else run) / RANKS_FILE
            if path.exists():
                ranks.setdefault((cell.dataset, cell.variant, record["round"]), {})[cell.seed] = path
    rows = aggregate(spec, {**interim, **results}, interim=set(interim), ranks=ranks)
    cell_seconds = sum(r["wall_seconds"] for r in results.values())
    reused = sorted(key for key, r in results.items() if r.get("reused"))
    report = {
        "name": spec.name,
        "rsir": provenance(),  # the version, commit and environment that wrote the report
        "baseline": spec.baseline,
        "baselines": spec.baselines,
        "cells": len(spec.cells),
        "cells_done": len(results),
        "cells_interim": sorted(interim),
        "cells_reusing": reused,
        "cell_seconds": round(cell_seconds, 1),
        "rows": rows,
        "head_to_head": head_to_head(spec, {**interim, **results}, set(interim), ranks),
        "reference": against_reference(spec, rows, ranks),
        "selection": select_on_validation(spec, rows),
        "select_groups": list(spec.select),
        "rivals": spec.rivals,
    }
    report["picks_head_to_head"] = picks_head_to_head(
        spec, report["selection"], {**interim, **results}, set(interim), ranks
    )
    report["picks_missing"] = picks_missing(spec, report["selection"])
    write_json(out / "report.json", report)
    header = (
        "| dataset | variant | round | seeds | "
        + " | ".join(f"{m} | gain {m} (p)" for m in spec.metrics)
        + f" | valid {SELECT_METRIC} | epochs | train s / epoch | train s | rounds' cost / round 0 |"
    )
    lines = [
        f"# {spec.name}",
        "",
        f"{len(results)} of {len(spec.cells)} cells done; their total run time {cell_seconds / 3600:.2f} h"
        + (
            f", not counting the phases {len(reused)} of them reused from other runs (`reused` in their result.json)"
            if reused
            else ""
        )
        + ". "
        + (
            f"{len(interim)} unfinished loop cell(s) contribute their finished rounds (the seeds marked interim). "
            if interim
            else ""
        )
        + f"Test metrics, mean ± std over seeds; gains are relative to `{spec.baseline}`"
        + "".join(f", for `{v}` to `{b}`" for v, b in spec.baselines.items())
        + ", paired by seed, with a 95% seed x user bootstrap interval in brackets where every run kept its "
        "users' ranks, and the p-value of a paired t-test. A loop's cost is the wall time of its rounds after "
        "round 0 (generation, training, evaluation) against round 0's training and evaluation.",
        "",
        header,
        "|" + "---|" * (9 + 2 * len(spec.metrics)),
    ]
    for row in rows:
        cells = []
        for metric in spec.metrics:
            m = row[metric]
            cells.append(_spread(m, len(row["seeds"])))
            cells.append(_gain_text(m) if "gain" in m else "")
        seeds = f"{len(row['seeds'])}" + (f" ({len(row['interim_seeds'])} interim)" if row["interim_seeds"] else "")
        valid = row.get(f"valid_{SELECT_METRIC}")
        cells += [
            f"{valid['mean']:.4f}" if valid else "",
            f"{row['epochs']:.0f}" if "epochs" in row else "",
            f"{row['seconds_per_epoch']:.1f}" if "seconds_per_epoch" in row else "",
            f"{row['train_seconds']:.0f}" if "train_seconds" in row else "",
            f"{row['cost_vs_round_0']:.2f}x" if "cost_vs_round_0" in row else "",
        ]
        lines.append(f"| {row['dataset']} | {row['variant']} | {row['round']} | {seeds} | " + " | ".join(cells) + " |")
    if report["head_to_head"]:
        lines += [
            "",
            "Head to head (paired by seed; two loops round by round, otherwise final round against final round; "
            "p-values also Holm-adjusted over these comparisons):",
            "",
            "| dataset | variant | round | against | round | seeds | "
            + " | ".join(f"gain {m} (p)" for m in spec.metrics)
            + " |",
            "|" + "---|" * (6 + len(spec.metrics)),
        ]
        lines += [
            f"| {r['dataset']} | {r['variant']} | {r['round']} | {r['against']} | {r['against_round']} | "
            + f"{len(r['seeds'])}"
            + (f" ({len(r['interim_seeds'])} interim)" if r["interim_seeds"] else "")
            + " | "
            + " | ".join(_gain_text(r[m]) for m in spec.metrics)
            + " |"
            for r in report["head_to_head"]
        ]
    if report["selection"]:
        groups = "; ".join(f"{name}: {', '.join(names)}" for name, names in spec.select.items())
        lines += [
            "",
            f"Chosen on validation {SELECT_METRIC} within each group ({groups}), the mean over the seeds "
            "every candidate ran (in brackets, each candidate's number of seeds); test metrics of the picks "
            "only, over all of their seeds:",
            "",
            "| dataset | group | compared on seeds | candidates (validation "
            + SELECT_METRIC
            + ", seeds run) | pick | "
            + " | ".join(f"test {m}" for m in spec.metrics)
            + " |",
            "|" + "---|" * (5 + len(spec.metrics)),
        ]
        for r in report["selection"]:
            candidates = ", ".join(f"{c['variant']} {c['valid']:.4f} ({len(c['seeds'])})" for c in r["candidates"])
            lines.append(
                f"| {r['dataset']} | {r['group']} | {', '.join(map(str, r['compared_on_seeds'])) or 'none in common'} "
                f"| {candidates} | {r['pick']} | "
                + " | ".join(_spread(r["test"][m], len(r["seeds"])) for m in spec.metrics)
                + " |"
            )
    if report["picks_head_to_head"]:
        lines += [
            "",
            f"Each group's pick against the `{next(iter(spec.select))}` pick"
            + (" and against its rivals' picks" if spec.rivals else "")
            + ", paired by seed "
            "(95% seed x user bootstrap interval; p of a paired t-test, Holm-adjusted over these rows):",
            "",
            "| dataset | group | pick | against | seeds | " + " | ".join(f"gain {m}" for m in spec.metrics) + " |",
            "|" + "---|" * (5 + len(spec.metrics)),
        ]
        lines += [
            f"| {r['dataset']} | {r['group']} | {r['variant']} (round {r['round']}) | "
            f"{r['against_group']}: {r['against']} (round {r['against_round']}) | "
            f"{len(r['seeds'])} | " + " | ".join(_gain_text(r[m]) for m in spec.metrics) + " |"
            for r in report["picks_head_to_head"]
        ]
        if report["picks_missing"]:
            lines += [
                "",
                "Not yet compared (no pick on one side; Holm will count them once they land): "
                + "; ".join(report["picks_missing"])
                + ".",
            ]
    if report["reference"]:
        metrics = [m for m in spec.metrics if any(m in r["published"] for r in report["reference"])]
        lines += [
            "",
            f"Against published numbers ({spec.reference['source']}): each variant's final round, "
            "its mean over seeds and its gap to the published value, in standard deviations over seeds:",
            "",
            "| dataset | variant | seeds | " + " | ".join(f"{m} | published | gap (sd)" for m in metrics) + " |",
            "|" + "---|" * (3 + 3 * len(metrics)),
        ]
        for r in report["reference"]:
            cells = [
                f"{r[m]['mean']:.4f} | {r['published'][m]:.4f} | {_gap_text(r[m])}" if m in r["published"] else " | | "
                for m in metrics
            ]
            lines.append(f"| {r['dataset']} | {r['variant']} | {len(r['seeds'])} | " + " | ".join(cells) + " |")
        exact = [r for r in report["reference"] if "its_users" in r]
        if exact:
            lines += [
                "",
                "The same over the users the published protocol scored (those whose test item occurs in "
                "training and is new to them; the rest count as misses above):",
                "",
                "| dataset | variant | users | " + " | ".join(f"{m} | gap (sd)" for m in metrics) + " |",
                "|" + "---|" * (3 + 2 * len(metrics)),
            ]
            for r in exact:
                kept = r["its_users"]
                cells = [f"{kept[m]['mean']:.4f} | {_gap_text(kept[m])}" if m in kept else " | " for m in metrics]
                lines.append(
                    f"| {r['dataset']} | {r['variant']} | {kept['users']} of {kept['of']} | " + " | ".join(cells) + " |"
                )
    with atomic_open(out / "report.md") as handle:
        handle.write("\n".join(lines) + "\n")
    if rows:
        _plot(out / "report.png", rows, spec.metrics)
        _plot_curves(out / "curves.png", spec, rows)
    return report


def select_on_validation(spec: Spec, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set and ``spec.select`` group, the candidate whose final round has the best mean
    validation NDCG@20 (a candidate name covers its sweep points), with every candidate's
    validation value and the pick's test metrics. Only candidates whose seeds are all finished
    and have validation values take part, and they are compared on the seeds all of them ran
    (a candidate run on more seeds is not favoured or penalised by its extra ones); with no
    seed in common, on each one's own seeds."""
    chosen_by = f"valid_{SELECT_METRIC}"
    out = []
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        finals = {r["variant"]: r for r in rows if r["dataset"] == dataset}  # rows ascend by round: the last wins
        for group, names in spec.select.items():
            candidates = [
                row
                for label, row in finals.items()
                if _covers(names, label) and chosen_by in row and not row["interim_seeds"]
            ]
            if not candidates:
                continue
            common = sorted(set.intersection(*(set(r["seeds"]) for r in candidates)))

            def valid(row: dict[str, Any], common: list[int] = common) -> float:
                values = dict(zip(row["seeds"], row[chosen_by]["values"]))
                return float(np.mean([values[s] for s in common])) if common else row[chosen_by]["mean"]

            pick = max(candidates, key=valid)
            out.append(
                {
                    "dataset": dataset,
                    "group": group,
                    "pick": pick["variant"],
                    "round": pick["round"],
                    "seeds": pick["seeds"],
                    "compared_on_seeds": common,
                    "candidates": [
                        {"variant": r["variant"], "valid": valid(r), "seeds": r["seeds"]} for r in candidates
                    ],
                    "test": {m: pick[m] for m in spec.metrics},
                }
            )
    return out


def _spread(values: dict[str, Any], seeds: int) -> str:
    """Mean ± std over seeds; one seed has no spread to show."""
    return f"{values['mean']:.4f} ± {values['std']:.4f}" if seeds > 1 else f"{values['mean']:.4f}"


def _covers(names: list[str], label: str) -> bool:
    """Whether a variant label (``name`` or ``name[sweep point]``) is one of ``names``."""
    return any(label == name or label.startswith(f"{name}[") for name in names)


def picks_head_to_head(
    spec: Spec,
    selection: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    interim: set[str],
    ranks: dict[tuple[str, str, int], dict[int, Path]],
) -> list[dict[str, Any]]:
    """Each group's pick against the first group's pick on the same data set, and against the
    picks of its ``spec.rivals``, paired by seed, Holm-adjusted over all of them: a study's
    headline comparisons."""
    first = next(iter(spec.select), None)
    picks = {(r["dataset"], r["group"]): r["pick"] for r in selection}
    pairs_of = headline_pairs(spec)
    against_first = [pair for pair in pairs_of if pair[1] == first]
    wanted = [
        (r["dataset"], group, against)
        for block in (against_first, [pair for pair in pairs_of if pair[1] != first])
        for r in selection
        for group, against in block
        if group == r["group"]
    ]
    named = [(d, g, a) for d, g, a in wanted if (d, a) in picks]
    pairs = [(d, picks[(d, g)], picks[(d, a)]) for d, g, a in named]
    rows = head_to_head(spec, results, interim, ranks, pairs) if pairs else []
    groups = {(d, picks[(d, g)], picks[(d, a)]): (g, a) for d, g, a in named}
    for row in rows:
        row["group"], row["against_group"] = groups[(row["dataset"], row["variant"], row["against"])]
    return rows


def picks_missing(spec: Spec, selection: list[dict[str, Any]]) -> list[str]:
    """The headline comparisons that have no pick yet on one side, per data set with any
    pick: the Holm family grows when they land, so the report names them."""
    picked = {(r["dataset"], r["group"]) for r in selection}
    return [
        f"{dataset}: {group} against {against}"
        for dataset in dict.fromkeys(r["dataset"] for r in selection)
        for group, against in headline_pairs(spec)
        if (dataset, group) not in picked or (dataset, against) not in picked
    ]


def headline_pairs(spec: Spec) -> list[tuple[str, str]]:
    """The groups a study compares, (group, against): every group against the first, then
    each group against its rivals."""
    if not spec.select:
        return []
    first = next(iter(spec.select))
    pairs = [(group, first) for group in spec.select if group != first]
    return pairs + [(group, rival) for group, rivals in spec.rivals.items() for rival in rivals]


def against_reference(
    spec: Spec, rows: list[dict[str, Any]], ranks: dict[tuple[str, str, int], dict[int, Path]] | None = None
) -> list[dict[str, Any]]:
    """Each variant's final round beside the spec's published numbers for its data set: the
    relative gap of the mean, and the gap in standard deviations over seeds (None for one seed).
    Where the reference scored only some users (``users = "known_new_targets"``) and every seed
    kept its ranks, the same over those users too (``its_users``), so the comparison is exact."""
    finals = {(r["dataset"], r["variant"]): r for r in rows if len(r["interim_seeds"]) < len(r["seeds"])}
    scored_users: dict[str, np.ndarray | None] = {}  # by the data options the cells read
    out = []
    for (dataset, variant), row in finals.items():
        published = spec.reference.get(dataset, {}) if isinstance(spec.reference.get(dataset), dict) else {}
        shown = {m: v for m, v in published.items() if m in spec.metrics}
        if not shown:
            continue
        entry: dict[str, Any] = {
            "dataset": dataset,
            "variant": variant,
            "round": row["round"],
            "seeds": row["seeds"],
            "published": shown,
        }
        for metric, value in shown.items():
            entry[metric] = _gap(row[metric]["values"], value)
        paths = (ranks or {}).get((dataset, variant, row["round"]), {})
        if spec.reference.get("users", "all") != "all" and all(seed in paths for seed in row["seeds"]):
            data = next(c.config["data"] for c in spec.cells if (c.dataset, c.variant) == (dataset, variant))
            key = json.dumps(data, sort_keys=True)
            if key not in scored_users:
                scored_users[key] = _reference_users(dataset, data)
            kept = scored_users[key]
            per_seed = [np.load(paths[seed]) for seed in row["seeds"]]
            if kept is not None and all(len(r) == len(kept) for r in per_seed):
                values = [metrics_from_ranks(r[kept]) for r in per_seed]
                entry["its_users"] = {
                    "users": int(kept.sum()),
                    "of": len(kept),
                    **{m: _gap([v[m] for v in values], shown[m]) for m in shown},
                }
        out.append(entry)
    return out


def _gap_text(gap: dict[str, Any]) -> str:
    """A gap to a published value as the report prints it: relative, then in seed standard deviations."""
    return f"{100 * gap['gap']:+.1f}% (" + ("n/a" if gap["gap_sd"] is None else f"{gap['gap_sd']:+.1f}") + ")"


def _gap(values: list[float], published: float) -> dict[str, Any]:
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return {"mean": mean, "gap": mean / published - 1, "gap_sd": (mean - published) / std if std > 0 else None}


def _reference_users(dataset: str, data: dict[str, Any]) -> np.ndarray | None:
    """The test users the reference's protocol scored on the data the ``data`` options read, in
    the order of a run's test ranks; None (with a warning) where the file is not at hand."""
    from ..data.source import DataParams, load_dataset
    from ..data.split import leave_one_out

    params = DataParams(**data)
    if params.path and not Path(params.path).exists():
        logger.warning(
            "%s: %s is not here; the comparison over the reference's users is left out", dataset, params.path
        )
        return None
    return leave_one_out(load_dataset(params)).test.known_new_targets()


def _gain_text(gain: dict[str, Any]) -> str:
    p = (
        f" (p={gain['p']:.3f}" + (f", Holm {gain['p_holm']:.3f}" if gain.get("p_holm") is not None else "") + ")"
        if gain.get("p") is not None
        else ""
    )
    ci = f" [{100 * gain['ci'][0]:+.1f}, {100 * gain['ci'][1]:+.1f}]" if gain.get("ci") else ""
    return ("n/a" if gain["gain"] is None else f"{100 * gain['gain']:+.1f}%") + ci + p


def _plot(path: Path, rows: list[dict[str, Any]], metrics: list[str]) -> None:
    """Each row's paired gain over its baseline, in percent, with its 95% bootstrap interval
    where the runs kept their users' ranks, around a line at zero: one panel per data set and
    metric, so a 2% gain and a 20% gain look as different as they are."""
    gains = [r for r in rows if any(r[m].get("gain") is not None for m in metrics)]
    if not gains:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in gains))
    most = max(sum(r["dataset"] == d for r in gains) for d in datasets)
    fig, axes = plt.subplots(
        len(datasets), len(metrics), figsize=(4.5 * len(metrics), 0.8 + 0.3 * most * len(datasets)), squeeze=False
    )
    for i, dataset in enumerate(datasets):
        mine = [r for r in gains if r["dataset"] == dataset]
        for j, metric in enumerate(metrics):
            axis = axes[i][j]
            for y, row in enumerate(mine):
                gain = row[metric].get("gain")
                if gain is None:
                    continue
                low, high = row[metric].get("ci") or (gain, gain)
                axis.errorbar(
                    100 * gain,
                    y,
                    xerr=[[100 * (gain - low)], [100 * (high - gain)]],
                    fmt="o",
                    capsize=3,
                    color="tab:blue" if low > 0 else "tab:red" if high < 0 else "tab:gray",
                )
            axis.axvline(0, color="black", linewidth=0.8)
            axis.set_yticks(range(len(mine)), [f"{r['variant']} r{r['round']}" for r in mine], fontsize=7)
            axis.invert_yaxis()
            axis.set_xlabel("gain over the baseline, % (95% interval)", fontsize=8)
            axis.set_title(f"{dataset}: test {metric}", fontsize=9)
    save_figure(fig, path)


def _plot_curves(path: Path, spec: Spec, rows: list[dict[str, Any]]) -> None:
    """For a spec that sweeps one numeric option: each swept variant's final round against the
    swept value, one panel per dataset and metric, with the baseline as a dashed line."""
    swept = [cell for cell in spec.cells if cell.setting]
    keys = {key for cell in swept for key, _ in cell.setting}
    if len(keys) != 1 or not all(isinstance(value, (int, float)) for cell in swept for _, value in cell.setting):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, dict[str, float]] = {}  # variant name -> its labels and their swept values
    for cell in swept:
        if math.isfinite(cell.setting[0][1]):  # tau = inf (the ablation) has no place on the axis
            curves.setdefault(cell.variant.removesuffix(cell.point), {})[cell.variant] = cell.setting[0][1]
    # Rows ascend by round, so the last is the final one; a point whose seeds are all unfinished
    # loops is left out (its last finished round may be round 0, the baseline itself).
    finals = {(row["dataset"], row["variant"]): row for row in rows if len(row["interim_seeds"]) < len(row["seeds"])}
    datasets = list(dict.fromkeys(cell.dataset for cell in spec.cells))
    values = [value for labels in curves.values() for value in labels.values()]
    if not values:
        return
    fig, axes = plt.subplots(
        len(datasets), len(spec.metrics), figsize=(4.5 * len(spec.metrics), 3.2 * len(datasets)), squeeze=False
    )
    for i, dataset in enumerate(datasets):
        for j, metric in enumerate(spec.metrics):
            axis = axes[i][j]
            for name, labels in curves.items():
                points = sorted(
                    (value, finals[(dataset, label)][metric])
                    for label, value in labels.items()
                    if (dataset, label) in finals
                )
                if points:
                    axis.errorbar(
                        [x for x, _ in points],
                        [m["mean"] for _, m in points],
                        yerr=[m["std"] for _, m in points],
                        marker="o",
                        capsize=3,
                        label=name,
                    )
            if (dataset, spec.baseline) in finals:
                axis.axhline(
                    finals[(dataset, spec.baseline)][metric]["mean"], linestyle="--", color="grey", label=spec.baseline
                )
            if min(values) > 0 and max(values) / min(values) >= 20:  # tau 1..100 reads best on a log axis
                axis.set_xscale("log")
            axis.set_xlabel(next(iter(keys)), fontsize=8)
            axis.set_title(f"{dataset}: test {metric}", fontsize=9)
            if axis.get_legend_handles_labels()[0]:  # a dataset with no finished point yet has an empty panel
                axis.legend(fontsize=7)
    save_figure(fig, path)
