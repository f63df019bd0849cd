from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rsir.data import leave_one_out, make_synthetic

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _two_threads():
    torch.set_num_threads(2)


@pytest.fixture(scope="session")
def small_dataset():
    return make_synthetic(600, 120, n_clusters=8, seed=3)


@pytest.fixture(scope="session")
def small_split(small_dataset):
    return leave_one_out(small_dataset)
