"""Writers for the supported formats; every file is written atomically."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
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
    """Write sequences, one label per sequence (``user_labels``) and item index -> label, in
    blocks of about ``BLOCK`` items, so memory stays bounded whatever the data's size."""
    path = Path(path)
    fmt = detect_format(path, "the output format (--to; fmt= from Python)") if fmt == "auto" else fmt
    if fmt not in FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; expected one of {', '.join(FORMATS)}")
    user_labels, item_labels = np.asarray(user_labels), np.asarray(item_labels)
    if fmt == "s3rec":
        _write_s3rec(path, seqs, user_labels, item_labels)
        return
    columns = (
        ("user_id:token", "item_id:token", "timestamp:float")
        if fmt == "atomic"
        else ("user_id", "item_id", "timestamp")
    )

    def block(first: int, last: int) -> pd.DataFrame:
        part = seqs.select(np.arange(first, last))
        # Without real timestamps the position in the sequence keeps the order.
        times = part.positions() if timestamps is None else timestamps[seqs.offsets[first] : seqs.offsets[last]]
        values = (np.repeat(user_labels[first:last], part.lengths), item_labels[part.items - 1], times)
        return pd.DataFrame(dict(zip(columns, values)))

    blocks = (block(first, last) for first, last in _row_blocks(seqs.offsets))
    if fmt == "parquet":
        with atomic_path(path) as tmp:
            pd.concat(blocks, ignore_index=True).to_parquet(tmp, index=False)
        return
    _write_csv_blocks(path, blocks, "," if fmt == "csv" else "\t")


# Items (or rows) per block a writer holds at once: an export of 10^8 items stays within a
# few hundred MB instead of tens of GB of strings.
BLOCK = 1 << 20


def _row_blocks(offsets: np.ndarray) -> list[tuple[int, int]]:
    """Consecutive row ranges of about ``BLOCK`` items each (at least one range, maybe empty)."""
    rows = len(offsets) - 1
    cuts = np.searchsorted(offsets, np.arange(BLOCK, offsets[-1], BLOCK), side="right") - 1
    bounds = np.unique(np.concatenate([[0], cuts, [rows]]))
    return list(zip(bounds[:-1].tolist(), bounds[1:].tolist())) or [(0, rows)]


def _write_csv_blocks(path: Path, blocks: Iterable[pd.DataFrame], sep: str) -> None:
    """One delimited file from frames of the same columns, the header once."""
    with atomic_open(path) as handle:
        for i, frame in enumerate(blocks):
            frame.to_csv(handle, sep=sep, index=False, header=i == 0)


def _tokens(item_labels: np.ndarray) -> np.ndarray:
    """Each item label's text once, as Python strings that indexing shares rather than copies."""
    return np.asarray(item_labels).astype(str).astype(object)


def _write_s3rec(path: Path, seqs: Sequences, user_labels: np.ndarray, item_labels: np.ndarray) -> None:
    for labels, what in ((user_labels, "user"), (item_labels, "item")):
        if not np.issubdtype(np.asarray(labels).dtype, np.integer):
            raise ConfigError(
                f"the S3-Rec text format needs integer {what} ids and this data has string ids; "
                "convert with --renumber to write 1-based indices instead"
            )
    tokens = _tokens(item_labels)
    with atomic_open(path) as handle:
        for first, last in _row_blocks(seqs.offsets):
            begin = seqs.offsets[first]
            flat = tokens[seqs.items[begin : seqs.offsets[last]] - 1].tolist()
            bounds = (seqs.offsets[first : last + 1] - begin).tolist()
            handle.writelines(
                f"{user} {' '.join(flat[b:e])}\n"
                for user, b, e in zip(user_labels[first:last].tolist(), bounds[:-1], bounds[1:])
            )


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
    tokens = _tokens(item_labels)
    user_labels = np.asarray(user_labels)

    def frame(users: np.ndarray, items: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> pd.DataFrame:
        """Rows of a user, the items ``items[begin:end]`` before the target ``items[end]``."""
        return pd.DataFrame(
            {
                "user_id:token": users,
                "item_id_list:token_seq": _histories(tokens, items, begins, ends),
                "item_id:token": tokens[items[ends] - 1],
            }
        )

    def train_blocks() -> Iterator[pd.DataFrame]:  # by blocks of sequences: no per-item array of the whole log
        for first, last in _row_blocks(train.offsets):
            part = train.select(np.arange(first, last))
            positions = part.positions()
            target = np.flatnonzero(positions >= 1)  # every stored item after a sequence's first
            starts = target - np.minimum(positions[target], max_len)
            yield frame(user_labels[first + part.row_ids()[target]], part.items, starts, target)

    def evaluated_blocks(history: Sequences, targets: np.ndarray) -> Iterator[pd.DataFrame]:
        # Each user's history up to the cut-off, then its target, as one sequence of items.
        with_target = Sequences.from_flat(
            np.insert(history.items, history.offsets[1:], targets), history.lengths + 1, history.users
        )
        for first in range(0, max(len(history), 1), BLOCK):
            rows = np.arange(first, min(first + BLOCK, len(history)))
            ends = with_target.offsets[rows + 1] - 1
            begins = np.maximum(with_target.offsets[rows], ends - max_len)
            yield frame(user_labels[rows], with_target.items, begins, ends)

    written = []
    for part, blocks in (
        ("train", train_blocks()),
        ("valid", evaluated_blocks(*valid)),
        ("test", evaluated_blocks(*test)),
    ):
        path = directory / f"{name}.{part}.inter"
        _write_csv_blocks(path, blocks, "\t")
        written.append(path)
    return written


def _histories(tokens: np.ndarray, items: np.ndarray, begins: np.ndarray, ends: np.ndarray) -> list[str]:
    """The space-joined item tokens of ``items[begin:end]`` for each row (an export, written once)."""
    if len(begins) == 0:
        return []
    low = int(begins.min())
    flat = tokens[items[low : int(ends.max())] - 1].tolist()
    return [" ".join(flat[b:e]) for b, e in zip((begins - low).tolist(), (ends - low).tolist())]
