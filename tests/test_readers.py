from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rsir.data import read_dataset, write_dataset
from rsir.data.dataset import from_interactions
from rsir.errors import DataFormatError

from .conftest import SHARED_DATA


def write(tmp_path, name: str, text: str | bytes):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_s3rec_reader_keeps_order_and_ids(tmp_path):
    path = write(tmp_path, "d.txt", "1 10 11 12\n2 11 13 10 14\n")
    data = read_dataset(path)
    assert data.n_users == 2 and data.n_items == 5
    assert data.item_ids.tolist() == [10, 11, 12, 13, 14]  # numbered by first appearance
    assert data.item_ids[data.sequences[1] - 1].tolist() == [11, 13, 10, 14]
    assert data.user_ids.tolist() == [1, 2]


def test_atomic_reader_sorts_by_time_with_row_order_tie_break(tmp_path):
    text = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    text += "u1\ta\t5\t30\nu1\tb\t4\t10\nu1\tc\t3\t10\nu2\ta\t1\t5\n"
    data = read_dataset(write(tmp_path, "x.inter", text))
    first = data.item_ids[data.sequences[0] - 1].tolist()
    assert first == ["b", "c", "a"]  # b and c tie at 10: original row order kept
    assert data.timestamps is not None and data.timestamps[:3].tolist() == [10, 10, 30]


@pytest.mark.parametrize("fmt, sep", [("csv", ","), ("tsv", "\t")])
def test_delimited_readers_with_custom_columns(tmp_path, fmt, sep):
    text = (
        sep.join(["who", "what", "when"])
        + "\n"
        + "\n".join(sep.join(row) for row in [["7", "x", "3"], ["7", "y", "1"], ["8", "x", "2"]])
    )
    data = read_dataset(write(tmp_path, f"log.{fmt}", text), user_col="who", item_col="what", time_col="when")
    assert data.item_ids[data.sequences[0] - 1].tolist() == ["y", "x"]


def test_parquet_roundtrip_and_kcore(tmp_path):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {"user_id": rng.integers(0, 40, 600), "item_id": rng.integers(0, 60, 600), "timestamp": np.arange(600)}
    )
    frame.to_parquet(tmp_path / "log.parquet")
    full = read_dataset(tmp_path / "log.parquet")
    core = read_dataset(tmp_path / "log.parquet", kcore=6)
    assert core.sequences.n_interactions < full.sequences.n_interactions
    assert core.sequences.lengths.min() >= 6
    assert np.bincount(core.sequences.items)[1:].min() >= 6


def test_parquet_reads_integer_ids_directly_and_only_the_needed_columns(tmp_path):
    """Integer id columns come back as the same integers (no detour through text), string
    ids as strings, and a wide file's other columns are not needed; a missing one is named."""
    frame = pd.DataFrame(
        {
            "user_id": [7, 7, 7, 3, 3, 3],
            "item_id": ["a", "b", "c", "c", "a", "b"],
            "timestamp": [3, 1, 2, 1, 2, 3],
            "extra": [b"x" * 1000] * 6,
        }
    )
    frame.to_parquet(tmp_path / "log.parquet")
    data = read_dataset(tmp_path / "log.parquet")
    assert data.user_ids.dtype == np.int64 and data.user_ids.tolist() == [7, 3]
    assert data.item_ids[data.sequences[0] - 1].tolist() == ["b", "c", "a"]  # ordered by time
    with pytest.raises(
        DataFormatError, match=r"missing column\(s\) when \(found: user_id, item_id, timestamp, extra\)"
    ):
        read_dataset(tmp_path / "log.parquet", time_col="when")


@pytest.mark.parametrize("target", ["x.txt", "x.inter", "x.csv", "x.tsv", "x.parquet"])
def test_write_then_read_gives_same_sequences(tmp_path, small_dataset, target):
    write_dataset(small_dataset, tmp_path / target)
    again = read_dataset(tmp_path / target)
    assert again.sequences.to_lists() == small_dataset.sequences.to_lists()
    assert again.item_ids.tolist() == small_dataset.item_ids.tolist()


