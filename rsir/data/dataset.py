"""A dataset: every user's chronological sequence plus the mapping back to original ids."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataFormatError
from .sequences import Sequences


@dataclass(frozen=True)
class Dataset:
    sequences: Sequences  # one real sequence per user, item indices 1..n_items, users 0..n_users-1
    item_ids: np.ndarray  # original id of item index i is item_ids[i - 1]
    user_ids: np.ndarray  # original id of user index u is user_ids[u]
    name: str = "dataset"
    timestamps: np.ndarray | None = None  # aligned with sequences.items when the source had times

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    def fingerprint(self) -> str:
        """Content hash used to refuse a checkpoint trained on other data."""
        digest = hashlib.sha256()
        digest.update(np.ascontiguousarray(self.sequences.items, dtype=np.int32).tobytes())
        digest.update(np.ascontiguousarray(self.sequences.offsets, dtype=np.int64).tobytes())
        return digest.hexdigest()[:16]

    def stats(self) -> dict[str, float | int | str]:
        lengths = self.sequences.lengths
        n = self.sequences.n_interactions
        item_counts = np.bincount(self.sequences.items, minlength=self.n_items + 1)[1:]
        return {
            "name": self.name,
            "users": self.n_users,
            "items": self.n_items,
            "interactions": n,
            "avg_len": round(float(lengths.mean()), 4) if len(lengths) else 0.0,
            "median_len": float(np.median(lengths)) if len(lengths) else 0.0,
            "min_len": int(lengths.min()) if len(lengths) else 0,
            "max_len": int(lengths.max()) if len(lengths) else 0,
            "density": n / max(1, self.n_users * self.n_items),
            "min_item_count": int(item_counts.min()) if len(item_counts) else 0,
            "max_item_count": int(item_counts.max()) if len(item_counts) else 0,
        }

    def user_index(self, original_ids: list[str]) -> np.ndarray:
        """Map original user ids (as strings) to user indices; unknown ids are an error."""
        lookup = pd.Index(self.user_ids.astype(str))
        found = lookup.get_indexer(pd.Index([str(u) for u in original_ids]))
        if (found < 0).any():
            missing = [original_ids[i] for i in np.flatnonzero(found < 0)[:5]]
            raise DataFormatError(f"unknown user id(s) {', '.join(map(str, missing))} in {self.name}")
        return found.astype(np.int64)


def from_interactions(
    users: np.ndarray,
    items: np.ndarray,
    times: np.ndarray | None,
    *,
    name: str,
    kcore: int = 0,
) -> Dataset:
    """Group flat (user, item, time) rows into chronological sequences.

    Rows are ordered per user by time; equal times keep their original row order, so the
    result is deterministic. Users and items are numbered by first appearance, and the
    original ids are kept for output.
    """
    users = np.asarray(users)
    items = np.asarray(items)
    if len(users) == 0:
        raise DataFormatError(f"{name}: no interactions")
    if kcore > 1:
        keep = kcore_mask(users, items, kcore)
        if not keep.any():
            raise DataFormatError(f"{name}: no interactions survive {kcore}-core filtering")
        users, items = users[keep], items[keep]
        times = None if times is None else np.asarray(times)[keep]
    user_codes, user_ids = pd.factorize(users, sort=False)
    # lexsort is stable: rows of equal user and time keep their file order.
    order = np.lexsort([np.asarray(times), user_codes] if times is not None else [user_codes])
    sorted_items = items[order]
    # Items are numbered by first appearance in chronological reading order.
    item_codes, item_ids = pd.factorize(sorted_items, sort=False)
    lengths = np.bincount(user_codes, minlength=len(user_ids))
    sequences = Sequences.from_flat((item_codes + 1).astype(np.int32), lengths, np.arange(len(user_ids)))
    return Dataset(
        sequences=sequences,
        item_ids=np.asarray(item_ids),
        user_ids=np.asarray(user_ids),
        name=name,
        timestamps=None if times is None else np.asarray(times, dtype=np.float64)[order],
    )


def from_dataframe(
    frame: pd.DataFrame,
    *,
    user: str = "user_id",
    item: str = "item_id",
    time: str | None = None,
    name: str = "dataframe",
    kcore: int = 0,
) -> Dataset:
    """A dataset from a DataFrame of interactions, one row each; ``time`` orders each user's
    rows (without it, the row order does)."""
    missing = [c for c in (user, item, time) if c is not None and c not in frame.columns]
    if missing:
        raise DataFormatError(f"{name}: no column {missing[0]!r} (columns: {', '.join(map(str, frame.columns))})")
    times = None if time is None else frame[time].to_numpy()
    return from_interactions(frame[user].to_numpy(), frame[item].to_numpy(), times, name=name, kcore=kcore)


def kcore_mask(users: np.ndarray, items: np.ndarray, k: int) -> np.ndarray:
    """Rows kept by iterative k-core filtering (every user and item keeps >= k rows)."""
    user_codes = pd.factorize(users)[0]
    item_codes = pd.factorize(items)[0]
    keep = np.ones(len(users), dtype=bool)
    while True:
        user_counts = np.bincount(user_codes[keep], minlength=user_codes.max() + 1)
        item_counts = np.bincount(item_codes[keep], minlength=item_codes.max() + 1)
        new_keep = keep & (user_counts[user_codes] >= k) & (item_counts[item_codes] >= k)
        if new_keep.sum() == keep.sum():
            return new_keep
        keep = new_keep
