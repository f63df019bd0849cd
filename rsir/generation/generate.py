"""Synthetic sequence generation with fidelity control (the generation step of RSIR).

Many attempts advance together: each step runs one forward pass and one catalogue
scoring for the whole batch, and the fidelity check and the pool choice are tensor
operations. For an attempt grown from source sequence ``s`` with synthetic prefix ``g``:

* R = items of ``s`` not yet in ``g``. If R is empty, stop.
* Fidelity check: continue only if some item of R ranks within the top ``tau`` of the
  model's scores given ``g`` (items already in ``g`` are excluded from the ranking). On
  failure the last generated item, which produced this context, is dropped and the
  attempt stops. ``tau = inf`` disables the check (the paper's ablation, and rsir's default);
  the pool is then drawn first and only the attempts that explore score the catalogue.
* Pool: with probability ``exploit_prob`` the items of R (exploitation), otherwise the
  whole catalogue minus ``g`` (exploration); the highest scoring pool item is appended
  (or one of the top ``top_k``, sampled by softmax, with ``choice="topk"``).
* Stop at ``max_length``. Attempts of at least ``min_length`` items are kept, duplicates removed.

With ``tau_mode="adaptive"`` each source sequence gets its own threshold: the
``tau_quantile`` quantile of the ranks the model gives to that sequence's own next items
(each predicted from its real prefix), capped at ``tau``. A user whose items the model
already ranks high is held to a strict threshold, a user it ranks low to a looser one.

Sources are training sequences only, so validation and test items never enter a check.

Randomness is drawn per batch of attempts from a stream keyed by (seed, batch number), so
the result does not depend on which process grows which batch: under ``torchrun`` each
rank grows its share of the batches and the merged result equals one process's.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..data.batching import next_item_windows
from ..data.sequences import Sequences
from ..errors import ConfigError
from ..evaluation import pessimistic_ranks
from ..models.base import Backbone, Decoder
from .retrieval import Retriever, build_retriever, check_retrieval


@dataclass
class GenerationParams:
    attempts: int = 5  # m: attempts per source sequence
    exploit_prob: float = 0.5  # p: chance that a step picks from the user's own items
    # Fidelity rank threshold. inf (no check) gained most over --preset paper's model, chosen on
    # test numbers (docs/results/fidelity_volume.md); 10 is the paper's check.
    tau: float = math.inf
    tau_mode: str = "fixed"  # fixed: tau for everyone | adaptive: per source sequence, capped at tau
    tau_quantile: float = 0.5  # adaptive: quantile of the ranks of the sequence's own next items
    seed_mode: str = "first"  # first: the source's first item | prefix: a random real prefix
    choice: str = "greedy"  # greedy | topk (sample among the top_k of the pool)
    top_k: int = 10
    min_length: int = 3  # shorter attempts are discarded
    max_length: int = 50  # attempts stop growing here
    attempt_batch: int = 1024  # attempts advanced together
    dedupe: bool = True
    # Reuse earlier steps (cached keys/values) where the backbone allows; False re-encodes each
    # prefix. SASRec's default recency positions and attended padding always re-encode.
    incremental: bool = True
    retrieval: str = "exact"  # exact: scan the catalogue | faiss: approximate top-k from an IVF index
    faiss_lists: int = 0  # IVF clusters (0: about 4 sqrt(n_items))
    faiss_probe: int = 16  # clusters scanned per query: more is slower and more exact

    def validate(self) -> None:
        if self.attempts < 0:
            raise ConfigError(f"attempts must be >= 0 (0: no generation, a round only retrains), got {self.attempts}")
        if not 0.0 <= self.exploit_prob <= 1.0:
            raise ConfigError(f"exploit_prob must be in [0, 1], got {self.exploit_prob}")
        if not (self.tau >= 1):
            raise ConfigError(f"tau must be >= 1 (or inf), got {self.tau}")
        if self.tau_mode not in ("fixed", "adaptive"):
            raise ConfigError(f"tau_mode must be 'fixed' or 'adaptive', got {self.tau_mode!r}")
        if not 0.0 <= self.tau_quantile <= 1.0:
            raise ConfigError(f"tau_quantile must be in [0, 1], got {self.tau_quantile}")
        if self.seed_mode not in ("first", "prefix"):
            raise ConfigError(f"seed_mode must be 'first' or 'prefix', got {self.seed_mode!r}")
        if self.choice not in ("greedy", "topk"):
            raise ConfigError(f"choice must be 'greedy' or 'topk', got {self.choice!r}")
        check_retrieval(self.retrieval)
        if self.faiss_lists < 0 or self.faiss_probe < 1:
            raise ConfigError("generation needs faiss_lists >= 0 and faiss_probe >= 1")
        if self.top_k < 1 or self.attempt_batch < 1 or not 1 <= self.min_length <= self.max_length:
            raise ConfigError("generation needs top_k >= 1, attempt_batch >= 1 and 1 <= min_length <= max_length")


@dataclass
class GenerationResult:
    sequences: Sequences  # kept synthetic sequences (users = source row, origin = round)
    stats: dict[str, Any] = field(default_factory=dict)


@torch.no_grad()
def generate(
    model: Backbone,
    sources: Sequences,
    params: GenerationParams,
    *,
    seed: int = 0,
    origin: int = 1,
    progress: bool = True,
) -> GenerationResult:
    """Grow ``params.attempts`` synthetic sequences from every source sequence."""
    params.validate()
    started = time.perf_counter()
    model.eval()
    options = {"lists": params.faiss_lists, "probe": params.faiss_probe} if params.retrieval == "faiss" else {}
    retriever = build_retriever(params.retrieval, model, **options)
    usable = np.flatnonzero(sources.lengths >= 2)  # a one-item source has nothing left to check
    attempt_rows = np.repeat(usable, params.attempts)
    rng = np.random.default_rng(seed)
    if params.tau_mode == "adaptive":
        tau_rows = np.minimum(own_item_rank_quantiles(model, sources, params.tau_quantile), params.tau)
    else:
        tau_rows = np.full(len(sources), params.tau)
    if params.seed_mode == "first":
        seed_lengths = np.ones(len(attempt_rows), dtype=np.int64)
    else:
        seed_lengths = rng.integers(1, sources.lengths[attempt_rows])  # leaves R non-empty
    width = params.max_length
    grown_rows, grown_lengths, grown_items = [], [], []  # this rank's attempts, compact
    checked = np.zeros(width + 1, dtype=np.int64)
    passed = np.zeros(width + 1, dtype=np.int64)
    order = np.argsort(sources.lengths[attempt_rows], kind="stable")  # similar sources together
    batches = [order[start : start + params.attempt_batch] for start in range(0, len(order), params.attempt_batch)]
    mine = distributed.my_share(range(len(batches)))
    bar = tqdm(
        total=sum(len(batches[b]) for b in mine),
        desc="generate",
        unit="attempt",
        disable=None if progress and distributed.is_main() else True,
        leave=False,
    )  # None: a terminal only
    for number in mine:
        chunk = batches[number]
        torch_gen = torch.Generator(model.device).manual_seed(
            int(np.random.SeedSequence([seed, number]).generate_state(1)[0])
        )
        grown, lengths = _grow(
            model,
            retriever,
            sources,
            attempt_rows[chunk],
            seed_lengths[chunk],
            tau_rows[attempt_rows[chunk]],
            params,
            torch_gen,
            checked,
            passed,
        )
        grown_rows.append(chunk)
        grown_lengths.append(lengths)
        # Rejected items dropped; int32 at once, as the store keeps them (not int64 until the end).
        grown_items.append(grown[np.arange(grown.shape[1])[None, :] < lengths[:, None]].astype(np.int32))
        bar.update(len(chunk))
    bar.close()
    rows = np.concatenate(grown_rows) if grown_rows else np.zeros(0, dtype=np.int64)
    lengths = np.concatenate(grown_lengths).astype(np.int64) if grown_lengths else np.zeros(0, dtype=np.int64)
    grown_seqs = Sequences.from_flat(
        np.concatenate(grown_items) if grown_items else np.zeros(0, dtype=np.int32), lengths, rows
    )
    keep = lengths >= params.min_length
    counts = np.array([int((lengths - np.minimum(seed_lengths[rows], lengths)).sum()), int(keep.sum())])
    kept = grown_seqs.select(np.flatnonzero(keep))
    # Each rank ships only the attempts it kept; every rank then holds the same merged result.
    parts = distributed.gather_arrays((kept.items, kept.lengths, kept.users))
    merged = Sequences.from_flat(
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )
    merged = merged.select(np.argsort(merged.users, kind="stable"))  # attempt order, as one process has it
    checked, passed, counts = (distributed.sum_over_ranks(a) for a in (checked, passed, counts))
    generated_items, kept_min_len = int(counts[0]), int(counts[1])
    if params.dedupe and len(merged):
        merged = merged.select(first_of_each_content(merged))
    lengths = merged.lengths
    result = Sequences.from_flat(merged.items, lengths, attempt_rows[merged.users], origin=origin)
    seconds = time.perf_counter() - started
    return GenerationResult(
        result,
        {
            "sources": int(len(usable)),
            "attempts": int(len(attempt_rows)),
            "kept_min_len": kept_min_len,
            "kept": int(len(result)),
            "synthetic_interactions": int(result.n_interactions),
            "avg_len": float(lengths.mean()) if len(lengths) else 0.0,
            "acceptance_by_step": [round(float(p / c), 4) for p, c in zip(passed, checked) if c > 0],
            "checks_by_step": [int(c) for c in checked if c > 0],
            "generated_items": generated_items,
            "seconds": round(seconds, 3),
            "items_per_second": round(generated_items / max(seconds, 1e-9), 1),
            "threads": torch.get_num_threads(),  # the rate above depends on it
        },
    )


def first_of_each_content(seqs: Sequences) -> np.ndarray:
    """The rows that no earlier row repeats (same length and items), in order. Rows of one
    length are compared as raw bytes, one sort per length, so nothing is padded or sorted
    field by field."""
    firsts = []
    for length in np.unique(seqs.lengths).tolist():  # one step per distinct length, not per row
        rows = np.flatnonzero(seqs.lengths == length)
        if length == 0:
            firsts.append(rows[:1])
            continue
        block = np.ascontiguousarray(seqs.items[seqs.offsets[rows][:, None] + np.arange(length)], dtype=np.int32)
        as_bytes = block.view(np.dtype((np.void, block.itemsize * length))).ravel()
        firsts.append(rows[np.unique(as_bytes, return_index=True)[1]])  # stable: each first occurrence
    return np.sort(np.concatenate(firsts))


def _grow(
    model: Backbone,
    retriever: Retriever,
    sources: Sequences,
    rows: np.ndarray,
    seed_lengths: np.ndarray,
    tau: np.ndarray,
    params: GenerationParams,
    torch_gen: torch.Generator,
    checked: np.ndarray,
    passed: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Grow one batch of attempts; returns the (batch, width) items and the final lengths."""
    batch, device = len(rows), model.device
    source = torch.from_numpy(sources.padded(rows, int(sources.lengths[rows].max())).astype(np.int64)).to(device)
    seq = torch.zeros((batch, params.max_length), dtype=torch.long, device=device)
    seed_len = torch.from_numpy(np.minimum(seed_lengths, params.max_length)).to(device)
    head = source[:, : params.max_length]
    seq[:, : head.shape[1]] = torch.where(torch.arange(head.shape[1], device=device) < seed_len[:, None], head, 0)
    length = seed_len.clone()
    rank_limit = torch.from_numpy(tau.astype(np.float64)).to(device)  # each attempt's tau
    decoder = model.decoder(seq, length) if params.incremental else Decoder(model, seq, length)
    # R starts as the source's items that are not in the seed (compared by value: repeats), one
    # seed position at a time: a (rows, source width, max_length) comparison would grow with the
    # longest history in the batch times max_length.
    remaining = source != 0
    for position in range(head.shape[1]):  # the seed's positions; the rest of seq is padding (0)
        remaining &= source != seq[:, position : position + 1]
    alive = length < params.max_length
    # Without a check every step passes, so the pool can be drawn before the step and only the
    # rows that explore need the catalogue scored.
    unchecked = not _checked_rows(rank_limit, model.n_items).any()
    step = 0
    while alive.any():
        idx = alive.nonzero().squeeze(1)
        has_remaining = remaining[idx].any(1)
        stop_empty = idx[~has_remaining]
        alive[stop_empty] = False
        idx = idx[has_remaining]
        if len(idx) == 0:
            break
        hidden, context = decoder.hidden[idx], seq[idx, : int(length[idx].max())]
        if unchecked:
            exploit = torch.rand(len(idx), generator=torch_gen, device=device) < params.exploit_prob
            step_result = pool_step(model, retriever, hidden, context, source[idx], remaining[idx], ~exploit, params)
        else:
            step_result = fidelity_step(
                model, retriever, hidden, context, source[idx], remaining[idx], rank_limit[idx], params
            )
        ok = step_result.ok
        checked[step] += len(idx)
        passed[step] += int(ok.sum())
        failed = idx[~ok]
        # The item that led to a failing context is rejected, unless it is part of the real seed.
        length[failed] = torch.where(length[failed] > seed_len[failed], length[failed] - 1, length[failed])
        alive[failed] = False
        idx, top, source_scores = idx[ok], step_result.top_items[ok], step_result.source_scores[ok]
        if len(idx) == 0:
            break
        if not unchecked:  # drawn after the check, for the rows that passed it
            exploit = torch.rand(len(idx), generator=torch_gen, device=device) < params.exploit_prob
        chosen = torch.where(
            exploit,
            source[idx].gather(1, _pick(source_scores, params, torch_gen).unsqueeze(1)).squeeze(1),
            top.gather(1, _pick(step_result.top_scores[ok], params, torch_gen).unsqueeze(1)).squeeze(1),
        )
        seq[idx, length[idx]] = chosen
        length[idx] += 1
        decoder.append(idx, chosen)
        remaining[idx] &= source[idx] != chosen.unsqueeze(1)
        alive[idx] = length[idx] < params.max_length
        step += 1
    return seq.cpu().numpy(), length.cpu().numpy()


