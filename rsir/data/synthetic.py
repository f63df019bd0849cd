"""Synthetic interaction data: the built-in dataset (its shape: ``rsir.data.source.DataParams``)
and the fuel of the fast tests.

Users have a latent taste over item clusters (Dirichlet, so most users like a few
clusters); inside a cluster items have Zipf popularity; consecutive items follow
item-to-item transitions (each item has two likely successors in its cluster). A
sequential model can therefore beat popularity by learning both the taste and the
transitions.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .dataset import Dataset, from_interactions


def make_synthetic(
    n_users: int,
    n_items: int,
    *,
    n_clusters: int = 20,
    mean_length: float = 12.0,
    min_length: int = 5,
    max_length: int = 60,
    transition: float = 0.6,
    taste_concentration: float = 0.15,
    seed: int = 0,
) -> Dataset:
    if n_users < 1:
        raise ConfigError(f"synthetic data needs at least 1 user, got {n_users}")
    if n_clusters < 1 or n_items < 2 * n_clusters:
        raise ConfigError(
            f"synthetic data needs at least {2 * max(1, n_clusters)} items (2 per cluster), got {n_items}"
        )
    if min_length < 3 or mean_length < min_length or max_length < min_length:
        raise ConfigError("synthetic data needs 3 <= min_length <= mean_length and min_length <= max_length")
    if not 0.0 <= transition <= 1.0:
        raise ConfigError(f"synthetic transition must be in [0, 1], got {transition}")
    if seed < 0:
        raise ConfigError(f"synthetic seed must be >= 0, got {seed}")
    _check_memory(n_users, n_items, n_clusters, max_length)
    rng = np.random.default_rng(seed)
    cluster_of = rng.permutation(np.arange(n_items) % n_clusters)
    by_cluster = np.argsort(cluster_of, kind="stable")  # items grouped by cluster
    cluster_sizes = np.bincount(cluster_of, minlength=n_clusters)
    cluster_starts = np.concatenate([[0], np.cumsum(cluster_sizes)[:-1]])

    # Within-cluster Zipf popularity, encoded as one global CDF: cluster c occupies [c, c+1).
    rank_in_cluster = np.arange(n_items) - np.repeat(cluster_starts, cluster_sizes)
    weights = 1.0 / (1.0 + rank_in_cluster) ** 0.8
    within = np.cumsum(weights) - np.repeat(np.cumsum(weights)[cluster_starts] - weights[cluster_starts], cluster_sizes)
    cdf = np.repeat(np.arange(n_clusters), cluster_sizes) + within / np.repeat(
        within[cluster_starts + cluster_sizes - 1], cluster_sizes
    )

    # Two successors per item, both inside its cluster.
    pos = rank_in_cluster
    size = np.repeat(cluster_sizes, cluster_sizes)
    start = np.repeat(cluster_starts, cluster_sizes)
    successors = np.empty((n_items, 2), dtype=np.int64)
    successors[by_cluster, 0] = by_cluster[start + (pos + 1) % size]
    successors[by_cluster, 1] = by_cluster[start + (pos + 1 + rng.integers(1, size)) % size]

    tastes = rng.dirichlet(np.full(n_clusters, taste_concentration), size=n_users).cumsum(axis=1)
    lengths = np.minimum(min_length + rng.geometric(1.0 / (mean_length - min_length + 1.0), n_users) - 1, max_length)
    steps = int(lengths.max()) + 10  # extra steps make up for repeats removed below
    generated = np.empty((n_users, steps), dtype=np.int64)
    for t in range(steps):  # vectorised over users; only the time axis is a loop
        clusters = np.minimum((tastes < rng.random((n_users, 1))).sum(axis=1), n_clusters - 1)
        fresh = by_cluster[np.minimum(np.searchsorted(cdf, clusters + rng.random(n_users)), n_items - 1)]
        if t == 0:
            generated[:, t] = fresh
            continue
        follow = successors[generated[:, t - 1], (rng.random(n_users) < 0.3).astype(np.int64)]
        generated[:, t] = np.where(rng.random(n_users) < transition, follow, fresh)

    # Keep each user's first occurrence of an item, then cut to the drawn length.
    rows = np.repeat(np.arange(n_users), steps)
    flat = generated.ravel()
    first = np.zeros(flat.size, dtype=bool)
    first[np.unique(rows * n_items + flat, return_index=True)[1]] = True
    rank = np.cumsum(first.reshape(n_users, steps), axis=1) - 1
    keep = (first.reshape(n_users, steps) & (rank < lengths[:, None])).ravel()
    users, items = rows[keep] + 1, flat[keep] + 1
    counts = np.bincount(users, minlength=n_users + 1)
    long_enough = counts[users] >= min_length
    return from_interactions(
        users[long_enough], items[long_enough], None, name=f"synthetic-{n_users}x{n_items}-s{seed}"
    )


def _check_memory(n_users: int, n_items: int, n_clusters: int, max_length: int) -> None:
    """Refuse sizes whose arrays cannot fit in the memory available now, before allocating any
    (the tastes and about seven int64 arrays of users x steps live at once at the peak)."""
    needed = 8 * (n_users * (n_clusters + 7 * (max_length + 10)) + 8 * n_items)
    available = available_memory()
    if available is not None and needed > available:
        raise ConfigError(
            f"synthetic data of {n_users} users and {n_items} items needs about {needed / 2**30:.1f} GB, "
            f"more than the {available / 2**30:.1f} GB available; ask for fewer users or items"
        )


def available_memory() -> int | None:
    """Bytes the system can give without swapping (Linux's MemAvailable), None where it does not say."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None
