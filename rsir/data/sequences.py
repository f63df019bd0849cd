"""Compact storage of many interaction sequences: one flat item array plus offsets.

Items are stored as contiguous indices ``1..n_items`` (0 is padding). ``origin`` records
where each sequence came from: 0 for real data, ``k`` for synthetic data of round ``k``,
so the self-improvement loop can append to a dataset and still tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REAL = 0


@dataclass(frozen=True)
class Sequences:
    items: np.ndarray  # int32, all sequences concatenated
    offsets: np.ndarray  # int64, len = n + 1; sequence i is items[offsets[i]:offsets[i+1]]
    users: np.ndarray  # int64 user index of each sequence (-1 for synthetic pseudo-users)
    origin: np.ndarray  # int16, REAL or the round that generated the sequence

    def __post_init__(self) -> None:
        n = len(self.offsets) - 1
        if len(self.users) != n or len(self.origin) != n:
            raise ValueError("users and origin must have one entry per sequence")

    @classmethod
    def from_lists(
        cls, seqs: list[list[int]] | list[np.ndarray], users: np.ndarray | None = None, origin: int = REAL
    ) -> Sequences:
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        items = np.concatenate([np.asarray(s, dtype=np.int32) for s in seqs]) if seqs else np.zeros(0, np.int32)
        if users is None:
            users = np.full(len(seqs), -1, dtype=np.int64)
        return cls(items, offsets, np.asarray(users, dtype=np.int64), np.full(len(seqs), origin, dtype=np.int16))

    @classmethod
    def from_flat(cls, items: np.ndarray, lengths: np.ndarray, users: np.ndarray, origin: int = REAL) -> Sequences:
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(
            np.asarray(items, dtype=np.int32),
            offsets,
            np.asarray(users, dtype=np.int64),
            np.full(len(lengths), origin, dtype=np.int16),
        )

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_interactions(self) -> int:
        return int(self.offsets[-1])

    def __getitem__(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i] : self.offsets[i + 1]]

    def to_lists(self) -> list[list[int]]:
        if len(self) == 0:
            return []
        return [a.tolist() for a in np.split(self.items, self.offsets[1:-1])]

    def row_ids(self) -> np.ndarray:
        """Sequence index of every stored item (same length as ``items``)."""
        return np.repeat(np.arange(len(self), dtype=np.int64), self.lengths)

    def positions(self) -> np.ndarray:
        """Position of every stored item inside its own sequence."""
        return np.arange(self.n_interactions, dtype=np.int64) - np.repeat(self.offsets[:-1], self.lengths)

    def select(self, rows: np.ndarray) -> Sequences:
        rows = np.asarray(rows, dtype=np.int64)
        return self.spans(rows, self.offsets[rows], self.offsets[rows + 1])

    def trim(self, head: int = 0, tail: int = 0) -> Sequences:
        """Drop ``head`` items from the start and ``tail`` items from the end of every sequence."""
        if (self.lengths - head - tail < 0).any():
            raise ValueError("trim longer than a sequence")
        return self.spans(np.arange(len(self)), self.offsets[:-1] + head, self.offsets[1:] - tail)

    def spans(self, rows: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> Sequences:
        """New sequences of the stored items ``[starts[i], stops[i])``, each keeping the user
        and origin of sequence ``rows[i]`` (spans may overlap)."""
        lengths = stops - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Output position p of span i reads stored item starts[i] + (p - offsets[i]): two arrays
        # the size of the output, whatever the number of spans.
        take = np.arange(offsets[-1], dtype=np.int64)
        take += np.repeat(starts - offsets[:-1], lengths)
        return Sequences(self.items[take], offsets, self.users[rows], self.origin[rows])

    def last(self, k: int = 1) -> np.ndarray:
        """The item ``k`` places from the end of every sequence (k=1: the last item)."""
        return self.items[self.offsets[1:] - k]

    def concat(self, other: Sequences) -> Sequences:
        return Sequences(
            np.concatenate([self.items, other.items]),
            np.concatenate([self.offsets, other.offsets[1:] + self.offsets[-1]]),
            np.concatenate([self.users, other.users]),
            np.concatenate([self.origin, other.origin]),
        )

    def padded(self, rows: np.ndarray, max_len: int) -> np.ndarray:
        """Right-padded matrix of the last ``max_len`` items of the chosen sequences.

        The width is the longest chosen sequence (capped at ``max_len``), so a batch of
        similar lengths carries little padding.
        """
        rows = np.asarray(rows, dtype=np.int64)
        ends = self.offsets[rows + 1]
        lengths = np.minimum(ends - self.offsets[rows], max_len)
        width = int(lengths.max()) if len(rows) else 0
        cols = np.arange(width)
        index = (ends - lengths)[:, None] + cols[None, :]
        valid = cols[None, :] < lengths[:, None]
        return np.where(valid, self.items[np.where(valid, index, 0)], 0)