@dataclass
class StepResult:
    ok: torch.Tensor  # (rows,) the fidelity check passed
    top_scores: torch.Tensor  # (rows, k) the catalogue's best items outside g, best first
    top_items: torch.Tensor
    source_scores: torch.Tensor  # (rows, source width) scores of R's items, -inf elsewhere


def fidelity_step(
    model: Backbone,
    retriever: Retriever,
    hidden: torch.Tensor,
    context: torch.Tensor,
    source: torch.Tensor,
    remaining: torch.Tensor,
    tau: torch.Tensor,
    params: GenerationParams,
) -> StepResult:
    """One step's questions for a batch: does some item of R rank within the top ``tau``
    (per row; inf = no check) of the catalogue outside g, and which are the best items
    outside g (the exploration pool)?"""
    check = _checked_rows(tau, model.n_items)
    tau = torch.where(check, tau, 0).long()
    needed = max(int(tau.max()) if len(tau) else 0, params.top_k if params.choice == "topk" else 1)
    top_scores, top_items, source_scores = retriever.search(hidden, needed, exclude=context, score=source)
    source_scores = source_scores.masked_fill(~remaining, float("-inf"))
    # Listed within the top tau, or scoring at least the tau-th listed item: the second test
    # catches items an approximate retriever missed (R's scores are exact).
    within = torch.arange(top_items.shape[1], device=tau.device) < tau[:, None]
    listed = ((top_items.unsqueeze(2) == source.unsqueeze(1)) & within.unsqueeze(2)).any(1) & remaining
    threshold = top_scores.gather(1, (tau - 1).clamp(min=0).unsqueeze(1))
    ok = ~check | (listed | ((source_scores >= threshold) & remaining)).any(1)
    return StepResult(ok, top_scores, top_items, source_scores)


