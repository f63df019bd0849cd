"""Readers for the supported input formats. Every malformed input raises a DataFormatError
naming the file, the line (where there is one) and the reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, DataFormatError
from ..files import missing_file_text
from .dataset import Dataset, from_interactions

FORMATS = ("s3rec", "atomic", "csv", "tsv", "parquet")
_SUFFIXES = {".txt": "s3rec", ".inter": "atomic", ".csv": "csv", ".tsv": "tsv", ".parquet": "parquet"}


_MAX_ID = np.iinfo(np.int64).max


def detect_format(path: str | Path, option: str = "the data option format") -> str:
    """The format ``path``'s suffix names; ``option`` is what the error asks to set instead."""
    suffix = Path(path).suffix.lower()
    if suffix not in _SUFFIXES:
        raise DataFormatError(
            f"{path}: cannot tell the format from the suffix {suffix or '(none)'!r}; "
            f"set {option} (one of {', '.join(FORMATS)})"
        )
    return _SUFFIXES[suffix]


def read_dataset(
    path: str | Path,
    fmt: str = "auto",
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    kcore: int = 0,
) -> Dataset:
    """Read interactions in any supported format into a :class:`Dataset`."""
    path = Path(path)
    if kcore < 0:
        raise ConfigError(f"kcore must be >= 0, got {kcore}")
    if not path.is_file():
        raise DataFormatError(missing_file_text(path, "data file"))
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt == "s3rec":
        users, items, times = _read_s3rec(path)
    elif fmt == "atomic":
        users, items, times = _read_atomic(path, user_col, item_col, time_col)
    elif fmt in ("csv", "tsv", "parquet"):
        users, items, times = _read_table(path, fmt, user_col, item_col, time_col)
    else:
        raise DataFormatError(f"unknown format {fmt!r}; expected one of auto, {', '.join(FORMATS)}")
    return from_interactions(users, items, times, name=path.stem, kcore=kcore)


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataFormatError(f"{path}: file is empty")
    if b"\x00" in raw:
        raise DataFormatError(f"{path}: binary file (contains NUL bytes), expected text")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataFormatError(f"{path}:{line}: not valid UTF-8 text") from None


def _read_s3rec(path: Path) -> tuple[np.ndarray, np.ndarray, None]:
    """``user item item ...`` per line, oldest first; ids must be integers."""
    users: list[int] = []
    lengths: list[int] = []
    items: list[int] = []
    seen_users: set[int] = set()
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        # Plain ASCII digits only: int() would also take "1_000", "+5" and non-ASCII digits.
        bad = next((f for f in fields if not (f.isascii() and f.isdigit())), None)
        if bad is not None:
            if bad.startswith("-") and bad[1:].isascii() and bad[1:].isdigit():
                raise DataFormatError(f"{path}:{number}: id {bad[:40]!r} is negative; ids must be integers >= 0")
            raise DataFormatError(f"{path}:{number}: id {bad[:40]!r} is not an integer")
        ids = [int(field) for field in fields]
        if max(ids) > _MAX_ID:
            big = next(f for f, i in zip(fields, ids) if i > _MAX_ID)
            raise DataFormatError(f"{path}:{number}: id {big[:40]!r} is out of range (at most {_MAX_ID})")
        if len(ids) < 2:
            raise DataFormatError(f"{path}:{number}: user {ids[0]} has an empty sequence")
        if ids[0] in seen_users:
            raise DataFormatError(f"{path}:{number}: user {ids[0]} appears on more than one line")
        seen_users.add(ids[0])
        users.append(ids[0])
        lengths.append(len(ids) - 1)
        items.extend(ids[1:])
    if not users:
        raise DataFormatError(f"{path}: file has no sequences")
    # Row order within a user is the chronological order, so no timestamps are needed.
    return np.repeat(np.asarray(users, dtype=np.int64), lengths), np.asarray(items, dtype=np.int64), None


