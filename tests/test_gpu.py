"""rsir on a CUDA GPU: training, evaluation, generation and the loop. Skipped where there is
no GPU (CI); `benchmarks/gpu_check.sh` runs them on a GPU machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from rsir.cli import main
from rsir.evaluation import evaluate
from rsir.generation.generate import GenerationParams, generate
from rsir.models import build_backbone
from rsir.training.trainer import fit

from .conftest import LOOP, LOOP_ROUNDS, quick

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def gpu_model(small_dataset, small_split):
    model = build_backbone("sasrec", small_dataset.n_items, {"dim": 32, "max_len": 20}, seed=0)
    fit(model, small_split, quick(device="cuda"), progress=False)
    return model


@pytest.mark.parametrize("loss, precision", [("sampled_softmax", "fp32"), ("softmax", "bf16"), ("bce", "fp32")])
def test_gpu_training_beats_popularity(small_dataset, small_split, loss, precision):
    popularity = fit(
        build_backbone("popularity", small_dataset.n_items), small_split, quick(device="cuda"), progress=False
    ).test
    model = build_backbone("sasrec", small_dataset.n_items, {"dim": 32, "max_len": 20}, seed=0)
    result = fit(model, small_split, quick(device="cuda", loss=loss, precision=precision), progress=False)
    assert model.device.type == "cuda"
    assert result.test["ndcg@10"] > popularity["ndcg@10"]


def test_gpu_evaluation_agrees_with_cpu(gpu_model, small_split):
    on_gpu = evaluate(gpu_model, small_split.test).metrics
    on_cpu = evaluate(gpu_model.to("cpu"), small_split.test).metrics
    gpu_model.to("cuda")
    # Float sums differ in the last bits between devices, which can swap near-tied items.
    assert all(abs(on_gpu[k] - on_cpu[k]) < 0.01 for k in on_cpu), (on_gpu, on_cpu)


def test_gpu_generation_repeats_and_stays_in_the_catalogue(gpu_model, small_split):
    params = GenerationParams(attempts=2, tau=10)
    first = generate(gpu_model, small_split.train, params, progress=False)
    second = generate(gpu_model, small_split.train, params, progress=False)
    assert len(first.sequences) > 0
    assert np.array_equal(first.sequences.items, second.sequences.items)
    assert first.sequences.items.min() >= 1 and first.sequences.items.max() <= gpu_model.n_items


def test_gpu_improve_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["improve", "--out", str(out), "--device", "cuda", *LOOP]) == 0
    rounds = json.loads((out / "metrics.json").read_text())["rounds"]
    assert len(rounds) == LOOP_ROUNDS
