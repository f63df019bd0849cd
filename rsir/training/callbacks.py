"""What a training does besides optimising, as callbacks (Lightning-style): model selection
and early stopping, the time budget, the run directory's files, progress, TensorBoard.

:func:`rsir.training.trainer.fit` owns the loop: it trains an epoch, validates it when it is due or
when a callback would stop after it, and calls each callback's hooks in order. A callback sees
the training through a :class:`TrainingRun`; the state it reads and changes is
:class:`TrainState`, which ``last.pt`` saves and a resumed training restores."""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import distributed
from ..errors import CheckpointError, ConfigError, RsirError
from ..evaluation import RANKS_FILE, EvalResult, evaluate, save_ranks
from ..files import append_jsonl, plot_learning_curve, write_jsonl
from ..models.checkpoint import (
    check_same_data,
    check_same_model,
    checkpoint_meta,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from ..data.split import EvalSet
    from ..models.base import Backbone
    from .trainer import TrainParams

log = logging.getLogger(__name__)

# The validation metric that picks the best epoch by default (train.select_metric) and that a
# study's select chooses between runs by.
SELECT_METRIC = "ndcg@20"
# Train options that add to what a training records, not to what it computes (a test checks
# it): a saved training or a recorded phase without them is the same one.
RECORDING_ONLY = frozenset({"test_probes"})


@dataclass
class TrainState:
    """Where a training stands after its last finished epoch."""

    epoch: int = 0
    best_epoch: int = 0
    best_value: float = -1.0
    best_valid: dict[str, float] = field(default_factory=dict)
    best_state: dict[str, torch.Tensor] | None = None
    train_seconds: float = 0.0
    eval_seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TrainingRun:
    """What callbacks see of a training in progress."""

    model: Backbone
    optimizer: torch.optim.Optimizer
    rng: np.random.Generator  # batch order (the same on every rank)
    params: TrainParams
    state: TrainState = field(default_factory=TrainState)
    batches_per_epoch: int = 0
    record: dict[str, Any] = field(default_factory=dict)  # callbacks' fields for this epoch's log line

    @property
    def improved(self) -> bool:
        """Whether the epoch just finished is the best so far."""
        return self.state.epoch > 0 and self.state.best_epoch == self.state.epoch


class Callback:
    """Hooks :func:`rsir.training.trainer.fit` calls, in this order; each does nothing by default."""

    def on_fit_start(self, run: TrainingRun) -> None:
        """Before the first epoch (a resumed training: after its state is restored, if the
        callback restoring it comes earlier in the list)."""

    def on_epoch_start(self, run: TrainingRun) -> None: ...

    def on_batch_end(self, run: TrainingRun, loss: float) -> None: ...

    def on_epoch_trained(self, run: TrainingRun) -> None:
        """After the epoch's last batch, before it is validated."""

    def stops_after(self, run: TrainingRun) -> bool:
        """Whether training ends after the current epoch. Asked before validating it (a True
        gets the epoch validated) and again after, when only a validated epoch can end it."""
        return False

    def on_validation(self, run: TrainingRun, valid: dict[str, float]) -> None:
        """After a validated epoch, before its record is written."""

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None: ...

    def on_train_end(self, run: TrainingRun) -> None:
        """After the last epoch, before the test evaluation."""

    def on_test_end(self, run: TrainingRun, tested: EvalResult) -> None: ...


class EarlyStopping(Callback):
    """Keeps the weights of the epoch with the best validation ``metric``, stops ``patience``
    epochs after it, and puts its weights back at the end."""

    def __init__(self, patience: int, metric: str = SELECT_METRIC) -> None:
        self.patience, self.metric = patience, metric

    def stops_after(self, run: TrainingRun) -> bool:
        return run.state.epoch - run.state.best_epoch >= self.patience

    def on_validation(self, run: TrainingRun, valid: dict[str, float]) -> None:
        state = run.state
        if valid[self.metric] > state.best_value:
            state.best_epoch, state.best_value, state.best_valid = state.epoch, valid[self.metric], valid
            state.best_state = copy.deepcopy(run.model.state_dict())

    def on_train_end(self, run: TrainingRun) -> None:
        if run.state.best_state is not None:
            run.model.load_state_dict(run.state.best_state)


class TestProbes(Callback):
    """Ranks ``test`` at every new best validation epoch (after :class:`EarlyStopping` has
    seen it) and puts its metrics into the epoch's log line as ``test_*`` fields."""

    def __init__(self, test: EvalSet, batch_size: int, exclude_seen: bool) -> None:
        self.test, self.batch_size, self.exclude_seen = test, batch_size, exclude_seen

    def on_validation(self, run: TrainingRun, valid: dict[str, float]) -> None:
        if run.improved:
            probe = evaluate(run.model, self.test, batch_size=self.batch_size, exclude_seen=self.exclude_seen)
            run.record.update({f"test_{k}": v for k, v in probe.metrics.items()})


class TimeBudget(Callback):
    """Stops after the first validated epoch that ends with ``seconds`` spent since the
    training started (in this process; at least one epoch trains)."""

    def __init__(self, seconds: float, started: float | None = None) -> None:
        self.seconds = seconds
        self.started = time.perf_counter() if started is None else started
        self.first_epoch = 0

    def on_fit_start(self, run: TrainingRun) -> None:
        self.first_epoch = run.state.epoch + 1

    def stops_after(self, run: TrainingRun) -> bool:
        return run.state.epoch >= self.first_epoch and time.perf_counter() - self.started >= self.seconds


class RunFiles(Callback):
    """The files of a training in ``run_dir``: ``last.pt`` (the state to resume from, written
    every epoch, restored at the start), ``model.pt`` (the best weights, with ``meta`` and the
    ``carry`` entries), ``log.jsonl`` (one line per epoch), the test ranks and ``curve.png``.
    Every rank takes part in saving (the random states are gathered); rank 0 writes."""

    def __init__(self, run_dir: str | Path, meta: dict[str, Any], carry: dict[str, Any] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.meta = meta
        self.carry = carry or {}

    def on_fit_start(self, run: TrainingRun) -> None:
        if distributed.broadcast_flag((self.run_dir / "last.pt").exists()):
            run.state = _restore(self.run_dir / "last.pt", run, self.meta)
            if distributed.is_main():  # a kill between saving last.pt and appending to the log loses a line
                write_jsonl(self.run_dir / "log.jsonl", run.state.history)

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        meta = {**self.meta, "epoch": run.state.best_epoch, "train": asdict(run.params)}
        torch_rng = _torch_rng_states()  # collective: every rank takes part
        if distributed.is_main():
            if run.improved:
                save_checkpoint(self.run_dir / "model.pt", run.model, meta, **self.carry)
            _save_state(self.run_dir / "last.pt", run, meta, torch_rng)
            append_jsonl(self.run_dir / "log.jsonl", record)

    def on_test_end(self, run: TrainingRun, tested: EvalResult) -> None:
        if distributed.is_main():  # each user's test rank, for confidence intervals over users
            save_ranks(self.run_dir / RANKS_FILE, tested.ranks)
            if run.state.history:
                plot_learning_curve(self.run_dir / "curve.png", run.state.history, run.params.select_metric)


class Progress(Callback):
    """A bar over each epoch's batches (only on a terminal, so a log file holds the epoch
    lines alone) and one log line per epoch, on rank 0."""

    def __init__(self, bar: bool = True) -> None:
        self.show_bar = bar and distributed.is_main()
        self.bar: Any = None
        self.total, self.count = 0.0, 0

    def on_epoch_start(self, run: TrainingRun) -> None:
        self.total, self.count = 0.0, 0
        self.bar = tqdm(
            total=run.batches_per_epoch,
            desc=f"epoch {run.state.epoch}",
            leave=False,
            disable=None if self.show_bar else True,
            unit="batch",
        )

    def on_batch_end(self, run: TrainingRun, loss: float) -> None:
        self.total, self.count = self.total + loss, self.count + 1
        self.bar.update()
        if self.count % 20 == 0:
            self.bar.set_postfix(loss=f"{self.total / self.count:.4f}")

    def on_epoch_trained(self, run: TrainingRun) -> None:
        self.bar.close()

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        if not distributed.is_main():
            return
        scores = (
            f"valid ndcg@20 {record[f'valid_{SELECT_METRIC}']:.4f}  recall@10 {record['valid_recall@10']:.4f}"
            if f"valid_{SELECT_METRIC}" in record
            else "not validated"
        )
        log.info(
            "epoch %3d  loss %.4f  %s  best %d  (%.1fs train, %.1fs eval)",
            record["epoch"],
            record["loss"],
            scores,
            record["best_epoch"],
            record["train_seconds"],
            record["eval_seconds"],
        )


class TensorBoard(Callback):
    """Each epoch's loss, seconds and validation metrics as TensorBoard scalars in
    ``log_dir`` (needs the ``tensorboard`` package: ``pip install 'rsir[tensorboard]'``)."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.writer: Any = None

    def on_fit_start(self, run: TrainingRun) -> None:
        if not distributed.is_main():
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as error:  # torch raises it when the tensorboard package is missing
            raise RsirError(f"the TensorBoard log needs the tensorboard package ({error})") from None
        self.writer = SummaryWriter(str(self.log_dir))

    def on_epoch_end(self, run: TrainingRun, record: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            if key not in ("epoch", "best_epoch"):
                # a probe is the test at that epoch; the final test is test/ at the best epoch
                self.writer.add_scalar(
                    key.replace("valid_", "valid/").replace("test_", "probe/"), value, record["epoch"]
                )
        self.writer.flush()

    def on_test_end(self, run: TrainingRun, tested: EvalResult) -> None:
        if self.writer is not None:
            for key, value in tested.metrics.items():
                self.writer.add_scalar(f"test/{key}", value, run.state.best_epoch)
            self.writer.close()


def _torch_rng_states() -> torch.Tensor:
    """This process's torch RNG state; under torchrun, every rank's, one row per rank."""
    state = torch.get_rng_state()
    return distributed.gather_rows(state) if distributed.active() else state


def _save_state(path: Path, run: TrainingRun, meta: dict, torch_rng: torch.Tensor) -> None:
    state = run.state
    progress = {
        "epoch": state.epoch,
        "best_epoch": state.best_epoch,
        "best_value": state.best_value,
        "best_valid": state.best_valid,
        "train_seconds": state.train_seconds,
        "eval_seconds": state.eval_seconds,
        "history": state.history,
        "numpy_rng": run.rng.bit_generator.state,
    }
    save_checkpoint(
        path,
        run.model,
        {**meta, "progress": progress},
        best_state=state.best_state or run.model.state_dict(),
        optimizer=run.optimizer.state_dict(),
        torch_rng=torch_rng,
    )


def _restore(path: Path, run: TrainingRun, meta: dict[str, Any]) -> TrainState:
    """The training state saved in ``path``, put back into ``run``: refused for other data,
    another model, or other train options but a higher epoch cap (the rule of
    :meth:`rsir.rundir.RunDir.holds_same_run`, here for ``fit`` called from Python; options added
    since the state was saved are not compared)."""
    model, optimizer, rng = run.model, run.optimizer, run.rng
    payload = read_checkpoint(path)
    saved = checkpoint_meta(payload, path)
    if "data_fingerprint" in meta:
        check_same_data(saved, meta["data_fingerprint"], model.n_items, path)
    check_same_model(payload, model, path)
    now = asdict(run.params)
    for key, value in saved.get("train", {}).items():
        # earlier epochs do not read the cap
        if key in now and now[key] != value and key != "max_epochs" and key not in RECORDING_ONLY:
            raise ConfigError(
                f"{path.parent} holds a training with a different config: train.{key} {value!r}, now {now[key]!r}; "
                "delete it or choose another directory"
            )
    if "progress" not in saved or "optimizer" not in payload:
        raise CheckpointError(f"{path}: not a training state to resume from")
    progress = saved["progress"]
    torch_rng = payload["torch_rng"]
    saved_ranks = torch_rng.shape[0] if torch_rng.dim() == 2 else 1
    if saved_ranks != distributed.world_size():
        raise CheckpointError(
            f"{path}: trained with {saved_ranks} process(es), resumed with {distributed.world_size()}; "
            "resume with the same number of processes"
        )
    load_weights(model, payload["state"], path)
    optimizer.load_state_dict(payload["optimizer"])
    # A row of the saved table is a view into it; torch reads a state from the start of its
    # storage, so each rank gets its own copy (without it every rank but 0 crashes here).
    torch.set_rng_state((torch_rng[distributed.rank()] if torch_rng.dim() == 2 else torch_rng).clone())
    rng.bit_generator.state = progress["numpy_rng"]
    return TrainState(
        epoch=progress["epoch"],
        best_epoch=progress["best_epoch"],
        best_value=progress["best_value"],
        best_valid=progress["best_valid"],
        best_state=payload["best_state"],
        train_seconds=progress["train_seconds"],
        eval_seconds=progress["eval_seconds"],
        history=progress["history"],
    )
