"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence.

Item embeddings shared between input and output. By default RecTools' recipe: the original
paper's block (queries and the residual from the normalised input, keys and values from the
raw one, ReLU; RecTools' layer) with Xavier-normal initialisation, learned positions counted
from the latest item, and attention over a max_len window's padding. The preset
"length_batched" keeps the earlier choices: pre-LayerNorm blocks with normal(0, 0.02)
initialisation (with N(0, 1) the model does not learn), absolute positions, padding masked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .base import Backbone, Decoder, KeyValueDecoder, TransformerParams


@dataclass
class SASRecParams(TransformerParams):
    """The published tuned SASRec (RecTools' SASRec+SS of the eSASRec paper): its
    regularisation, layer and padding, at the width its benchmark's README names (64; its config
    says 256), chosen on validation in docs/results/sasrec_parity.md.
    The presets keep the earlier models by name: "length_batched" (pre-LN blocks, absolute
    positions, masked padding) and "paper" (the RSIR paper's d 64, 2 blocks, 2 heads, dropout
    0.5, no item-table dropout)."""

    blocks: int = 1  # attention blocks
    heads: int = 1  # attention heads per block
    dropout: float = 0.2  # dropout on the embeddings, attention weights and block outputs
    item_dropout: float = 0.2  # dropout on the whole item table, one mask per step for input and output
    # Width of each block's feed-forward layer; 0 = dim, as in the SASRec paper
    # (RecBole's SASRec defaults to 256 with dim 64).
    ffn_dim: int = 0
    block: str = "original"  # pre_ln | original: the SASRec paper's block (as RecTools builds it)
    init: str = "xavier"  # normal: N(0, 0.02) | xavier: Xavier-normal weight matrices (RecTools)
    # absolute: position t from the sequence's start | recency: from its end, so the latest item
    # always has position 0 (RecTools' left padding); generation then re-encodes at every step
    positions: str = "recency"
    # masked: attention sees real items only | attended: each position also attends to the
    # padding of a max_len window, all-zero inputs (RecTools' SASRec, which has no key padding
    # mask, left-pads every sequence to max_len); generation then re-encodes at every step
    pad_keys: str = "attended"

    def validate(self) -> None:
        super().validate()
        if self.ffn_dim < 0:
            raise ConfigError(f"model option ffn_dim must be >= 0 (0 = dim), got {self.ffn_dim}")
        for name, allowed in (("block", BLOCKS), ("init", INITS), ("positions", POSITIONS), ("pad_keys", PAD_KEYS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"model option {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )


BLOCKS = ("pre_ln", "original")
INITS = ("normal", "xavier")
POSITIONS = ("absolute", "recency")
PAD_KEYS = ("masked", "attended")


class _Block(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float, ffn_dim: int, original: bool = False) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.original = original
        self.attn_norm = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.ffn_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, ffn_dim), nn.ReLU() if original else nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, dim)
        )
        self.drop = nn.Dropout(dropout)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(batch, length, dim) -> queries, keys, values as (batch, heads, length, dim / heads)."""
        batch, length, dim = x.shape
        if self.original:  # queries from the normalised input, keys and values from the raw one
            weight, bias = self.qkv.weight, self.qkv.bias
            qkv = torch.cat(
                [F.linear(self.attn_norm(x), weight[:dim], bias[:dim]), F.linear(x, weight[dim:], bias[dim:])], dim=-1
            )
        else:
            qkv = self.qkv(self.attn_norm(x))
        q, k, v = qkv.view(batch, length, 3, self.heads, dim // self.heads).unbind(2)
        return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)

    def combine(self, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """The residual stream after attention (attended values per head) and the FFN."""
        batch, length, dim = x.shape
        attended = self.out(attended.transpose(1, 2).reshape(batch, length, dim))
        if self.original:  # residuals around the normalised inputs, as in the SASRec paper
            x = self.ffn_norm(self.attn_norm(x) + attended)
            return x + self.drop(self.ffn(x))
        x = x + self.drop(attended)
        return x + self.drop(self.ffn(self.ffn_norm(x)))

    def forward(self, x: torch.Tensor, keep: list | None = None, padding: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self.project(x)
        if keep is not None:
            keep.append((k, v))
        dropout = self.dropout if self.training else 0.0
        if padding is None:
            # Right padding + causal mask: real positions never see padding, so no pad mask.
            return self.combine(x, F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout))
        # ``padding[b]`` zero inputs before the sequence, all with the same key and value: one
        # extra key whose logit counts them (log n), visible from every position.
        batch, length, dim = x.shape
        _, null_key, null_value = self.project(x.new_zeros(1, 1, dim))
        keys = torch.cat([null_key.expand(batch, -1, -1, -1), k], dim=2)
        values = torch.cat([null_value.expand(batch, -1, -1, -1), v], dim=2)
        causal = torch.ones(length, length, dtype=torch.bool, device=x.device).tril()
        mask = torch.zeros(batch, 1, length, length + 1, device=x.device, dtype=q.dtype)
        mask[..., 1:] = mask[..., 1:].masked_fill(~causal, float("-inf"))
        mask[..., 0] = padding.to(q.dtype).log()[:, None, None]  # log 0 = -inf: no padding, no extra key
        return self.combine(x, F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, dropout_p=dropout))


class SASRec(Backbone):
    name = "sasrec"
    Params = SASRecParams

    def __init__(self, n_items: int, params: SASRecParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        ffn_dim = params.ffn_dim or params.dim
        self.item_embedding = nn.Embedding(n_items + 1, params.dim, padding_idx=0)
        self.position_embedding = nn.Embedding(params.max_len, params.dim)
        self.embed_dropout = nn.Dropout(params.dropout)
        self.blocks = nn.ModuleList(
            _Block(params.dim, params.heads, params.dropout, ffn_dim, params.block == "original")
            for _ in range(params.blocks)
        )
        self.final_norm = nn.LayerNorm(params.dim)
        self.apply(init_weights)
        if params.init == "xavier":
            with torch.no_grad():
                for weight in self.parameters():
                    if weight.dim() >= 2:
                        nn.init.xavier_normal_(weight)
                self.item_embedding.weight[0].zero_()

    def encode(self, items: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Hidden states; with ``keep``, each block's keys and values are appended to it."""
        positions = torch.arange(items.shape[1], device=items.device)
        if self.params.positions == "recency":  # right padding: a row's last real item gets 0
            positions = ((items != 0).sum(1, keepdim=True) - 1 - positions).clamp(min=0)
        x = self.embed_dropout(self.embed_items(items) + self.position_embedding(positions))
        padding = None
        if self.params.pad_keys == "attended":
            padding = (self.max_len - (items != 0).sum(1)).clamp(min=0)
        for block in self.blocks:
            x = block(x, keep, padding)
        return self.final_norm(x)

    def item_weights(self) -> torch.Tensor:
        return self.item_table()

    def decoder(self, items: torch.Tensor, lengths: torch.Tensor) -> Decoder:
        # Absolute positions keep cached keys valid while the sequence fits the window; longer
        # generation slides the window and re-encodes, and so does every step with recency
        # positions, which move with each appended item.
        if items.shape[1] > self.max_len or self.params.positions == "recency" or self.params.pad_keys == "attended":
            return Decoder(self, items, lengths)
        return _KeyValueDecoder(self, items, lengths)


