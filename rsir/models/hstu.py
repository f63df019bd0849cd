"""HSTU (Zhai et al., 2024, "Actions Speak Louder than Words"): hierarchical sequential
transduction units. Each layer projects to U, V, Q, K through SiLU, replaces softmax
attention with pointwise SiLU attention normalised by the sequence length, adds a learned
relative-position bias, and gates the attended values with U.

The relative time bias of the original needs timestamps, which the benchmark sequence files
do not have; this implementation uses relative positions only.
"""

from __future__ import annotations

from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, Decoder, KeyValueDecoder, TransformerParams
from .sasrec import init_weights


class _HSTULayer(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.max_len = max_len
        self.norm_in = nn.LayerNorm(dim)
        self.uvqk = nn.Linear(dim, 4 * dim)
        self.relative_bias = nn.Embedding(max_len, heads)  # bias for distance i - j >= 0
        self.norm_attended = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, dim)
        self.drop = nn.Dropout(dropout)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(batch, length, dim) -> gate U (batch, length, dim) and Q, K, V per head."""
        batch, length, dim = x.shape
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).chunk(4, dim=-1)
        split = lambda t: t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731
        return u, split(q), split(k), split(v)

    def attend(self, x, u, q, k, v, query_positions: torch.Tensor) -> torch.Tensor:
        """Pointwise attention of queries at ``query_positions`` (batch or 1, Lq) over keys
        at positions 0..Lk-1, gated by U, added to the residual stream ``x``."""
        batch, length, dim = x.shape
        distance = query_positions[..., :, None] - torch.arange(k.shape[2], device=k.device)  # (.., Lq, Lk)
        bias = self.relative_bias(distance.clamp(0, self.max_len - 1)).movedim(-1, -3)  # (.., heads, Lq, Lk)
        causal = (distance >= 0).unsqueeze(-3)
        # Pointwise attention: no softmax, so weights are normalised by a fixed length to
        # keep training and inference (with different padded widths) on one scale.
        weights = F.silu(q @ k.transpose(-1, -2) + bias) * causal / self.max_len
        attended = (self.drop(weights) @ v).transpose(1, 2).reshape(batch, length, dim)
        return x + self.drop(self.out(self.norm_attended(attended) * u))

    def forward(self, x: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        u, q, k, v = self.project(x)
        if keep is not None:
            keep.append((k, v))
        return self.attend(x, u, q, k, v, torch.arange(x.shape[1], device=x.device).unsqueeze(0))


class HSTU(Backbone):
    name = "hstu"
    Params = TransformerParams

    def __init__(self, n_items: int, params: TransformerParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        self.item_embedding = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.embed_dropout = nn.Dropout(params.dropout)
        self.layers = nn.ModuleList(
            _HSTULayer(params.dim, params.heads, params.dropout, params.max_len) for _ in range(params.blocks)
        )
        self.final_norm = nn.LayerNorm(params.dim)
        self.apply(init_weights)

    def encode(self, items: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Hidden states; with ``keep``, each layer's keys and values are appended to it."""
        x = self.embed_dropout(self.embed_items(items))
        for layer in self.layers:
            x = layer(x, keep)
        return self.final_norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item_table()

    def decoder(self, items: torch.Tensor, lengths: torch.Tensor) -> Decoder:
        return _KeyValueDecoder(self, items, lengths)


class _KeyValueDecoder(KeyValueDecoder):
    """Generation with cached keys and values: an appended item runs the layers for its own
    position only. Only relative positions matter, so the cache never goes stale."""

    model: HSTU

    def append(self, rows: torch.Tensor, new_items: torch.Tensor) -> None:
        model, position = self.model, self.lengths[rows]
        x = model.item_embedding(new_items).unsqueeze(1)
        for layer, keys, values in zip(cast(list[_HSTULayer], model.layers), self.keys, self.values):
            u, q, k, v = layer.project(x)
            keys[rows, :, position], values[rows, :, position] = k[:, :, 0], v[:, :, 0]
            # Cached slots after ``position`` are masked by the causal test inside attend.
            x = layer.attend(x, u, q, keys[rows], values[rows], position[:, None])
        self.hidden[rows] = model.final_norm(x[:, 0])
        self.lengths[rows] += 1
