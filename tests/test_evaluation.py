from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rsir.data import Sequences, leave_one_out
from rsir.data.batching import bucket_batches
from rsir.data.dataset import from_interactions
from rsir.data.split import EvalSet
from rsir.evaluation import evaluate, metrics_from_ranks, paired_gain, pessimistic_ranks, score_histories
from rsir.models import build_backbone
from rsir.models.popularity import Popularity, PopularityParams


def test_ranks_count_ties_pessimistically():
    scores = torch.tensor(
        [
            [0.0, 0.9, 0.5, 0.5, 0.1],  # target 2 ties with item 3 -> rank 2 (after 1 and 3)
            [0.0, 0.2, 0.2, 0.2, 0.2],  # target 4 ties with three items -> rank 3
            [0.0, 0.1, 0.3, 0.2, 0.9],  # target 4 is best -> rank 0
        ]
    )
    assert pessimistic_ranks(scores, torch.tensor([2, 4, 4])).tolist() == [2, 3, 0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("count_in_float32", [True, False])
def test_overwriting_float_count_ranks_as_an_integer_count(monkeypatch, count_in_float32, dtype):
    # Ties on purpose: scores on a coarse grid, so many items share the target's score. In
    # bfloat16 a sum in the scores' own dtype would round counts above 256.
    rng = np.random.default_rng(0)
    scores = torch.from_numpy(rng.integers(0, 50, (64, 3000)).astype(np.float32)).to(dtype)
    scores[:, 0] = float("-inf")
    targets = torch.from_numpy(rng.integers(1, 3000, 64))
    expected = (scores >= scores.gather(1, targets[:, None])).sum(1, dtype=torch.int64) - 1
    if not count_in_float32:  # the branch for catalogues too wide for exact float32 counts
        monkeypatch.setattr("rsir.evaluation.FLOAT32_EXACT_COUNT", 3000)
    kept = scores.clone()
    assert torch.equal(pessimistic_ranks(scores, targets), expected)
    assert torch.equal(scores, kept)  # not overwritten unless asked
    assert torch.equal(pessimistic_ranks(scores, targets, overwrite_scores=True), expected)


def test_metrics_by_hand():
    ranks = np.array([0, 2, 9, 10, 30])
    m = metrics_from_ranks(ranks, ks=(1, 10))
    assert m["recall@1"] == pytest.approx(1 / 5)
    assert m["recall@10"] == pytest.approx(3 / 5)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(11)) / 5)
    assert m["mrr@10"] == pytest.approx((1 + 1 / 3 + 1 / 10) / 5)
    assert m["ndcg@1"] == pytest.approx(1 / 5)


def test_leave_one_out_split():
    data = from_interactions(
        np.array([1, 1, 1, 1, 2, 2, 2, 3, 3]), np.array([1, 2, 3, 4, 5, 6, 7, 8, 9]), None, name="t"
    )
    split = leave_one_out(data)
    assert split.dropped_users == 1  # user 3 has 2 interactions
    assert split.train.to_lists() == [[1, 2], [5]]
    assert split.valid.targets.tolist() == [3, 6]
    assert split.valid.history.to_lists() == [[1, 2], [5]]
    assert split.test.targets.tolist() == [4, 7]
    assert split.test.history.to_lists() == [[1, 2, 3], [5, 6]]


def test_known_new_targets_are_the_users_a_cold_and_seen_dropping_protocol_scores():
    """User 0's target occurs in another history and not in its own (scored); user 1's target 9
    occurs in no history (cold); user 2's target 2 is already in its own history (seen)."""
    histories = Sequences.from_lists([[1, 2], [3, 4], [2, 5]], users=np.arange(3))
    assert EvalSet(histories, np.array([5, 9, 2])).known_new_targets().tolist() == [True, False, False]
    # the same as asking user by user
    split = leave_one_out(from_interactions(*_random_log(), None, name="t"))
    everything = set(split.test.history.items.tolist())
    expected = [
        target in everything and target not in history
        for target, history in zip(split.test.targets.tolist(), split.test.history.to_lists())
    ]
    assert split.test.known_new_targets().tolist() == expected and not all(expected) and any(expected)


