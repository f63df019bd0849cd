"""The model facade: fit, evaluate, recommend, improve, save and load, in the data's own ids.

It sits on the library's layers (data, backbones, training, the loop) and adds the id
mapping and the checkpoint that carries it, so a saved model recommends for its users
without the data file. The command line's ``train``-free commands (``recommend``) use it too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from .config import build_config
from .data import Dataset, leave_one_out
from .errors import CheckpointError, ConfigError, DataFormatError
from .evaluation import evaluate, recommend_top_k
from .generation.loop import LoopSpec, RoundResult, improve
from .models import DEFAULT_BACKBONE, Backbone, build_backbone
from .models.checkpoint import (
    check_same_data,
    data_entries,
    load_checkpoint,
    load_checkpoint_with_data,
    save_checkpoint,
)
from .rundir import RunDir
from .training.callbacks import Callback
from .training.trainer import FitResult, TrainParams, fit

log = logging.getLogger(__name__)

Split = Literal["valid", "test"]


class Recommender:
    """A sequential recommender used in the data's own user and item ids.

    ``model`` and ``train`` take the options of ``rsir train`` (``rsir train --help``), checked
    the same way; ``preset="length_batched"`` or ``"paper"`` starts from an earlier default
    instead of today's (``rsir.config.PRESETS``). Typical use::

        data = rsir.read_dataset("Beauty.txt")          # or rsir.from_dataframe(frame, ...)
        model = rsir.Recommender(train={"seed": 0}).fit(data)
        model.recommend(["A1", "A2"], k=10)             # a DataFrame: user_id, rank, item_id, score
        model.save("beauty.pt"); rsir.Recommender.load("beauty.pt").recommend(["A1"])
    """

    def __init__(
        self,
        backbone: str = DEFAULT_BACKBONE,
        *,
        model: dict[str, Any] | None = None,
        train: TrainParams | dict[str, Any] | None = None,
        preset: str | None = None,
    ) -> None:
        train_options = dataclasses.asdict(train) if isinstance(train, TrainParams) else dict(train or {})
        sections: dict[str, Any] = {"model": {"backbone": backbone, **(model or {})}, "train": train_options}
        if preset is not None:
            sections["preset"] = preset
        config = build_config(sections, source="Recommender")
        self.preset = preset  # its round too (improve), as rsir improve --preset gives it
        self.backbone_name = config.backbone
        self.model_options = config.model
        self.train_params = config.train
        self.module: Backbone | None = None  # the trained torch backbone
        self.dataset: Dataset | None = None
        self.result: FitResult | None = None

    # ---- training -----------------------------------------------------------------------

    def fit(
        self,
        data: Dataset,
        *,
        run_dir: str | Path | None = None,
        progress: bool = False,
        callbacks: list[Callback] | None = None,
    ) -> Recommender:
        """Train on ``data`` (leave-one-out: the last item of each user is the test target, the
        one before it validates). With ``run_dir`` the run is saved there and resumes there.
        ``callbacks`` (:mod:`rsir.training.callbacks`, e.g. ``TensorBoard(dir)``) join the training's own."""
        split = leave_one_out(data)
        module = build_backbone(self.backbone_name, data.n_items, self.model_options, seed=self.train_params.seed)
        meta = {"data_fingerprint": data.fingerprint(), "n_items": data.n_items}
        with RunDir(run_dir).writing() if run_dir is not None else contextlib.nullcontext() as run:
            if run is not None:  # resumed only if it holds a training of these same options
                run.claim({"model": module.describe(), "train": dataclasses.asdict(self.train_params)})
            self.result = fit(
                module,
                self.train_params.training_split(split, data.n_items),
                self.train_params,
                run_dir=run_dir,
                meta=meta,
                progress=progress,
                carry=data_entries(data),
                callbacks=callbacks,
            )
        self.module, self.dataset = module, data
        log.info(
            "trained %s: test recall@10 %.4f, ndcg@10 %.4f",
            self.backbone_name,
            self.result.test["recall@10"],
            self.result.test["ndcg@10"],
        )
        return self

    def improve(
        self,
        data: Dataset,
        run_dir: str | Path,
        *,
        rounds: int = 1,
        generate: dict[str, Any] | None = None,
        loop: dict[str, Any] | None = None,
        progress: bool = False,
    ) -> list[RoundResult]:
        """Run ``rounds`` self-improvement rounds on ``data`` in ``run_dir`` (resumable) and
        keep the model of the round that scores best on validation (the training's
        ``select_metric``; round 0, the plain model, when no round improved on it): a round
        that does not help leaves the model as it was (the last round's, with a warning, for a
        resumed run that did not record validation scores). ``generate`` and ``loop`` take the
        options of ``rsir improve`` (its generate and improve sections); every round's
        record is returned."""
        config = build_config(
            {
                "model": {"backbone": self.backbone_name, **self.model_options},
                "train": dataclasses.asdict(self.train_params),
                "generate": dict(generate or {}),
                "improve": {**(loop or {}), "rounds": rounds},
                **({"preset": self.preset} if self.preset else {}),
            },
            source="Recommender.improve",
        )
        spec = LoopSpec(config.backbone, config.model, config.train, config.generate, config.improve)
        run = improve(data, spec, run_dir, progress=progress)
        best = run.best_round(config.train.select_metric)
        if best is None:
            best = run.rounds[-1].round
            log.warning(
                "%s: validation %s not recorded for every round; keeping round %d",
                run_dir,
                config.train.select_metric,
                best,
            )
        self.module, _ = load_checkpoint(RunDir(run_dir).round(best) / "model.pt")
        self.dataset, self.result = data, None
        return run.rounds

    # ---- use ----------------------------------------------------------------------------

    def evaluate(self, split: Split = "test", *, exclude_seen: bool = True) -> dict[str, float]:
        """Full-ranking Recall, NDCG and MRR at 5, 10 and 20 on the data's validation or test targets."""
        module, dataset = self._ready()
        return evaluate(
            module, getattr(leave_one_out(dataset), _checked_split(split)), exclude_seen=exclude_seen
        ).metrics

    def recommend(
        self,
        users: Sequence[Any] | None = None,
        k: int = 10,
        *,
        exclude_seen: bool = True,
        split: Split | None = None,
    ) -> pd.DataFrame:
        """The top ``k`` items of each user (original ids; None: every user), best first, as
        columns user_id, rank (from 1), item_id, score. Without ``split`` the model reads each
        user's whole history; with ``split="test"`` (or ``"valid"``) it reads the history up to
        that split's cut-off, as the evaluation does, so its metrics can be recomputed from the
        output. ``exclude_seen`` leaves out the items of the history it read. Near the
        catalogue's size a user gets fewer than ``k`` items, never an excluded one."""
        module, dataset = self._ready()
        if k < 1:
            raise ConfigError(f"k must be >= 1, got {k}")
        if split is None:
            history, user_index = dataset.sequences, np.arange(dataset.n_users)
        else:
            loo = leave_one_out(dataset)
            history, user_index = getattr(loo, _checked_split(split)).history, loo.users
        if users is None:
            rows = np.arange(len(user_index))
        else:
            wanted = dataset.user_index([str(u) for u in users])
            rows = np.searchsorted(user_index, wanted)  # user_index is sorted: kept users in order
            missing = (rows >= len(user_index)) | (user_index[np.minimum(rows, len(user_index) - 1)] != wanted)
            if missing.any():
                raise DataFormatError(
                    f"user {users[int(np.flatnonzero(missing)[0])]} has fewer than the 3 "
                    f"interactions a {split} split needs"
                )
        k = min(k, dataset.n_items)
        items, scores = recommend_top_k(module, history, rows, k, exclude_seen=exclude_seen)
        kept = np.isfinite(scores).ravel()
        frame = pd.DataFrame(
            {
                "user_id": np.repeat(dataset.user_ids[user_index[rows]], k),
                "rank": np.tile(np.arange(1, k + 1), len(rows)),
                "item_id": dataset.item_ids[items.ravel() - 1],
                "score": scores.ravel(),
            }
        )
        return frame[kept].reset_index(drop=True)

    # ---- persistence --------------------------------------------------------------------

    def save(self, path: str | Path) -> None:
        """Write the model with its options and its data's ids and histories (one file)."""
        module, dataset = self._ready()
        meta = {
            "data_fingerprint": dataset.fingerprint(),
            "n_items": dataset.n_items,
            "train": dataclasses.asdict(self.train_params),
            **({"preset": self.preset} if self.preset else {}),  # its round, for improve after load
        }
        save_checkpoint(path, module, meta, **data_entries(dataset))

    @classmethod
    def load(cls, path: str | Path, data: Dataset | None = None) -> Recommender:
        """A saved model (by :meth:`save`, ``rsir train`` or ``rsir improve``). ``data`` is needed
        only for a checkpoint that does not carry its own, and must be the data it was trained on."""
        module, meta, carried = load_checkpoint_with_data(path)
        if data is None:
            data = carried
            if data is None:
                raise CheckpointError(
                    f"{path}: this checkpoint carries no data (written before rsir kept it there); "
                    "pass the data it was trained on"
                )
        check_same_data(meta, data.fingerprint(), data.n_items, path)
        return cls.wrap(module, data, meta.get("train"), meta.get("preset"))

    @classmethod
    def wrap(
        cls, module: Backbone, data: Dataset, train: dict[str, Any] | None = None, preset: str | None = None
    ) -> Recommender:
        """A recommender around a trained backbone and the data it was trained on (``train`` and
        ``preset``: the options it was trained with, which its :meth:`improve` keeps)."""
        description = module.describe()
        recommender = cls(description.pop("backbone"), model=description, train=train, preset=preset)
        recommender.module, recommender.dataset = module, data
        return recommender

    # ---- internals ----------------------------------------------------------------------

    def _ready(self) -> tuple[Backbone, Dataset]:
        if self.module is None or self.dataset is None:
            raise ConfigError("the recommender is not trained: call fit (or load a saved one) first")
        return self.module, self.dataset


def _checked_split(split: str) -> str:
    if split not in ("valid", "test"):
        raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
    return split
