"""Full-ranking evaluation over the whole catalogue, vectorised in batches.

Ties are never credited optimistically: the target ranks after every item with a higher
score and after every other item with an equal score. Seen items (the user's whole
history before the target) are excluded by default by setting their score to -inf.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .data.batching import bucket_batches
from .data.sequences import Sequences
from .data.split import EvalSet
from .files import atomic_path
from .models.base import Backbone

KS = (5, 10, 20)
METRICS = tuple(f"{name}@{k}" for k in KS for name in ("recall", "ndcg", "mrr"))  # what an evaluation reports


@dataclass(frozen=True)
class EvalResult:
    metrics: dict[str, float]
    ranks: np.ndarray  # 0-based rank of each user's target, in the order of the eval set


FLOAT32_EXACT_COUNT = 2**24  # float32 holds every integer below this exactly


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor, *, overwrite_scores: bool = False) -> torch.Tensor:
    """0-based rank of each target: items scoring higher, plus other items scoring equal.
    ``overwrite_scores``: the comparison is written into ``scores`` itself (their values are
    lost), which spares a catalogue-wide allocation per batch."""
    target_scores = scores.gather(1, targets.unsqueeze(1))
    if scores.shape[1] >= FLOAT32_EXACT_COUNT:
        return (scores >= target_scores).sum(1) - 1
    # One pass: every item scoring >= the target, except the target itself, as 0/1 values in the
    # scores' dtype, summed in float32 (exact here, whatever that dtype; about 3x faster than
    # an integer sum of a mask).
    above = torch.ge(scores, target_scores, out=scores if overwrite_scores else torch.empty_like(scores))
    return above.sum(1, dtype=torch.float32).long() - 1


def metrics_from_ranks(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    ranks = np.asarray(ranks, dtype=np.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"recall@{k}"] = float(hit.mean())
        out[f"ndcg@{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
        out[f"mrr@{k}"] = float(np.where(hit, 1.0 / (ranks + 1.0), 0.0).mean())
    return out


RANKS_FILE = "test_ranks.npy"  # beside a training's metrics.json: each test user's target rank


def save_ranks(path: Path, ranks: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, ranks.astype(np.int32))


def per_user(ranks: np.ndarray, metric: str) -> np.ndarray:
    """Each user's value of ``metric`` (recall@k, ndcg@k or mrr@k) from the 0-based target ranks."""
    name, k = metric.split("@")
    ranks = np.asarray(ranks, dtype=np.float64)
    hit = ranks < int(k)
    value = {"recall": np.ones_like(ranks), "ndcg": 1.0 / np.log2(ranks + 2.0), "mrr": 1.0 / (ranks + 1.0)}[name]
    return np.where(hit, value, 0.0)


