"""GRU4Rec (Hidasi et al., 2016), in its session-parallel sequence-to-sequence form: a GRU
over the item embeddings, every position predicting the next item."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import Backbone, check_ranges
from .sasrec import init_weights


@dataclass
class GRU4RecParams:
    dim: int = 64
    layers: int = 1
    dropout: float = 0.3
    max_len: int = 50

    def validate(self) -> None:
        check_ranges(self, at_least_one=("dim", "layers", "max_len"), dropouts=("dropout",))


class GRU4Rec(Backbone):
    name = "gru4rec"
    Params = GRU4RecParams

    def __init__(self, n_items: int, params: GRU4RecParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        self.item_embedding = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(params.dropout)
        self.gru = nn.GRU(params.dim, params.dim, num_layers=params.layers, batch_first=True,
                          dropout=params.dropout if params.layers > 1 else 0.0)
        self.project = nn.Linear(params.dim, params.dim)
        self.apply(init_weights)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        # Right padding: the recurrence reaches padding only after every real position.
        states, _ = self.gru(self.embed_dropout(self.item_embedding(items)))
        return self.project(states)

    def item_weights(self) -> torch.Tensor:
        return self.item_embedding.weight
