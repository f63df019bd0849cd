"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Pre-LayerNorm blocks, learned absolute positions, item embeddings shared between input
and output, normal(0, 0.02) initialisation (with N(0, 1) the model does not learn).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Backbone, TransformerParams


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        # Right padding + causal mask: real positions never see padding, so no pad mask.
        attended = F.scaled_dot_product_attention(
            q.transpose(1, 2),
            k.transpose(1, 2),
            v.transpose(1, 2),
            is_causal=True,
            dropout_p=self.dropout if self.training else 0.0,
        )
        x = x + self.drop(self.out(attended.transpose(1, 2).reshape(batch, length, dim)))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class SASRec(Backbone):
    name = "sasrec"
    Params = TransformerParams

    def __init__(self, n_items: int, params: TransformerParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        self.item_embedding = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(params.max_len, params.dim)
        self.embed_dropout = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(_Block(params.dim, params.heads, params.dropout) for _ in range(params.blocks))
        self.final_norm = nn.LayerNorm(params.dim)
        self.apply(init_weights)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(items.shape[1], device=items.device)
        x = self.embed_dropout(self.item_embedding(items) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item_embedding.weight


def init_weights(module: nn.Module) -> None:
    """normal(0, 0.02) weights, zero biases and padding row: the initialisation that learns."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
