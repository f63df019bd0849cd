"""Length-bucketed batches: each batch holds sequences of similar length, so padding is
only to the longest sequence in the batch."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from .sequences import Sequences


def bucket_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None, by_length: bool = True
) -> list[np.ndarray]:
    """Split row indices into batches of similar length; with ``rng``, shuffled within equal
    lengths and in batch order (one epoch), else in length order (evaluation). With ``rng``
    and not ``by_length``, batches are random draws of rows, whatever their length.

    Without ``rng``, a batch whose longest row is more than twice its shortest (and longer
    than 8) is split by width class (lengths up to 8, 9-16, 17-32, ...), so its padding stays
    under its real items even where a whole small data set fits in one batch of
    ``batch_size`` rows; batches of similar lengths stay as they are."""
    if rng is None:
        order = np.argsort(lengths, kind="stable")
        batches = []
        for start in range(0, len(order), batch_size):  # one step per batch, not per row
            rows = order[start : start + batch_size]
            shortest, longest = lengths[rows[0]], lengths[rows[-1]]
            if longest <= max(8, 2 * shortest):
                batches.append(rows)
                continue
            width_class = np.ceil(np.log2(np.maximum(lengths[rows], 8)))
            batches += np.split(rows, np.flatnonzero(np.diff(width_class)) + 1)
        return batches
    if by_length:
        order = np.lexsort((rng.random(len(lengths)), lengths))
    else:
        order = rng.permutation(len(lengths))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


TARGETS = ("all", "prefixes")
# What a per-epoch budget of non-real rows counts: rows (sequences) or next-item targets, so that
# rivals whose sequences differ in length (a round's continuations, Insertion's copies) can be
# held to the same number of targets per epoch.
BUDGET_UNITS = ("sequences", "targets")
BATCHING = ("length", "random")
TARGET_WEIGHTING = ("batch", "equal")


def prefix_rows(seqs: Sequences, max_len: int) -> Sequences:
    """Every prefix of two or more items of each sequence as a row of its own, cut to its
    last ``max_len + 1`` items (the data preparation of RecBole and S3-Rec). Trained with
    ``last_target_only``, each target is then predicted once, from its whole prefix, and an
    epoch has one row per target instead of one per sequence."""
    ends = np.flatnonzero(seqs.positions() >= 1)  # flat index of every target item
    rows = seqs.row_ids()[ends]
    starts = np.maximum(seqs.offsets[rows], ends - max_len)
    return seqs.spans(rows, starts, ends + 1)


def next_item_batches(
    seqs: Sequences,
    max_len: int,
    batch_size: int,
    rng: np.random.Generator,
    rank: int = 0,
    world_size: int = 1,
    synthetic_weight: float = 1.0,
    last_target_only: bool = False,
    by_length: bool = True,
    equal_weight: bool = False,
    augment_weight: float = 1.0,
    synthetic_per_epoch: float = 0.0,
    budget_unit: str = "sequences",
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """One epoch of sequence-to-sequence batches: every position predicts the next item.

    Inputs are ``s[:-1]`` and targets ``s[1:]`` over the last ``max_len + 1`` items of each
    sequence; target 0 marks padding. Sequences of one item carry no target and are skipped.
    Each target has a weight: 1 for real sequences, ``synthetic_weight`` for synthetic ones,
    ``augment_weight`` for a baseline's augmented copies (0 at padding). With ``last_target_only`` (for :func:`prefix_rows`) every target but each
    row's last is set to 0, as padding. With ``world_size`` ranks (same ``rng`` state on
    each), rank ``r`` gets every ``world_size``-th row of each batch, so the global batch
    stays ``batch_size``; a batch with fewer rows than ranks is skipped by all of them.
    Batches hold rows of similar length (``by_length``) or random rows.
    Yields inputs, targets, target weights, and the weight the batch's weighted loss sum is
    divided by: the total target weight of the whole (global) batch, or, with
    ``equal_weight``, the epoch's mean total per batch, the same for every batch, so every
    target of the epoch weighs the same whichever batch it falls in. With
    ``synthetic_per_epoch`` > 0 the epoch holds every real row and a fresh draw of that many
    non-real rows (synthetic or augmented) per real one, or of their targets per real target
    with ``budget_unit = "targets"`` (all of them, if there are fewer).
    """
    trainable = epoch_rows(
        seqs,
        synthetic_per_epoch,
        rng,
        row_targets(seqs, max_len, last_target_only) if budget_unit == "targets" else None,
    )
    lengths = np.minimum(seqs.lengths[trainable], max_len + 1)
    origin = seqs.origin[trainable]
    row_weights = np.select([origin > 0, origin < 0], [synthetic_weight, augment_weight], 1.0).astype(np.float32)
    supervised = np.ones_like(lengths) if last_target_only else lengths - 1
    batches = [b for b in bucket_batches(lengths, batch_size, rng, by_length) if len(b) >= world_size]
    batch_weights = [float(row_weights[b] @ supervised[b]) for b in batches]
    if equal_weight:
        batch_weights = [sum(batch_weights) / max(len(batches), 1)] * len(batches)
    for batch, batch_weight in zip(batches, batch_weights):
        mine = batch[rank::world_size]
        window = torch.from_numpy(seqs.padded(trainable[mine], max_len + 1).astype(np.int64))
        targets = window[:, 1:]
        # A row shorter than the batch's width ends in an item with no next one: it is not an
        # input, or positions counted from the latest input (and padding counts) would be off
        # by one against inference, where the latest item is the last input.
        inputs = window[:, :-1] * (targets != 0)
        if last_target_only:  # the other targets become padding, so losses skip them
            targets = targets * (torch.arange(targets.shape[1]) == torch.from_numpy(lengths[mine] - 2)[:, None])
        weights = torch.from_numpy(row_weights[mine]).unsqueeze(1) * (targets != 0)
        yield inputs, targets, weights, batch_weight


def next_item_windows(
    seqs: Sequences, max_len: int, batch_size: int
) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
    """Every sequence of two or more items once, in length-bucketed batches of a fixed order
    (for scoring, not training): its row indices, inputs and targets as in
    :func:`next_item_batches`."""
    trainable = np.flatnonzero(seqs.lengths >= 2)
    for batch in bucket_batches(np.minimum(seqs.lengths[trainable], max_len + 1), batch_size, rng=None):
        rows = trainable[batch]
        window = torch.from_numpy(seqs.padded(rows, max_len + 1).astype(np.int64))
        yield rows, window[:, :-1], window[:, 1:]


def row_targets(seqs: Sequences, max_len: int, last_target_only: bool = False) -> np.ndarray:
    """The next-item targets each row gives an epoch (0 for a row of one item)."""
    if last_target_only:
        return (seqs.lengths >= 2).astype(np.int64)
    return np.clip(seqs.lengths - 1, 0, max_len).astype(np.int64)


def epoch_rows(
    seqs: Sequences, synthetic_per_epoch: float, rng: np.random.Generator, targets: np.ndarray | None = None
) -> np.ndarray:
    """The rows of one training epoch: every row with a target, or, with a budget, every real
    row and a draw without replacement of ``synthetic_per_epoch`` non-real rows (a round's
    synthetic ones or a baseline's augmented copies) per real one, so that a round and an
    augmentation can be held to the same volume (the rng is only used then, so other epochs
    keep their batch order). With ``targets`` (each row's, :func:`row_targets`) the budget
    counts targets instead: non-real rows in a random order until their targets would pass
    ``synthetic_per_epoch`` times the real rows' targets."""
    trainable = np.flatnonzero(seqs.lengths >= 2)
    if synthetic_per_epoch <= 0:
        return trainable
    synthetic = seqs.origin[trainable] != 0
    if not synthetic.any():  # nothing to draw: the rng stays untouched, as without a budget
        return trainable
    real, candidates = trainable[~synthetic], trainable[synthetic]
    if targets is not None:
        candidates = rng.permutation(candidates)
        allowed = synthetic_per_epoch * targets[real].sum()
        chosen = candidates[: np.searchsorted(np.cumsum(targets[candidates]), allowed, side="right")]
        return np.sort(np.concatenate([real, chosen]))
    drawn = _budget(len(real), len(candidates), synthetic_per_epoch)
    if drawn == len(candidates):
        return trainable
    chosen = rng.choice(candidates, size=drawn, replace=False)
    return np.sort(np.concatenate([real, chosen]))


def _budget(real: int, synthetic: int, per_real: float) -> int:
    return min(synthetic, int(round(per_real * real)))


def count_targets(
    seqs: Sequences,
    max_len: int,
    last_target_only: bool = False,
    synthetic_per_epoch: float = 0.0,
    budget_unit: str = "sequences",
) -> tuple[float, int]:
    """Supervised next-item targets and rows in one epoch (for throughput numbers and progress);
    under a budget of non-real rows, their expected numbers."""
    trainable = seqs.lengths >= 2
    targets = row_targets(seqs, max_len, last_target_only).astype(np.float64)
    synthetic = seqs.origin != 0
    share = 1.0
    if synthetic_per_epoch > 0 and (trainable & synthetic).any():
        n_synthetic = int((trainable & synthetic).sum())
        if budget_unit == "targets":
            real, other = targets[~synthetic].sum(), targets[synthetic].sum()
            share = min(1.0, synthetic_per_epoch * real / other)
        else:
            share = _budget(int((trainable & ~synthetic).sum()), n_synthetic, synthetic_per_epoch) / n_synthetic
    weights = np.where(synthetic, share, 1.0) * trainable
    return float(weights @ targets), int(round(weights.sum()))
