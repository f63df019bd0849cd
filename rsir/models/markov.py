"""First-order item transitions: the next item is scored by how often it followed the latest
item in the training data, with item popularity below every transition count (so it breaks
ties and ranks the items after an item never followed). Nothing is learned by gradient: as a
generator it is the control for a round's synthetic data, which then carries only what the
training data's item-to-item counts already hold.

The hidden state of a position is its item index (one float), and scores are rows of a
sparse transition table, gathered for a whole batch at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.sequences import Sequences
from .base import Backbone, check_ranges


@dataclass
class MarkovParams:
    max_len: int = 50

    def validate(self) -> None:
        check_ranges(self, at_least_one=("max_len",))


class Markov(Backbone):
    name = "markov"
    Params = MarkovParams
    trainable = False

    def __init__(self, n_items: int, params: MarkovParams) -> None:
        super().__init__(n_items, params)
        params.validate()
        # The transition table in CSR form (row = previous item), and popularity scaled into [0, 1).
        self.register_buffer("row_starts", torch.zeros(n_items + 2, dtype=torch.long))
        self.register_buffer("next_items", torch.zeros(0, dtype=torch.long))
        self.register_buffer("counts", torch.zeros(0))
        self.register_buffer("popularity", torch.zeros(n_items + 1))

    def prepare(self, train: Sequences) -> None:
        rows = train.row_ids()
        follows = np.flatnonzero(rows[1:] == rows[:-1])
        pairs = train.items[follows].astype(np.int64) * (self.n_items + 1) + train.items[follows + 1]
        pairs, counts = np.unique(pairs, return_counts=True)
        before = pairs // (self.n_items + 1)
        starts = np.searchsorted(before, np.arange(self.n_items + 2))
        popularity = np.bincount(train.items, minlength=self.n_items + 1).astype(np.float32)
        self.row_starts = torch.from_numpy(starts.astype(np.int64))
        self.next_items = torch.from_numpy(pairs % (self.n_items + 1))
        self.counts = torch.from_numpy(counts.astype(np.float32))
        self.popularity = torch.from_numpy(popularity / (popularity.max() + 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # The table's size depends on the data: take the saved one's before loading it.
        for name in ("next_items", "counts"):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        return items.unsqueeze(-1).to(self.popularity.dtype)

    def score_all(self, hidden: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        latest = hidden[..., 0].long().reshape(-1)
        wide = self.popularity.expand(len(latest), -1)
        scores = wide.clone() if out is None else out.view(len(latest), -1).copy_(wide)
        starts = self.row_starts[latest]
        lengths = self.row_starts[latest + 1] - starts
        row = torch.repeat_interleave(torch.arange(len(latest), device=latest.device), lengths)
        first = torch.cumsum(lengths, 0) - lengths  # where each row's entries begin in the gather
        flat = starts[row] + torch.arange(len(row), device=latest.device) - first[row]
        scores[row, self.next_items[flat]] += self.counts[flat]
        return scores.reshape(*hidden.shape[:-1], -1)

    def score_items(self, hidden: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        return self.score_all(hidden).gather(-1, items)

    def item_weights(self) -> torch.Tensor:
        raise NotImplementedError("markov scores come from its transition table, not item embeddings")
