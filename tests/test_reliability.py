"""Reliability: malformed input gets one clear line and writes nothing, the readers survive
fuzzing, hard kills anywhere in `rsir improve` resume to identical results, failed writes
keep the previous state, and checkpoints never run code or load into the wrong model."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import io
import json
import os
import resource
import signal
import subprocess
import sys
import time
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rsir.cli import main
from rsir.data import leave_one_out, make_synthetic, read_dataset, write_dataset
from rsir.data.synthetic import available_memory
from rsir.errors import CheckpointError, DataFormatError, RsirError, RunInUseError
from rsir.files import write_json
from rsir.generation.loop import LoopSpec, improve, load_synthetic
from rsir.models import build_backbone
from rsir.models.checkpoint import check_same_model, load_checkpoint, read_checkpoint, save_checkpoint
from rsir.recommender import Recommender
from rsir.rundir import RunDir

from .conftest import LOOP, assert_same_run
from .test_readers import MALFORMED

KILLPOINT = Path(__file__).with_name("killpoint.py")


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def snapshot(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` with a hash of its content."""
    return {
        str(p.relative_to(directory)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def assert_one_clear_line(code: int, err: str, expect: str = "") -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsir: error: "), err
    assert expect in err, err


# ------------------------------------------------------------ (a) the malformed-input corpus


@dataclass
class Bad:
    id: str
    argv: list[str]  # "{tmp}" stands for the test's directory
    expect: str  # part of the error line ("{tmp}" as above)
    files: dict[str, str | bytes] = field(default_factory=dict)


def data_case(id: str, name: str, content: str | bytes, expect: str, *extra: str) -> Bad:
    return Bad(id, ["train", "--data", f"{{tmp}}/{name}", "--out", "{tmp}/out", *extra], expect, {name: content})


def config_case(id: str, name: str, content: str, expect: str) -> Bad:
    return Bad(id, ["improve", "--config", f"{{tmp}}/{name}", "--out", "{tmp}/out"], expect, {name: content})


def folder_case(what: str, *argv: str) -> Bad:
    """``argv`` gives the folder {tmp}/given, which holds a file, where a ``what`` is expected."""
    return Bad(
        f"{what.replace(' ', '-')}-is-a-folder",
        list(argv),
        f"{{tmp}}/given: a folder; give the {what} in it",
        {"given/x": "1 2 3 4\n"},
    )


def option_case(id: str, expect: str, *argv: str) -> Bad:
    return Bad(id, list(argv), expect)


def damaged_checkpoint(pickled: bytes = b"u1 1 2") -> bytes:
    """A real checkpoint archive whose pickled payload is replaced by ``pickled``: by default
    text, on which torch's reader fails with an IndexError, not an error of its own."""
    buffer = io.BytesIO()
    torch.save({"format": 1}, buffer)
    source = zipfile.ZipFile(buffer)
    damaged = io.BytesIO()
    with zipfile.ZipFile(damaged, "w") as archive:
        for name in source.namelist():
            archive.writestr(name, pickled if name.endswith("data.pkl") else source.read(name))
    return damaged.getvalue()


HEADER = "user_id,item_id,timestamp\n"
ATOMIC = "user_id:token\titem_id:token\ttimestamp:float\n"

CORPUS = [
    # Data files beyond tests/test_readers.py's MALFORMED (which is run through the CLI below too).
    data_case("negative-id", "neg.txt", "1 4 5 6\n2 -3 4 5\n", "{tmp}/neg.txt:2: id '-3' is negative"),
    data_case(
        "id-beyond-int64",
        "big.txt",
        "1 4 5 99999999999999999999\n",
        "big.txt:1: id '99999999999999999999' is out of range",
    ),
    data_case("underscore-id", "under.txt", "1 4 5 6\n2 1_000 4 5\n", "under.txt:2: id '1_000' is not an integer"),
    data_case("non-ascii-digit", "digit.txt", "1 4 5 6\n2 \u00b2 4 5\n", "digit.txt:2: id '\u00b2' is not an integer"),
    data_case("hex-id", "hex.txt", "1 0x1f 4 5\n", "hex.txt:1: id '0x1f' is not an integer"),
    data_case(
        "rows-longer-than-header",
        "long.csv",
        HEADER + "1,2,3,4\n1,3,4,5\n",
        "long.csv:2: rows have more fields than the header",
    ),
    data_case(
        "duplicate-header",
        "dup.inter",
        "user_id:token\tuser_id:token\titem_id:token\ttimestamp:float\n1\t1\t2\t3\n",
        "dup.inter:1: header names the column 'user_id' twice",
    ),
    data_case("quote-in-header", "quote.inter", '"a:token\tb":token\tuser_id:token\n1\t2\t3\n', "quote.inter"),
    data_case("unterminated-quote", "q.csv", HEADER + '1,"2,3\n', "q.csv: EOF inside string"),
    data_case("infinite-time", "inf.csv", HEADER + "1,2,3\n1,3,inf\n", "inf.csv:3: timestamp 'inf'"),
    data_case("latin1-csv", "l.csv", HEADER.encode() + b"1,caf\xe9,3\n", "l.csv:2: not valid UTF-8"),
    data_case("tsv-with-commas", "c.tsv", HEADER + "1,2,3\n", "c.tsv: missing column(s) user_id"),
    data_case(
        "wrong-user-column", "cols.csv", HEADER + "1,2,3\n", "cols.csv: missing column(s) uid", "--user-col", "uid"
    ),
    data_case(
        "csv-read-as-s3rec",
        "fmt.csv",
        HEADER + "1,2,3\n",
        "fmt.csv:1: id 'user_id,item_id,timestamp' is not an integer",
        "--format",
        "s3rec",
    ),
    data_case("atomic-header-only", "h.inter", ATOMIC, "h.inter: file has a header but no rows"),
    data_case(
        "atomic-no-time-column",
        "t.inter",
        "user_id:token\titem_id:token\n1\t2\n",
        "t.inter: missing column(s) timestamp",
    ),
    data_case("too-short-for-split", "short.txt", "1 4 5\n2 6 7\n", "short: no user has the 3 interactions"),
    data_case("kcore-removes-all", "k.txt", "1 4 5 6\n2 5 6 7\n", "no interactions survive 50-core", "--kcore", "50"),
    data_case("negative-kcore", "nk.txt", "1 4 5 6\n", "kcore must be >= 0", "--kcore", "-1"),
    Bad(
        "missing-data-file",
        ["train", "--data", "{tmp}/none.txt", "--out", "{tmp}/out"],
        "{tmp}/none.txt: no such data file",
    ),
    # Config files.
    config_case(
        "unknown-key",
        "c.toml",
        "[train]\nlearning_rate = 0.1\n",
        "unknown option train.learning_rate; did you mean 'lr'?",
    ),
    config_case("unknown-section", "c.toml", "[training]\nlr = 0.1\n", "unknown section 'training'"),
    config_case("wrong-type", "c.yaml", "train:\n  batch_size: many\n", "option train.batch_size must be int"),
    config_case("bool-for-int", "c.toml", "[train]\nmax_epochs = true\n", "option train.max_epochs must be int"),
    config_case("string-for-float", "c.toml", '[generate]\ntau = "ten"\n', "option generate.tau must be float"),
    config_case(
        "exploit-prob-1.5", "c.toml", "[generate]\nexploit_prob = 1.5\n", "exploit_prob must be in [0, 1], got 1.5"
    ),
    config_case("tau-0", "c.yaml", "generate:\n  tau: 0\n", "tau must be >= 1 (or inf), got 0"),
    config_case("negative-rounds", "c.toml", "[improve]\nrounds = -1\n", "rounds must be >= 0, got -1"),
    config_case("bad-backbone", "c.toml", '[model]\nbackbone = "sasrek"\n', "unknown backbone 'sasrek'"),
    config_case("non-mapping-yaml", "c.yaml", "- train\n- lr\n", "{tmp}/c.yaml: expected a mapping of sections"),
    config_case("section-not-mapping", "c.yaml", "train: 5\n", "section 'train' must be a mapping"),
    config_case("invalid-toml", "c.toml", "[train\nlr = 1\n", "{tmp}/c.toml: invalid TOML"),
    config_case("invalid-yaml", "c.yaml", "train: [1, 2\n", "{tmp}/c.yaml"),
    config_case("invalid-json", "c.json", '{"train": {"lr": }', "{tmp}/c.json"),
    config_case(
        "python-tag-yaml", "c.yaml", "train: !!python/object/apply:os.system ['touch {tmp}/owned']\n", "invalid YAML"
    ),
    config_case("lr-0", "c.toml", "[train]\nlr = 0\n", "train option lr must be > 0"),
    config_case("weight-decay-negative", "c.toml", "[train]\nweight_decay = -0.1\n", "weight_decay must be >= 0"),
    config_case("negatives-0", "c.toml", "[train]\nnegatives = 0\n", "train option negatives must be > 0"),
    config_case("unknown-loss", "c.toml", '[train]\nloss = "crossentropy"\n', "loss must be one of"),
    config_case("patience-0", "c.toml", "[train]\npatience = 0\n", "patience must be >= 1"),
    config_case("dropout-1.5", "c.toml", "[model]\ndropout = 1.5\n", "dropout must be in [0, 1), got 1.5"),
    config_case(
        "heads-divide-dim", "c.toml", "[model]\ndim = 16\nheads = 3\n", "dim (16) must be divisible by heads (3)"
    ),
    config_case("max-len-0", "c.toml", "[model]\nmax_len = 0\n", "max_len must be >= 1"),
    config_case("attempts-negative", "c.toml", "[generate]\nattempts = -1\n", "attempts must be >= 0"),
    config_case(
        "min-above-max-length", "c.toml", "[generate]\nmin_length = 5\nmax_length = 3\n", "min_length <= max_length"
    ),
    config_case(
        "bad-successor", "c.toml", '[improve]\nsuccessor = "clone"\n', "successor must be 'scratch' or 'finetune'"
    ),
    config_case(
        "bad-acquire-by", "c.toml", '[improve]\nacquire_by = "best"\n', "acquire_by must be one of disagreement, random"
    ),
    config_case("bad-generator", "c.toml", '[improve]\ngenerator = "gpt"\n', "generator must be empty"),
    config_case(
        "missing-generator",
        "c.toml",
        '[data]\nsynthetic_users = 100\nsynthetic_items = 40\n[improve]\ngenerator = "{tmp}/none.pt"\n',
        "{tmp}/none.pt: no such checkpoint",
    ),
    config_case("bad-data-format", "c.toml", '[data]\nformat = "xls"\n', "data format must be one of"),
    config_case("no-synthetic-users", "c.toml", "[data]\nsynthetic_users = 0\n", "at least 1 user"),
    config_case("too-few-synthetic-items", "c.toml", "[data]\nsynthetic_items = 10\n", "at least 40 items"),
    config_case("synthetic-mean-length", "c.toml", "[data]\nsynthetic_mean_length = 2\n", "must be in [5, 60], got 2"),
    config_case("ini-suffix", "c.ini", "[train]\nlr = 0.1\n", "config files must end in .toml, .yaml, .yml or .json"),
    Bad(
        "missing-config",
        ["improve", "--config", "{tmp}/none.toml", "--out", "{tmp}/out"],
        "{tmp}/none.toml: no such config file",
    ),
    # Command-line options.
    option_case(
        "k-0",
        "--k must be >= 1",
        "recommend",
        "--checkpoint",
        "{tmp}/m.pt",
        "--k",
        "0",
        "--users",
        "1",
        "--output",
        "{tmp}/out",
    ),
    option_case(
        "users-and-all-users",
        "argument --users: not allowed with argument --all-users",
        "recommend",
        "--checkpoint",
        "{tmp}/m.pt",
        "--all-users",
        "--users",
        "1",
        "--output",
        "{tmp}/out",
    ),
    option_case(
        "unknown-format",
        "argument --format: invalid choice",
        "recommend",
        "--checkpoint",
        "{tmp}/m.pt",
        "--format",
        "xml",
        "--output",
        "{tmp}/out",
    ),
    option_case(
        "lr-not-a-number", "argument --lr: invalid float value: 'abc'", "train", "--lr", "abc", "--out", "{tmp}/out"
    ),
    option_case(
        "precision-fp16",
        "precision must be one of fp32, bf16, got 'fp16'",
        "train",
        "--precision",
        "fp16",
        "--out",
        "{tmp}/out",
    ),
    option_case(
        "targets-last",
        "targets must be one of all, prefixes, got 'last'",
        "train",
        "--targets",
        "last",
        "--out",
        "{tmp}/out",
    ),
    option_case(
        "ffn-dim-negative", "ffn_dim must be >= 0 (0 = dim), got -4", "train", "--ffn-dim", "-4", "--out", "{tmp}/out"
    ),
    option_case("lr-negative", "lr must be > 0", "train", "--lr", "-0.1", "--out", "{tmp}/out"),
    option_case(
        "exploit-prob-nan",
        "exploit_prob must be in [0, 1], got nan",
        "improve",
        "--exploit-prob",
        "nan",
        "--out",
        "{tmp}/out",
    ),
    option_case("tau-half", "tau must be >= 1", "improve", "--tau", "0.5", "--out", "{tmp}/out"),
    option_case("rounds-negative", "rounds must be >= 0", "improve", "--rounds", "-2", "--out", "{tmp}/out"),
    option_case("seed-negative", "seed must be in [0, 2**32)", "train", "--seed", "-1", "--out", "{tmp}/out"),
    option_case("heads-0", "heads must be >= 1", "train", "--heads", "0", "--out", "{tmp}/out"),
    option_case(
        "option-of-other-backbone",
        "model.dim is an option of sasrec, cl4srec, hstu and gru4rec only, not of popularity",
        "train",
        "--backbone",
        "popularity",
        "--dim",
        "16",
        "--out",
        "{tmp}/out",
    ),
    option_case(
        "unknown-flag",
        "unrecognized arguments: --learning-rate 0.1 (see 'rsir train --help')",
        "train",
        "--learning-rate",
        "0.1",
        "--out",
        "{tmp}/out",
    ),
    option_case(
        "data-unknown-flag",
        "unrecognized arguments: --foo (see 'rsir data synth --help')",
        "data",
        "synth",
        "{tmp}/out.txt",
        "--foo",
    ),
    option_case(
        "abbreviated-flag",
        "unrecognized arguments: --min-len 10 (see 'rsir improve --help')",
        "improve",
        "--min-len",
        "10",
        "--out",
        "{tmp}/out",
    ),  # --min-length spelled short next to the model's --max-len
    option_case("resume-nothing", "holds no run to resume", "improve", "--resume", "--out", "{tmp}/out"),
    option_case(
        "missing-checkpoint",
        "{tmp}/m.pt: no such checkpoint",
        "evaluate",
        "--checkpoint",
        "{tmp}/m.pt",
        "--output",
        "{tmp}/out",
    ),
    Bad(
        "checkpoint-is-a-data-file",
        ["evaluate", "--checkpoint", "{tmp}/m.pt", "--output", "{tmp}/out"],
        "{tmp}/m.pt: not a checkpoint (not a PyTorch zip archive)",
        {"m.pt": "u1 1 2 3\nu2 4 5\n"},
    ),
    Bad(
        "checkpoint-damaged",
        ["recommend", "--checkpoint", "{tmp}/m.pt", "--users", "1", "--output", "{tmp}/out"],
        "{tmp}/m.pt: not a readable checkpoint (IndexError)",
        {"m.pt": damaged_checkpoint()},
    ),
    folder_case("data file", "train", "--data", "{tmp}/given", "--out", "{tmp}/out"),
    folder_case("config file", "improve", "--config", "{tmp}/given", "--out", "{tmp}/out"),
    folder_case("checkpoint", "evaluate", "--checkpoint", "{tmp}/given", "--output", "{tmp}/out"),
    option_case("synth-no-users", "at least 1 user", "data", "synth", "{tmp}/out.csv", "--users", "0"),
    option_case("synth-negative-seed", "synthetic seed must be >= 0", "data", "synth", "{tmp}/out.csv", "--seed", "-1"),
    option_case(
        "synth-unknown-suffix",
        "{tmp}/out.xyz: cannot tell the format from the suffix '.xyz'; set the output format (--to",
        "data",
        "synth",
        "{tmp}/out.xyz",
        "--users",
        "20",
        "--items",
        "40",
    ),
    option_case(
        "stats-unknown-format",
        "argument --format: invalid choice: 'xls'",
        "data",
        "stats",
        "{tmp}/x.txt",
        "--format",
        "xls",
    ),
]

ALL_BAD = CORPUS + [data_case(f"readers-{name}", name, content, "{tmp}/" + name) for name, content, _ in MALFORMED]


def test_the_corpus_is_large():
    assert len(ALL_BAD) >= 30 and len({case.id for case in ALL_BAD}) == len(ALL_BAD)


@pytest.mark.parametrize("case", ALL_BAD, ids=[case.id for case in ALL_BAD])
def test_malformed_input_gives_one_clear_line_and_writes_nothing(tmp_path, capsys, case):
    for name, content in case.files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        content = content.replace("{tmp}", str(tmp_path)) if isinstance(content, str) else content
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = snapshot(tmp_path)
    code, out, err = run_cli([arg.replace("{tmp}", str(tmp_path)) for arg in case.argv], capsys)
    assert_one_clear_line(code, err, case.expect.replace("{tmp}", str(tmp_path)))
    assert out == ""
    assert snapshot(tmp_path) == before  # nothing written, not even a run directory
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({Path(n).parts[0] for n in case.files})


def test_duplicate_rows_and_one_interaction_users_are_kept_or_counted(tmp_path, capsys):
    """Not errors: repeated (user, item, time) rows stay (repeat consumption), users with
    fewer than 3 interactions are left out of the split and counted."""
    data = tmp_path / "d.csv"
    data.write_text(HEADER + "1,a,1\n1,a,1\n1,b,2\n1,c,3\n2,a,1\n3,b,1\n3,c,2\n3,d,3\n")
    dataset = read_dataset(data)
    assert dataset.sequences.to_lists()[0] == [1, 1, 2, 3]
    assert leave_one_out(dataset).dropped_users == 1
    assert main(["data", "stats", str(data)]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 8


@pytest.mark.parametrize("command", ["train", "improve"])
def test_train_and_improve_report_the_users_left_out(tmp_path, capsys, command):
    data = tmp_path / "d.csv"
    rows = [f"{user},{item},{time}" for user in range(6) for time, item in enumerate((user, user + 1, user + 2, 7))]
    data.write_text(HEADER + "\n".join(rows + ["short,1,0", "short,2,1"]) + "\n")
    fast = ["--max-epochs", "1", "--dim", "8", "--blocks", "1", "--heads", "1", "--negatives", "2"]
    assert main([command, "--data", str(data), "--out", str(tmp_path / "run"), *fast]) == 0
    assert (
        "rsir: data d: 7 users, 8 items, 26 interactions (1 users with < 3 interactions left out)"
        in capsys.readouterr().err
    )


# ------------------------------------------------------------ (b) fuzzing the readers

_ID = st.integers(0, 30).map(str)
_ODD = st.one_of(  # one token that is wrong (or merely unusual) somewhere in an otherwise valid file
    st.sampled_from(["9223372036854775808", "99999999999999999999", "-1", "-0"]),  # beyond int64, negative
    st.sampled_from(["\u00b2", "\u0661", "1_0", "+3", "0x1f", "1e3", "1.5"]),  # int() accepts some of these
    st.sampled_from(["", " ", "x", "-", "nan", "inf", '"', '"a,b"', "\u00e9", "\r", "\x00", "\ufeff1"]),
    st.integers(-3, 2**70).map(str),
    st.text(max_size=4),
)
_SEPARATORS = {"s3rec": [" ", "\t"], "csv": [","], "atomic": ["\t"]}
_OTHER_SEPARATORS = [" ", "\t", ",", ";", "|"]
_HEADERS = {
    "s3rec": [""],
    "csv": [
        HEADER,
        "user_id,item_id\n",
        "user_id,user_id,item_id,timestamp\n",
        "a,b,c\n",
        "user_id;item_id;timestamp\n",
        '"user_id",item_id,timestamp\n',
        "",
    ],
    "atomic": [
        ATOMIC,
        "user_id:token\titem_id:token\n",
        "user_id:token\tuser_id:token\titem_id:token\ttimestamp:float\n",
        '"a:token\tb":token\tuser_id:token\n',
        "user_id\titem_id\n",
        "user_id:token\titem_id:token\t\n",
        "",
    ],
}


@st.composite
def _file(draw, fmt: str) -> str:
    """A mostly valid file of one format, with optional damage: an odd token, a row with
    another separator or another number of fields, or rows all longer than the header."""
    sep = draw(st.sampled_from(_SEPARATORS[fmt]))
    width = draw(st.integers(1 if fmt != "s3rec" else 2, 5))
    rows = draw(st.lists(st.lists(_ID, min_size=width, max_size=width), max_size=8))
    if fmt == "s3rec":  # one line per user: distinct user ids, or nearly every file fails early
        rows = [[str(i), *row[1:]] for i, row in enumerate(rows)]
    if rows and draw(st.integers(0, 3)):
        row = draw(st.integers(0, len(rows) - 1))
        rows[row].insert(draw(st.integers(0, len(rows[row]))), draw(_ODD))
    lines = [draw(st.sampled_from(_OTHER_SEPARATORS)) if rows and draw(st.integers(0, 9)) == 0 else sep for _ in rows]
    body = "\n".join(line_sep.join(row) for line_sep, row in zip(lines, rows))
    return draw(st.sampled_from(_HEADERS[fmt])) + body + draw(st.sampled_from(["", "\n", "\r\n", "\n\n"]))


@pytest.mark.parametrize("fmt, suffix", [("s3rec", ".txt"), ("csv", ".csv"), ("atomic", ".inter")])
def test_readers_load_or_raise_data_format_error(tmp_path, fmt, suffix):
    path = tmp_path / f"fuzz{suffix}"

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        content=st.one_of(_file(fmt).map(str.encode), st.text(max_size=200).map(str.encode) | st.binary(max_size=200))
    )
    def check(content: bytes) -> None:
        path.write_bytes(content)
        try:
            data = read_dataset(path, fmt)
        except DataFormatError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)
            return
        seqs = data.sequences
        assert len(seqs) == data.n_users >= 1 and seqs.lengths.min() >= 1
        assert 1 <= seqs.items.min() and seqs.items.max() == data.n_items

    check()


def test_a_damaged_checkpoint_loads_or_raises_checkpoint_error(tmp_path):
    """Truncated, overwritten or foreign bytes: one CheckpointError, whatever torch's reader
    raises inside."""
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_backbone("sasrec", 30, {"dim": 8, "blocks": 1, "heads": 1, "max_len": 10}), {})
    intact = path.read_bytes()

    data_file = st.text(alphabet="0123456789 u\n", min_size=1).map(str.encode)  # e.g. an S3-Rec file given by mistake

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        cut=st.integers(0, len(intact)),
        at=st.integers(0, len(intact) - 1),
        patch=st.binary(min_size=1, max_size=64),
        foreign=st.none() | data_file | st.binary(min_size=1),
    )
    def check(cut: int, at: int, patch: bytes, foreign: bytes | None) -> None:
        path.write_bytes(foreign or (intact[:at] + patch + intact[at + len(patch) :])[: cut or None])
        try:
            load_checkpoint(path)
        except CheckpointError as exc:
            assert "\n" not in str(exc) and str(path) in str(exc)

    check()


