"""Acquisition after verification: of the synthetic sequences that passed the fidelity check,
keep a capped share, those the model is least sure about, so that the successor trains on
verified data it can still learn from rather than on what it already predicts. A random
share of the same size is the control: it caps how much synthetic data the successor sees
without choosing which.

Disagreement is estimated with Monte Carlo dropout: the model scores each sequence several
times with dropout on; a sequence's disagreement is the spread (standard deviation over
the samples) of the log-probability given to each of its items from the prefix before it,
averaged over its items.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..data.batching import next_item_windows
from ..data.sequences import Sequences
from ..models.base import Backbone


@torch.no_grad()
def disagreement(
    model: Backbone, seqs: Sequences, samples: int = 8, seed: int = 0, batch_size: int = 256
) -> np.ndarray:
    """MC-dropout disagreement of every sequence (0 for a sequence of one item)."""
    was_training = model.training
    model.train()  # dropout on, gradients off
    out = np.zeros(len(seqs))
    devices = [model.device.index] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):  # the caller's random stream is left untouched
        torch.manual_seed(seed)
        for rows, inputs, targets in next_item_windows(seqs, model.max_len, batch_size):
            inputs, targets = inputs.to(model.device), targets.to(model.device)
            valid = targets != 0
            log_probs = []
            for _ in range(samples):
                scores = model.score_all(model.encode(inputs)[valid])
                scores[:, 0] = float("-inf")
                log_probs.append(torch.log_softmax(scores, dim=1).gather(1, targets[valid].unsqueeze(1)).squeeze(1))
            spread = torch.stack(log_probs).std(dim=0).cpu().numpy()
            owner = np.repeat(np.arange(len(rows)), valid.sum(1).cpu().numpy())
            out[rows] = np.bincount(owner, weights=spread, minlength=len(rows)) / np.bincount(
                owner, minlength=len(rows)
            )
    model.train(was_training)
    return out


ACQUIRE_BY = ("disagreement", "random")


def acquire(
    model: Backbone, synthetic: Sequences, share: float, samples: int = 8, seed: int = 0, by: str = "disagreement"
) -> Sequences:
    """The ``share`` of ``synthetic`` with the highest disagreement (or, ``by="random"``, a
    seeded uniform draw of the same size), in their original order."""
    if share >= 1.0 or len(synthetic) == 0:
        return synthetic
    size = math.ceil(share * len(synthetic))
    if by == "random":
        keep = np.random.default_rng(seed).choice(len(synthetic), size=size, replace=False)
    else:
        keep = np.argsort(-disagreement(model, synthetic, samples, seed), kind="stable")[:size]
    return synthetic.select(np.sort(keep))