def _random_log() -> tuple[np.ndarray, np.ndarray]:
    """200 users with 3-12 interactions over 300 items drawn with repeats, so some test items
    are cold and some already seen."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 13, 200)
    return np.repeat(np.arange(200), lengths), rng.integers(1, 301, lengths.sum())


def _popularity(counts: list[int]) -> Popularity:
    model = Popularity(len(counts), PopularityParams())
    model.counts.copy_(torch.tensor([0.0, *counts]).unsqueeze(1))
    return model


def test_seen_items_are_excluded_only_when_asked():
    # Item 1 is most popular but already seen by the user; target 2 is second.
    model = _popularity([10, 5, 1])
    eval_set = EvalSet(Sequences.from_lists([[1, 3]], users=np.array([0])), np.array([2]))
    assert evaluate(model, eval_set, exclude_seen=True).ranks.tolist() == [0]
    assert evaluate(model, eval_set, exclude_seen=False).ranks.tolist() == [1]


def test_exclusion_uses_the_whole_history_not_only_the_window():
    model = _popularity([9, 8, 7, 6, 5, 4])
    history = Sequences.from_lists([[1, 2, 3, 4, 5]], users=np.array([0]))
    model.params.max_len = 2  # the window sees only items 4 and 5
    result = evaluate(model, EvalSet(history, np.array([6])))
    assert result.ranks.tolist() == [0]


def test_evaluation_is_batch_size_invariant(small_dataset, small_split):
    model = Popularity(small_dataset.n_items, PopularityParams())
    model.prepare(small_split.train)
    a = evaluate(model, small_split.test, batch_size=7)
    b = evaluate(model, small_split.test, batch_size=10_000)
    assert np.array_equal(a.ranks, b.ranks)


def test_paired_gain_tests_only_differences_that_vary():
    from scipy import stats

    baseline = np.array([0.1, 0.2, 0.3])
    assert paired_gain(baseline, baseline)["p"] is None  # a reused round 0
    shifted = paired_gain(baseline + 0.01, baseline)  # the same difference on every seed: t undefined
    assert shifted["p"] is None and math.isclose(shifted["gain"], np.mean(0.01 / baseline))
    candidate = np.array([0.11, 0.23, 0.31])
    assert math.isclose(paired_gain(candidate, baseline)["p"], stats.ttest_rel(candidate, baseline).pvalue)


def test_seed_by_user_bootstrap_interval_of_a_paired_gain():
    from rsir.evaluation import bootstrap_gain_ci, metrics_from_ranks, paired_gain, per_user

    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 50, 2000)
    for metric in ("recall@10", "ndcg@10", "mrr@5"):
        assert per_user(ranks, metric).mean() == pytest.approx(metrics_from_ranks(ranks)[metric])
    base = [rng.random(3000) for _ in range(3)]
    assert bootstrap_gain_ci(base, base) == (0.0, 0.0)  # no difference in any draw
    low, high = bootstrap_gain_ci([1.1 * b for b in base], base)
    assert low == pytest.approx(0.1) and high == pytest.approx(0.1)  # 10% better for every user
    noisy = [b + rng.normal(0.02, 0.3, b.shape) for b in base]
    point = paired_gain(np.array([n.mean() for n in noisy]), np.array([b.mean() for b in base]))["gain"]
    low, high = bootstrap_gain_ci(noisy, base)
    assert low < point < high and low > 0  # a 4% gain over 9,000 pairs is resolved
    narrow = bootstrap_gain_ci([n[:300] for n in noisy], [b[:300] for b in base])
    assert narrow[1] - narrow[0] > 2 * (high - low)  # a tenth of the users: a far wider interval


@pytest.mark.parametrize("backbone", ["sasrec", "markov"])
def test_reused_score_buffers_rank_exactly_as_fresh_score_matrices(small_dataset, small_split, backbone):
    torch.manual_seed(0)
    model = build_backbone(backbone, small_dataset.n_items, {"max_len": 20} if backbone == "sasrec" else {})
    model.prepare(small_split.train)
    model.eval()
    eval_set = small_split.test
    lengths = np.minimum(eval_set.history.lengths, model.max_len)
    expected = np.zeros(len(eval_set.targets), dtype=np.int64)
    for rows in bucket_batches(lengths, 7, rng=None):  # a fresh score matrix per batch, as before
        scores = score_histories(model, eval_set.history, rows)
        expected[rows] = pessimistic_ranks(scores, torch.from_numpy(eval_set.targets[rows])).numpy()
    assert np.array_equal(evaluate(model, eval_set, batch_size=7).ranks, expected)
