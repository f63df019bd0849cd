"""Leave-one-out split: last item = test target, second to last = validation target."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..errors import DataFormatError
from .dataset import Dataset
from .sequences import Sequences


@dataclass(frozen=True)
class EvalSet:
    """Per user: the history the model sees (and whose items are excluded) and the target."""

    history: Sequences
    targets: np.ndarray

    def known_new_targets(self) -> np.ndarray:
        """Which users' targets occur in some history and not in their own: the users a protocol
        that drops cold and already-seen test items (RecTools' benchmark, for one) would score."""
        known = np.bincount(self.history.items, minlength=int(self.targets.max()) + 1)[self.targets] > 0
        rows = self.history.row_ids()
        repeated = self.history.items == self.targets[rows]
        return known & (np.bincount(rows[repeated], minlength=len(self.targets)) == 0)


@dataclass(frozen=True)
class LeaveOneOut:
    train: Sequences  # items[:-2] of every kept user; the loop appends synthetic sequences here
    valid: EvalSet  # history items[:-2], target items[-2]
    test: EvalSet  # history items[:-1], target items[-1]
    dropped_users: int  # users with fewer than 3 interactions cannot be split
    users: np.ndarray  # the dataset's user index of each evaluated row (kept users, in order)

    def with_train(self, train: Sequences) -> LeaveOneOut:
        return replace(self, train=train)


def leave_one_out(dataset: Dataset) -> LeaveOneOut:
    seqs = dataset.sequences
    keep = np.flatnonzero(seqs.lengths >= 3)
    if len(keep) == 0:
        raise DataFormatError(f"{dataset.name}: no user has the 3 interactions a leave-one-out split needs")
    seqs = seqs.select(keep) if len(keep) < len(seqs) else seqs
    train = seqs.trim(tail=2)
    before_test = seqs.trim(tail=1)
    return LeaveOneOut(
        train=train,
        valid=EvalSet(train, seqs.last(2).astype(np.int64)),
        test=EvalSet(before_test, seqs.last(1).astype(np.int64)),
        dropped_users=len(dataset.sequences) - len(keep),
        users=keep.astype(np.int64),
    )
