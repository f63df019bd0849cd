"""State retention: fused scores of two models, exactly, through every scoring path."""

from __future__ import annotations

import json

import numpy as np
import torch

from rsir.cli import main
from rsir.generation.loop import load_synthetic
from rsir.generation.retention import RetainedScores
from rsir.models import build_backbone

from .conftest import LOOP


def test_fused_scores_are_the_weighted_sum_of_both_models(small_dataset):
    current = build_backbone(
        "sasrec", small_dataset.n_items, {"dim": 16, "blocks": 1, "heads": 1, "max_len": 20}, seed=0
    )
    previous = build_backbone("gru4rec", small_dataset.n_items, {"dim": 8, "max_len": 20}, seed=1)
    fused = RetainedScores(current, previous, 0.3).eval()
    items = torch.tensor([[5, 9, 2, 0], [7, 1, 3, 4]])
    lengths = torch.tensor([3, 4])
    with torch.no_grad():
        expected = 0.7 * current.score_all(current.last_hidden(items)) + 0.3 * previous.score_all(
            previous.last_hidden(items)
        )
        assert torch.allclose(fused.score_all(fused.last_hidden(items)), expected, atol=1e-6)
        buffer = torch.zeros(2, 8, dtype=torch.long)
        buffer[0, :2], buffer[1, :3] = items[0, :2], items[1, :3]
        decoder = fused.decoder(buffer, lengths - 1)  # grow both rows by their last item
        decoder.append(torch.tensor([0, 1]), torch.tensor([2, 4]))
        assert torch.allclose(fused.score_all(decoder.hidden), expected, atol=1e-5)


def test_loop_with_retention_changes_only_the_later_rounds(finished, tmp_path):
    out = tmp_path / "run"
    assert main(["improve", "--out", str(out), *LOOP, "--retain", "0.5"]) == 0
    plain, retained = (load_synthetic(run / "round-0" / "synthetic.npz") for run in (finished, out))
    assert np.array_equal(plain.items, retained.items)  # round 0 has no previous model
    plain, retained = (load_synthetic(run / "round-1" / "synthetic.npz") for run in (finished, out))
    assert not (len(plain) == len(retained) and np.array_equal(plain.items, retained.items))
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert [r["round"] for r in rounds] == [0, 1, 2]
