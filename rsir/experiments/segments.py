"""Who gains: test metrics and paired gains by user segment.

RSIR is meant to fight sparsity, so its gain should concentrate on users with short
histories and on long-tail targets. Users are bucketed two ways: by the length of the
history the model sees at test time, and by the popularity (in the real training data)
of their test target. Models are compared in pairs (same seed, baseline vs candidate); each
segment's gain is the mean of the per-pair relative gains, with a paired t-test over pairs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.split import LeaveOneOut
from ..evaluation import metrics_from_ranks, paired_gain

HISTORY_EDGES = (5, 10, 20)  # buckets 1-5, 6-10, 11-20, 21+ items of history before the test target
POPULARITY_SHARES = (0.2, 0.5)  # head: the 20% most interacted items; torso: the next 30%; tail: the rest


@dataclass(frozen=True)
class Segments:
    """One label per test user for each way of bucketing, with the labels in display order."""

    labels: dict[str, np.ndarray]
    order: dict[str, list[str]]


def user_segments(split: LeaveOneOut, n_items: int) -> Segments:
    history = split.test.history.lengths
    edges = np.asarray(HISTORY_EDGES)
    names = [f"{lo + 1}-{hi}" for lo, hi in zip((0, *HISTORY_EDGES[:-1]), HISTORY_EDGES)] + [
        f"{HISTORY_EDGES[-1] + 1}+"
    ]
    history_labels = np.asarray(names)[np.searchsorted(edges, history, side="left")]

    real = split.train.items[np.repeat(split.train.origin == 0, split.train.lengths)]
    counts = np.bincount(real, minlength=n_items + 1)[1:]
    by_popularity = np.argsort(-counts, kind="stable")  # item index - 1, most popular first
    position = np.empty(n_items, dtype=np.int64)
    position[by_popularity] = np.arange(n_items)
    cuts = np.round(np.asarray(POPULARITY_SHARES) * n_items)
    tiers = ["head (top 20% items)", "torso (next 30%)", "tail (other 50%)"]
    popularity_labels = np.asarray(tiers)[np.searchsorted(cuts, position[split.test.targets - 1], side="right")]
    return Segments(
        {"history length": history_labels, "target popularity": popularity_labels},
        {"history length": names, "target popularity": tiers},
    )


def segment_gains(
    segments: Segments,
    baseline: list[np.ndarray],
    candidate: list[np.ndarray],
    metrics: tuple[str, ...] = ("recall@10", "ndcg@10"),
) -> list[dict[str, Any]]:
    """Rows (segmentation, segment, users, and per metric the baseline and candidate means
    over pairs, the mean paired relative gain and its paired t-test p-value)."""
    if len(baseline) != len(candidate) or not baseline:
        raise ValueError("baseline and candidate need the same number (>= 1) of paired rank arrays")
    n_users = len(baseline[0])
    groups = [("all users", "all", np.ones(n_users, bool))] + [
        (how, segment, labels == segment) for how, labels in segments.labels.items() for segment in segments.order[how]
    ]
    rows = []
    for how, segment, mask in groups:
        if mask.any():
            row: dict[str, Any] = {"segmentation": how, "segment": segment, "users": int(mask.sum())}
            base = [metrics_from_ranks(r[mask]) for r in baseline]  # every metric from one pass per run
            cand = [metrics_from_ranks(r[mask]) for r in candidate]
            for metric in metrics:
                b, c = np.array([m[metric] for m in base]), np.array([m[metric] for m in cand])
                row[metric] = {"baseline": float(b.mean()), "candidate": float(c.mean()), **paired_gain(c, b)}
            rows.append(row)
    return rows


def segment_markdown(rows: list[dict[str, Any]], metrics: tuple[str, ...], pairs: int) -> str:
    header = (
        "| segmentation | segment | users | "
        + " | ".join(f"{m} baseline | {m} candidate | gain (p)" for m in metrics)
        + " |"
    )
    lines = [
        f"Test metrics by user segment, mean over {pairs} baseline/candidate pair(s); gains paired by pair.",
        "",
        header,
        "|" + "---|" * (3 + 3 * len(metrics)),
    ]
    for row in rows:
        cells = []
        for metric in metrics:
            m = row[metric]
            gain = "n/a" if m["gain"] is None else f"{100 * m['gain']:+.1f}%"
            p = "" if m["p"] is None else f" (p={m['p']:.3f})"
            cells += [f"{m['baseline']:.4f}", f"{m['candidate']:.4f}", gain + p]
        lines.append(f"| {row['segmentation']} | {row['segment']} | {row['users']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
