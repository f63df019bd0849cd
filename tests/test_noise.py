"""Noise injection for robustness studies: what it adds, where, and what it leaves alone."""

from __future__ import annotations

import numpy as np
import pytest

from rsir.cli import main
from rsir.data import from_interactions, leave_one_out
from rsir.data.noise import inject_noise
from rsir.data.source import DataParams, load_dataset
from rsir.errors import ConfigError


def _is_subsequence(short: np.ndarray, long: np.ndarray) -> bool:
    it = iter(long.tolist())
    return all(item in it for item in short.tolist())


@pytest.fixture(scope="module")
def timed():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 300, size=6000)
    return from_interactions(users, rng.integers(0, 400, size=6000), rng.uniform(0, 1e6, size=6000), name="timed")


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_noise_adds_its_share_inside_the_training_part_only(timed, share):
    noisy = inject_noise(timed, share, seed=1)
    before, after = timed.sequences, noisy.sequences
    train_interactions = np.maximum(before.lengths - 2, 0).sum()
    added = after.n_interactions - before.n_interactions
    # Binomial(n, share): within 5 standard deviations of its mean.
    assert abs(added - share * train_interactions) < 5 * np.sqrt(train_interactions * share * (1 - share))
    assert np.all(after.lengths >= before.lengths)
    assert np.array_equal(after.last(1), before.last(1)) and np.array_equal(after.last(2), before.last(2))
    assert np.array_equal(leave_one_out(noisy).test.targets, leave_one_out(timed).test.targets)
    for i in range(0, len(before), 7):  # every real item kept, in its order
        assert _is_subsequence(
            before.items[before.offsets[i] : before.offsets[i + 1]],
            after.items[after.offsets[i] : after.offsets[i + 1]],
        )
    assert after.items.min() >= 1 and after.items.max() <= timed.n_items
    assert np.array_equal(after.users, before.users)
    for i in range(len(after)):  # times stay chronological within each sequence
        assert np.all(np.diff(noisy.timestamps[after.offsets[i] : after.offsets[i + 1]]) >= 0)


def test_noise_is_seeded_and_zero_is_the_identity(timed):
    a, b = inject_noise(timed, 0.2, seed=5), inject_noise(timed, 0.2, seed=5)
    assert np.array_equal(a.sequences.items, b.sequences.items)
    assert not np.array_equal(a.sequences.items, inject_noise(timed, 0.2, seed=6).sequences.items)
    assert inject_noise(timed, 0.0) is timed


def test_noise_from_the_data_section_and_its_errors(capsys):
    clean = load_dataset(DataParams(synthetic_users=200, synthetic_items=50))
    noisy = load_dataset(DataParams(synthetic_users=200, synthetic_items=50, noise=0.3))
    assert noisy.sequences.n_interactions > clean.sequences.n_interactions
    assert noisy.fingerprint() != clean.fingerprint()
    with pytest.raises(ConfigError, match="noise"):
        inject_noise(clean, 1.5)
    assert main(["train", "--noise", "-0.1", "--quiet"]) == 2
    assert "data noise must be a share in [0, 1], got -0.1" in capsys.readouterr().err
