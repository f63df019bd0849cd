"""Where a run's data comes from: a file, or the built-in synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .dataset import Dataset
from .noise import inject_noise
from .readers import FORMATS, read_dataset
from .synthetic import make_synthetic


@dataclass
class DataParams:
    path: str = ""  # empty: the built-in synthetic data
    format: str = "auto"  # auto (from the suffix) | s3rec | atomic | csv | tsv | parquet
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"  # empty: keep the file's row order
    kcore: int = 0  # iterative k-core filter; 0 or 1 keeps everything
    # The built-in data (no path): sparse users, about 7 interactions each over 1,000 items, so
    # a plain model sees each item a few times. The shape was picked to show what a round does
    # (docs/results/builtin_data.json). Until 2026-12-07: 500 items, mean length 12.
    synthetic_users: int = 1000
    synthetic_items: int = 1000
    synthetic_mean_length: float = 7.0  # mean interactions per user (at least 5 each)
    synthetic_seed: int = 0
    noise: float = 0.0  # share of random interactions injected into training histories (robustness studies)
    noise_seed: int = 0

    def validate(self) -> None:
        if self.format not in ("auto", *FORMATS):
            raise ConfigError(f"data format must be one of auto, {', '.join(FORMATS)}; got {self.format!r}")
        if self.kcore < 0:
            raise ConfigError(f"kcore must be >= 0, got {self.kcore}")
        if not 0 <= self.noise <= 1:
            raise ConfigError(f"data noise must be a share in [0, 1], got {self.noise}")
        if not 5 <= self.synthetic_mean_length <= 60:  # the generator's shortest and longest users
            raise ConfigError(f"data synthetic_mean_length must be in [5, 60], got {self.synthetic_mean_length}")


def load_dataset(params: DataParams) -> Dataset:
    params.validate()
    if not params.path:
        dataset = make_synthetic(
            params.synthetic_users,
            params.synthetic_items,
            mean_length=params.synthetic_mean_length,
            seed=params.synthetic_seed,
        )
    else:
        dataset = read_dataset(
            params.path,
            params.format,
            user_col=params.user_col,
            item_col=params.item_col,
            time_col=params.time_col or None,
            kcore=params.kcore,
        )
    return inject_noise(dataset, params.noise, params.noise_seed)
