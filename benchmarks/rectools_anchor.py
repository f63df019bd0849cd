"""The published plain SASRec (eSASRec paper's "SASRec+SS", RecTools 0.13.0) run here, on the
CPU, on the same S3-Rec file, to tell whether rsir's gap to its published numbers is rsir's or
the run's (issue 44).

The configuration is the paper's (`configs/paper/loo/s3_vanilla.yaml` of
blondered/transformer_benchmark): d 256, 1 block, 1 head, dropout 0.2, sampled softmax with
256 negatives, max_len 50, lr 1e-3, batch 128, Adam betas (0.9, 0.98), RecTools' own
initialisation, batching and loss; each user's last training item validates (Recall@10 on the
whole catalogue, seen items filtered), patience on it, the best epoch restored. The test is the
last item, seen items filtered; the published protocol drops the users whose test item never
occurs in training, rsir counts them as misses: both are reported.

It needs RecTools, which rsir does not depend on; in a separate environment that shares the
machine's torch:

    python -m venv --system-site-packages /tmp/rtenv
    /tmp/rtenv/bin/pip install "rectools[torch]==0.13.0"
    /tmp/rtenv/bin/python benchmarks/rectools_anchor.py --data ../shared/data/Beauty/Beauty.txt \\
        --seed 0 --max-epochs 200 --patience 50 --out docs/results/rectools_anchor_beauty.json

Every validated epoch is appended to OUT with the suffix .epochs.jsonl as it ends.

One change to RecTools' computation, not to its results: its sampled-softmax logits are a
gather of 257 item vectors for every one of the 50 window positions, padding included, which on
a CPU costs minutes per epoch (Beauty's users have about 7 targets in a window of 50). Here the
logits of the positions with a target are computed through one product with the item table,
and the padding positions, which the loss ignores, get zeros. The loss and every gradient are
the same; the first batch is computed both ways and the largest differences are recorded
(`target_rows_check`). RecTools' own validation step, which computes a sampled validation loss
that nothing here reads, is skipped; the validation metrics come from the callback below.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pytorch_lightning import Callback, Trainer, seed_everything
from pytorch_lightning.callbacks import EarlyStopping
from rectools import Columns
from rectools.dataset import Dataset
from rectools.models import SASRecModel
from rectools.models.nn.transformers.lightning import TransformerLightningModule
from rectools.models.nn.transformers.similarity import DistanceSimilarityModule

# configs/paper/loo/s3_vanilla.yaml of blondered/transformer_benchmark, as SASRecModel options
PUBLISHED_CONFIG = {
    "n_factors": 256,
    "n_blocks": 1,
    "n_heads": 1,
    "dropout_rate": 0.2,
    "session_max_len": 50,
    "loss": "sampled_softmax",
    "n_negatives": 256,
    "lr": 1e-3,
    "batch_size": 128,
}


def read_s3(path: Path) -> pd.DataFrame:
    """One row per interaction, its position in the user's line as the time."""
    rows = []
    for line in path.read_text().splitlines():
        user, *items = line.split()
        rows += [(int(user), int(item), position) for position, item in enumerate(items, 1)]
    frame = pd.DataFrame(rows, columns=[Columns.User, Columns.Item, Columns.Datetime])
    frame[Columns.Weight] = 1.0
    return frame


def last_item_mask(interactions: pd.DataFrame) -> np.ndarray:
    """Each user's latest interaction (the validation target of a training set)."""
    latest = interactions.groupby(Columns.User)[Columns.Datetime].transform("max")
    return (interactions[Columns.Datetime] == latest).to_numpy()


def _target_row_logits(
    self, session_embs: torch.Tensor, item_embs: torch.Tensor, candidates: torch.Tensor
) -> torch.Tensor:
    """RecTools' dot-product candidate logits, computed only where the first candidate (the
    target) is not padding; zeros elsewhere (ignored by the loss)."""
    candidates = candidates.expand(*session_embs.shape[:2], candidates.shape[-1])
    rows = candidates[..., 0] != 0
    logits = session_embs.new_zeros(candidates.shape)
    logits[rows] = torch.gather(session_embs[rows] @ item_embs.T, 1, candidates[rows])
    return logits


