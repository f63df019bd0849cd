"""Writers for the supported formats; every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..files import atomic_open, atomic_path
from .dataset import Dataset
from .readers import FORMATS, detect_format
from .sequences import Sequences


def write_dataset(dataset: Dataset, path: str | Path, fmt: str = "auto", *, renumber: bool = False) -> None:
    """Write a dataset in original ids (or 1-based indices with ``renumber``)."""
    seqs = dataset.sequences
    user_labels = np.arange(1, dataset.n_users + 1) if renumber else dataset.user_ids[seqs.users]
    item_labels = np.arange(1, dataset.n_items + 1) if renumber else dataset.item_ids
    write_sequences(seqs, path, fmt, item_labels=item_labels, user_labels=user_labels, timestamps=dataset.timestamps)


def write_sequences(
    seqs: Sequences,
    path: str | Path,
    fmt: str = "auto",
    *,
    item_labels: np.ndarray,
    user_labels: np.ndarray,
    timestamps: np.ndarray | None = None,
) -> None:
    """Write sequences, one label per sequence (``user_labels``) and item index -> label."""
    path = Path(path)
    fmt = detect_format(path, "the output format (--to; fmt= from Python)") if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    users = np.repeat(np.asarray(user_labels), seqs.lengths)
    items = np.asarray(item_labels)[seqs.items - 1]
    # Without real timestamps the position in the sequence keeps the order.
    times = seqs.positions() if timestamps is None else timestamps
    if fmt == "s3rec":
        _write_s3rec(path, seqs, np.asarray(user_labels), items)
        return
    if fmt == "atomic":
        frame = pd.DataFrame({"user_id:token": users, "item_id:token": items, "timestamp:float": times})
        with atomic_open(path) as handle:
            frame.to_csv(handle, sep="\t", index=False)
        return
    frame = pd.DataFrame({"user_id": users, "item_id": items, "timestamp": times})
    if fmt == "parquet":
        with atomic_path(path) as tmp:
            frame.to_parquet(tmp, index=False)
        return
    with atomic_open(path) as handle:
        frame.to_csv(handle, sep="," if fmt == "csv" else "\t", index=False)


def _write_s3rec(path: Path, seqs: Sequences, user_labels: np.ndarray, items: np.ndarray) -> None:
    for labels, what in ((user_labels, "user"), (items, "item")):
        if not np.issubdtype(np.asarray(labels).dtype, np.integer):
            raise ConfigError(
                f"the S3-Rec text format needs integer {what} ids and this data has string ids; "
                "convert with --renumber to write 1-based indices instead"
            )
    parts = np.split(items.astype(str), seqs.offsets[1:-1])
    with atomic_open(path) as handle:
        for user, row in zip(user_labels.tolist(), parts):
            handle.write(f"{user} {' '.join(row)}\n")


def pseudo_user_labels(dataset: Dataset, count: int, start: int, round_number: int) -> np.ndarray:
    """Ids of synthetic pseudo-users that no real user has and no other round repeats: after
    the largest integer user id, numbered on from the ``start`` synthetic sequences of earlier
    rounds; with string ids, ``synthetic-ROUND-I``."""
    if np.issubdtype(dataset.user_ids.dtype, np.integer):
        first = int(dataset.user_ids.max()) + 1 + start
        return np.arange(first, first + count)
    return np.array([f"synthetic-{round_number}-{i}" for i in range(count)])


RECBOLE_CONFIG = """benchmark_filename: [train, valid, test]
load_col: {{inter: [user_id, item_id_list, item_id]}}
alias_of_item_id: [item_id_list]
MAX_ITEM_LIST_LENGTH: {max_len}"""


def write_recbole_benchmark(
    directory: str | Path,
    name: str,
    train: Sequences,
    valid: tuple[Sequences, np.ndarray],
    test: tuple[Sequences, np.ndarray],
    *,
    item_labels: np.ndarray,
    user_labels: np.ndarray,
    max_len: int,
) -> list[Path]:
    """RecBole's benchmark files for a sequential model: ``NAME.train.inter`` holds every
    next-item target of the training sequences (real and synthetic) with the up to ``max_len``
    items before it, ``NAME.valid.inter`` and ``NAME.test.inter`` one row per evaluated user
    (its history up to the cut-off, then its target). ``user_labels`` label the training
    sequences; valid and test rows take the label of the training sequence of the same user
    row. RecBole then trains on real plus synthetic data and evaluates on this split only."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokens = np.asarray(item_labels).astype(str)
    train_rows = train.row_ids()
    positions = train.positions()
    target = np.flatnonzero(positions >= 1)  # every stored item after a sequence's first
    starts = target - np.minimum(positions[target], max_len)
    user_labels = np.asarray(user_labels)
    parts = {
        "train": (
            user_labels[train_rows[target]],
            _histories(tokens, train.items, starts, target),
            tokens[train.items[target] - 1],
        )
    }
    for part, (history, targets) in (("valid", valid), ("test", test)):
        ends = history.offsets[1:]
        begins = np.maximum(history.offsets[:-1], ends - max_len)
        parts[part] = (
            user_labels[: len(history)],
            _histories(tokens, history.items, begins, ends),
            tokens[targets - 1],
        )
    written = []
    for part, (users, lists, targets) in parts.items():
        path = directory / f"{name}.{part}.inter"
        frame = pd.DataFrame({"user_id:token": users, "item_id_list:token_seq": lists, "item_id:token": targets})
        with atomic_open(path) as handle:
            frame.to_csv(handle, sep="\t", index=False)
        written.append(path)
    return written


def _histories(tokens: np.ndarray, items: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> list[str]:
    """The space-joined item tokens of ``items[begin:end]`` for each row (an export, written once)."""
    flat = tokens[items - 1].tolist()
    return [" ".join(flat[b:e]) for b, e in zip(begins.tolist(), ends.tolist())]
