"""Segment analysis: how users are bucketed, and per-segment paired gains on known ranks."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats

from rsir.data import Dataset, Sequences, leave_one_out
from rsir.experiments.segments import segment_gains, user_segments


def _split(sequences: list[list[int]], n_items: int):
    seqs = Sequences.from_lists(sequences, users=np.arange(len(sequences)))
    dataset = Dataset(seqs, item_ids=np.arange(1, n_items + 1), user_ids=np.arange(len(sequences)))
    return leave_one_out(dataset)


def test_users_are_bucketed_by_history_length_and_target_popularity():
    # 10 items; item 1 is by far the most interacted with in training, items 9 and 10 never are.
    sequences = [
        [1, 1, 1, 2, 9],  # test history length 4 -> "1-5"; target 9 is a tail item
        [1, 1, 1, 1, 1, 3, 1],  # 6 -> "6-10"; target 1 is the head item
        [1] * 10 + [2] * 10 + [4, 10],  # 21 -> "21+"; target 10 never seen in training: tail
        [2] * 12 + [5, 3],  # 13 -> "11-20"; target 3 is in the torso
    ]
    segments = user_segments(_split(sequences, 10), 10)
    assert segments.labels["history length"].tolist() == ["1-5", "6-10", "21+", "11-20"]
    # Popularity order: 1 (21 times), 2 (13), then 3, 4, 5, 6... by count, ties by index. Head = 2 items,
    # torso = the next 3 (3, 4, 5), tail = the other 5.
    assert segments.labels["target popularity"].tolist() == [
        "tail (other 50%)",
        "head (top 20% items)",
        "tail (other 50%)",
        "torso (next 30%)",
    ]


def test_gains_per_segment_on_known_ranks():
    sequences = [[1, 2, 3, 4]] * 2 + [[1, 2, 3, 4, 5, 6, 7, 8, 9]] * 2
    segments = user_segments(_split(sequences, 9), 9)
    baseline = [np.array([0, 20, 20, 1]), np.array([0, 20, 1, 20]), np.array([20, 20, 1, 1])]  # 3 seeds x 4 users
    candidate = [np.array([0, 1, 20, 1]), np.array([0, 20, 1, 1]), np.array([1, 1, 1, 1])]
    rows = {(r["segmentation"], r["segment"]): r for r in segment_gains(segments, baseline, candidate, ("recall@10",))}
    everyone = rows[("all users", "all")]["recall@10"]  # 0.5, 0.5, 0.5 -> 0.75, 0.75, 1.0
    assert everyone["baseline"] == 0.5 and math.isclose(everyone["candidate"], 2.5 / 3)
    assert math.isclose(everyone["gain"], 2 / 3)
    short = rows[("history length", "1-5")]["recall@10"]  # users 0, 1: 0.5, 0.5, 0.0 -> 1.0, 0.5, 1.0
    assert short["gain"] is None  # a seed's baseline is 0: no relative gain
    assert math.isclose(short["p"], stats.ttest_rel([1.0, 0.5, 1.0], [0.5, 0.5, 0.0]).pvalue)
    long = rows[("history length", "6-10")]["recall@10"]  # users 2, 3: 0.5, 0.5, 1.0 -> 0.5, 1.0, 1.0
    assert math.isclose(long["gain"], 1 / 3) and math.isclose(long["candidate"], 2.5 / 3)
    assert rows[("history length", "1-5")]["users"] == 2
    assert ("history length", "21+") not in rows  # empty segments are left out
