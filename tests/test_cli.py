"""The command line end to end on small synthetic data, including its errors."""

from __future__ import annotations

import io
import json
import pickle
import shlex
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

import rsir
from rsir.cli import main
from rsir.data import make_synthetic, write_dataset

FAST = ["--max-epochs", "2", "--dim", "16", "--blocks", "1", "--heads", "1", "--negatives", "16", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = root / "data.csv"
    write_dataset(make_synthetic(300, 80, n_clusters=4, seed=1), data)
    out = root / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *FAST]) == 0
    return root, data, out


def test_train_tensorboard_logs_each_epoch_beside_the_run(trained, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, data, _ = trained
    out = tmp_path / "run"
    assert main(["train", "--data", str(data), "--out", str(out), *FAST, "--tensorboard"]) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    history = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [e.value for e in events.Scalars("loss")] == [pytest.approx(r["loss"], rel=1e-6) for r in history]


def test_train_writes_a_complete_run_dir(trained, capsys):
    root, data, out = trained
    assert {p.name for p in out.iterdir()} >= {
        "config.yaml",
        "model.pt",
        "last.pt",
        "log.jsonl",
        "metrics.json",
        "curve.png",
    }
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"  # the learning curve
    metrics = json.loads((out / "metrics.json").read_text())
    (record,) = metrics["rounds"]  # the layout of rsir improve's metrics.json, with round 0 alone
    assert record["round"] == 0 and record["epochs"] == 2 and 0 <= record["test"]["ndcg@10"] <= 1
    assert metrics["rsir"]["version"] == rsir.__version__ and metrics["dataset"] == "data"
    assert metrics["rsir"]["environment"]["torch"] == torch.__version__  # last digits depend on it
    assert (out / "config.yaml").read_text().startswith(f"# written by rsir {rsir.__version__}")
    # Rerunning the same command reports the finished run instead of training again.
    assert main(["train", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert json.loads(capsys.readouterr().out) == metrics


def test_changed_config_in_same_dir_is_refused(trained, capsys):
    root, data, out = trained
    assert main(["train", "--data", str(data), "--out", str(out), *FAST, "--lr", "0.01"]) == 2
    assert "different config" in capsys.readouterr().err


def test_a_changed_option_the_run_never_reads_does_not_block_it(trained, capsys):
    """A run written before a default changed resumes where it never reads that option (a plain
    training has no synthetic rows to draw per epoch), and is refused where it reads one."""
    root, data, out = trained
    metrics = json.loads((out / "metrics.json").read_text())
    saved = yaml.safe_load((out / "config.yaml").read_text())
    saved["train"]["synthetic_per_epoch"] = 0.0  # the default until the warm round
    (out / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["train", "--data", str(data), "--out", str(out), *FAST]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    assert main(["train", "--data", str(data), "--out", str(out), *FAST, "--augment", "insert"]) == 2
    assert "different config: train.augment 'none', now 'insert'" in capsys.readouterr().err


def test_a_run_saved_before_an_option_existed_is_recognised(trained, tmp_path, capsys):
    """An option a saved config lacks was added later and read at the value it had then (its
    paper-preset value), so a run made with that value is the same run."""
    root, data, _ = trained
    old, flags = (
        tmp_path / "old",
        ["--data", str(data), "--out", str(tmp_path / "old"), *FAST, "--positions", "absolute"],
    )
    assert main(["train", *flags]) == 0  # positions at its paper value, as runs before the option had it
    metrics, config = json.loads(capsys.readouterr().out), (old / "config.yaml").read_text()
    saved = yaml.safe_load(config)
    del saved["train"]["augment_rate"], saved["model"]["positions"]
    (old / "config.yaml").write_text(yaml.safe_dump(saved))
    assert main(["train", *flags]) == 0
    assert json.loads(capsys.readouterr().out) == metrics
    assert yaml.safe_load((old / "config.yaml").read_text()) == yaml.safe_load(config)
    # Read at its paper value, the lacking option differs from today's default: another run.
    assert main(["train", *flags[:-2]]) == 2
    assert "different config" in capsys.readouterr().err


def test_segments_compares_paired_checkpoints(trained, tmp_path, capsys):
    root, data, out = trained
    other = tmp_path / "other"
    assert main(["train", "--data", str(data), "--out", str(other), *FAST, "--seed", "1"]) == 0
    capsys.readouterr()
    a, b = str(out / "model.pt"), str(other / "model.pt")
    assert main(["segments", "--baseline", a, a, "--candidate", a, b, "--output", str(tmp_path / "seg.json")]) == 0
    table = capsys.readouterr().out
    assert "| all users | all | 300 |" in table and "| target popularity | head (top 20% items) |" in table
    rows = json.loads((tmp_path / "seg.json").read_text())["rows"]
    mine = json.loads((out / "metrics.json").read_text())["rounds"][0]["test"]["recall@10"]
    theirs = json.loads((other / "metrics.json").read_text())["rounds"][0]["test"]["recall@10"]
    assert rows[0]["recall@10"]["candidate"] == pytest.approx((mine + theirs) / 2)
    assert sum(r["users"] for r in rows if r["segmentation"] == "history length") == 300
    # The file records the command that wrote it: run again, it writes the same rows.
    recorded = json.loads((tmp_path / "seg.json").read_text())
    assert recorded["rsir"]["version"] and recorded["command"].startswith("rsir segments ")
    again = shlex.split(recorded["command"])[1:] + ["--output", str(tmp_path / "again.json")]
    assert main(again) == 0 and json.loads((tmp_path / "again.json").read_text())["rows"] == rows
    options = ["--data", str(data), "--metrics", "ndcg@20", "--no-exclude-seen"]
    argv = ["segments", "--baseline", a, "--candidate", b, *options]
    assert main([*argv, "--output", str(tmp_path / "other.json")]) == 0
    assert shlex.split(json.loads((tmp_path / "other.json").read_text())["command"])[1:] == argv
    assert main(["segments", "--baseline", a, "--candidate", a, b]) == 2
    assert "pair up: got 1 and 2" in capsys.readouterr().err
    assert main(["segments", "--baseline", a, "--candidate", b, "--metrics", "hit@10"]) == 2
    assert "unknown metric 'hit@10'" in capsys.readouterr().err


def test_evaluate_matches_training_metrics(trained, capsys):
    root, data, out = trained
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(out / "model.pt")]) == 0
    report = json.loads(capsys.readouterr().out)
    expected = json.loads((out / "metrics.json").read_text())["rounds"][0]["test"]
    assert report["ndcg@10"] == pytest.approx(expected["ndcg@10"])
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--no-exclude-seen"]) == 0


def test_evaluate_output_goes_to_the_file_only(trained, capsys, tmp_path):
    root, data, out = trained
    capsys.readouterr()
    assert (
        main(["evaluate", "--checkpoint", str(out / "model.pt"), "--output", str(tmp_path / "e.json"), "--quiet"]) == 0
    )
    assert capsys.readouterr().out == ""
    expected = json.loads((out / "metrics.json").read_text())["rounds"][0]["test"]
    assert json.loads((tmp_path / "e.json").read_text())["ndcg@10"] == pytest.approx(expected["ndcg@10"])


def test_recommend_in_original_ids_csv_and_json(trained, capsys, tmp_path):
    root, data, out = trained
    frame = pd.read_csv(data)
    users = [int(frame.user_id.iloc[0]), int(frame.user_id.iloc[-1])]
    target = tmp_path / "recs.csv"
    assert (
        main(
            [
                "recommend",
                "--checkpoint",
                str(out / "model.pt"),
                "--users",
                f"{users[0]},{users[1]}",
                "--k",
                "5",
                "--output",
                str(target),
                "--quiet",
            ]
        )
        == 0
    )
    recs = pd.read_csv(target)
    assert recs.user_id.tolist() == [users[0]] * 5 + [users[1]] * 5
    assert recs["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    seen = set(frame[frame.user_id == users[0]].item_id)
    assert not seen & set(recs[recs.user_id == users[0]].item_id)  # seen items excluded
    assert set(recs.item_id) <= set(frame.item_id)
    capsys.readouterr()
    assert (
        main(
            [
                "recommend",
                "--checkpoint",
                str(out / "model.pt"),
                "--users",
                str(users[0]),
                "--k",
                "3",
                "--format",
                "json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert payload[0]["user_id"] == users[0] and len(payload[0]["items"]) == 3


def test_recommend_beyond_the_unseen_items_lists_each_unseen_item_once(trained, capsys):
    root, data, out = trained
    frame = pd.read_csv(data)
    user = int(frame.user_id.iloc[0])
    capsys.readouterr()
    assert main(["recommend", "--checkpoint", str(out / "model.pt"), "--users", str(user), "--k", "100000"]) == 0
    recs = pd.read_csv(io.StringIO(capsys.readouterr().out))
    unseen = set(frame.item_id) - set(frame[frame.user_id == user].item_id)
    assert sorted(recs.item_id) == sorted(unseen) and np.isfinite(recs.score).all()
    assert recs["rank"].tolist() == list(range(1, len(unseen) + 1))
    assert (
        main(
            [
                "recommend",
                "--checkpoint",
                str(out / "model.pt"),
                "--users",
                str(user),
                "--k",
                "100000",
                "--format",
                "json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)[0]["items"] == recs.item_id.tolist()


def test_recommend_unknown_user(trained, capsys):
    root, data, out = trained
    assert main(["recommend", "--checkpoint", str(out / "model.pt"), "--users", "no-such-user"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rsir: error: unknown user id(s) no-such-user") and err.count("\n") == 1


def test_checkpoint_used_with_other_data_is_refused(trained, tmp_path, capsys):
    root, data, out = trained
    other = tmp_path / "other.csv"
    write_dataset(make_synthetic(300, 80, n_clusters=4, seed=2), other)
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--data", str(other)]) == 2
    assert "trained on other data" in capsys.readouterr().err


def test_crafted_checkpoint_with_code_is_refused(tmp_path, capsys):
    class Payload:
        def __reduce__(self):
            return (exec, (f"open({str(tmp_path / 'owned')!r}, 'w').write('owned')",))

    bad = tmp_path / "evil.pt"
    torch.save({"format": "rsir-checkpoint/1", "x": Payload()}, bad)
    assert main(["evaluate", "--checkpoint", str(bad)]) == 2
    assert "refused" in capsys.readouterr().err
    assert not (tmp_path / "owned").exists()
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    assert main(["evaluate", "--checkpoint", str(plain)]) == 2


def test_config_file_and_unknown_keys(tmp_path, capsys):
    good = tmp_path / "c.toml"
    good.write_text(
        "[data]\nsynthetic_users = 200\nsynthetic_items = 60\n[model]\ndim = 16\nblocks = 1\nheads = 1\n"
        "[train]\nmax_epochs = 1\nnegatives = 8\n"
    )
    assert main(["train", "--config", str(good), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    saved = (tmp_path / "r" / "config.yaml").read_text()
    assert "dim: 16" in saved and "max_epochs: 1" in saved
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  learning_rate: 0.1\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "unknown option train.learning_rate" in err
    bad.write_text("train:\n  batch_size: many\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "train.batch_size must be int" in capsys.readouterr().err
    bad.write_text("model:\n  backbone: sasrek\n")
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "did you mean 'sasrec'" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_bad_data_file_leaves_nothing_behind(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_text("1 2 3\n2 x\n")
    out = tmp_path / "run"
    assert main(["train", "--data", str(bad), "--out", str(out)]) == 2
    assert capsys.readouterr().err.strip() == f"rsir: error: {bad}:2: id 'x' is not an integer"
    assert not out.exists()


@pytest.mark.parametrize(
    "device, message",
    [
        ("tpu", "unknown device 'tpu'"),
        ("mps", "unsupported device 'mps'"),
        ("gpu:0", "unknown device 'gpu:0'"),
        pytest.param(
            "cuda", "has no usable CUDA GPU", marks=pytest.mark.skipif(torch.cuda.is_available(), reason="has a GPU")
        ),
    ],
)
def test_unusable_device_is_a_clear_error(device, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--device", device, "--out", str(out), "--max-epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rsir: error:") and message in err and "\n" not in err
    assert not out.exists()


def test_data_stats_convert_and_synth(tmp_path, capsys):
    synth = tmp_path / "s.txt"
    assert main(["data", "synth", str(synth), "--users", "50", "--items", "40"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert main(["data", "stats", str(synth)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert 45 <= stats["users"] <= 50  # users left with too few distinct items are dropped
    assert {k: v for k, v in stats.items() if k != "name"} == {k: v for k, v in written.items() if k != "name"}
    target = tmp_path / "s.inter"
    assert main(["data", "convert", str(synth), str(target)]) == 0
    assert target.read_text().splitlines()[0] == "user_id:token\titem_id:token\ttimestamp:float"
    capsys.readouterr()
    assert main(["data", "stats", str(target)]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == stats["interactions"]


def test_data_convert_refuses_to_write_over_its_input(tmp_path, capsys):
    source = tmp_path / "log.inter"
    source.write_text("user_id:token\titem_id:token\trating:float\n1\t7\t5\n1\t8\t4\n1\t9\t3\n")
    before = source.read_bytes()
    for output in (source, tmp_path / "." / "log.inter"):
        assert main(["data", "convert", str(source), str(output)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.endswith("the output is the input file; write the conversion to another path") and "\n" not in err
    assert source.read_bytes() == before  # the rating column is still there


def test_the_default_and_length_batched_are_the_parity_study_s_two_picks():
    """Today's default is the parity study's rectools_d64 (at the default patience) and the
    preset length_batched its `full`, an earlier default, option for option."""
    from rsir.config import build_config
    from rsir.experiments.runner import load_spec

    cells = {
        cell.key: cell.config
        for cell in load_spec(Path(__file__).resolve().parents[1] / "experiments" / "sasrec_parity.toml").cells
    }
    for preset, variant in ((None, "rectools_d64"), ("length_batched", "full")):
        config = build_config({"train": {"threads": 1}, **({"preset": preset} if preset else {})})
        wanted = cells[f"Beauty/{variant}/s0"]
        assert config.to_dict(("model",)) == {"model": wanted["model"]}
        # synthetic_per_epoch is the round's (a plain training has no synthetic rows to draw)
        round_option = {"synthetic_per_epoch"}
        trains = config.to_dict(("train",))["train"]
        assert {k: v for k, v in trains.items() if k not in round_option} == {
            k: v for k, v in wanted["train"].items() if k not in round_option
        }


def test_every_published_study_keeps_the_patience_it_ran_with():
    """The default patience changed (20, then 10, then 50) after the studies in experiments/ had
    run at 20 (the parity study's last variants at 50): each cell still resolves to the patience
    it ran with (strongest_alternatives and out_of_sample run at today's 50)."""
    from rsir.experiments.runner import load_spec

    for path in sorted((Path(__file__).resolve().parents[1] / "experiments").glob("*.toml")):
        for cell in load_spec(path).cells:
            published = {
                ("sasrec_parity", v)
                for v in ("rectools_all", "rectools_d64", "rectools_d64_lr3", "rectools_d64_recall10")
            }  # patience 50
            expected = 50 if (path.stem, cell.variant) in published else 20
            on_today = ("strongest_alternatives", "out_of_sample", "builtin_data", "later_rounds")
            if path.stem in on_today:  # run on today's default
                expected = 50
            assert cell.config["train"]["patience"] == expected, (path.name, cell.key)


def test_paper_preset_names_the_earlier_defaults_and_yields_to_explicit_options(tmp_path, capsys):
    from rsir.config import PRESETS, build_config, read_saved_config

    paper = build_config({"preset": "paper", "model": {"dropout": 0.3}})
    assert paper.model["dim"] == 64 and paper.model["blocks"] == 2 and paper.model["dropout"] == 0.3
    assert paper.train.batch_size == 256 and paper.train.target_weighting == "batch"
    # A backbone takes the preset options it has: GRU4Rec has no attention blocks.
    assert "blocks" not in build_config({"preset": "paper", "model": {"backbone": "gru4rec"}}).model
    # A saved config that lacks an option was written when it had the paper value, even where
    # today's default differs.
    assert build_config({}).model["item_dropout"] == 0.2 and build_config({}).train.beta2 == 0.98
    saved = build_config({"model": {"dim": 16}}).to_dict(("data", "model", "train", "improve"))
    for section, options in PRESETS["paper"].items():
        for key in set(options) - {"dim"}:
            del saved[section][key]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    read = read_saved_config(tmp_path / "config.yaml")
    assert read["model"]["dim"] == 16 and read["model"]["item_dropout"] == 0.0 and read["train"]["beta2"] == 0.999
    # ... and with the round of its time: a successor from scratch on every synthetic row each epoch
    assert read["improve"]["successor"] == "scratch" and read["train"]["synthetic_per_epoch"] == 0.0
    # ... and the built-in data of its time: denser users over fewer items
    assert read["data"]["synthetic_items"] == 500 and read["data"]["synthetic_mean_length"] == 12.0
    assert build_config({}).improve.successor == "finetune" and build_config({}).train.synthetic_per_epoch == 1.0
    bad = tmp_path / "bad.toml"
    bad.write_text('preset = "papr"\n')
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'papr'; did you mean 'paper'?" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_help_describes_every_documented_option_from_its_field(capsys):
    """--help takes each option's description from the comments at its field in the code."""
    from rsir.config import option_docs
    from rsir.training.trainer import TrainParams

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--item-dropout FLOAT model.item_dropout: dropout on the whole item table" in text
    assert "--target-weighting STR train.target_weighting: batch: each batch's loss is its targets'" in text
    assert option_docs(TrainParams)["loss"] == "sampled_softmax | softmax | bce"
    with pytest.raises(SystemExit):  # a description holding "%" (argparse's format character)
        main(["improve", "--help"])
    assert "a round capped at 1.5 plain trainings kept 80-100% of its gain" in " ".join(capsys.readouterr().out.split())


def test_progress_written_to_a_file_has_the_epoch_lines_and_no_bars(tmp_path):
    """Output to a file (not a terminal): one line per epoch, no carriage-return progress bars."""
    import subprocess
    import sys

    log = tmp_path / "log.txt"
    with open(log, "w") as handle:
        code = subprocess.run(
            [
                sys.executable,
                "-m",
                "rsir.cli",
                "improve",
                "--out",
                str(tmp_path / "run"),
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
                "--negatives",
                "16",
                "--max-epochs",
                "2",
                "--rounds",
                "1",
            ],
            stdout=handle,
            stderr=subprocess.STDOUT,
            timeout=300,
        ).returncode
    text = log.read_text()
    assert code == 0 and "\r" not in text
    assert sum(line.startswith("rsir: epoch ") for line in text.splitlines()) == 4  # 2 epochs x 2 rounds
    assert "rsir: round 1: training sasrec on" in text
    quiet = subprocess.run(
        [
            sys.executable,
            "-m",
            "rsir.cli",
            "train",
            "--out",
            str(tmp_path / "quiet"),
            "--quiet",
            "--synthetic-users",
            "200",
            "--synthetic-items",
            "60",
            "--dim",
            "16",
            "--max-epochs",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert quiet.returncode == 0 and quiet.stderr == ""  # --quiet: results on stdout, nothing else


def test_the_library_logs_and_never_prints(small_dataset, small_split, capsys, caplog):
    from rsir.models import build_backbone
    from rsir.training.trainer import fit

    from .conftest import quick

    model = build_backbone("sasrec", small_dataset.n_items, {"dim": 16, "blocks": 1}, seed=0)
    with caplog.at_level("INFO", logger="rsir"):
        fit(model, small_split, quick(max_epochs=2), progress=False)
    assert capsys.readouterr() == ("", "")
    assert [r.name for r in caplog.records] == ["rsir.training.callbacks"] * 2 and caplog.records[
        0
    ].getMessage().startswith("epoch   1")


def test_compare_puts_train_and_improve_runs_side_by_side(trained, tmp_path, capsys):
    root, data, out = trained
    loop = tmp_path / "loop"
    assert main(["improve", "--data", str(data), "--out", str(loop), *FAST, "--attempts", "1"]) == 0
    capsys.readouterr()
    assert main(["compare", str(out), str(loop), "--format", "csv", "--metrics", "ndcg@10"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert list(table.columns) == ["run", "round", "valid ndcg@20", "test ndcg@10", "epochs"]
    assert table["round"].tolist() == [0, 0, 1] and table["epochs"].tolist() == [2, 2, 2]
    trained_metrics = json.loads((out / "metrics.json").read_text())["rounds"][0]
    assert table["test ndcg@10"][0] == pytest.approx(trained_metrics["test"]["ndcg@10"])
    assert table["test ndcg@10"][1] == pytest.approx(
        table["test ndcg@10"][0]
    )  # the same config: round 0 is the plain run
    assert main(["compare", str(out), str(tmp_path / "none")]) == 2
    assert capsys.readouterr().err.endswith("none: no finished run there (no metrics.json)\n")


def test_a_run_on_a_file_ignores_the_built_in_generators_options(tmp_path):
    """Options of the built-in generator say nothing about a data file: a run written with
    other values of them (an older default) is the same run, and configs omit them."""
    from rsir.config import build_config
    from rsir.rundir import RunDir

    config = build_config({"data": {"path": "log.txt"}})
    wanted = config.to_dict(("data", "model", "train"))
    assert not any(key.startswith("synthetic_") for key in wanted["data"])
    older = {**wanted, "data": {**wanted["data"], "synthetic_users": 2000, "synthetic_items": 500}}
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(older)
    assert run.holds_same_run(wanted)
    built_in = build_config({}).to_dict(("data",))["data"]
    assert built_in["synthetic_users"] == 1000  # they do describe the built-in data


def test_built_in_data_from_before_the_sparse_default_reads_as_it_was(tmp_path):
    """A record written before the built-in data became sparser (2026-12-07) lacks the mean
    length: it reads as the data of then, not today's; `rsir data synth` writes today's."""
    from rsir.config import build_config, read_saved_config, recorded_data
    from rsir.data import read_dataset
    from rsir.data.source import load_dataset
    from rsir.errors import ConfigError
    from rsir.rundir import RunDir

    today = build_config({}).to_dict(("data", "model", "train"))
    then = {**today, "data": {k: v for k, v in today["data"].items() if k != "synthetic_mean_length"}}
    then["data"]["synthetic_items"] = 500
    assert recorded_data(then["data"]).synthetic_mean_length == 12.0
    run = RunDir(tmp_path / "run")
    run.path.mkdir()
    run.write_config(then)
    assert read_saved_config(run.config_file)["data"]["synthetic_mean_length"] == 12.0
    with pytest.raises(ConfigError, match="different config: data.synthetic_items 500, now 1000"):
        run.holds_same_run(today)  # other data: refused, not silently resumed
    assert main(["data", "synth", str(tmp_path / "builtin.csv")]) == 0
    written = read_dataset(tmp_path / "builtin.csv")
    built_in = load_dataset(build_config({}).data)
    assert written.sequences.to_lists() == built_in.sequences.to_lists()
    assert 6 < built_in.sequences.n_interactions / built_in.n_users < 8  # sparse: about 7 each
