"""Random interactions injected into users' histories, for robustness studies.

Each user's training part (everything before the last two items, which stay the
validation and test targets) receives ``Binomial(train length, share)`` items drawn
uniformly from the catalogue, each at a uniformly random place in that part. So a share of
0.2 adds about 20% random interactions to the training data while every evaluation target
is untouched, and the corrupted data is the same for every model seed (its own seed).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import ConfigError
from .dataset import Dataset
from .sequences import Sequences

HELD_OUT = 2  # validation and test items at the end of each sequence


def inject_noise(dataset: Dataset, share: float, seed: int = 0) -> Dataset:
    """``dataset`` with random interactions inserted into every user's training part."""
    if not 0 <= share <= 1:
        raise ConfigError(f"noise share must be in [0, 1], got {share}")
    seqs = dataset.sequences
    if share == 0 or seqs.n_interactions == 0:
        return dataset
    rng = np.random.default_rng(seed)
    lengths = seqs.lengths
    train_lengths = np.maximum(lengths - HELD_OUT, 0)
    added = rng.binomial(train_lengths, share)
    noise_owner = np.repeat(np.arange(len(seqs)), added)
    noise_items = rng.integers(1, dataset.n_items + 1, size=len(noise_owner), dtype=np.int32)
    # Real item j of a sequence sorts at key j; a noise item at a key drawn from
    # (-0.5, train length - 0.5), i.e. anywhere before the validation item.
    noise_keys = rng.uniform(-0.5, train_lengths[noise_owner] - 0.5)
    real_owner = np.repeat(np.arange(len(seqs)), lengths)
    real_keys = np.arange(seqs.n_interactions) - seqs.offsets[real_owner]
    order = np.lexsort((np.concatenate([real_keys, noise_keys]), np.concatenate([real_owner, noise_owner])))
    items = np.concatenate([seqs.items, noise_items])[order]
    noisy = Sequences.from_flat(items, lengths + added, seqs.users)
    timestamps = None
    if dataset.timestamps is not None:  # a noise item takes the time of the real item after it
        noise_times = dataset.timestamps[seqs.offsets[noise_owner] + np.ceil(noise_keys).astype(np.int64)]
        timestamps = np.concatenate([dataset.timestamps, noise_times])[order]
    return dataclasses.replace(dataset, sequences=dataclasses.replace(noisy, origin=seqs.origin), timestamps=timestamps)