MALFORMED = [
    ("empty.txt", "", "file is empty"),
    ("blank.txt", "\n\n  \n", "file is empty"),
    ("binary.txt", b"1 2 3\x00\x01", "binary file"),
    ("latin.txt", b"1 2 3\n2 \xe9 4\n", "d.txt:2: not valid UTF-8"),
    ("word.txt", "1 2 3\n2 4 x5\n", ":2: id 'x5' is not an integer"),
    ("float.txt", "1 2 3\n2 4.5 6\n", ":2: id '4.5' is not an integer"),
    ("lonely.txt", "1 2 3\n2\n", ":2: user 2 has an empty sequence"),
    ("dupuser.txt", "1 2 3\n1 4 5\n", ":2: user 1 appears on more than one line"),
    ("noheader.inter", "1\t2\t3\n", ":1: header field '1' is not of the form name:type"),
    ("badtype.inter", "user_id:int\titem_id:token\n1\t2\n", "header field 'user_id:int'"),
    ("cols.inter", "user_id:token\titem:token\ttimestamp:float\n1\t2\t3\n", "missing column(s) item_id"),
    (
        "ragged.inter",
        "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t2\t3\t4\n",
        "Expected 3 fields in line 3, saw 4",
    ),
    ("time.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t2\t3\n1\t3\tnoon\n", ":3: timestamp 'noon'"),
    ("headeronly.csv", "user_id,item_id,timestamp\n", "header but no rows"),
    ("emptyval.csv", "user_id,item_id,timestamp\n1,2,3\n,4,5\n", ":3: missing value in column 'user_id'"),
    ("mixed.csv", "user_id,item_id,timestamp\n1,2,3\n1\t2\t4\n", ":3: missing value in column 'item_id'"),
    ("semi.csv", "user_id;item_id;timestamp\n1;2;3\n", "missing column(s) user_id, item_id, timestamp"),
    ("nan.tsv", "user_id\titem_id\ttimestamp\n1\t2\tNaN\n", ":2: timestamp 'NaN'"),
    ("junk.parquet", "not parquet at all", "not a readable Parquet file"),
    ("data.json", "{}", "cannot tell the format"),
]


@pytest.mark.parametrize("name, content, message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_inputs_give_one_clear_line(tmp_path, name, content, message):
    path = write(tmp_path, name if name != "latin.txt" else "d.txt", content)
    with pytest.raises(DataFormatError) as info:
        read_dataset(path)
    text = str(info.value)
    assert message in text and "\n" not in text
    assert str(path) in text


def test_missing_file(tmp_path):
    with pytest.raises(DataFormatError, match="no such data file"):
        read_dataset(tmp_path / "nope.txt")


def test_kcore_that_removes_everything(tmp_path):
    with pytest.raises(DataFormatError, match="survive 50-core"):
        read_dataset(write(tmp_path, "d.txt", "1 1 2 3\n2 2 3 4\n"), kcore=50)


def test_from_interactions_is_deterministic_for_equal_times():
    users = np.array([5, 5, 5, 6])
    items = np.array([9, 8, 7, 8])
    data = from_interactions(users, items, np.array([1.0, 1.0, 0.0, 2.0]), name="t")
    assert data.item_ids[data.sequences[0] - 1].tolist() == [7, 9, 8]


@pytest.mark.skipif(not (SHARED_DATA / "Beauty" / "Beauty.txt").exists(), reason="shared data not present")
def test_beauty_statistics_match_the_data_readme():
    stats = read_dataset(SHARED_DATA / "Beauty" / "Beauty.txt").stats()
    assert (stats["users"], stats["items"], stats["interactions"]) == (22363, 12101, 198502)
    assert (stats["min_len"], stats["max_len"]) == (5, 204)


@pytest.mark.skipif(not (SHARED_DATA / "ml-100k" / "ml-100k.inter").exists(), reason="shared data not present")
def test_ml100k_atomic_file_sorted_by_time():
    data = read_dataset(SHARED_DATA / "ml-100k" / "ml-100k.inter")
    assert (data.n_users, data.n_items, data.sequences.n_interactions) == (943, 1682, 100000)
    times = data.timestamps
    row = data.sequences.row_ids()
    same_user = row[1:] == row[:-1]
    assert (np.diff(times)[same_user] >= 0).all()


def test_writers_stream_in_blocks_and_write_the_same_bytes(tmp_path, monkeypatch):
    """Every writer holds a block of rows at a time (large exports stay within memory); the
    files do not depend on the block size, down to one row per block."""
    from rsir.data import leave_one_out, make_synthetic, writers

    data = make_synthetic(120, 40, seed=3)
    split = leave_one_out(data)

    def write(folder):
        for fmt, ext in (("atomic", "inter"), ("csv", "csv"), ("s3rec", "txt")):
            write_dataset(data, folder / f"data.{ext}", fmt)
        writers.write_recbole_benchmark(
            folder / "recbole",
            "x",
            split.train,
            (split.valid.history, split.valid.targets),
            (split.test.history, split.test.targets),
            item_labels=data.item_ids,
            user_labels=data.user_ids[split.train.users],
            max_len=5,
        )
        return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}

    whole = write(tmp_path / "whole")
    assert len(whole) == 6
    for block in (1, 7):
        monkeypatch.setattr(writers, "BLOCK", block)
        assert write(tmp_path / f"block_{block}") == whole
    assert read_dataset(tmp_path / "block_1" / "data.inter").fingerprint() == data.fingerprint()
