"""Training: Adam, sequence-to-sequence next-item loss, early stopping on validation
NDCG@20, best weights kept, per-epoch JSON-lines log, resumable at epoch boundaries."""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from .. import distributed
from ..data import Sequences
from ..data.augmentation import AUGMENTED, augmented, check_augmentation
from ..data.batching import (
    BATCHING,
    BUDGET_UNITS,
    TARGET_WEIGHTING,
    TARGETS,
    count_targets,
    next_item_batches,
    prefix_rows,
)
from ..data.split import LeaveOneOut
from ..errors import CheckpointError, ConfigError
from ..evaluation import METRICS, RANKS_FILE, evaluate, save_ranks
from ..models.base import Backbone
from ..models.checkpoint import (
    load_checkpoint,
    save_checkpoint,
)
from .callbacks import (
    SELECT_METRIC,
    Callback,
    EarlyStopping,
    Progress,
    RunFiles,
    TestProbes,
    TimeBudget,
    TrainingRun,
)
from .losses import LOSSES, NEGATIVES_PER, CatalogueDistillation, build_loss

log = logging.getLogger(__name__)


@dataclass
class TrainParams:
    loss: str = "sampled_softmax"  # sampled_softmax | softmax | bce
    negatives: int = 256  # uniform negatives of the sampled softmax
    # sequence: one set of negatives per sequence, shared by its positions, its own items
    # excluded; target: an independent set per target, nothing excluded (RecTools)
    negatives_per: str = "target"
    lr: float = 1e-3
    beta2: float = 0.98  # Adam's second-moment decay (RecTools' SASRec; the paper preset: 0.999)
    weight_decay: float = 0.0
    batch_size: int = 128  # the paper preset: 256
    # length: batches of sequences of similar length (least padding); random: any sequences
    # (RecTools), each batch computed in groups of similar length (see length_groups)
    batching: str = "random"
    # batch: each batch's loss is its targets' weighted mean, so a target's weight depends on
    # its batch; equal: every target of an epoch weighs the same (each batch's weighted sum
    # divided by the epoch's mean weight per batch; the length_batched preset: equal)
    target_weighting: str = "batch"
    max_epochs: int = 200
    patience: int = 50  # epochs without a better validation select_metric before stopping (the presets: 20)
    # the validation metric whose best epoch is kept and that patience waits on (recall@10: the
    # published SASRec+SS recipe's; rsir's studies choose between runs on ndcg@20 whatever this is)
    select_metric: str = SELECT_METRIC
    # Validate every N epochs (and at the last one): the best model and early stopping see
    # only validated epochs, so a run costs less where validation takes as long as an epoch.
    eval_every: int = 1
    eval_batch_size: int = 1024
    exclude_seen: bool = True  # drop the user's own history from the ranking
    # Also rank the test set at every new best validation epoch, as test_* fields of log.jsonl,
    # so that a stopping rule or an epoch cap chosen later on the validation log can report its
    # test metrics without a rerun. Nothing reads them to choose; training is the same.
    test_probes: bool = False
    seed: int = 0
    threads: int = 0  # torch CPU threads; 0 = all cores (split among torchrun's local processes)
    device: str = "cpu"  # cpu | cuda | cuda:N | auto (a GPU if there is one)
    # none | reorder | insert: train also on augmented copies of each sequence (a baseline; in a loop, the successors)
    augment: str = "none"
    augment_rate: float = 0.2  # share of each sequence the augmentation reorders or inserts
    augment_copies: int = 1  # augmented copies of each sequence, each drawn independently
    augment_weight: float = 1.0  # loss weight of targets in augmented copies (real ones weigh 1)
    # loss weight of targets in synthetic sequences (real ones weigh 1); 0.25 measured best, on
    # test numbers, for the earlier unchecked round over --preset paper's model (Beauty, Sports,
    # Toys; docs/RESULTS.md); not re-tuned for today's round
    synthetic_weight: float = 0.25
    # non-real sequences (a round's synthetic ones, or augmented copies) per epoch, as a multiple
    # of the real ones, drawn afresh each epoch (0: all of them in every epoch, the presets); bounds
    # a round's epoch whatever its volume, and holds an augmentation baseline to the same volume.
    # 1.0 with a fine-tuned successor is the default round, chosen on validation (issue 45)
    synthetic_per_epoch: float = 1.0
    # sequences: the budget counts non-real rows per real one | targets: their next-item
    # targets per real target, so rivals whose sequences differ in length get the same volume
    budget_unit: str = "sequences"
    # all: every position of a sequence predicts its next item (the SASRec paper);
    # prefixes: every prefix is a row trained on its last target only (RecBole, S3-Rec)
    targets: str = "all"
    # Self-distillation: the loss is (1 - distill_weight) x the next-item loss + distill_weight x
    # tau^2 KL(teacher || model) over the whole catalogue at each target (tau = distill_temperature).
    # The teacher is the checkpoint ``teacher``; in a loop, where it is empty, the previous round's model.
    distill_weight: float = 0.0
    distill_temperature: float = 1.0
    teacher: str = ""
    # fp32 | bf16: matrix products of the training step in bfloat16 (weights, evaluation stay fp32)
    precision: str = "fp32"

    def for_first_round(self) -> TrainParams:
        """A loop's round 0, the plain training: augmentation and distillation (from the previous
        round's model, unless a teacher is named) treat the successors, as rivals of synthetic data."""
        return replace(self, augment="none", distill_weight=self.distill_weight if self.teacher else 0.0)

    def training_split(self, split: LeaveOneOut, n_items: int) -> LeaveOneOut:
        """``split`` with the training sequences as this training learns from them: each
        sequence, then ``augment_copies`` augmented copies of each where ``augment`` names an
        augmentation (otherwise ``split`` itself). The data preparation before :func:`fit`."""
        copies = augmented(split.train, self.augment, self.augment_rate, self.seed, n_items, self.augment_copies)
        return split if copies is split.train else split.with_train(copies)

    def validate(self) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"train option loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("lr", "batch_size", "max_epochs", "eval_batch_size", "negatives"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):  # also refuses nan
                raise ConfigError(f"train option {name} must be > 0, got {value}")
        for name in ("synthetic_weight", "augment_weight"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ConfigError(f"train option {name} must be > 0, got {getattr(self, name)}")
        if not (self.synthetic_per_epoch >= 0 and math.isfinite(self.synthetic_per_epoch)):
            raise ConfigError(f"train option synthetic_per_epoch must be >= 0, got {self.synthetic_per_epoch}")
        if self.select_metric not in METRICS:
            raise ConfigError(
                f"train option select_metric must be one of {', '.join(METRICS)}, got {self.select_metric!r}"
            )
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise ConfigError(f"train option weight_decay must be >= 0, got {self.weight_decay}")
        for name, allowed in (
            ("negatives_per", NEGATIVES_PER),
            ("batching", BATCHING),
            ("target_weighting", TARGET_WEIGHTING),
            ("budget_unit", BUDGET_UNITS),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"train option {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if not 0 <= self.distill_weight <= 1:
            raise ConfigError(f"train option distill_weight must be in [0, 1], got {self.distill_weight}")
        if not (self.distill_temperature > 0 and math.isfinite(self.distill_temperature)):
            raise ConfigError(f"train option distill_temperature must be > 0, got {self.distill_temperature}")
        if not 0 <= self.beta2 < 1:
            raise ConfigError(f"train option beta2 must be in [0, 1), got {self.beta2}")
        if self.targets not in TARGETS:
            raise ConfigError(f"train option targets must be one of {', '.join(TARGETS)}, got {self.targets!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"train option precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        if self.patience < 1:
            raise ConfigError(f"train option patience must be >= 1, got {self.patience}")
        if self.eval_every < 1:
            raise ConfigError(f"train option eval_every must be >= 1, got {self.eval_every}")
        if self.threads < 0:
            raise ConfigError(f"train option threads must be >= 0 (0 = all cores), got {self.threads}")
        if not 0 <= self.seed < 2**32:  # the range numpy's seeding accepts
            raise ConfigError(f"train option seed must be in [0, 2**32), got {self.seed}")
        distributed.check_device(self.device)
        check_augmentation(self.augment, self.augment_rate, self.augment_copies)


PRECISIONS = {"fp32": None, "bf16": torch.bfloat16}


@dataclass
class FitResult:
    """What a training ended with: its best epoch's validation and test metrics and its cost."""

    best_epoch: int
    best_valid: dict[str, float]
    test: dict[str, float]
    epochs: int
    train_seconds: float
    eval_seconds: float
    # None where they were not recorded (a plain run's metrics.json reused as a loop's round 0)
    wall_seconds: float | None = None
    targets_per_second: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("history")
        return out


def use_threads(threads: int) -> None:
    """Give torch ``threads`` CPU threads (0: this process's share of the cores, all of them
    alone, an equal part under torchrun's ``LOCAL_WORLD_SIZE`` processes per machine, which
    would otherwise each claim every core). The loop calls it too, not only training: a
    resumed loop may generate before it trains anything. MKL is told not to use fewer threads
    than asked on a busy machine, which would change the order of floating-point sums and so
    the exact repeatability of seeded runs."""
    os.environ.setdefault("MKL_DYNAMIC", "FALSE")
    if not threads:
        threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    torch.set_num_threads(threads)  # also turns MKL's dynamic threads off


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if distributed.world_size() > 1:
        # Each rank draws its own negatives and dropout masks; the weights all ranks start
        # from are rank 0's, which DistributedDataParallel broadcasts.
        torch.manual_seed(int(np.random.SeedSequence([seed, distributed.rank()]).generate_state(1)[0]))


class LossStep(torch.nn.Module):
    """The backbone and its loss as one module, so DistributedDataParallel sees the whole
    forward pass and averages the gradients of every parameter across ranks; ``precision``
    (a key of ``PRECISIONS``) picks the autocast type of the step's products."""

    def __init__(
        self,
        model: Backbone,
        loss_fn,
        precision: str = "fp32",
        teacher: Backbone | None = None,
        distill_weight: float = 0.0,
        distill_temperature: float = 1.0,
        by_length_groups: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.loss_fn = loss_fn
        self.low_precision = PRECISIONS[precision]
        self.teacher = [teacher] if teacher is not None and distill_weight > 0 else []  # a list: not a submodule
        self.distill_weight, self.distill_temperature = distill_weight, distill_temperature
        self.by_length_groups = by_length_groups

    @classmethod
    def for_training(cls, model: Backbone, params: TrainParams, teacher: Backbone | None = None) -> LossStep:
        """The step as :func:`fit` trains with ``params`` (its loss, precision, distillation and
        length groups), so that benchmarks time and profile the same step."""
        return cls(
            model,
            build_loss(params.loss, params.negatives, params.negatives_per),
            params.precision,
            teacher,
            params.distill_weight,
            params.distill_temperature,
            by_length_groups=params.batching == "random",
        )

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor, batch_weight: float
    ) -> torch.Tensor:
        # Mixed precision: autocast runs the products in bfloat16; weights, optimiser and loss sums stay fp32.
        with (
            torch.autocast(inputs.device.type, dtype=self.low_precision, enabled=self.low_precision is not None),
            self.model.training_step(),
        ):
            # This rank's weighted sum over the whole batch's weight, times the number of ranks:
            # averaging the ranks' gradients then gives the gradient of the batch's weighted mean.
            chunks = (
                [_rows(rows, width, inputs, targets, weights) for rows, width in length_groups(inputs)]
                if self.by_length_groups
                else [(inputs, targets, weights)]
            )
            loss = self._weighted_sum(*chunks[0])
            for chunk in chunks[1:]:
                loss = loss + self._weighted_sum(*chunk)
            loss = loss.float() * (distributed.world_size() / batch_weight)
            extra = self.model.auxiliary_loss(inputs)
            return loss if extra is None else loss + extra.float()

    def _weighted_sum(self, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The batch's weighted loss sum (with distillation, its mix with the teacher's)."""
        hidden = self.model.encode(inputs)
        loss = self.loss_fn(self.model, hidden, inputs, targets, weights)
        if self.teacher:
            loss = (1 - self.distill_weight) * loss + self.distill_weight * self._distillation(
                hidden, inputs, targets, weights
            )
        return loss

    def _distillation(
        self, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        teacher, valid = self.teacher[0], targets != 0
        with torch.no_grad():
            teacher_hidden = teacher.encode(inputs)[valid]
            teacher_weights = teacher.item_weights()
        return CatalogueDistillation.apply(
            hidden[valid],
            self.model.item_weights(),
            teacher_hidden,
            teacher_weights,
            weights[valid],
            self.distill_temperature,
        )


def length_groups(inputs: torch.Tensor) -> list[tuple[torch.Tensor, int]]:
    """The rows of a right-padded batch in groups of lengths within a factor of two (1, 2,
    3-4, 5-8, ...): a batch of random rows computed group by group pads each group only to
    its own longest row, so it costs about what a length-bucketed batch costs (on Beauty a
    padded area of about 1.2 times the real positions, docs/results/packing_step.json, where the
    whole batch pads to several times them) and gives the same loss sum; there a loss per group
    was also faster than one loss over all the batch's targets. Each group comes with the
    length of its longest row."""
    lengths = (inputs != 0).sum(1)
    size_class = torch.ceil(torch.log2(lengths.clamp(min=1).double())).long()
    order = torch.argsort(size_class, stable=True)
    counts = torch.bincount(size_class).tolist()
    return [(rows, int(lengths[rows].max())) for rows in torch.split(order, counts) if len(rows)]


def _rows(rows: torch.Tensor, width: int, *batch: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``rows`` of each (batch, length) tensor, cut to ``width`` positions."""
    return tuple(tensor[rows, :width] for tensor in batch)


def targets_per_epoch(train: Sequences, params: TrainParams, max_len: int) -> float:
    """The next-item targets one epoch of ``params`` trains on ``train`` (their expected number
    under a budget of non-real rows): a training's cost in a unit that, unlike seconds, is the
    same on every machine."""
    last_target_only = params.targets == "prefixes"
    rows = prefix_rows(train, max_len) if last_target_only else train
    return _epoch_size(rows, max_len, params)[0]


def _epoch_size(rows: Sequences, max_len: int, params: TrainParams) -> tuple[float, int]:
    return count_targets(rows, max_len, params.targets == "prefixes", params.synthetic_per_epoch, params.budget_unit)


def fit(
    model: Backbone,
    split: LeaveOneOut,
    params: TrainParams,
    *,
    run_dir: str | Path | None = None,
    meta: dict[str, Any] | None = None,
    progress: bool = True,
    time_budget: float | None = None,
    teacher: Backbone | None = None,
    carry: dict[str, Any] | None = None,
    callbacks: list[Callback] | None = None,
) -> FitResult:
    """Train ``model`` on ``split.train`` and keep the epoch with the best validation ``params.select_metric``.

    With ``run_dir``, writes ``model.pt`` (best weights), ``last.pt`` (state to resume
    from), and ``log.jsonl`` (one line per epoch); an existing ``last.pt`` is resumed.
    ``time_budget`` (seconds) stops training after the epoch that exhausts it. With
    ``distill_weight`` > 0 the model also learns the catalogue distribution of ``teacher``
    (else of the checkpoint ``params.teacher``). ``carry`` holds entries saved in ``model.pt``
    beside the weights: the data's ids and histories (:func:`rsir.models.checkpoint.data_entries`).
    ``callbacks`` (:mod:`rsir.training.callbacks`) run after the built-in ones: the run directory's
    files, early stopping, the time budget and progress.

    Under ``torchrun`` (see :mod:`rsir.distributed`) the model is wrapped in
    DistributedDataParallel, each rank trains on its rows of every batch, evaluation is
    shared exactly, and only rank 0 writes files or progress.
    """
    params.validate()
    if params.test_probes and time_budget is not None:
        raise ConfigError("train option test_probes: a time budget would count the probes' time and stop sooner")
    use_threads(params.threads)
    seed_everything(params.seed)
    meta = dict(meta or {})
    run_dir = Path(run_dir) if run_dir else None
    started = time.perf_counter()
    if params.augment != "none" and not (split.train.origin == AUGMENTED).any():
        raise ConfigError(
            "train option augment: fit trains on the sequences it is given; "
            "add the augmented copies first with params.training_split(split, n_items)"
        )
    model.prepare(split.train)
    device = distributed.resolve_device(params.device)
    model.to(device)
    if not model.trainable:
        return _fit_untrained(model, split, params, run_dir, meta, started, carry)

    optimizer = torch.optim.Adam(
        model.parameters(), lr=params.lr, betas=(0.9, params.beta2), weight_decay=params.weight_decay
    )
    teacher = _teacher(params, teacher, model, device)
    step: torch.nn.Module = LossStep.for_training(model, params, teacher)
    if distributed.active():
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)
    last_target_only = params.targets == "prefixes"
    rows = prefix_rows(split.train, model.max_len) if last_target_only else split.train
    epoch_targets, rows_per_epoch = _epoch_size(rows, model.max_len, params)
    run = TrainingRun(
        model,
        optimizer,
        np.random.default_rng(params.seed),
        params,
        batches_per_epoch=int(np.ceil(rows_per_epoch / params.batch_size)),
    )
    hooks: list[Callback] = [
        *([RunFiles(run_dir, meta, carry)] if run_dir else []),  # first: it restores a resumed state
        EarlyStopping(params.patience, params.select_metric),
        *([TestProbes(split.test, params.eval_batch_size, params.exclude_seen)] if params.test_probes else []),
        *([TimeBudget(time_budget, started)] if time_budget is not None else []),
        Progress(bar=progress),
        *(callbacks or []),
    ]

    def stops() -> bool:
        """Whether the epoch cap or a callback ends training after the current epoch."""
        return run.state.epoch >= params.max_epochs or any(callback.stops_after(run) for callback in hooks)

    for callback in hooks:
        callback.on_fit_start(run)
    finished = stops()  # a resumed training may have finished
    while not finished:
        state = run.state
        state.epoch += 1
        run.record.clear()
        for callback in hooks:
            callback.on_epoch_start(run)
        tick = time.perf_counter()
        model.train()
        total, count = _train_epoch(run, step, rows, device, last_target_only, hooks)
        for callback in hooks:
            callback.on_epoch_trained(run)
        train_seconds = time.perf_counter() - tick
        tick = time.perf_counter()
        # The last epoch is validated too: the one the epoch cap, patience or the time budget ends on.
        validated = state.epoch % params.eval_every == 0 or distributed.broadcast_flag(stops())
        valid = (
            evaluate(model, split.valid, batch_size=params.eval_batch_size, exclude_seen=params.exclude_seen).metrics
            if validated
            else {}
        )
        eval_seconds = time.perf_counter() - tick
        state.train_seconds += train_seconds
        state.eval_seconds += eval_seconds
        if validated:
            for callback in hooks:
                callback.on_validation(run, valid)
        record = {
            "epoch": state.epoch,
            "loss": total / max(count, 1),
            "train_seconds": round(train_seconds, 3),
            "eval_seconds": round(eval_seconds, 3),
            "targets_per_second": round(epoch_targets / train_seconds, 1),
            **{f"valid_{k}": v for k, v in valid.items()},
            "best_epoch": state.best_epoch,
            **run.record,
        }
        state.history.append(record)
        for callback in hooks:
            callback.on_epoch_end(run, record)
        # Only a validated epoch ends training (rank 0's clock decides a budget for all ranks).
        finished = validated and distributed.broadcast_flag(stops())

    for callback in hooks:
        callback.on_train_end(run)
    tick = time.perf_counter()
    tested = evaluate(model, split.test, batch_size=params.eval_batch_size, exclude_seen=params.exclude_seen)
    run.state.eval_seconds += time.perf_counter() - tick
    for callback in hooks:
        callback.on_test_end(run, tested)
    state = run.state
    return FitResult(
        best_epoch=state.best_epoch,
        best_valid=state.best_valid,
        test=tested.metrics,
        epochs=state.epoch,
        train_seconds=round(state.train_seconds, 3),
        eval_seconds=round(state.eval_seconds, 3),
        wall_seconds=round(time.perf_counter() - started, 3),
        targets_per_second=round(epoch_targets * state.epoch / max(state.train_seconds, 1e-9), 1),
        history=state.history,
    )


def epoch_batches(
    rows: Sequences, params: TrainParams, max_len: int, rng: np.random.Generator, last_target_only: bool = False
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]:
    """One epoch's batches as :func:`fit` draws them with ``params`` (this rank's rows under
    ``torchrun``), so that benchmarks time and profile the same batches."""
    return next_item_batches(
        rows,
        max_len,
        params.batch_size,
        rng,
        distributed.rank(),
        distributed.world_size(),
        params.synthetic_weight,
        last_target_only,
        augment_weight=params.augment_weight,
        by_length=params.batching == "length",
        equal_weight=params.target_weighting == "equal",
        synthetic_per_epoch=params.synthetic_per_epoch,
        budget_unit=params.budget_unit,
    )


def _train_epoch(
    run: TrainingRun,
    step: torch.nn.Module,
    rows: Sequences,
    device: torch.device,
    last_target_only: bool,
    callbacks: list[Callback],
) -> tuple[float, int]:
    """One pass over the epoch's batches: the loss summed over batches and their number,
    both over all ranks."""
    batches = epoch_batches(rows, run.params, run.model.max_len, run.rng, last_target_only)
    total, count = 0.0, 0
    for inputs, targets, weights, batch_weight in batches:
        loss = step(inputs.to(device), targets.to(device), weights.to(device), batch_weight)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        value = loss.item()
        total += value
        count += 1
        for callback in callbacks:
            callback.on_batch_end(run, value)
    total, count = distributed.sum_over_ranks(np.array([total, count], dtype=np.float64))
    return float(total), int(count)


def load_teacher(params: TrainParams, n_items: int) -> Backbone:
    """The checkpoint ``params.teacher`` to distil from, checked against a model of ``n_items``
    items (a caller checks it before writing anything)."""
    if not params.teacher:
        raise ConfigError(
            "train option distill_weight needs a teacher: a checkpoint (train.teacher), or a loop's previous round"
        )
    teacher, _ = load_checkpoint(params.teacher)
    if teacher.n_items != n_items:
        raise CheckpointError(f"{params.teacher}: teacher of {teacher.n_items} items for a model of {n_items}")
    return teacher


def _teacher(params: TrainParams, teacher: Backbone | None, model: Backbone, device: torch.device) -> Backbone | None:
    """The model to distil from, in evaluation mode on ``device``, or None without distillation."""
    if params.distill_weight == 0:
        return None
    return (teacher if teacher is not None else load_teacher(params, model.n_items)).to(device).eval()


def _fit_untrained(
    model: Backbone,
    split: LeaveOneOut,
    params: TrainParams,
    run_dir: Path | None,
    meta: dict,
    started: float,
    carry: dict[str, Any] | None,
) -> FitResult:
    tick = time.perf_counter()
    valid = evaluate(model, split.valid, batch_size=params.eval_batch_size, exclude_seen=params.exclude_seen).metrics
    tested = evaluate(model, split.test, batch_size=params.eval_batch_size, exclude_seen=params.exclude_seen)
    test = tested.metrics
    if run_dir and distributed.is_main():
        save_ranks(run_dir / RANKS_FILE, tested.ranks)
        save_checkpoint(run_dir / "model.pt", model, {**meta, "epoch": 0, "train": asdict(params)}, **(carry or {}))
    seconds = time.perf_counter() - tick
    return FitResult(0, valid, test, 0, 0.0, round(seconds, 3), round(time.perf_counter() - started, 3), 0.0)