def _checked_rows(tau: torch.Tensor, n_items: int) -> torch.Tensor:
    """The rows whose threshold can fail: tau = inf, or tau at least the catalogue, admits every item."""
    return torch.isfinite(tau) & (tau < n_items)


def pool_step(
    model: Backbone,
    retriever: Retriever,
    hidden: torch.Tensor,
    context: torch.Tensor,
    source: torch.Tensor,
    remaining: torch.Tensor,
    explore: torch.Tensor,
    params: GenerationParams,
) -> StepResult:
    """One step without the fidelity check: every row passes, the scores of R's items for
    all rows, and the best items outside g only for the rows that ``explore`` (the others
    get an empty pool, -inf): a row that exploits never scores the catalogue."""
    rows = len(hidden)
    source_scores = model.score_items(hidden, source).masked_fill(~remaining, float("-inf"))
    top_scores = hidden.new_full((rows, 1), float("-inf"))
    top_items = torch.zeros((rows, 1), dtype=torch.long, device=hidden.device)
    if explore.any():
        scores, items, _ = retriever.search(
            hidden[explore],
            params.top_k if params.choice == "topk" else 1,
            exclude=context[explore],
            score=source[explore, :1],
        )
        top_scores = top_scores.new_full((rows, scores.shape[1]), float("-inf"))
        top_items = top_items.new_zeros((rows, items.shape[1]))
        top_scores[explore], top_items[explore] = scores, items
    return StepResult(torch.ones(rows, dtype=torch.bool, device=hidden.device), top_scores, top_items, source_scores)


