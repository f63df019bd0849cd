"""The augmentation baselines RSIR is compared with, as data transforms.

Each transform returns one augmented copy of every training sequence (origin
``AUGMENTED``); training then sees the real sequences and ``copies`` such copies, each drawn
independently, with the same model, loss and protocol as every other variant, their targets
weighted ``augment_weight`` in the loss (so a baseline can match a round's volume and weight).
Vectorised over the flat item array.

* ``reorder``: shuffle a random contiguous block of ``rate * n`` items (at least 2).
* ``insert``: after ``rate * n`` random items (at least 1), insert the item most often seen
  right after that item in the training data (its strongest successor), so the inserted
  item is correlated with its neighbour.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError, did_you_mean
from .sequences import Sequences

AUGMENTED = -1  # origin of a baseline's augmented copy (real data is 0, round k synthetic is k)


def reorder(seqs: Sequences, rate: float, rng: np.random.Generator) -> Sequences:
    lengths = seqs.lengths
    block = np.where(lengths >= 2, np.clip(np.floor(rate * lengths), 2, lengths), 0).astype(np.int64)
    start = np.floor(rng.random(len(seqs)) * (lengths - block + 1)).astype(np.int64)
    position = seqs.positions()
    row = seqs.row_ids()
    first, size = start[row], block[row]
    inside = (position >= first) & (position < first + size)
    # Inside the block a random key within the block's span; elsewhere the position itself,
    # so sorting by key shuffles the block and leaves the rest in place.
    key = np.where(inside, first + rng.random(len(position)) * size, position.astype(np.float64))
    order = np.lexsort((key, row))
    return Sequences(seqs.items[order], seqs.offsets.copy(), seqs.users.copy(), np.full(len(seqs), AUGMENTED, np.int16))


def strongest_successors(seqs: Sequences, n_items: int) -> np.ndarray:
    """For every item index, the item that most often follows it (another item; the most
    frequent item overall when it is never followed)."""
    row = seqs.row_ids()
    follows = np.flatnonzero((row[1:] == row[:-1]) & (seqs.items[1:] != seqs.items[:-1]))
    before, after = seqs.items[follows].astype(np.int64), seqs.items[follows + 1].astype(np.int64)
    pairs, counts = np.unique(before * (n_items + 1) + after, return_counts=True)
    source, target = pairs // (n_items + 1), pairs % (n_items + 1)
    best = np.lexsort((target, -counts, source))  # per source: highest count, then lowest id
    first = best[np.r_[True, source[best][1:] != source[best][:-1]]]
    successor = np.full(n_items + 1, np.bincount(seqs.items, minlength=n_items + 1)[1:].argmax() + 1, np.int64)
    successor[source[first]] = target[first]
    return successor


def insert(seqs: Sequences, rate: float, rng: np.random.Generator, n_items: int) -> Sequences:
    successor = strongest_successors(seqs, n_items)
    lengths = seqs.lengths
    count = np.clip(np.floor(rate * lengths), 1, lengths).astype(np.int64)
    row = seqs.row_ids()
    # A random rank of each item within its sequence; the ``count`` lowest get an insertion.
    order = np.lexsort((rng.random(len(row)), row))
    rank = np.empty(len(row), dtype=np.int64)
    rank[order] = np.arange(len(row)) - np.repeat(seqs.offsets[:-1], lengths)
    chosen = rank < count[row]
    out_start = np.arange(len(row)) + np.cumsum(chosen) - chosen  # where each original item lands
    items = np.zeros(len(row) + int(chosen.sum()), dtype=np.int32)
    items[out_start] = seqs.items
    items[out_start[chosen] + 1] = successor[seqs.items[chosen]]
    return Sequences.from_flat(items, lengths + count, seqs.users, origin=AUGMENTED)


AUGMENTATIONS = ("none", "reorder", "insert")


def check_augmentation(name: str, rate: float, copies: int = 1) -> None:
    if name not in AUGMENTATIONS:
        hint = did_you_mean(name, AUGMENTATIONS)
        raise ConfigError(f"unknown augmentation {name!r} (known: {', '.join(AUGMENTATIONS)}){hint}")
    if not 0.0 < rate <= 1.0:
        raise ConfigError(f"augment_rate must be in (0, 1], got {rate}")
    if copies < 1:
        raise ConfigError(f"augment_copies must be >= 1, got {copies}")


def augmented(seqs: Sequences, name: str, rate: float, seed: int, n_items: int, copies: int = 1) -> Sequences:
    """``seqs`` followed by ``copies`` augmented copies of each sequence, each from its own
    random stream (``name`` = none: unchanged)."""
    check_augmentation(name, rate, copies)
    if name == "none":
        return seqs
    out = seqs
    for copy in range(copies):  # the first copy's stream is the one a single copy always had
        rng = np.random.default_rng([seed, AUGMENTATIONS.index(name)] + ([copy] if copy else []))
        out = out.concat(reorder(seqs, rate, rng) if name == "reorder" else insert(seqs, rate, rng, n_items))
    return out
