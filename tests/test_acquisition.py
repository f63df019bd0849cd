"""Acquisition after verification: MC-dropout disagreement and the capped, ranked subset."""

from __future__ import annotations

import json

import numpy as np

from rsir.cli import main
from rsir.generation.acquisition import acquire, disagreement
from rsir.models import build_backbone
from rsir.training.trainer import TrainParams, fit

from .conftest import LOOP


def test_disagreement_needs_dropout_and_is_seeded(small_dataset, small_split):
    seqs = small_split.train.select(np.arange(50))
    quiet = build_backbone(
        "sasrec", small_dataset.n_items, {"dim": 16, "blocks": 1, "heads": 1, "dropout": 0.0}, seed=0
    )
    assert np.allclose(disagreement(quiet, seqs, samples=4), 0.0, atol=1e-5)  # no dropout: every sample agrees
    noisy = build_backbone(
        "sasrec", small_dataset.n_items, {"dim": 16, "blocks": 1, "heads": 1, "dropout": 0.3}, seed=0
    )
    fit(noisy, small_split, TrainParams(max_epochs=2, batch_size=64, lr=3e-3, negatives=16), progress=False)
    first, again = disagreement(noisy, seqs, samples=4, seed=1), disagreement(noisy, seqs, samples=4, seed=1)
    assert np.array_equal(first, again) and (first[seqs.lengths >= 2] > 0).all()
    noisy.eval()
    disagreement(noisy, seqs, samples=2)
    assert not noisy.training  # the model's mode is restored
    kept = acquire(noisy, seqs, share=0.3, samples=4, seed=1)
    assert len(kept) == 15
    chosen = {tuple(s) for s in kept.to_lists()}
    scores = dict(zip(map(tuple, seqs.to_lists()), first))
    assert min(scores[s] for s in chosen) >= max(v for s, v in scores.items() if s not in chosen)
    assert acquire(noisy, seqs, share=1.0) is seqs
    drawn = acquire(noisy, seqs, share=0.3, seed=1, by="random")
    assert drawn.to_lists() == acquire(noisy, seqs, share=0.3, seed=1, by="random").to_lists()  # seeded
    assert len(drawn) == 15 and drawn.to_lists() != acquire(noisy, seqs, share=0.3, seed=2, by="random").to_lists()
    positions = {tuple(s): i for i, s in enumerate(seqs.to_lists())}
    assert [positions[tuple(s)] for s in drawn.to_lists()] == sorted(positions[tuple(s)] for s in drawn.to_lists())


def test_loop_keeps_the_acquired_share(tmp_path):
    out = tmp_path / "run"
    options = [*LOOP[: LOOP.index("--rounds")], "--rounds", "1", "--tau", "10", "--quiet"]
    assert main(["improve", "--out", str(out), *options, "--acquire-share", "0.5", "--mc-samples", "3"]) == 0
    generation = json.loads((out / "round-0" / "generation.json").read_text())
    assert generation["acquired"] == -(-generation["kept"] // 2)  # ceil(kept / 2)
    report = json.loads((out / "metrics.json").read_text())
    assert report["rounds"][1]["synthetic_sequences"] == generation["acquired"]
    control = tmp_path / "control"
    assert main(["improve", "--out", str(control), *options, "--acquire-share", "0.5", "--acquire-by", "random"]) == 0
    drawn = json.loads((control / "round-0" / "generation.json").read_text())
    assert (
        drawn["kept"] == generation["kept"] and drawn["acquired"] == generation["acquired"]
    )  # same generation, same share kept
