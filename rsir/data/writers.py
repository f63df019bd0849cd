"""Writers for the supported formats; every file is written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..io import atomic_open, atomic_path
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
    fmt = detect_format(path) if fmt == "auto" else fmt
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
