"""The public API (rsir.Recommender and friends) in original ids, and the README's Python code."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import rsir
from rsir.cli import main
from rsir.data import make_synthetic, write_dataset
from rsir.errors import CheckpointError, ConfigError, DataFormatError
from rsir.models.checkpoint import load_checkpoint

SMALL = {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20}
QUICK = {"max_epochs": 3, "batch_size": 64, "negatives": 16, "lr": 3e-3}
README = Path(__file__).resolve().parents[1] / "README.md"


def interactions(seed: int = 1, users: int = 300, items: int = 80) -> pd.DataFrame:
    """A small log with string user and item ids, rows shuffled (time orders them)."""
    data = make_synthetic(users, items, n_clusters=4, seed=seed)
    seqs = data.sequences
    frame = pd.DataFrame(
        {
            "user": np.char.add("u", np.repeat(seqs.users + 1, seqs.lengths).astype(str)),
            "item": np.char.add("i", seqs.items.astype(str)),
            "when": seqs.positions(),
        }
    )
    return frame.sample(frac=1.0, random_state=0).reset_index(drop=True)


@pytest.fixture(scope="module")
def fitted():
    frame = interactions()
    data = rsir.from_dataframe(frame, user="user", item="item", time="when", name="toy")
    return frame, data, rsir.Recommender(model=SMALL, train=QUICK).fit(data)


def independent_metrics(recs: pd.DataFrame, targets: dict[str, str], k: int) -> tuple[float, float]:
    """Recall@k and NDCG@k from a recommendation list and each user's held-out item."""
    hits = recs[recs["rank"] <= k].merge(pd.Series(targets, name="target").rename_axis("user_id").reset_index())
    hits = hits[hits.item_id == hits.target]
    gains = 1.0 / np.log2(hits["rank"].to_numpy() + 1.0)
    return len(hits) / len(targets), gains.sum() / len(targets)


def test_from_dataframe_orders_by_time_and_keeps_original_ids(fitted):
    frame, data, _ = fitted
    first = frame[frame.user == "u1"].sort_values("when").item.tolist()
    row = data.user_index(["u1"])[0]
    assert data.item_ids[data.sequences[row] - 1].tolist() == first
    with pytest.raises(DataFormatError, match="no column 'stamp'"):
        rsir.from_dataframe(frame, user="user", item="item", time="stamp")


def test_recommend_in_original_ids_excludes_the_history_and_survives_save_and_load(fitted, tmp_path):
    frame, data, model = fitted
    recs = model.recommend(["u1", "u7"], k=5)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score"]
    assert recs.user_id.tolist() == ["u1"] * 5 + ["u7"] * 5 and recs["rank"].tolist() == [1, 2, 3, 4, 5] * 2
    assert not set(frame[frame.user == "u1"].item) & set(recs[recs.user_id == "u1"].item_id)
    assert recs.groupby("user_id").score.apply(lambda s: s.is_monotonic_decreasing).all()
    model.save(tmp_path / "model.pt")
    loaded = rsir.Recommender.load(tmp_path / "model.pt")  # no data given: the checkpoint carries it
    pd.testing.assert_frame_equal(loaded.recommend(["u1", "u7"], k=5), recs)
    assert loaded.evaluate("test") == model.evaluate("test") == pytest.approx(model.result.test)
    other = rsir.from_dataframe(interactions(seed=2), user="user", item="item", time="when")
    with pytest.raises(CheckpointError, match="trained on other data"):
        rsir.Recommender.load(tmp_path / "model.pt", data=other)


def test_recommendations_at_the_test_cut_off_reproduce_the_test_metrics(fitted):
    frame, data, model = fitted
    recs = model.recommend(k=20, split="test")
    last = frame.sort_values("when").groupby("user").item.last()
    for k in (10, 20):
        recall, ndcg = independent_metrics(recs, last.to_dict(), k)
        assert recall == pytest.approx(model.result.test[f"recall@{k}"])
        assert ndcg == pytest.approx(model.result.test[f"ndcg@{k}"])
    # The test cut-off reads the history without the test item, so that item may be recommended.
    assert recs.merge(last.rename("item_id").rename_axis("user_id").reset_index()).shape[0] > 0


