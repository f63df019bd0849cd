"""Next-item losses, chosen by name. Each takes the model, the hidden states of a batch and
its input/target items (target 0 = padding, ignored) and returns a scalar."""

from __future__ import annotations

import difflib

import torch
import torch.nn.functional as F

from .errors import ConfigError
from .models.base import Backbone
from .sampling import uniform_negatives_excluding_own


class SampledSoftmax:
    """Softmax over the target and N uniform negatives shared by the positions of a
    sequence; negatives that are items of that sequence are excluded."""

    def __init__(self, negatives: int = 256) -> None:
        if negatives < 1:
            raise ConfigError(f"negatives must be >= 1, got {negatives}")
        self.negatives = negatives

    def __call__(self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != 0
        own = torch.cat([inputs, targets], dim=1)
        negatives, collide = uniform_negatives_excluding_own(model.n_items, own, (len(targets), self.negatives))
        weights = model.item_weights()
        # F.embedding, not weights[idx]: the backward of advanced indexing accumulates rows in
        # a thread-dependent order on CPU, so repeated runs would differ in the last bits.
        positive = (hidden * F.embedding(targets, weights)).sum(-1)
        negative = torch.bmm(hidden, F.embedding(negatives, weights).transpose(1, 2))
        negative = negative.masked_fill(collide.unsqueeze(1), float("-inf"))
        logits = torch.cat([positive.unsqueeze(-1), negative], dim=-1)[valid]
        return (torch.logsumexp(logits, dim=-1) - logits[:, 0]).mean()


class FullSoftmax:
    """Cross-entropy over the whole catalogue."""

    def __call__(self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != 0
        logits = model.score_all(hidden[valid])
        logits[:, 0] = float("-inf")  # padding is never a target
        return F.cross_entropy(logits, targets[valid])


class BinaryCrossEntropy:
    """The original SASRec loss: the target against one uniform negative per position."""

    def __call__(self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        valid = targets != 0
        own = torch.cat([inputs, targets], dim=1)
        negatives, collide = uniform_negatives_excluding_own(model.n_items, own, tuple(targets.shape))
        positive = model.score_items(hidden, targets.unsqueeze(-1)).squeeze(-1)
        negative = model.score_items(hidden, negatives.unsqueeze(-1)).squeeze(-1)
        loss = F.softplus(-positive) + F.softplus(negative) * (~collide)
        return loss[valid].mean()


LOSSES = {"sampled_softmax": SampledSoftmax, "softmax": FullSoftmax, "bce": BinaryCrossEntropy}


def build_loss(name: str, negatives: int = 256):
    if name not in LOSSES:
        close = difflib.get_close_matches(name, LOSSES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown loss {name!r} (known: {', '.join(LOSSES)}){hint}")
    return SampledSoftmax(negatives) if name == "sampled_softmax" else LOSSES[name]()