class _KeyValueDecoder(KeyValueDecoder):
    """Generation with cached attention keys and values: appending an item runs the blocks
    for that one position, attending to the cached earlier positions."""

    model: SASRec

    def append(self, rows: torch.Tensor, new_items: torch.Tensor) -> None:
        model, position = self.model, self.lengths[rows]
        x = (model.item_embedding(new_items) + model.position_embedding(position)).unsqueeze(1)
        width = self.keys[0].shape[2] if self.keys else 0
        visible = (torch.arange(width, device=position.device) <= position[:, None])[
            :, None, None, :
        ]  # (rows, 1, 1, width)
        for block, keys, values in zip(cast(list[_Block], model.blocks), self.keys, self.values):
            q, k, v = block.project(x)
            keys[rows, :, position], values[rows, :, position] = k[:, :, 0], v[:, :, 0]
            x = block.combine(x, F.scaled_dot_product_attention(q, keys[rows], values[rows], attn_mask=visible))
        self.hidden[rows] = model.final_norm(x[:, 0])
        self.lengths[rows] += 1


def init_weights(module: nn.Module) -> None:
    """normal(0, 0.02) weights, zero biases and padding row: the initialisation that learns."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.Embedding) and module.padding_idx is not None:
        with torch.no_grad():
            module.weight[module.padding_idx].zero_()