def test_bad_arguments_are_one_clear_error(fitted):
    _, _, model = fitted
    with pytest.raises(ConfigError, match="k must be >= 1"):
        model.recommend(["u1"], k=0)
    with pytest.raises(ConfigError, match="split must be 'valid' or 'test'"):
        model.recommend(["u1"], split="train")
    with pytest.raises(DataFormatError, match="unknown user id"):
        model.recommend(["nobody"])
    with pytest.raises(ConfigError, match="unknown option model.dimension .known: dim"):
        rsir.Recommender(model={"dimension": 8})
    with pytest.raises(ConfigError, match="not trained"):
        rsir.Recommender().recommend(["u1"])


def test_cli_recommend_at_the_test_cut_off_matches_cli_evaluate(tmp_path, capsys):
    data = tmp_path / "data.csv"
    write_dataset(make_synthetic(300, 80, n_clusters=4, seed=1), data)
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--data",
                str(data),
                "--out",
                str(out),
                "--max-epochs",
                "2",
                "--dim",
                "16",
                "--blocks",
                "1",
                "--heads",
                "1",
                "--negatives",
                "16",
                "--quiet",
            ]
        )
        == 0
    )
    data.unlink()  # the checkpoint carries its users' histories and ids
    capsys.readouterr()
    assert (
        main(["recommend", "--checkpoint", str(out / "model.pt"), "--all-users", "--k", "20", "--split", "test"]) == 0
    )
    recs = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert main(["evaluate", "--checkpoint", str(out / "model.pt"), "--split", "test"]) == 0
    expected = pd.read_json(io.StringIO(capsys.readouterr().out), typ="series")
    model = rsir.Recommender.load(out / "model.pt")
    seqs = model.dataset.sequences
    targets = {model.dataset.user_ids[u]: model.dataset.item_ids[seqs[u][-1] - 1] for u in range(len(seqs))}
    recall, ndcg = independent_metrics(recs, targets, 10)
    assert recall == pytest.approx(expected["recall@10"]) and ndcg == pytest.approx(expected["ndcg@10"])


def test_the_readme_python_section_runs_as_written(tmp_path):
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S).group(1)
    interactions(users=100, items=40).rename(
        columns={"user": "user_id", "item": "item_id", "when": "timestamp"}
    ).to_csv(tmp_path / "interactions.csv", index=False)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own example
    finally:
        os.chdir(cwd)
    rounds = namespace["rounds"]
    assert [r.round for r in rounds] == [0, 1] and rounds[1].synthetic_sequences > 0
    assert (tmp_path / "model.pt").exists() and (tmp_path / "runs" / "loop" / "round-1" / "model.pt").exists()


def test_improve_runs_the_round_of_the_recommenders_preset(tmp_path):
    """Today's round fine-tunes its successor on a per-epoch draw of the synthetic data; a
    Recommender made from a preset runs that preset's round (from scratch, every row), saved
    and loaded too."""
    import yaml

    data = rsir.from_dataframe(interactions(users=60, items=30), user="user", item="item", time="when")
    small = {"dim": 16, "blocks": 1, "heads": 1}
    for preset, successor, per_epoch in ((None, "finetune", 1.0), ("paper", "scratch", 0.0)):
        model = rsir.Recommender(model=small, train={"max_epochs": 1, "seed": 0}, preset=preset)
        model.fit(data).save(tmp_path / f"{preset}.pt")
        for recommender, run in (
            (model, tmp_path / str(preset)),
            (rsir.Recommender.load(tmp_path / f"{preset}.pt"), tmp_path / f"{preset}_loaded"),
        ):
            rounds = recommender.improve(data, run, generate={"attempts": 1})
            saved = yaml.safe_load((run / "config.yaml").read_text())
            # It keeps the model of the round validation prefers (round 0 where the round did not help).
            best = max(rounds, key=lambda r: (r.valid["ndcg@20"], -r.round)).round
            kept = load_checkpoint(run / f"round-{best}" / "model.pt")[0].state_dict()
            assert all(torch.equal(v, kept[k]) for k, v in recommender.module.state_dict().items())
            assert saved["improve"]["successor"] == successor and saved["train"]["synthetic_per_epoch"] == per_epoch
