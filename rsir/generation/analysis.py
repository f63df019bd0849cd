"""Statistics of a round's synthetic data, set against the real training data."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..data.sequences import Sequences


def approximate_entropy(seqs: Sequences, m: int = 1) -> np.ndarray:
    """Approximate entropy ApEn(m, r=0) of each sequence (exact matches of item windows).

    ApEn = phi(m) - phi(m+1), phi(k) = mean over windows of log(share of the sequence's
    windows of length k equal to it). 0 for perfectly regular sequences; for sequences
    without repeated items it depends only on length. NaN for sequences shorter than m+2.
    """
    phis = [_phi(seqs, k) for k in (m, m + 1)]
    out = phis[0] - phis[1]
    out[seqs.lengths < m + 2] = np.nan
    return out


def _phi(seqs: Sequences, k: int) -> np.ndarray:
    lengths = seqs.lengths
    windows = np.maximum(lengths - k + 1, 0)
    starts = seqs.offsets[:-1]
    # Window w of sequence i starts at starts[i] + w; encode (sequence, window items) as a row.
    row = np.repeat(np.arange(len(seqs)), windows)
    first = np.repeat(starts, windows) + (np.arange(windows.sum()) - np.repeat(np.cumsum(windows) - windows, windows))
    # Windows grouped by (sequence, items) with a sort on two integer keys: rows of a 2-D array
    # (np.unique(axis=0)) sort field by field and cost an order of magnitude more.
    base = int(seqs.items.max()) + 1 if len(seqs.items) else 1
    content = np.zeros(len(row), dtype=np.int64)
    for j in range(k):  # k <= 2 here: at most base**2, far inside int64
        content = content * base + seqs.items[first + j]
    order = np.lexsort((content, row))
    row_sorted, content_sorted = row[order], content[order]
    starts_group = np.ones(len(order), dtype=bool)
    starts_group[1:] = (row_sorted[1:] != row_sorted[:-1]) | (content_sorted[1:] != content_sorted[:-1])
    group = np.cumsum(starts_group) - 1
    count = np.empty(len(order), dtype=np.int64)
    count[order] = np.bincount(group)[group]
    share = count / windows[row]
    sums = np.bincount(row, weights=np.log(share), minlength=len(seqs))
    with np.errstate(invalid="ignore", divide="ignore"):
        return sums / windows


def _transitions(seqs: Sequences, n_items: int) -> np.ndarray:
    """Consecutive item pairs of all sequences, encoded as one integer each."""
    same = seqs.row_ids()
    follows = same[1:] == same[:-1]
    return seqs.items[:-1][follows].astype(np.int64) * (n_items + 1) + seqs.items[1:][follows]


def analyse_round(real: Sequences, before: Sequences, synthetic: Sequences, n_items: int) -> dict[str, Any]:
    """``real``: the real training sequences; ``before``: the dataset the round trained on."""
    lengths = synthetic.lengths
    real_pairs = np.unique(_transitions(real, n_items))
    synthetic_pairs = _transitions(synthetic, n_items)
    novel = ~_members(synthetic_pairs, real_pairs)
    after_interactions = before.n_interactions + synthetic.n_interactions
    # Share of synthetic items that belong to the real sequence the attempt was grown from.
    own = _share_from_source(real, synthetic)
    item_counts = np.bincount(synthetic.items, minlength=n_items + 1)[1:]
    return {
        "sequences": int(len(synthetic)),
        "interactions": int(synthetic.n_interactions),
        # keys as text, as JSON keeps them: a report read back equals the one returned
        "length_histogram": {str(k): int(v) for k, v in zip(*np.unique(lengths, return_counts=True))},
        "avg_len": float(lengths.mean()) if len(lengths) else 0.0,
        "density_before": before.n_interactions / (len(before) * n_items),
        "density_after": after_interactions / ((len(before) + len(synthetic)) * n_items),
        "interactions_growth": after_interactions / before.n_interactions,
        "novel_transition_share": float(novel.mean()) if len(novel) else 0.0,
        "own_item_share": own,
        "catalogue_coverage": float((item_counts > 0).mean()),
        "apen_synthetic": _nanmean(approximate_entropy(synthetic)),
        "apen_real": _nanmean(approximate_entropy(real)),
    }


def _share_from_source(real: Sequences, synthetic: Sequences) -> float:
    if len(synthetic) == 0:
        return 0.0
    source_rows = synthetic.users  # generation records the source row here
    per_item_source = np.repeat(source_rows, synthetic.lengths)
    real_keys = np.repeat(np.arange(len(real)), real.lengths).astype(np.int64) * (real.items.max() + 1) + real.items
    keys = per_item_source * (real.items.max() + 1) + synthetic.items
    return float(_members(keys, np.unique(real_keys)).mean())


def _members(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Whether each value is in ``known`` (sorted, unique): a binary search per value, without
    the sorted copy of both arrays that np.isin makes."""
    if len(known) == 0:
        return np.zeros(len(values), dtype=bool)
    return known[np.minimum(np.searchsorted(known, values), len(known) - 1)] == values


def _nanmean(values: np.ndarray) -> float | None:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else None
