"""HSTU (Zhai et al., 2024, "Actions Speak Louder than Words"): hierarchical sequential
transduction units. Each layer projects to U, V, Q, K through SiLU, replaces softmax
attention with pointwise SiLU attention normalised by the sequence length, adds a learned
relative-position bias, and gates the attended values with U.

The relative time bias of the original needs timestamps, which the benchmark sequence files
do not have; this implementation uses relative positions only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, TransformerParams
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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        u, v, q, k = F.silu(self.uvqk(self.norm_in(x))).chunk(4, dim=-1)
        split = lambda t: t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        positions = torch.arange(length)
        distance = (positions[:, None] - positions[None, :]).clamp(0, self.max_len - 1)
        bias = self.relative_bias(distance).permute(2, 0, 1)  # (heads, L, L)
        causal = positions[None, :] <= positions[:, None]
        # Pointwise attention: no softmax, so weights are normalised by a fixed length to
        # keep training and inference (with different padded widths) on one scale.
        weights = F.silu(q @ k.transpose(-1, -2) + bias) * causal / self.max_len
        attended = (self.drop(weights) @ v).transpose(1, 2).reshape(batch, length, dim)
        return x + self.drop(self.out(self.norm_attended(attended) * u))


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

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        x = self.embed_dropout(self.item_embedding(items))
        for layer in self.layers:
            x = layer(x)
        return self.final_norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item_embedding.weight