def bootstrap_gain_ci(
    candidate: list[np.ndarray], baseline: list[np.ndarray], samples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Seed x user bootstrap interval of the mean relative gain (as :func:`paired_gain` computes
    it) of per-user metric values, one array per seed on each side, the same users in the same
    order: each sample draws seeds with replacement and, within each drawn seed, users with
    replacement, the same users on both sides, so the pairing stays."""
    rng = np.random.default_rng(seed)
    per_candidate, per_baseline = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    seeds, users = per_candidate.shape
    gains = np.empty(samples)
    for sample in range(samples):  # one vectorised draw of seeds x users per sample
        drawn = rng.integers(0, seeds, seeds)
        picked = rng.integers(0, users, (seeds, users))
        mine = np.take_along_axis(per_candidate[drawn], picked, axis=1).mean(1)
        theirs = np.take_along_axis(per_baseline[drawn], picked, axis=1).mean(1)
        gains[sample] = np.mean(mine / np.where(theirs > 0, theirs, np.nan) - 1)
    low, high = np.nanquantile(gains, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_gain(candidate: np.ndarray, baseline: np.ndarray) -> dict[str, float | None]:
    """Mean relative gain of paired metric values (one pair per seed) and the two-sided
    paired t-test p-value; no gain when a baseline is 0, no test with one pair or when every
    pair differs by the same amount (a reused round 0: by none), where the test is undefined."""
    from scipy import stats

    candidate, baseline = np.asarray(candidate, dtype=float), np.asarray(baseline, dtype=float)
    difference = candidate - baseline
    tested = len(candidate) > 1 and not np.allclose(difference, difference[0], rtol=1e-9, atol=1e-12)
    return {
        "gain": float((candidate / baseline - 1).mean()) if np.all(baseline > 0) else None,
        "p": float(stats.ttest_rel(candidate, baseline).pvalue) if tested else None,
    }


def catalogue_buffer(model: Backbone, rows: int) -> torch.Tensor:
    """A (rows, catalogue) tensor reused for every batch's scores: fresh ones per batch would
    be zeroed page by page by the system each time (most of the time at 10^5 items)."""
    return torch.empty((rows, model.n_items + 1), dtype=torch.float32, device=model.device)


@torch.no_grad()
def score_histories(
    model: Backbone, history: Sequences, rows: np.ndarray, exclude_seen: bool = True, out: torch.Tensor | None = None
) -> torch.Tensor:
    """Scores of every item for the chosen rows' next step; padding (and seen items) -inf;
    written into ``out`` (at least rows x catalogue) when given."""
    device = model.device
    items = torch.from_numpy(history.padded(rows, model.max_len).astype(np.int64)).to(device)
    scores = model.score_all(model.last_hidden(items), out=None if out is None else out[: len(rows)])
    scores[:, 0] = float("-inf")
    if exclude_seen:
        seen = history.select(rows)
        row_ids, seen_items = (torch.from_numpy(a.astype(np.int64)).to(device) for a in (seen.row_ids(), seen.items))
        scores[row_ids, seen_items] = float("-inf")
    return scores


@torch.no_grad()
def evaluate(
    model: Backbone,
    eval_set: EvalSet,
    *,
    batch_size: int = 1024,
    exclude_seen: bool = True,
    ks: tuple[int, ...] = KS,
) -> EvalResult:
    was_training = model.training
    model.eval()
    ranks = np.zeros(len(eval_set.targets), dtype=np.int64)
    lengths = np.minimum(eval_set.history.lengths, model.max_len)
    # Under torchrun each rank ranks its share of the batches; the integer ranks are then
    # summed over ranks, so the metrics equal a single process's exactly.
    batches = distributed.my_share(bucket_batches(lengths, batch_size, rng=None))
    # One score matrix for every batch; each batch's comparison overwrites it.
    scores_buffer = catalogue_buffer(model, max((len(rows) for rows in batches), default=0))
    for rows in batches:
        scores = score_histories(model, eval_set.history, rows, exclude_seen, out=scores_buffer)
        targets = torch.from_numpy(eval_set.targets[rows]).to(scores.device)
        ranks[rows] = pessimistic_ranks(scores, targets, overwrite_scores=True).cpu().numpy()
    ranks = distributed.sum_over_ranks(ranks)
    model.train(was_training)
    return EvalResult(metrics_from_ranks(ranks, ks), ranks)


@torch.no_grad()
def recommend_top_k(
    model: Backbone, history: Sequences, rows: np.ndarray, k: int, *, batch_size: int = 1024, exclude_seen: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k item indices and scores for the chosen rows, best first. A row with fewer than
    k candidates ends in excluded entries (seen items, padding) scored -inf."""
    model.eval()
    items = np.empty((len(rows), k), dtype=np.int64)
    scores = np.empty((len(rows), k), dtype=np.float32)
    buffer = catalogue_buffer(model, min(batch_size, len(rows)))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        top = torch.topk(score_histories(model, history, chunk, exclude_seen, out=buffer), k, dim=1)
        items[start : start + len(chunk)] = top.indices.cpu().numpy()
        scores[start : start + len(chunk)] = top.values.cpu().numpy()
    return items, scores
