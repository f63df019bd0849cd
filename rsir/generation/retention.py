"""State retention: generation scores that fuse the current round's model with the previous
round's, ``(1 - w) * current + w * previous``, so that what an earlier generation knew is
not lost at once when the successor replaces it.

The fusion is exact and stays one inner product: the two models' hidden states, scaled by
``1 - w`` and ``w``, are concatenated, and so are their item embeddings. Everything that
scores through the backbone interface (the fidelity check, the exact scan, a FAISS index)
therefore works unchanged on the fused model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import Backbone, Decoder


@dataclass
class RetentionParams:
    weight: float  # of the previous model's scores
    max_len: int


class RetainedScores(Backbone):
    name = "retained"
    Params = RetentionParams
    trainable = False

    def __init__(self, current: Backbone, previous: Backbone, weight: float) -> None:
        super().__init__(current.n_items, RetentionParams(weight, min(current.max_len, previous.max_len)))
        self.current, self.previous = current, previous

    def fuse(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        return torch.cat([(1 - self.params.weight) * current, self.params.weight * previous], dim=-1)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.current.encode(items), self.previous.encode(items))

    def item_weights(self) -> torch.Tensor:
        return torch.cat([self.current.item_weights(), self.previous.item_weights()], dim=1)

    def decoder(self, items: torch.Tensor, lengths: torch.Tensor) -> Decoder:
        return _RetainedDecoder(self, items, lengths)


class _RetainedDecoder(Decoder):
    """Each model keeps its own decoder (and its cache); the hidden states are fused."""

    model: RetainedScores

    def __init__(self, model: RetainedScores, items: torch.Tensor, lengths: torch.Tensor) -> None:
        self.model, self.lengths = model, lengths.clone()
        self.parts = (model.current.decoder(items, lengths), model.previous.decoder(items, lengths))
        self.hidden = model.fuse(self.parts[0].hidden, self.parts[1].hidden)

    def append(self, rows: torch.Tensor, new_items: torch.Tensor) -> None:
        for part in self.parts:
            part.append(rows, new_items)
        self.hidden[rows] = self.model.fuse(self.parts[0].hidden[rows], self.parts[1].hidden[rows])
        self.lengths[rows] += 1