def _read_atomic(
    path: Path, user_col: str, item_col: str, time_col: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """RecBole atomic file: tab-separated, header fields ``name:type``."""
    text = _read_text(path)
    header = text.split("\n", 1)[0].rstrip("\r").split("\t")
    names = []
    for field in header:
        name, sep, kind = field.partition(":")
        if not sep or not name or kind not in ("token", "float", "token_seq", "float_seq"):
            raise DataFormatError(f"{path}:1: header field {field!r} is not of the form name:type (token, float, ...)")
        if name in names:
            raise DataFormatError(f"{path}:1: header names the column {name!r} twice")
        names.append(name)
    frame = _parse_delimited(path, "\t", header=0)
    if len(frame.columns) != len(names):  # quotes in the header can join fields
        raise DataFormatError(
            f"{path}:1: header has {len(names)} tab-separated fields but reads as {len(frame.columns)}"
        )
    frame.columns = names
    return _columns(frame, path, user_col, item_col, time_col, header_line=True)


def _read_table(
    path: Path, fmt: str, user_col: str, item_col: str, time_col: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if fmt == "parquet":
        wanted = [user_col, item_col] + ([time_col] if time_col else [])
        try:
            try:  # the needed columns only: a wide file's other columns never reach memory
                frame = pd.read_parquet(path, columns=wanted)
            except (KeyError, ValueError):  # a column is missing: read them all, to name the ones there are
                frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises many types for corrupt files
            raise DataFormatError(f"{path}: not a readable Parquet file ({type(exc).__name__})") from None
        if frame.empty:
            raise DataFormatError(f"{path}: file has no rows")
        return _columns(frame, path, user_col, item_col, time_col, header_line=False)
    _read_text(path)  # empty / binary / encoding checks with clear messages
    frame = _parse_delimited(path, "," if fmt == "csv" else "\t", header=0)
    return _columns(frame, path, user_col, item_col, time_col, header_line=True)


def _parse_delimited(path: Path, sep: str, header: int) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, sep=sep, header=header, dtype=str, keep_default_na=False, engine="c")
    except pd.errors.ParserError as exc:
        raise DataFormatError(f"{path}: {_parser_reason(exc)}") from None
    except pd.errors.EmptyDataError:
        raise DataFormatError(f"{path}: file is empty") from None
    if frame.empty:
        raise DataFormatError(f"{path}: file has a header but no rows")
    if not isinstance(frame.index, pd.RangeIndex):
        # pandas turns the leading fields into an index when every row is longer than the header.
        raise DataFormatError(f"{path}:2: rows have more fields than the header's {len(frame.columns)}")
    return frame


def _parser_reason(exc: Exception) -> str:
    # pandas: "Error tokenizing data. C error: Expected 3 fields in line 5, saw 4"
    message = str(exc).strip().splitlines()[-1]
    return message.split("C error: ")[-1]


def _columns(
    frame: pd.DataFrame, path: Path, user_col: str, item_col: str, time_col: str | None, header_line: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    wanted = [user_col, item_col] + ([time_col] if time_col else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise DataFormatError(
            f"{path}: missing column(s) {', '.join(missing)} (found: {have}); "
            "set the data options user_col, item_col and time_col"
        )
    first_data_line = 2 if header_line else 1
    users, items = (_ids(frame[col], col, path, first_data_line) for col in (user_col, item_col))
    times = None
    if time_col:
        times = pd.to_numeric(frame[time_col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(times))
        if len(bad):
            value = frame[time_col].iloc[bad[0]]
            raise DataFormatError(
                f"{path}:{bad[0] + first_data_line}: timestamp {str(value)[:40]!r} in column {time_col!r} is not a number"
            )
    return users, items, times


def _ids(column: pd.Series, name: str, path: Path, first_data_line: int) -> np.ndarray:
    """A column of ids: integers as they are (a Parquet integer column is taken without
    going through text), else the stripped text, as integers where it spells them."""
    if pd.api.types.is_integer_dtype(column.dtype) and not column.isna().any():
        return column.to_numpy(dtype=np.int64)
    values = column.astype(str)
    empty = np.flatnonzero((values.str.strip() == "").to_numpy() | column.isna().to_numpy())
    if len(empty):
        raise DataFormatError(
            f"{path}:{empty[0] + first_data_line}: missing value in column {name!r} (fewer fields than the header?)"
        )
    return _as_int_if_possible(values.str.strip().to_numpy())


def _as_int_if_possible(values: np.ndarray) -> np.ndarray:
    """Integer ids stay integers (so output matches the input's spelling); others stay strings."""
    try:
        as_int = values.astype(np.int64)
    except (ValueError, OverflowError):
        return values.astype(str)
    # "007" would print back as 7: keep the original spelling then.
    if np.array_equal(as_int.astype(str), values.astype(str)):
        return as_int
    return values.astype(str)
