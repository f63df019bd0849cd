"""Most-popular baseline: every user gets the items ranked by training frequency.

It fits the backbone interface (a one-dimensional hidden state of 1 and item "embeddings"
equal to item counts), so it is evaluated by exactly the same code as learned models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.sequences import Sequences
from .base import Backbone, check_ranges


@dataclass
class PopularityParams:
    max_len: int = 50

    def validate(self) -> None:
        check_ranges(self, at_least_one=("max_len",))


class Popularity(Backbone):
    name = "popularity"
    Params = PopularityParams
    trainable = False
    counts: torch.Tensor  # a buffer: how often each item occurs in the training data

    def __init__(self, n_items: int, params: PopularityParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        self.register_buffer("counts", torch.zeros(n_items + 1, 1))

    def prepare(self, train: Sequences) -> None:
        counts = np.bincount(train.items, minlength=self.n_items + 1).astype(np.float32)
        self.counts.copy_(torch.from_numpy(counts).unsqueeze(1))

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return torch.ones(*items.shape, 1, device=items.device)

    def item_weights(self) -> torch.Tensor:
        return self.counts
