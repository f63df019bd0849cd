"""GRU4Rec (Hidasi et al., 2016), in its session-parallel sequence-to-sequence form: a GRU
over the item embeddings, every position predicting the next item."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from .base import Backbone, Decoder, check_ranges
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
        self.gru = nn.GRU(
            params.dim,
            params.dim,
            num_layers=params.layers,
            batch_first=True,
            dropout=params.dropout if params.layers > 1 else 0.0,
        )
        self.project = nn.Linear(params.dim, params.dim)
        self.apply(init_weights)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        # Right padding: the recurrence reaches padding only after every real position.
        states, _ = self.gru(self.embed_dropout(self.item_embedding(items)))
        return self.project(states)

    def item_weights(self) -> torch.Tensor:
        return self.item_embedding.weight

    def decoder(self, items: torch.Tensor, lengths: torch.Tensor) -> Decoder:
        return _RecurrentDecoder(self, items, lengths)


class _RecurrentDecoder(Decoder):
    """Generation that carries the GRU state: an appended item is one recurrent step."""

    model: GRU4Rec

    def __init__(self, model: GRU4Rec, items: torch.Tensor, lengths: torch.Tensor) -> None:
        self.model, self.lengths = model, lengths.clone()
        # Packed, so each row's final state is taken at its own last item, not after padding.
        packed = pack_padded_sequence(
            model.item_embedding(items), lengths.cpu(), batch_first=True, enforce_sorted=False
        )
        _, self.state = model.gru(packed)  # (layers, batch, dim)
        self.hidden = model.project(self.state[-1])

    def append(self, rows: torch.Tensor, new_items: torch.Tensor) -> None:
        model = self.model
        output, state = model.gru(model.item_embedding(new_items).unsqueeze(1), self.state[:, rows].contiguous())
        self.state[:, rows] = state
        self.hidden[rows] = model.project(output[:, 0])
        self.lengths[rows] += 1
