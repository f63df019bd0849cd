"""The backbone interface shared by training, evaluation, recommendation and generation.

A backbone turns a right-padded batch of item sequences (0 = padding) into one hidden
state per position, causally (position t sees items 0..t only), and scores hidden states
against item embeddings. Everything else in rsir talks to models through these methods.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import nn

from ..data.sequences import Sequences
from ..errors import ConfigError


def check_ranges(
    params: Any,
    *,
    at_least_one: tuple[str, ...] = (),
    at_least_zero: tuple[str, ...] = (),
    dropouts: tuple[str, ...] = (),
) -> None:
    """Range checks shared by the backbones' hyperparameter classes."""
    for name in at_least_one:
        if getattr(params, name) < 1:
            raise ConfigError(f"model option {name} must be >= 1, got {getattr(params, name)}")
    for name in at_least_zero:
        if getattr(params, name) < 0:
            raise ConfigError(f"model option {name} must be >= 0, got {getattr(params, name)}")
    for name in dropouts:
        if not 0.0 <= getattr(params, name) < 1.0:
            raise ConfigError(f"model option {name} must be in [0, 1), got {getattr(params, name)}")


@dataclass
class TransformerParams:
    """Hyperparameters of the attention backbones (SASRec, HSTU, CL4SRec)."""

    dim: int = 64  # embedding and hidden width
    blocks: int = 2  # attention blocks
    heads: int = 2  # attention heads per block
    dropout: float = 0.5  # dropout on the embeddings, attention weights and block outputs
    max_len: int = 50  # the most recent items a sequence is cut to
    # Dropout on the whole item-embedding table, one mask per training step shared by the
    # input lookup and the output scores (RecTools' SASRec); 0 = off.
    item_dropout: float = 0.0

    def validate(self) -> None:
        check_ranges(
            self,
            at_least_one=("dim", "heads", "max_len"),
            at_least_zero=("blocks",),
            dropouts=("dropout", "item_dropout"),
        )
        if self.dim % self.heads:
            raise ConfigError(f"model option dim ({self.dim}) must be divisible by heads ({self.heads})")


