"""Top-k retrieval of catalogue items for hidden states, chosen by name.

Generation asks one question per step and sequence: which items score highest? ``exact``
scans the whole catalogue (one matrix product and a top-k); ``faiss`` answers from an
inverted-file index over the item embeddings, which probes a few clusters instead of every
item, so a step costs far less when the catalogue holds hundreds of thousands of items or
more, at the price of sometimes missing an item of the true top k.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
import torch

from ..errors import ConfigError, did_you_mean
from ..models.base import Backbone


class Retriever(Protocol):
    def search(
        self, hidden: torch.Tensor, k: int, exclude: torch.Tensor, score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rows, dim) -> scores and item indices (1-based) of the top ``k`` items that are
        not in the row's ``exclude`` (rows, width; 0 = none), best first (missing results
        score -inf), and the exact scores of the items ``score`` (rows, width)."""
        ...


class ExactRetriever:
    """Scores every item: exact, and the cost grows linearly with the catalogue."""

    def __init__(self, model: Backbone) -> None:
        self.model = model

    def search(
        self, hidden: torch.Tensor, k: int, exclude: torch.Tensor, score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        scores = self.model.score_all(hidden)
        asked = scores.gather(1, score)  # from the same product, so they compare exactly with the top k
        scores.scatter_(1, exclude, float("-inf"))
        scores[:, 0] = float("-inf")  # padding
        top = torch.topk(scores, min(k, scores.shape[1]), dim=1)
        return top.values, top.indices, asked


class FaissRetriever:
    """FAISS inverted-file index (IVF, flat lists, inner product) over the item embeddings.

    ``lists`` clusters (default about 4 sqrt(n)), of which ``probe`` are scanned per query:
    a query costs about probe / lists of an exact scan, plus the cluster assignment.
    """

    def __init__(self, model: Backbone, lists: int = 0, probe: int = 16, train_sample: int = 65536) -> None:
        self.model = model
        try:
            import faiss
        except ImportError:
            raise ConfigError("retrieval 'faiss' needs the faiss-cpu package: pip install 'rsir[faiss]'") from None
        # Scores are inner products with the item embeddings, as Backbone.score_all computes them.
        vectors = np.ascontiguousarray(model.item_weights()[1:].detach().cpu().numpy(), dtype=np.float32)
        n, dim = vectors.shape
        lists = lists or max(1, min(int(4 * math.sqrt(n)), n // 39))  # faiss wants >= 39 points per list
        quantizer = faiss.IndexFlatIP(dim)
        self.index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss.METRIC_INNER_PRODUCT)
        # k-means on a fixed sample: building stays fast and repeatable for any catalogue size.
        sample = np.random.default_rng(0).choice(n, size=min(n, max(train_sample, 39 * lists)), replace=False)
        self.index.cp.seed = 0
        self.index.train(vectors[np.sort(sample)])
        self.index.add(vectors)
        self.index.nprobe = min(probe, lists)

    def search(
        self, hidden: torch.Tensor, k: int, exclude: torch.Tensor, score: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # Enough results that k remain once the excluded items among them are dropped.
        wanted = k + exclude.shape[1]
        scores, ids = self.index.search(np.ascontiguousarray(hidden.detach().cpu().numpy(), dtype=np.float32), wanted)
        missing = ids < 0
        scores[missing] = -np.inf
        ids = np.where(missing, 0, ids + 1)  # the index holds rows 1..n_items as 0..n_items-1
        found_scores, found = torch.from_numpy(scores).to(hidden.device), torch.from_numpy(ids).to(hidden.device)
        excluded = (found.unsqueeze(2) == exclude.unsqueeze(1)).any(2) | (found == 0)
        ranked, order = found_scores.masked_fill(excluded, float("-inf")).sort(dim=1, descending=True, stable=True)
        return ranked[:, :k], found.gather(1, order[:, :k]), self.model.score_items(hidden, score)


RETRIEVERS = {"exact": ExactRetriever, "faiss": FaissRetriever}


def check_retrieval(name: str) -> None:
    if name not in RETRIEVERS:
        hint = did_you_mean(name, RETRIEVERS)
        raise ConfigError(f"unknown retrieval {name!r} (known: {', '.join(RETRIEVERS)}){hint}")


def build_retriever(name: str, model: Backbone, **options: int) -> Retriever:
    """A retriever by name; ``options`` go to it (``lists`` and ``probe`` for faiss)."""
    check_retrieval(name)
    return RETRIEVERS[name](model, **options)