def test_a_damaged_pickle_header_fails_in_one_line_without_torchs_warning(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(damaged_checkpoint(b"\x80\x4b@"))  # "protocol 75", then an opcode torch refuses
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(CheckpointError, match=r"or is damaged \(Unsupported operand 64\)$"):
            read_checkpoint(path)
    assert not caught


# ------------------------------------------------------------ (c) hard kills at every phase


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def _saved_epoch(path: Path) -> int:
    return json.loads(read_checkpoint(path)["meta"])["progress"]["epoch"]


# Each kill point (see tests/killpoint.py) with a check that the process really died in that
# phase. Each run resumes what the previous one left; with LOOP every round trains 4 epochs
# and round-0 generation advances its 1,500 attempts in two batches.
KILLS = [
    (
        "call:rsir.generation.generate._grow:2",
        "round-0 generation, between its two batches",
        lambda out: (out / "round-0/metrics.json").exists() and not (out / "round-0/synthetic.npz").exists(),
    ),
    (
        "call:rsir.generation.loop.export_synthetic:1",
        "round-0 generation, synthetic.npz saved, exports not yet",
        lambda out: (out / "round-0/synthetic.npz").exists() and not (out / "round-0/generation.json").exists(),
    ),
    (
        "replace:round-1/last.pt:2",
        "round-1 training, inside the atomic write of epoch 2's state",
        lambda out: _lines(out / "round-1/log.jsonl") == 1 and list((out / "round-1").glob(".last.pt.*.tmp")),
    ),
    (
        "call:rsir.training.callbacks.append_jsonl:1",
        "round-1 training, epoch 2's state saved, its log line not yet",
        lambda out: _lines(out / "round-1/log.jsonl") == 1 and _saved_epoch(out / "round-1/last.pt") == 2,
    ),
    (
        "call:rsir.generation.loop.analyse_round:1",
        "round-1 generation, analysing the generated data",
        lambda out: (out / "round-1/metrics.json").exists() and not (out / "round-1/synthetic.npz").exists(),
    ),
    (
        "call:rsir.training.trainer.evaluate:5",
        "round-2 final test evaluation (after its 4 validation passes)",
        lambda out: _lines(out / "round-2/log.jsonl") == 4 and not (out / "round-2/metrics.json").exists(),
    ),
    (
        "replace:metrics.png:3",
        "writing the final report",
        lambda out: (out / "round-2/metrics.json").exists() and list(out.glob(".metrics.png.*.tmp")),
    ),
]


def test_hard_kills_in_training_generation_and_evaluation_resume_to_the_same_result(finished, tmp_path):
    out = tmp_path / "killed"
    command = ["improve", "--out", str(out), *LOOP]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for spec, phase, landed in KILLS:
        done = subprocess.run([sys.executable, str(KILLPOINT), spec, *command], env=env, capture_output=True, text=True)
        assert done.returncode == -signal.SIGKILL, f"{spec}: {done.stderr[-2000:]}"
        assert landed(out), f"the kill at {spec} did not land in: {phase}"
    done = subprocess.run(
        [sys.executable, "-m", "rsir.cli", *command, "--resume"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert_same_run(finished, out)


ENDLESS_SPEC = """
name = "endless"
datasets = ["synthetic"]
seeds = [0, 1, 2]
[common]
data = { synthetic_users = 200, synthetic_items = 60 }
model = { dim = 16, blocks = 1, heads = 1, max_len = 20 }
train = { max_epochs = 100000, patience = 100000, negatives = 8, batch_size = 64, threads = 1 }
[variants.plain]
command = "train"
"""


def _signal_a_worker_thread(process: subprocess.Popen, signum: int) -> None:
    """Deliver ``signum`` to one of the process's non-main threads, as the kernel may do with
    a signal sent to the process (it did, after a SIGSTOP / SIGCONT, on a real study)."""
    workers = [int(tid) for tid in os.listdir(f"/proc/{process.pid}/task") if int(tid) != process.pid]
    assert workers and ctypes.CDLL(None, use_errno=True).tgkill(process.pid, workers[0], signum) == 0


@pytest.mark.parametrize(
    "signum, sigint, to_worker",
    [
        (signal.SIGINT, signal.SIG_DFL, False),
        (signal.SIGTERM, signal.SIG_IGN, False),
        (signal.SIGTERM, signal.SIG_IGN, True),
    ],
    ids=[
        "Ctrl-C from a terminal",
        "SIGTERM to a runner a script started in the background",
        "SIGTERM that the kernel hands to a worker thread",
    ],
)
def test_an_interrupted_experiment_stops_its_cells_and_starts_no_more(signum, sigint, to_worker, tmp_path):
    (tmp_path / "spec.toml").write_text(ENDLESS_SPEC)
    out = tmp_path / "out"
    runner = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rsir.cli",
            "experiment",
            str(tmp_path / "spec.toml"),
            "--out",
            str(out),
            "--jobs",
            "2",
            "--quiet",
        ],
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )  # SIG_IGN: cells inherit it
    logs = [out / "synthetic" / "plain" / f"s{seed}" / "run" / "log.jsonl" for seed in (0, 1)]
    deadline = time.monotonic() + 120
    while not all(_lines(log) >= 1 for log in logs):  # both cells are training
        assert runner.poll() is None and time.monotonic() < deadline, "the cells did not start training"
        time.sleep(0.2)
    if signum == signal.SIGINT:  # once: a second runner on the same directory is refused at once
        code = main(["experiment", str(tmp_path / "spec.toml"), "--out", str(out), "--quiet"])
        assert code == 2 and (out / "synthetic" / "plain" / "s0" / "run" / "log.jsonl").exists()
    if to_worker:
        _signal_a_worker_thread(runner, signum)
    else:
        runner.send_signal(signum)  # to the runner alone, as a scheduler or `kill` does
    try:
        assert runner.wait(timeout=60) == 130
    finally:
        if runner.poll() is None:  # it missed the signal: stop it and its endless cells for good
            runner.terminate()
            runner.wait(timeout=60)
    stderr = runner.stderr.read()
    assert "rsir: interrupted" in stderr
    assert "leaked" not in stderr  # the cells' progress bars left no semaphore for the resource tracker
    epochs = [_lines(log) for log in logs]
    time.sleep(3)
    assert [_lines(log) for log in logs] == epochs  # no cell process outlives the runner
    assert not (out / "synthetic" / "plain" / "s2").exists()  # and the third never started
    assert json.loads((out / "report.json").read_text())["cells_done"] == 0


# ------------------------------------------------------------ (d) write failures

TINY = [
    "--synthetic-users",
    "200",
    "--synthetic-items",
    "60",
    "--dim",
    "16",
    "--blocks",
    "1",
    "--heads",
    "1",
    "--max-len",
    "20",
    "--max-epochs",
    "1",
    "--negatives",
    "8",
    "--batch-size",
    "64",
    "--quiet",
]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished one-epoch `rsir train` run directory."""
    out = tmp_path_factory.mktemp("tiny") / "run"
    assert main(["train", "--out", str(out), *TINY]) == 0
    return out


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES], ids=["disk-full", "permission"])
def test_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tiny_run, tmp_path, capsys, monkeypatch, code):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.pt", "metrics.json"):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    write_json(run / "eval.json", {"old": True})
    before = snapshot(run)

    def no_space(src, dst):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "replace", no_space)
    code_, out, err = run_cli(
        ["evaluate", "--checkpoint", str(run / "model.pt"), "--output", str(run / "eval.json")], capsys
    )
    assert_one_clear_line(code_, err, f"cannot write {run / 'eval.json'}: {os.strerror(code)}")
    assert snapshot(run) == before  # the previous eval.json intact, no temporary file
    with pytest.raises(RsirError, match=f"cannot write .*model.pt: {os.strerror(code)}"):
        save_checkpoint(run / "model.pt", build_backbone("sasrec", 60, {"dim": 16}), {})
    assert snapshot(run) == before


def test_unwritable_out_directory(tmp_path, capsys):
    if os.geteuid() == 0:  # root writes through chmod: make mkdir fail instead
        (tmp_path / "file").write_text("a regular file\n")
        out, reason = tmp_path / "file" / "run", os.strerror(errno.ENOTDIR)
    else:
        (tmp_path / "locked").mkdir()
        (tmp_path / "locked").chmod(0o500)
        out, reason = tmp_path / "locked" / "run", os.strerror(errno.EACCES)
    before = snapshot(tmp_path)
    code, _, err = run_cli(["train", "--out", str(out), *TINY], capsys)
    assert_one_clear_line(code, err, f"cannot write {out / '.lock'}: {reason}")  # the first file a run writes
    assert snapshot(tmp_path) == before and not out.exists()


def test_a_folder_of_other_files_or_a_file_is_refused_as_a_run_directory_and_kept(tmp_path, capsys):
    folder = tmp_path / "notes"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("mine\n")
    before = snapshot(folder)
    for flags in ([], ["--overwrite"]):
        code, _, err = run_cli(["train", "--out", str(folder), *TINY, *flags], capsys)
        assert_one_clear_line(code, err, f"{folder} holds files that are not an rsir run (notes.txt, sub)")
        assert snapshot(folder) == before and (folder / "sub").is_dir()
    code, _, err = run_cli(["improve", "--out", str(folder / "notes.txt"), *TINY], capsys)
    assert_one_clear_line(code, err, f"{folder / 'notes.txt'} is a file; a run needs a directory")


@pytest.mark.skipif(available_memory() is None, reason="the system does not say how much memory it has")
def test_synthetic_data_beyond_the_available_memory_is_refused_before_allocating(tmp_path, capsys):
    code, _, err = run_cli(["data", "synth", str(tmp_path / "out.csv"), "--users", "2000000000"], capsys)
    assert_one_clear_line(code, err, "synthetic data of 2000000000 users and 1000 items needs about")
    assert "GB available; ask for fewer users or items" in err and not any(tmp_path.iterdir())


def test_a_run_of_the_other_kind_or_a_file_in_the_way_is_refused_in_one_line(tiny_run, tmp_path, capsys):
    before = snapshot(tiny_run)
    code, _, err = run_cli(["improve", "--out", str(tiny_run), *TINY], capsys)
    assert_one_clear_line(code, err, f"{tiny_run} holds a training (rsir train), not a loop (rsir improve)")
    assert snapshot(tiny_run) == before
    loop = tmp_path / "loop"
    assert main(["improve", "--out", str(loop), "--rounds", "1", "--attempts", "0", *TINY]) == 0
    before = snapshot(loop)
    code, _, err = run_cli(["train", "--out", str(loop), *TINY], capsys)  # once returned the loop's result
    assert_one_clear_line(code, err, f"{loop} holds a loop (rsir improve), not a training (rsir train)")
    assert snapshot(loop) == before
    (tmp_path / "notes.txt").write_text("mine\n")
    for out, expect in (
        ("notes.txt", "a file is there, where a folder"),
        ("notes.txt/x", "part of this path is a file"),
    ):
        code, _, err = run_cli(["export", str(tiny_run), "--out", str(tmp_path / out)], capsys)
        assert_one_clear_line(code, err, f"{tmp_path / out}: {expect}")
    code, _, err = run_cli(["data", "synth", str(tmp_path / "notes.txt" / "out.csv")], capsys)
    assert_one_clear_line(code, err, "out.csv: a file is there, where a folder was to be made")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["loop", "notes.txt"]


def test_a_bad_teacher_is_refused_before_the_run_directory_is_made(tiny_run, tmp_path, capsys):
    out = tmp_path / "student"
    flags = ["--distill-weight", "0.5", "--out", str(out), *TINY]
    code, _, err = run_cli(["train", "--teacher", str(tmp_path / "missing.pt"), *flags], capsys)
    assert_one_clear_line(code, err, "missing.pt")
    assert not out.exists()
    code, _, err = run_cli(["improve", "--teacher", str(tmp_path / "missing.pt"), *flags], capsys)
    assert_one_clear_line(code, err, "missing.pt")
    assert not out.exists()
    assert main(["train", "--teacher", str(tiny_run / "model.pt"), *flags]) == 0  # the corrected command runs


@pytest.mark.parametrize("content", ["{bad", "[1, 2]", '{"rounds": 5}', '{"rounds": [{"round": 0}]}'])
def test_compare_refuses_a_metrics_file_that_is_not_rsirs_in_one_line(content, tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.json").write_text(content)
    code, _, err = run_cli(["compare", str(tmp_path / "run")], capsys)
    assert_one_clear_line(code, err, f"{tmp_path / 'run' / 'metrics.json'}: not an rsir metrics file")


def test_export_and_report_only_refuse_what_would_write_nothing_useful(tiny_run, tmp_path, capsys):
    code, _, err = run_cli(["export", str(tiny_run), "--out", str(tmp_path / "x" / "y"), "--max-len", "0"], capsys)
    assert_one_clear_line(code, err, "--max-len must be >= 1, got 0")
    (tmp_path / "spec.toml").write_text(ENDLESS_SPEC)
    spec, out = str(tmp_path / "spec.toml"), str(tmp_path / "e")
    code, _, err = run_cli(["experiment", spec, "--out", out, "--report-only"], capsys)
    assert_one_clear_line(code, err, f"{out}: no experiment there to report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def test_a_plain_training_exports_its_real_data_and_no_later_round(tiny_run, tmp_path, capsys):
    out = tmp_path / "recbole" / "plain"
    code, printed, _ = run_cli(["export", str(tiny_run), "--out", str(out)], capsys)
    assert code == 0 and "dataset: plain" in printed
    real = Recommender.load(tiny_run / "model.pt").dataset
    split = leave_one_out(real)
    users = {}
    for part in ("train", "test"):
        lines = (out / f"plain.{part}.inter").read_text().splitlines()[1:]
        users[part] = [line.split("\t")[0] for line in lines]
    assert users["test"] == real.user_ids[split.users].astype(str).tolist()
    assert set(users["train"]) == set(users["test"])  # real users alone: no synthetic pseudo-users
    assert len(users["train"]) == int(split.train.lengths.sum()) - len(split.train)  # one row per target
    code, _, err = run_cli(["export", str(tiny_run), "--round", "1", "--out", str(tmp_path / "later" / "x")], capsys)
    assert_one_clear_line(code, err, f"{tiny_run}: an rsir train run has round 0 alone, the real data (--round 0)")
    assert not (tmp_path / "later").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root is not stopped by file modes")
def test_read_only_run_directory_keeps_its_files(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes((tiny_run / "model.pt").read_bytes())
    run.chmod(0o500)
    before = snapshot(run)
    try:
        code, _, err = run_cli(
            ["evaluate", "--checkpoint", str(run / "model.pt"), "--output", str(run / "e.json")], capsys
        )
        assert_one_clear_line(code, err, f"cannot write {run / 'e.json'}: {os.strerror(errno.EACCES)}")
        assert snapshot(run) == before
    finally:
        run.chmod(0o700)


def _limit_file_size(limit: int):
    def apply() -> None:  # in the child: writes beyond ``limit`` bytes fail with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_a_real_failing_write_reports_the_reason_and_keeps_the_old_file(tmp_path):
    """Writes that really fail half way (file size limit; Python ignores SIGXFSZ): a data
    file and a checkpoint, each with the reason in one line and the previous state kept."""
    target = tmp_path / "synthetic.csv"
    target.write_text("old content\n")
    done = subprocess.run(
        [sys.executable, "-m", "rsir.cli", "data", "synth", str(target)],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(32_000),
    )
    assert_one_clear_line(done.returncode, done.stderr, f"cannot write {target}: {os.strerror(errno.EFBIG)}")
    assert target.read_text() == "old content\n" and sorted(p.name for p in tmp_path.iterdir()) == ["synthetic.csv"]

    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "rsir.cli", "train", "--out", str(out), *TINY],
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size(8_000),
    )
    assert_one_clear_line(done.returncode, done.stderr, f"cannot write {out / 'model.pt'}: {os.strerror(errno.EFBIG)}")
    assert sorted(p.name for p in out.iterdir()) == ["config.yaml", "phases.json"]


def test_output_to_a_closed_pipe_stops_quietly(tmp_path):
    """`rsir data stats FILE | head -1`: the reader leaves early; rsir stops without an error line."""
    data = tmp_path / "synthetic.csv"
    subprocess.run([sys.executable, "-m", "rsir.cli", "data", "synth", str(data)], check=True, capture_output=True)
    stats = subprocess.Popen(
        [sys.executable, "-m", "rsir.cli", "data", "stats", str(data)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    stats.stdout.close()  # before the child has started Python, so its first write meets a closed pipe
    err = stats.stderr.read()
    assert stats.wait() == 1 and err == b""


# ------------------------------------------------------------ (e) checkpoints: no code, no wrong model


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('owned')",))


def _evil_checkpoint(path: Path, marker: Path) -> None:
    """Looks like an rsir checkpoint, but unpickling it would run code."""
    model = build_backbone("sasrec", 60, {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20})
    torch.save(
        {
            "format": "rsir-checkpoint/1",
            "model": json.dumps({"n_items": 60, **model.describe()}),
            "meta": "{}",
            "state": model.state_dict(),
            "optimizer": _Payload(marker),
        },
        path,
    )


@pytest.mark.parametrize("where", ["evaluate", "generator", "resume"])
def test_checkpoint_with_a_code_payload_is_refused_everywhere(tiny_run, tmp_path, capsys, where):
    evil, marker = tmp_path / "evil.pt", tmp_path / "owned"
    _evil_checkpoint(evil, marker)
    if where == "evaluate":
        argv = ["evaluate", "--checkpoint", str(evil)]
    elif where == "generator":
        argv = ["improve", "--out", str(tmp_path / "out"), "--generator", str(evil), *TINY]
    else:  # a run directory whose last.pt was replaced: train resumes from it
        run = tmp_path / "run"
        run.mkdir()
        for name in ("config.yaml", "model.pt", "log.jsonl"):
            (run / name).write_bytes((tiny_run / name).read_bytes())
        (run / "last.pt").write_bytes(evil.read_bytes())
        argv = ["train", "--out", str(run), *TINY]
    before = snapshot(tmp_path)
    code, _, err = run_cli(argv, capsys)
    assert_one_clear_line(code, err, "refused, it holds objects other than tensors")
    assert not marker.exists() and snapshot(tmp_path) == before


def test_synthetic_store_with_pickled_objects_is_refused(tmp_path):
    marker = tmp_path / "owned"
    store = tmp_path / "synthetic.npz"
    with open(store, "wb") as handle:
        np.savez(
            handle,
            items=np.array([_Payload(marker)], dtype=object),
            offsets=np.array([0, 1]),
            users=np.array([0]),
            origin=np.array([1]),
        )
    with pytest.raises(DataFormatError, match="not a readable synthetic store") as info:
        load_synthetic(store)
    assert "\n" not in str(info.value) and not marker.exists()


def test_checkpoint_weights_of_another_shape_are_refused(tmp_path, capsys):
    path = tmp_path / "model.pt"
    model = build_backbone("sasrec", 60, {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20})
    save_checkpoint(path, model, {})
    payload = read_checkpoint(path)
    payload["state"]["item_embedding.weight"] = torch.zeros(61, 8)  # the description still says dim 16
    torch.save(payload, path)
    code, _, err = run_cli(["evaluate", "--checkpoint", str(path)], capsys)
    assert_one_clear_line(
        code,
        err,
        f"{path}: weights do not match the sasrec model they describe (size mismatch for item_embedding.weight",
    )


def test_resume_from_a_checkpoint_of_another_size_is_refused(tiny_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.yaml", "model.pt", "log.jsonl"):
        (run / name).write_bytes((tiny_run / name).read_bytes())
    meta = json.loads(read_checkpoint(tiny_run / "last.pt")["meta"])
    save_checkpoint(
        run / "last.pt", build_backbone("sasrec", 60, {"dim": 8, "blocks": 1, "heads": 1, "max_len": 20}), meta
    )
    before = snapshot(run)
    code, _, err = run_cli(["train", "--out", str(run), *TINY], capsys)
    assert_one_clear_line(code, err, f"{run / 'last.pt'}: checkpoint of another model (dim 8 instead of 16)")
    assert snapshot(run) == before


def test_a_checkpoint_from_before_an_option_existed_loads_as_that_options_default(tiny_run):
    payload = read_checkpoint(tiny_run / "model.pt")
    older = {k: v for k, v in json.loads(payload["model"]).items() if k != "ffn_dim"}  # saved before ffn_dim
    payload["model"] = json.dumps(older)
    small = {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20}
    check_same_model(payload, build_backbone("sasrec", 60, small), tiny_run / "model.pt")
    with pytest.raises(CheckpointError, match="ffn_dim 0 instead of 32"):
        check_same_model(payload, build_backbone("sasrec", 60, {**small, "ffn_dim": 32}), tiny_run / "model.pt")


def test_finished_round_with_a_model_of_another_backbone_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["improve", "--out", str(out), "--rounds", "0", *TINY]
    assert main(argv) == 0
    popularity = build_backbone("popularity", 60, {"max_len": 20})
    meta = json.loads(read_checkpoint(out / "round-0" / "model.pt")["meta"])
    save_checkpoint(out / "round-0" / "model.pt", popularity, meta)
    before = snapshot(out)
    code, _, err = run_cli(argv, capsys)
    assert_one_clear_line(
        code, err, "round-0/model.pt: checkpoint of another model (backbone 'popularity' instead of 'sasrec'"
    )
    assert snapshot(out) == before


def test_generator_trained_on_other_data_is_refused_before_anything_is_written(tiny_run, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(
        ["improve", "--out", str(out), "--generator", str(tiny_run / "model.pt"), *TINY, "--synthetic-seed", "1"],
        capsys,
    )
    assert_one_clear_line(code, err, "model.pt: trained on other data")
    assert not out.exists()


def test_the_lock_is_reentrant_for_its_thread_only(tmp_path):
    """A job holds a run directory's lock around the loop, which takes it again: the same
    thread re-enters; another thread of the process is refused like another process."""
    import threading

    run = RunDir(tmp_path / "run")
    refused: list[BaseException] = []

    def other_thread() -> None:
        try:
            with run.writing():
                pass
        except RunInUseError as exc:
            refused.append(exc)

    with run.writing():
        with RunDir(str(tmp_path / "run")).writing():  # the same directory by another spelling
            (run.path / "config.yaml").write_text("x")
        assert (run.path / ".lock").exists()  # the inner holder leaves the lock to the outer one
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert len(refused) == 1 and f"being written by process {os.getpid()}" in str(refused[0])
    assert not (run.path / ".lock").exists()
    with run.writing():  # free again
        pass


def test_a_second_writer_of_a_run_directory_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path, capsys):
    """While a process writes a run directory, `rsir train` on it ends at once in one line that
    names the writer's pid and writes nothing, and so do the library's writers (``improve``,
    ``Recommender.fit``); once the writer is killed (kill -9: no clean-up), the next run takes
    the directory over."""
    out = tmp_path / "run"
    data = tmp_path / "data.csv"
    write_dataset(make_synthetic(300, 80, n_clusters=4, seed=1), data)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rsir.rundir import RunDir\n"
            "with RunDir(sys.argv[1]).writing():\n    print('locked', flush=True); time.sleep(600)",
            str(out),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        command = [
            "train",
            "--data",
            str(data),
            "--out",
            str(out),
            "--dim",
            "16",
            "--blocks",
            "1",
            "--heads",
            "1",
            "--negatives",
            "16",
            "--max-epochs",
            "2",
            "--quiet",
        ]
        assert main(command) == 2
        assert capsys.readouterr().err.strip() == (
            f"rsir: error: {out} is being written by process {holder.pid}; wait for it to end or choose another directory"
        )
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
        dataset = read_dataset(data)
        busy = f"{out} is being written by process {holder.pid}"
        with pytest.raises(RunInUseError, match=busy):
            improve(dataset, LoopSpec(), out)
        with pytest.raises(RunInUseError, match=busy):
            Recommender(model={"dim": 16, "blocks": 1, "heads": 1}, train={"max_epochs": 1}).fit(dataset, run_dir=out)
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    finally:
        holder.kill()
        holder.wait()
    assert main(command) == 0
    assert (out / "metrics.json").exists() and not (out / ".lock").exists()  # removed when the run ends