class Backbone(nn.Module):
    name: ClassVar[str]
    Params: ClassVar[type]  # a dataclass of the backbone's hyperparameters
    trainable: ClassVar[bool] = True

    # The item table of the current training step with item-table dropout applied (see
    # ``training_step``); None outside a step, where the table is used as it is.
    _dropped_table: torch.Tensor | None = None
    item_embedding: nn.Embedding  # every backbone with an item table has it under this name

    def __init__(self, n_items: int, params: Any) -> None:
        super().__init__()
        self.n_items = n_items
        self.params = params

    @contextmanager
    def training_step(self) -> Iterator[None]:
        """One training step's forward pass: with ``item_dropout``, one dropout mask over the
        whole item table, which the input lookup (:meth:`embed_items`) and the output scores
        (:meth:`item_table`) share until the step ends."""
        rate = getattr(self.params, "item_dropout", 0.0)
        if self.training and rate > 0:
            self._dropped_table = F.dropout(self.item_embedding.weight, rate)
        try:
            yield
        finally:
            self._dropped_table = None

    def item_table(self) -> torch.Tensor:
        """The whole item-embedding table of this pass (with its extra tokens, if any)."""
        return self.item_embedding.weight if self._dropped_table is None else self._dropped_table

    def embed_items(self, items: torch.Tensor) -> torch.Tensor:
        """Input embeddings of item indices, from :meth:`item_table`."""
        if self._dropped_table is None:
            return self.item_embedding(items)
        return F.embedding(items, self._dropped_table, padding_idx=0)

    @property
    def max_len(self) -> int:
        return self.params.max_len

    @property
    def device(self) -> torch.device:
        return next(itertools.chain(self.parameters(), self.buffers())).device

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """(batch, length) item indices -> (batch, length, dim) hidden states."""
        raise NotImplementedError

    def item_weights(self) -> torch.Tensor:
        """(n_items + 1, dim) output embeddings; row 0 is padding."""
        raise NotImplementedError

    def score_all(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """(..., dim) -> (..., n_items + 1) scores against the whole catalogue, written into
        ``out`` when given: evaluation reuses one buffer, since at 10^5 items a fresh score
        matrix per batch costs more in page faults than the product itself."""
        return torch.matmul(hidden, self.item_weights().T, out=out)

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """(..., dim) against (..., k) item indices -> (..., k) scores."""
        # F.embedding rather than indexing: its gradient is summed in a fixed order (reproducible).
        return (hidden.unsqueeze(-2) * F.embedding(items, self.item_weights())).sum(-1)

    def last_hidden(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden state at the last non-padding position of each right-padded row."""
        hidden = self.encode(items)
        last = (items != 0).sum(dim=1).clamp(min=1) - 1
        return hidden[torch.arange(len(items), device=items.device), last]

    def describe(self) -> dict[str, Any]:
        return {"backbone": self.name, **dataclasses.asdict(self.params)}

    def auxiliary_loss(self, inputs: torch.Tensor) -> torch.Tensor | None:
        """An extra training loss on the input batch (e.g. a contrastive one); none by default."""
        return None

    def prepare(self, train: Sequences) -> None:
        """Hook for backbones that read statistics of the training data before training."""

    def decoder(self, items: torch.Tensor, lengths: torch.Tensor) -> Decoder:
        """A :class:`Decoder` for generation from these right-padded prefixes (eval mode)."""
        return Decoder(self, items, lengths)


class Decoder:
    """Last hidden states of a batch of sequences that grow by one item per step.

    ``items`` is a right-padded (batch, width) buffer whose rows start with ``lengths`` real
    items; ``width`` bounds the final lengths. This base version re-encodes each extended
    row at every step; backbones that can reuse earlier steps' work (cached attention keys
    and values, a recurrent state) return a subclass from :meth:`Backbone.decoder`.
    """

    def __init__(self, model: Backbone, items: torch.Tensor, lengths: torch.Tensor) -> None:
        self.model = model
        self.items = items.clone()
        self.lengths = lengths.clone()
        self.hidden = self._encode(torch.arange(len(items), device=items.device))

    def append(self, rows: torch.Tensor, new_items: torch.Tensor) -> None:
        """Append ``new_items`` to the sequences ``rows`` and update their hidden states."""
        self.items[rows, self.lengths[rows]] = new_items
        self.lengths[rows] += 1
        self.hidden[rows] = self._encode(rows)

    def _encode(self, rows: torch.Tensor) -> torch.Tensor:
        width = int(self.lengths[rows].max())
        context = self.items[rows, :width]
        if width > self.model.max_len:  # beyond the model's window: its last max_len columns
            context = context[:, -self.model.max_len :]
        return self.model.last_hidden(context)


class KeyValueDecoder(Decoder):
    """Base of the attention backbones' decoders: encodes the prefixes once, keeping every
    layer's keys and values (``encode(items, keep)`` appends them) in buffers as wide as
    ``items``; a subclass's ``append`` runs its layers for the new position only."""

    def __init__(self, model: Backbone, items: torch.Tensor, lengths: torch.Tensor) -> None:
        self.model, self.lengths = model, lengths.clone()
        batch, width = items.shape
        prefix, keep = int(lengths.max()), cast(list[tuple[torch.Tensor, torch.Tensor]], [])
        # The attention backbones' encode takes ``keep`` (see their decoders).
        encoded = model.encode(items[:, :prefix], keep)  # type: ignore[call-arg]
        self.hidden = encoded[torch.arange(batch, device=items.device), lengths - 1]
        self.keys, self.values = [], []
        for k, v in keep:
            self.keys.append(k.new_zeros(batch, k.shape[1], width, k.shape[3]))
            self.values.append(v.new_zeros(batch, v.shape[1], width, v.shape[3]))
            self.keys[-1][:, :, :prefix], self.values[-1][:, :, :prefix] = k, v