@torch.no_grad()
def own_item_rank_quantiles(model: Backbone, seqs: Sequences, quantile: float, batch_size: int = 256) -> np.ndarray:
    """Per sequence, the ``quantile`` of the 1-based ranks (ties pessimistic, over the whole
    catalogue) the model gives to each of its items given the real prefix before it; inf
    for a sequence of one item."""
    model.eval()
    ranks, owners = [], []
    for rows, inputs, targets in next_item_windows(seqs, model.max_len, batch_size):
        inputs, targets = inputs.to(model.device), targets.to(model.device)
        valid = targets != 0
        scores = model.score_all(model.encode(inputs)[valid])
        scores[:, 0] = float("-inf")
        ranks.append(pessimistic_ranks(scores, targets[valid], overwrite_scores=True).cpu().numpy() + 1)
        owners.append(np.repeat(rows, valid.sum(1).cpu().numpy()))
    out = np.full(len(seqs), np.inf)
    if ranks:
        frame = pd.DataFrame({"row": np.concatenate(owners), "rank": np.concatenate(ranks)})
        per_row = frame.groupby("row")["rank"].quantile(quantile, interpolation="higher")
        out[per_row.index.to_numpy()] = per_row.to_numpy()
    return out


def _pick(scores: torch.Tensor, params: GenerationParams, torch_gen: torch.Generator) -> torch.Tensor:
    """Column of the best score per row, or a softmax sample among the top_k."""
    if params.choice == "greedy":
        return scores.argmax(1)
    top = torch.topk(scores, min(params.top_k, scores.shape[1]), dim=1)
    probs = torch.softmax(top.values, dim=1).nan_to_num(0.0)
    probs[probs.sum(1) == 0, 0] = 1.0
    return top.indices.gather(1, torch.multinomial(probs, 1, generator=torch_gen)).squeeze(1)