def check_target_rows(model: SASRecModel, dataset: Dataset) -> dict[str, float]:
    """The first training batch's loss and gradients with RecTools' logits and with
    :func:`_target_row_logits`, from the same weights: their largest absolute differences."""
    preparator = model.data_preparator
    preparator.process_dataset_train(dataset)
    batch = next(iter(preparator.get_dataloader_train()))
    train = preparator.train_dataset
    torch_model = model._init_torch_model(model._construct_item_net(train))  # noqa: SLF001
    model._init_lightning_model(  # noqa: SLF001
        torch_model, train.get_schema(), train.item_id_map.external_ids, model.get_config(simple_types=True)
    )
    module = model.lightning_model
    module.eval()  # no dropout, so both passes see the same network
    results = []
    for logits_fn in (DistanceSimilarityModule._get_pos_neg_logits, _target_row_logits):  # noqa: SLF001
        DistanceSimilarityModule._get_pos_neg_logits = logits_fn  # noqa: SLF001
        module.zero_grad()
        loss = module.loss_calculator(module.get_batch_logits(batch), batch["y"], batch["yw"])
        loss.backward()
        results.append((loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]))
    (loss_a, grads_a), (loss_b, grads_b) = results
    return {
        "loss": float(loss_a),
        "loss_difference": float((loss_a - loss_b).abs()),
        "gradient_difference": max(float((a - b).abs().max()) for a, b in zip(grads_a, grads_b)),
        "largest_gradient": max(float(a.abs().max()) for a in grads_a),
    }


class TestProbe:
    """The test metrics of the model as it is now, computed as ``SASRecModel.recommend`` then
    scores (the same sessions, known items only, seen items filtered): so that every new best
    epoch's test result is in the epochs log, and a run stopped early still reports it."""

    def __init__(self, model: SASRecModel, dataset: Dataset, test: pd.DataFrame, n_users: int) -> None:
        self.model, self.dataset, self.test, self.n_users = model, dataset, test, n_users

    @torch.no_grad()
    def __call__(self, torch_model: torch.nn.Module) -> dict[str, float]:
        preparator = self.model.data_preparator
        users = self.test[Columns.User].unique()
        sessions = preparator.transform_dataset_u2i(self.dataset, users)
        target = dict(zip(self.test[Columns.User], self.test[Columns.Item]))
        internal = {item: i for i, item in enumerate(preparator.item_id_map.external_ids)}
        # A test item the model never saw in training cannot be ranked: index 0 (padding), masked below
        targets = np.array([internal.get(target[u], 0) for u in sessions.user_id_map.external_ids])
        was_training = torch_model.training
        torch_model.eval()
        item_embs = torch_model.item_model.get_all_embeddings()
        ranks = []
        for batch in preparator.get_dataloader_recommend(sessions, 1024):  # users in internal order
            scores = torch_model.encode_sessions(batch, item_embs)[:, -1, :] @ item_embs.T
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, batch["x"], True)
            seen[:, 0] = True
            scores = scores.masked_fill(seen, float("-inf"))
            rows = torch.arange(len(scores)) + sum(len(r) for r in ranks)
            picked = torch.as_tensor(targets[rows.numpy()])
            ranks.append((scores > scores.gather(1, picked[:, None])).sum(1))
        torch_model.train(was_training)
        rank = torch.cat(ranks).double().masked_fill(torch.as_tensor(targets == 0), float("inf"))
        gain = 1 / torch.log2(rank + 2)
        hits = {"recall@10": float((rank < 10).double().sum()), "ndcg@10": float((gain * (rank < 10)).sum())}
        # Users without a ranked target (no known history or an unknown item) count as misses
        return {
            **{f"published_protocol_{k}": v / len(self.test) for k, v in hits.items()},
            **{f"all_users_{k}": v / self.n_users for k, v in hits.items()},
        }


class ValidationRecall(Callback):
    """Recall@10 (and NDCG@10, NDCG@20) of each validation pass over the whole catalogue, seen
    items filtered; keeps the best epoch's weights and restores them at the end. With a
    ``probe``, each new best epoch's record has its test metrics too."""

    def __init__(self, log_path: Path, probe: TestProbe | None = None) -> None:
        self.log_path = log_path
        self.probe = probe
        self.hits: list[torch.Tensor] = []
        self.best, self.best_epoch, self.best_state = -1.0, 0, None
        self.started = time.perf_counter()
        self.history: list[dict] = []

    def __deepcopy__(self, memo: dict) -> ValidationRecall:
        # SASRecModel.fit trains a deep copy of its trainer: this callback stays the one that
        # main() reads (and its probe holds the model, which cannot be deep-copied)
        return self

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        model = pl_module.torch_model
        sessions = model.encode_sessions(batch, pl_module.item_embs)[:, -1, :]
        scores = sessions @ pl_module.item_embs.T
        seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, batch["x"], True)
        seen[:, 0] = True  # padding
        scores = scores.masked_fill(seen, float("-inf"))
        target = batch["y"][:, -1]
        rank = (scores > scores.gather(1, target[:, None])).sum(1)  # 0-based rank of the target
        self.hits.append(rank)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        rank = torch.cat(self.hits).double()
        self.hits.clear()
        gain = 1 / torch.log2(rank + 2)
        metrics = {
            "recall@10": float((rank < 10).double().mean()),
            "ndcg@10": float((gain * (rank < 10)).mean()),
            "ndcg@20": float((gain * (rank < 20)).mean()),
        }
        pl_module.log("recall@10", metrics["recall@10"])
        epoch = trainer.current_epoch + 1
        record = {"epoch": epoch, "seconds": round(time.perf_counter() - self.started, 1), **metrics}
        if metrics["recall@10"] > self.best:
            self.best, self.best_epoch = metrics["recall@10"], epoch
            self.best_state = copy.deepcopy(pl_module.state_dict())
            if self.probe is not None:
                record["test"] = self.probe(pl_module.torch_model)
        self.history.append(record)
        with open(self.log_path, "a") as log:
            log.write(json.dumps(record) + "\n")
        print(json.dumps(record), file=sys.stderr, flush=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.best_state is not None:
            pl_module.load_state_dict(self.best_state)


def test_metrics(reco: pd.DataFrame, test: pd.DataFrame, n_users: int) -> dict[str, float]:
    """Recall and NDCG at 10 of the test targets among the top 20 (one target per user), over
    the test users the published protocol keeps, and over all users (rsir's protocol)."""
    joined = test.merge(reco, on=[Columns.User, Columns.Item], how="left")
    rank = joined[Columns.Rank].to_numpy()  # 1-based, NaN outside the top 20
    hit10 = np.nan_to_num(rank, nan=np.inf) <= 10
    ndcg10 = np.where(hit10, 1 / np.log2(np.nan_to_num(rank, nan=1.0) + 1), 0.0)
    kept = {"recall@10": float(hit10.mean()), "ndcg@10": float(ndcg10.mean())}
    return {
        **{f"published_protocol_{k}": v for k, v in kept.items()},
        **{f"all_users_{k}": v * len(test) / n_users for k, v in kept.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-epochs", type=int, default=200)
    parser.add_argument("--patience", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--accelerator", default="cpu", help="cpu or gpu (Lightning's name)")
    parser.add_argument("--out", required=True)
    parser.add_argument(
        "--summarise-stopped",
        action="store_true",
        help="write OUT from the epochs log of this command's run stopped before its patience ran out: "
        "its best epoch so far and that epoch's test metrics",
    )
    parser.add_argument(
        "--earlier-log",
        help="with --summarise-stopped: the epochs log of an earlier run of the same command, kept beside",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = Path(args.out)
    epochs_log = out.with_suffix(".epochs.jsonl")
    if not args.summarise_stopped:
        epochs_log.unlink(missing_ok=True)

    interactions = read_s3(Path(args.data))
    test_mask = last_item_mask(interactions)
    train, test = interactions[~test_mask], interactions[test_mask]
    n_users = test[Columns.User].nunique()
    # The published split keeps the test rows whose user and item occur in training, and whose
    # item the user has not had before.
    seen_pairs = set(zip(train[Columns.User], train[Columns.Item]))
    fresh = np.array([pair not in seen_pairs for pair in zip(test[Columns.User], test[Columns.Item])], dtype=bool)
    test = test[test[Columns.User].isin(train[Columns.User]) & test[Columns.Item].isin(train[Columns.Item]) & fresh]
    commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True).stdout.strip()
    import rectools

    header = {
        "name": out.stem,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "rectools": rectools.__version__,
        "torch": torch.__version__,
        "machine": f"{platform.machine()}, {args.accelerator}, {args.threads} thread(s)",
        "commit": commit,
        "data": args.data,
        "seed": args.seed,
        "max_epochs": args.max_epochs,
        "patience": args.patience,
    }
    users = {"test_users": len(test), "all_users": n_users}
    if args.summarise_stopped:
        history = [json.loads(line) for line in epochs_log.read_text().splitlines()]
        best = max(history, key=lambda record: record["recall@10"])  # the first of equals, as the callback keeps
        since = history[-1]["epoch"] - best["epoch"]
        out.write_text(
            json.dumps(
                {
                    **header,
                    "stopped": f"after epoch {history[-1]['epoch']}, {since} epochs after the best so far",
                    "epochs": len(history),
                    "best_epoch": best["epoch"],
                    "best_valid": {k: best[k] for k in ("recall@10", "ndcg@10", "ndcg@20")},
                    "wall_seconds": history[-1]["seconds"],
                    "test": {**best["test"], **users},
                    "history": history,
                    **(
                        {
                            "earlier_run_history": [
                                json.loads(line) for line in Path(args.earlier_log).read_text().splitlines()
                            ]
                        }
                        if args.earlier_log
                        else {}
                    ),
                },
                indent=2,
            )
            + "\n"
        )
        return
    validation = ValidationRecall(epochs_log)

    def trainer() -> Trainer:
        return Trainer(
            max_epochs=args.max_epochs,
            deterministic=True,
            accelerator=args.accelerator,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            callbacks=[validation, EarlyStopping(monitor="recall@10", mode="max", patience=args.patience)],
        )

    def published_model() -> SASRecModel:
        return SASRecModel(
            **PUBLISHED_CONFIG,
            deterministic=True,
            recommend_torch_device="cuda" if args.accelerator == "gpu" else "cpu",
            get_val_mask_func=last_item_mask,
            get_trainer_func=trainer,
        )

    dataset = Dataset.construct(train)
    target_rows_check = check_target_rows(published_model(), dataset)
    print(json.dumps({"target_rows_check": target_rows_check}), file=sys.stderr, flush=True)
    DistanceSimilarityModule._get_pos_neg_logits = _target_row_logits  # noqa: SLF001
    TransformerLightningModule.validation_step = lambda self, batch, batch_idx: None
    seed_everything(args.seed, workers=True)
    model = published_model()
    validation.probe = TestProbe(model, dataset, test, n_users)
    tick = time.perf_counter()
    model.fit(dataset)
    train_seconds = time.perf_counter() - tick
    reco = model.recommend(users=test[Columns.User].unique(), dataset=dataset, k=20, filter_viewed=True)
    result = {
        **header,
        "epochs": len(validation.history),
        "best_epoch": validation.best_epoch,
        "best_valid": {
            k: validation.history[validation.best_epoch - 1][k] for k in ("recall@10", "ndcg@10", "ndcg@20")
        },
        "target_rows_check": target_rows_check,
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "test": {**test_metrics(reco, test, n_users), **users},
        "history": validation.history,
    }
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["test"], indent=2))


if __name__ == "__main__":
    main()
