from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from rsir.data import Sequences
from rsir.data.augmentation import augmented as augmented_copies
from rsir.data.batching import bucket_batches, count_targets, epoch_rows, next_item_batches, prefix_rows, row_targets
from rsir.errors import ConfigError
from rsir.evaluation import evaluate
from rsir.models import build_backbone
from rsir.models.checkpoint import load_checkpoint
from rsir.training import losses
from rsir.training.callbacks import Callback, TensorBoard
from rsir.training.losses import CatalogueCrossEntropy, build_loss
from rsir.training.trainer import fit, use_threads

from .conftest import quick

SMALL = {"dim": 32, "blocks": 1, "heads": 1, "dropout": 0.2, "max_len": 20}


def test_batches_pad_only_to_the_longest_in_batch(small_split):
    rng = np.random.default_rng(0)
    widths, seen = [], []
    for inputs, targets, weights, total in next_item_batches(small_split.train, 20, 32, rng):
        assert torch.equal(weights, (targets != 0).float()) and total == float((targets != 0).sum())
        valid = (targets != 0).sum(1)
        assert int(valid.max()) == inputs.shape[1]  # the longest row fills the batch
        widths.append(inputs.shape[1])
        seen.append(int(valid.sum()))
    lengths = small_split.train.lengths
    assert sum(seen) == int(np.clip(lengths - 1, 0, 20).sum())  # every target exactly once
    assert min(widths) < max(widths)


def test_inputs_are_the_items_that_predict_a_target(small_split):
    """A row's inputs are its items up to the one before its last (every input has a next
    item), also in a batch wider than the row: a model counting positions from the latest
    input, or padding from the number of inputs, sees in training what it sees in inference."""
    rows = 0
    for by_length in (True, False):
        for inputs, targets, _, _ in next_item_batches(
            small_split.train, 20, 32, np.random.default_rng(0), by_length=by_length
        ):
            assert torch.equal(inputs != 0, targets != 0)
            kept = targets[:, 1:] != 0  # each input after the first is the previous position's target
            assert torch.equal(inputs[:, 1:][kept], targets[:, :-1][kept])
            rows += len(inputs)
    assert rows == 2 * int((small_split.train.lengths >= 2).sum())


def test_prefix_rows_are_every_prefix_cut_to_the_window():
    seqs = Sequences.from_lists([[1, 2, 3, 4], [5], [6, 7]], users=[10, 11, 12], origin=2)
    rows = prefix_rows(seqs, max_len=2)
    assert rows.to_lists() == [[1, 2], [1, 2, 3], [2, 3, 4], [6, 7]]
    assert rows.users.tolist() == [10, 10, 10, 12] and set(rows.origin.tolist()) == {2}


def test_prefix_batches_supervise_every_target_once_from_its_whole_prefix(small_split):
    """RecBole's preparation: each row of an epoch is a prefix and only its last target counts,
    so each (user, target) pair of the training data is trained on exactly once."""
    seqs, max_len = small_split.train, 20
    rows = prefix_rows(seqs, max_len)
    pairs = []
    for inputs, targets, weights, total in next_item_batches(
        rows, max_len, 32, np.random.default_rng(0), last_target_only=True
    ):
        assert torch.equal((targets != 0).sum(1), torch.ones(len(targets), dtype=torch.long))
        assert torch.equal(weights, (targets != 0).float()) and total == len(targets)
        position = targets.argmax(1)  # the supervised position sees the whole prefix before it
        assert bool(((inputs != 0) | (torch.arange(inputs.shape[1]) > position[:, None])).all())
        pairs += list(zip(inputs[:, 0].tolist(), targets.sum(1).tolist(), (position + 1).tolist()))
    assert (
        len(pairs)
        == count_targets(rows, max_len, last_target_only=True)[0]
        == int(np.clip(seqs.lengths - 1, 0, None).sum())
    )
    expected = sorted(
        (int(s[max(0, k - max_len)]), int(s[k]), min(k, max_len)) for s in seqs.to_lists() for k in range(1, len(s))
    )
    assert sorted(pairs) == expected


def test_a_synthetic_budget_draws_that_many_synthetic_rows_afresh_each_epoch(small_split):
    real = small_split.train
    synthetic = dataclasses.replace(real, origin=np.ones(len(real), dtype=np.int16))
    seqs = real.concat(synthetic).concat(synthetic).concat(synthetic)  # 3 synthetic rows per real one
    rng = np.random.default_rng(0)
    firsts = []
    for _ in range(2):
        inputs = torch.cat([b[0][:, 0] for b in next_item_batches(seqs, 20, 64, rng, synthetic_per_epoch=1.0)])
        weights = torch.cat(
            [
                b[2].max(1).values
                for b in next_item_batches(
                    seqs, 20, 64, np.random.default_rng(1), synthetic_weight=0.25, synthetic_per_epoch=1.0
                )
            ]
        )
        assert len(inputs) == 2 * len(real)
        assert int((weights == 1).sum()) == len(real) and int((weights == 0.25).sum()) == len(real)  # real, synthetic
        firsts.append(inputs)
    assert not torch.equal(firsts[0], firsts[1])  # another draw (and order) in the next epoch
    targets, rows = count_targets(seqs, 20, synthetic_per_epoch=1.0)
    assert rows == 2 * len(real) and targets == pytest.approx(2 * count_targets(real, 20)[0])
    # No budget: every row in every epoch, as before.
    assert sum(len(b[0]) for b in next_item_batches(seqs, 20, 64, np.random.default_rng(0))) == len(seqs)


def test_the_budget_holds_augmented_copies_to_the_same_volume_as_synthetic_rows(small_split):
    real = small_split.train
    augmented = augmented_copies(real, "insert", 0.2, 0, int(real.items.max()), copies=4)
    epoch = next_item_batches(augmented, 20, 64, np.random.default_rng(0), augment_weight=0.5, synthetic_per_epoch=1.0)
    weights = torch.cat([b[2].max(1).values for b in epoch])
    assert int((weights == 1).sum()) == len(real) and int((weights == 0.5).sum()) == len(real)
    assert count_targets(augmented, 20, synthetic_per_epoch=1.0)[1] == 2 * len(real)


def test_a_budget_in_targets_holds_longer_rows_to_the_same_number_of_targets(small_split):
    """Synthetic rows twice as long as the real ones: a budget of one per real row draws as
    many rows, and so about twice the targets; a budget of one target per real target draws
    rows until one more would pass the real rows' targets, about half as many."""
    real = small_split.train
    doubled = [s + s for s in real.to_lists()]
    long = Sequences.from_flat(
        np.concatenate([np.asarray(s, dtype=np.int32) for s in doubled]),
        np.array([len(s) for s in doubled]),
        real.users,
        origin=1,
    )
    seqs = real.concat(long).concat(long)
    targets = row_targets(seqs, 20)
    real_rows = np.flatnonzero((seqs.origin == 0) & (seqs.lengths >= 2))
    by_rows = epoch_rows(seqs, 1.0, np.random.default_rng(0))
    by_targets = epoch_rows(seqs, 1.0, np.random.default_rng(0), targets)
    for rows in (by_rows, by_targets):
        assert np.isin(real_rows, rows).all() and len(np.unique(rows)) == len(rows)
    drawn = by_targets[seqs.origin[by_targets] != 0]
    allowed = targets[real_rows].sum()
    assert allowed - targets.max() < targets[drawn].sum() <= allowed
    assert len(drawn) < 0.75 * (len(by_rows) - len(real_rows))
    expected = count_targets(seqs, 20, synthetic_per_epoch=1.0, budget_unit="targets")[0]
    assert expected == pytest.approx(2 * allowed)
    epoch = next_item_batches(seqs, 20, 64, np.random.default_rng(0), synthetic_per_epoch=1.0, budget_unit="targets")
    assert sum(int((b[1] != 0).sum()) for b in epoch) == allowed + targets[drawn].sum()
    # A budget above what there is draws every row, and says so.
    everything = epoch_rows(seqs, 100.0, np.random.default_rng(0), targets)
    assert np.array_equal(everything, np.flatnonzero(seqs.lengths >= 2))
    assert count_targets(seqs, 20, synthetic_per_epoch=100.0, budget_unit="targets")[0] == targets.sum()
    # Trained on last targets only (every prefix a row), a row is one target: the units agree.
    prefixes = prefix_rows(seqs, 20)
    chosen = epoch_rows(prefixes, 1.0, np.random.default_rng(0), row_targets(prefixes, 20, last_target_only=True))
    real_rows = int(((prefixes.origin == 0) & (prefixes.lengths >= 2)).sum())
    assert int((prefixes.origin[chosen] != 0).sum()) == min(int((prefixes.origin != 0).sum()), real_rows)
    with pytest.raises(ConfigError, match="budget_unit must be one of sequences, targets"):
        quick(budget_unit="rows").validate()


def test_bucket_batches_cover_every_row_once():
    lengths = np.random.default_rng(1).integers(1, 50, 1000)
    batches = bucket_batches(lengths, 64, np.random.default_rng(2))
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    # Evaluation order: by length; a batch of widely spread lengths is split by width class,
    # so padding < real items, one of similar lengths is not.
    batches = bucket_batches(lengths, 1024, None)
    assert np.concatenate(batches).tolist() == np.argsort(lengths, kind="stable").tolist()
    assert len(batches) == 4  # lengths 1-8, 9-16, 17-32, 33-49, though 1024 rows would fit in one
    for batch in batches:
        widest, rows = lengths[batch].max(), lengths[batch]
        assert widest <= 8 or widest * len(rows) < 2 * rows.sum()
    assert [len(b) for b in bucket_batches(np.full(200, 5), 64, None)] == [64, 64, 64, 8]
    assert [len(b) for b in bucket_batches(np.r_[np.full(50, 20), np.full(50, 30)], 64, None)] == [64, 36]


@pytest.mark.parametrize(
    "loss, precision, targets",
    [
        ("sampled_softmax", "fp32", "all"),
        ("softmax", "fp32", "all"),
        ("bce", "fp32", "all"),
        ("sampled_softmax", "bf16", "all"),
        ("softmax", "bf16", "all"),
        ("sampled_softmax", "fp32", "prefixes"),
    ],
)
def test_sasrec_beats_popularity(small_dataset, small_split, loss, precision, targets):
    popularity = build_backbone("popularity", small_dataset.n_items)
    baseline = fit(popularity, small_split, quick(), progress=False).test
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    result = fit(model, small_split, quick(loss=loss, precision=precision, targets=targets), progress=False)
    assert all(p.dtype == torch.float32 for p in model.parameters())  # mixed precision keeps fp32 weights
    assert result.test["ndcg@10"] > 2 * baseline["ndcg@10"]
    assert result.test["recall@10"] > baseline["recall@10"] + 0.1
    losses = [r["loss"] for r in result.history]
    assert losses[-1] < losses[0]


def test_same_seed_repeats_exactly_and_another_seed_differs(small_dataset, small_split):
    def run(seed: int):
        model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=seed)
        return fit(model, small_split, quick(max_epochs=3, seed=seed), progress=False)

    a, b, c = run(5), run(5), run(6)
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]
    assert a.test == b.test
    assert a.test != c.test


def test_early_stopping_and_best_checkpoint(tmp_path, small_dataset, small_split):
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    # A learning rate this high makes validation worse after a few epochs.
    result = fit(model, small_split, quick(max_epochs=40, patience=3, lr=0.05), run_dir=tmp_path, progress=False)
    assert result.epochs == result.best_epoch + 3 < 40
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == list(range(1, result.epochs + 1))
    saved, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["epoch"] == result.best_epoch
    assert evaluate(saved, small_split.test).metrics == result.test


def test_the_kept_epoch_is_the_best_on_the_chosen_validation_metric(small_dataset, small_split):
    """select_metric decides the kept epoch and the wait: the epoch kept is the argmax of that
    metric over the validated epochs, with ties to the first."""
    import pytest

    from rsir.errors import ConfigError

    kept = set()
    for metric in ("ndcg@20", "recall@10", "recall@20"):
        model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
        result = fit(
            model, small_split, quick(max_epochs=12, patience=12, lr=0.02, select_metric=metric), progress=False
        )
        values = [record[f"valid_{metric}"] for record in result.history]
        assert result.best_epoch == values.index(max(values)) + 1
        assert result.best_valid[metric] == max(values)
        kept.add(result.best_epoch)
    assert len(kept) > 1  # here the metrics peak at different epochs, so the choice shows
    with pytest.raises(ConfigError, match="select_metric must be one of recall@5"):
        quick(select_metric="ndcg@50").validate()


def test_eval_every_validates_only_every_nth_and_the_last_epoch(tmp_path, small_dataset, small_split):
    def run(eval_every: int, run_dir=None):
        model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
        return fit(
            model, small_split, quick(max_epochs=7, patience=20, eval_every=eval_every), run_dir=run_dir, progress=False
        )

    every, sparse = run(1), run(3, tmp_path)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if "valid_ndcg@20" in r] == [3, 6, 7]  # every 3rd, and the last
    # Skipping validation changes nothing in training; the choice is among validated epochs.
    assert [r["loss"] for r in sparse.history] == [r["loss"] for r in every.history]
    validated = {r["epoch"]: r["valid_ndcg@20"] for r in every.history if r["epoch"] in (3, 6, 7)}
    assert sparse.best_epoch == max(validated, key=validated.get)
    assert sparse.best_valid["ndcg@20"] == validated[sparse.best_epoch]
    saved, meta = load_checkpoint(tmp_path / "model.pt")
    assert meta["epoch"] == sparse.best_epoch
    assert evaluate(saved, small_split.test).metrics == sparse.test
    # Patience shorter than eval_every: the epoch it would stop on is validated, so a model is chosen.
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    short = fit(model, small_split, quick(max_epochs=7, patience=2, eval_every=10), progress=False)
    validated_epochs = [r["epoch"] for r in short.history if "valid_ndcg@20" in r]
    assert validated_epochs[0] == 2 and short.best_epoch in validated_epochs and short.best_valid


def test_test_probes_record_each_new_best_epoch_and_change_nothing_else(small_dataset, small_split):
    """With test_probes, every epoch that sets a new best validation carries its test metrics in
    the log, the best epoch's equal the final test, and the training is the same as without."""

    def run(probes: bool):
        model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
        params = quick(max_epochs=8, patience=8, lr=0.02, test_probes=probes)
        return model, fit(model, small_split, params, progress=False)

    (plain_model, plain), (probed_model, probed) = run(False), run(True)
    probed_epochs = [r["epoch"] for r in probed.history if "test_ndcg@10" in r]
    best_so_far = [
        r["epoch"]
        for i, r in enumerate(probed.history)
        if r["valid_ndcg@20"] > max([-1.0] + [q["valid_ndcg@20"] for q in probed.history[:i]])
    ]
    assert probed_epochs == best_so_far and len(probed_epochs) > 1
    at_best = next(r for r in probed.history if r["epoch"] == probed.best_epoch)
    assert {k: at_best[f"test_{k}"] for k in probed.test} == probed.test
    assert not any(key.startswith("test_") for r in plain.history for key in r)
    strip = [
        {
            k: v
            for k, v in r.items()
            if not k.startswith("test_") and not k.endswith("_seconds") and k != "targets_per_second"
        }
        for r in probed.history
    ]
    assert strip == [
        {k: v for k, v in r.items() if not k.endswith("_seconds") and k != "targets_per_second"} for r in plain.history
    ]
    assert all(torch.equal(a, b) for a, b in zip(plain_model.state_dict().values(), probed_model.state_dict().values()))


def test_probes_can_be_turned_on_when_a_training_resumes_and_refuse_a_time_budget(tmp_path, small_dataset, small_split):
    """A training saved without probes resumes with them (they change nothing it computed) and
    probes its later new bests; with a time budget, whose clock the probes would run down, fit
    refuses them in one line."""

    def run(probes: bool, epochs: int):
        model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
        params = quick(max_epochs=epochs, patience=8, lr=0.02, test_probes=probes)
        return fit(model, small_split, params, run_dir=tmp_path, progress=False)

    run(False, 2)
    resumed = run(True, 5)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    assert not any("test_ndcg@10" in r for r in resumed.history[:2])
    assert [r["epoch"] for r in resumed.history[2:] if "test_ndcg@10" in r] == [
        r["epoch"] for r in resumed.history[2:] if r["best_epoch"] == r["epoch"]
    ]
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    with pytest.raises(ConfigError, match="test_probes: a time budget would count the probes' time"):
        fit(model, small_split, quick(test_probes=True), time_budget=60, progress=False)


def test_interrupted_training_resumes_to_the_same_result(tmp_path, small_dataset, small_split):
    params = quick(max_epochs=6, patience=6)
    straight = fit(build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0), small_split, params, progress=False)
    # First run stops after 3 epochs (as if killed); the second resumes from last.pt.
    fit(
        build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0),
        small_split,
        quick(max_epochs=3, patience=6),
        run_dir=tmp_path,
        progress=False,
    )
    resumed = fit(
        build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0),
        small_split,
        params,
        run_dir=tmp_path,
        progress=False,
    )
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    assert resumed.test == straight.test
    # Resuming with another option than the epoch cap is refused, naming it and both values.
    with pytest.raises(ConfigError, match=r"train.lr 0.003, now 0.002"):
        fit(
            build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0),
            small_split,
            quick(max_epochs=8, patience=6, lr=2e-3),
            run_dir=tmp_path,
            progress=False,
        )


def test_model_is_causal(small_dataset):
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0).eval()
    items = torch.tensor([[3, 4, 5, 6, 7]])
    changed = items.clone()
    changed[0, 4] = 9
    with torch.no_grad():
        assert torch.allclose(model.encode(items)[:, :4], model.encode(changed)[:, :4], atol=1e-6)
        # Right padding does not change the real positions.
        padded = torch.tensor([[3, 4, 5, 6, 7, 0, 0]])
        assert torch.allclose(model.encode(items), model.encode(padded)[:, :5], atol=1e-6)


def test_blocked_full_softmax_equals_the_textbook_cross_entropy(monkeypatch):
    """The catalogue cross-entropy, computed a block of rows at a time with its gradients
    formed in the forward pass, gives the weighted loss and the gradients of F.cross_entropy
    on the whole logit matrix (item 0 excluded), across several blocks and under a scaled loss."""
    monkeypatch.setattr(CatalogueCrossEntropy, "BLOCK_FLOATS", 300 * 17)  # 17 rows per block
    torch.manual_seed(0)
    model = build_backbone("sasrec", 300, {"dim": 16, "blocks": 1, "heads": 1, "dropout": 0.0}, seed=0).double()
    inputs = torch.randint(0, 301, (6, 10))
    targets = torch.randint(0, 301, (6, 10))
    weights = torch.rand(6, 1, dtype=torch.float64) * (targets != 0)

    def gradients(loss_fn):
        model.zero_grad()
        loss = 2.5 * loss_fn(model, model.encode(inputs), inputs, targets, weights)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in model.parameters()]

    def textbook(model, hidden, inputs, targets, weights):
        logits = model.score_all(hidden[targets != 0])
        logits[:, 0] = float("-inf")
        per_target = torch.nn.functional.cross_entropy(logits, targets[targets != 0], reduction="none")
        return (per_target * weights[targets != 0]).sum()

    assert int((targets != 0).sum()) > 3 * 17
    blocked, blocked_grads = gradients(build_loss("softmax"))
    reference, reference_grads = gradients(textbook)
    assert torch.allclose(blocked, reference, rtol=1e-12)
    for mine, theirs in zip(blocked_grads, reference_grads):
        assert torch.allclose(mine, theirs, rtol=1e-9, atol=1e-12)


def test_blocked_full_softmax_under_bf16_autocast_stays_close_to_fp32():
    """Under autocast the catalogue products run in bfloat16: the loss and the gradients move
    by bfloat16 rounding only (they differ from fp32, yet stay within a few per cent)."""
    torch.manual_seed(0)
    model = build_backbone("sasrec", 2000, {"dim": 32, "blocks": 1, "heads": 1, "dropout": 0.0}, seed=0)
    with torch.no_grad():
        model.item_weights().mul_(30)  # logits of a trained model's size, not near zero
    inputs = torch.randint(1, 2001, (32, 20))
    targets = torch.randint(1, 2001, (32, 20))
    weights = torch.ones(32, 20)

    def loss_and_gradients(bf16: bool):
        model.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = build_loss("softmax")(model, model.encode(inputs), inputs, targets, weights)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])

    exact_loss, exact_grad = loss_and_gradients(False)
    low_loss, low_grad = loss_and_gradients(True)
    assert low_loss.dtype == torch.float32
    assert low_loss != exact_loss
    assert low_loss == pytest.approx(float(exact_loss), rel=1e-3)
    assert torch.linalg.vector_norm(low_grad - exact_grad) < 0.01 * torch.linalg.vector_norm(exact_grad)


@pytest.mark.parametrize("loss", ["sampled_softmax", "softmax", "bce"])
def test_synthetic_targets_weigh_synthetic_weight_in_the_loss(small_split, loss):
    """A batch of real and synthetic sequences: each target's loss counts with weight 1 (real)
    or synthetic_weight, and the step is their weighted mean."""
    real = small_split.train.select(np.arange(8))
    synthetic = Sequences.from_flat(real.items, real.lengths, np.full(len(real), -1), origin=1)
    data = real.concat(synthetic)
    model = build_backbone("sasrec", 1000, SMALL, seed=0).eval()  # no dropout: the same hidden states twice
    loss_fn = build_loss(loss, negatives=8)
    ((inputs, targets, weights, total),) = next_item_batches(
        data, 20, 16, np.random.default_rng(0), synthetic_weight=0.25
    )
    synthetic_rows = weights.max(1).values == 0.25
    assert synthetic_rows.sum() == 8 and total == pytest.approx(1.25 * int((targets[~synthetic_rows] != 0).sum()))

    @torch.no_grad()
    def loss_with(target_weights: torch.Tensor) -> float:
        torch.manual_seed(1)  # the same negatives at every call
        return float(loss_fn(model, model.encode(inputs), inputs, targets, target_weights))

    rows = (weights > 0).float()
    per_row = [loss_with(rows * (torch.arange(len(rows)) == r).unsqueeze(1)) for r in range(len(rows))]
    expected = sum(
        row_loss * (0.25 if synthetic else 1.0) for row_loss, synthetic in zip(per_row, synthetic_rows.tolist())
    )
    assert loss_with(weights) == pytest.approx(expected, rel=1e-5)
    assert min(per_row) > 0


@pytest.mark.parametrize("by_length", [True, False])
def test_equal_target_weighting_weighs_every_target_of_an_epoch_the_same(by_length):
    """Short and long sequences in one epoch: with equal weighting each target's share of its
    step (weight / the batch's divisor) is the same in every batch; with the batch mean, a
    target in a batch of short sequences weighs several times one in a batch of long ones."""
    lengths = np.r_[np.full(40, 3), np.full(40, 30)]
    seqs = Sequences.from_flat(np.arange(1, lengths.sum() + 1) % 97 + 1, lengths, np.arange(len(lengths)))
    shares = {}
    for equal in (False, True):
        per_target = []
        for _, targets, weights, divisor in next_item_batches(
            seqs, 50, 16, np.random.default_rng(0), by_length=by_length, equal_weight=equal
        ):
            per_target.append((weights[targets != 0] / divisor).numpy())
        shares[equal] = np.concatenate(per_target)
        assert len(shares[equal]) == int((lengths - 1).sum())  # every target once
    assert np.allclose(shares[True], 1 / (lengths - 1).sum() * np.ceil(len(lengths) / 16))
    if by_length:  # bucketed batches: the batch mean favours the short sequences' targets
        assert shares[False].max() > 5 * shares[False].min()


def test_random_batches_mix_lengths_and_cover_every_row_once():
    lengths = np.repeat([2, 40], 500)
    batches = bucket_batches(lengths, 50, np.random.default_rng(2), by_length=False)
    assert sorted(np.concatenate(batches).tolist()) == list(range(1000))
    assert all(len(set(lengths[b].tolist())) == 2 for b in batches)  # both lengths in every batch
    bucketed = bucket_batches(lengths, 50, np.random.default_rng(2))
    assert all(len(set(lengths[b].tolist())) == 1 for b in bucketed)


def test_item_table_dropout_is_one_mask_per_training_step_and_off_in_evaluation():
    model = build_backbone("sasrec", 300, {**SMALL, "item_dropout": 0.5}, seed=0)
    items = torch.randint(1, 301, (4, 10))
    table = model.item_embedding.weight
    model.train()
    with model.training_step():
        dropped = model.item_weights()
        zeroed = (dropped == 0) & (table != 0)
        assert 0.4 < zeroed.float().mean() < 0.6  # the whole table, at the rate
        assert torch.allclose(dropped[~zeroed], 2 * table[~zeroed])  # inverted dropout
        assert model.item_weights() is dropped  # the output scores use the step's one mask ...
        assert torch.equal(model.embed_items(items), dropped[items])  # ... and so does the input
    with model.training_step():
        assert not torch.equal(model.item_weights(), dropped)  # a new mask for the next step
    assert model.item_weights() is table  # outside a step: the table itself
    model.eval()
    with model.training_step():
        assert model.item_weights() is table
        assert torch.equal(model.encode(items), model.encode(items))


@pytest.mark.parametrize("gather_above", [losses.GATHER_ABOVE, 0])  # the product; the gather
def test_per_target_negatives_loss_equals_a_reference_computation(monkeypatch, gather_above):
    """negatives_per = target: each target against its own uniform draws, nothing excluded,
    summed with the target weights; the same draws recomputed by hand give the same loss,
    whether the scores come from the product with the drawn items or from each target's
    gathered negatives (the path depends on the catalogue's size)."""
    monkeypatch.setattr(losses, "GATHER_ABOVE", gather_above)
    model = build_backbone("sasrec", 50, SMALL, seed=0).eval().requires_grad_(False)
    inputs = torch.tensor([[3, 7, 9, 0], [4, 4, 1, 2]])
    targets = torch.tensor([[7, 9, 5, 0], [4, 1, 2, 8]])
    weights = torch.tensor([[1.0, 1.0, 0.5, 0.0], [1.0, 0.25, 1.0, 1.0]])
    hidden = model.encode(inputs)
    torch.manual_seed(5)
    loss = build_loss("sampled_softmax", negatives=6, negatives_per="target")(model, hidden, inputs, targets, weights)
    torch.manual_seed(5)
    valid = targets != 0
    negatives = torch.randint(1, 51, (int(valid.sum()), 6))
    table = model.item_weights()
    expected = 0.0
    for (h, target, weight), negs in zip(zip(hidden[valid], targets[valid], weights[valid]), negatives):
        logits = torch.stack([h @ table[target]] + [h @ table[n] for n in negs])
        expected += float(weight * -torch.log_softmax(logits, 0)[0])
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss) > 0


def test_the_benchmark_catalogues_keep_the_product_and_a_large_one_gathers():
    # The built-in data then and now, Beauty, Sports: published runs repeat bit for bit.
    for n_items in (500, 1000, 12101, 18357):
        assert losses.per_target_scoring(n_items, 256) is losses.scores_by_product
    assert losses.per_target_scoring(100_000, 256) is losses.scores_by_gather
    assert losses.per_target_scoring(12101, 64) is losses.scores_by_gather  # fewer draws per target


def test_distinct_items_are_torch_unique_without_the_sort():
    generator = torch.Generator().manual_seed(0)
    for shape, n_items in (((730, 256), 12101), ((3, 5), 4), ((1, 1), 1)):  # most, all, one item drawn
        items = torch.randint(0, n_items + 1, shape, generator=generator)
        expected = torch.unique(items, return_inverse=True)
        found = losses.distinct_items(items, n_items + 1)
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(found, expected))


def test_both_ways_of_scoring_per_target_negatives_give_the_same_gradients():
    torch.manual_seed(0)
    table = torch.randn(41, 8, requires_grad=True)
    hidden = torch.randn(30, 8, requires_grad=True)
    negatives = torch.randint(1, 41, (30, 16))
    gradients = []
    for score in (losses.scores_by_product, losses.scores_by_gather):
        scores = score(hidden, table, negatives)
        assert torch.allclose(scores, (hidden[:, None, :] * table[negatives]).sum(-1), atol=1e-5)
        (grad_hidden, grad_table) = torch.autograd.grad(scores.logsumexp(-1).sum(), (hidden, table))
        gradients.append((grad_hidden, grad_table))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(*gradients))
    assert gradients[0][1][0].abs().sum() == 0 and gradients[0][1].abs().sum() > 0  # padding never drawn


@pytest.mark.parametrize("block", ["pre_ln", "original"])
def test_training_options_of_the_published_recipe_learn(small_dataset, small_split, block):
    """Item-table dropout, per-target negatives, random equally weighted batches, Adam's beta2,
    the original block, Xavier initialisation and recency positions train together past
    popularity."""
    options = {**SMALL, "item_dropout": 0.2, "block": block, "init": "xavier", "positions": "recency"}
    model = build_backbone("sasrec", small_dataset.n_items, options, seed=0)
    result = fit(
        model,
        small_split,
        quick(negatives_per="target", batching="random", target_weighting="equal", beta2=0.98),
        progress=False,
    )
    popularity = build_backbone("popularity", small_dataset.n_items, {}, seed=0)
    baseline = fit(popularity, small_split, quick(), progress=False)
    assert result.test["ndcg@10"] > 1.5 * baseline.test["ndcg@10"]


def test_augmented_copies_are_independent_and_weighted_like_synthetic_data(small_dataset, small_split):
    """augment_copies = k adds k copies, each from its own stream (the first is the single
    copy rsir always made); augment_weight weighs their targets in the loss."""
    from rsir.data.augmentation import AUGMENTED, augmented

    real = small_split.train
    one = augmented(real, "reorder", 0.5, 0, small_dataset.n_items)
    three = augmented(real, "reorder", 0.5, 0, small_dataset.n_items, copies=3)
    assert len(three) == 4 * len(real) and three.select(np.arange(2 * len(real))).to_lists() == one.to_lists()
    blocks = [three.select(np.arange(k * len(real), (k + 1) * len(real))).to_lists() for k in (1, 2, 3)]
    assert blocks[0] != blocks[1] != blocks[2] != blocks[0]
    assert all(sorted(a) == sorted(b) for block in blocks for a, b in zip(block, real.to_lists()))
    assert set(three.origin[len(real) :].tolist()) == {AUGMENTED}
    for _, targets, weights, _ in next_item_batches(three, 20, 64, np.random.default_rng(0), augment_weight=0.25):
        assert set(weights[targets != 0].unique().tolist()) <= {1.0, 0.25}
    weights = torch.cat(
        [w[t != 0] for _, t, w, _ in next_item_batches(three, 20, 64, np.random.default_rng(0), augment_weight=0.25)]
    )
    assert int((weights == 0.25).sum()) == 3 * int((weights == 1.0).sum())


def test_fit_trains_on_the_sequences_it_is_given_and_augmentation_is_data_preparation(small_dataset, small_split):
    params = quick(max_epochs=1, augment="insert", augment_copies=2)
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    with pytest.raises(ConfigError, match="training_split"):
        fit(model, small_split, params, progress=False)
    prepared = params.training_split(small_split, small_dataset.n_items)
    assert len(prepared.train) == 3 * len(small_split.train) and prepared.valid is small_split.valid
    assert fit(model, prepared, params, progress=False).epochs == 1
    assert quick().training_split(small_split, small_dataset.n_items) is small_split  # no augmentation


def test_a_student_with_distillation_weight_one_moves_towards_its_teacher(small_dataset, small_split, tmp_path):
    """distill_weight = 1: the loss is the catalogue KL to the teacher alone, so training brings
    the student's distribution over the catalogue close to the teacher's, where training on the
    next items of other data does not; the loss and its gradient equal a direct computation."""
    from rsir.data import leave_one_out, make_synthetic
    from rsir.models.checkpoint import save_checkpoint
    from rsir.training.losses import CatalogueDistillation

    # A teacher of other data over the same catalogue, so that the data alone lead elsewhere.
    # Pre-LN blocks: the default's Xavier-initialised original blocks learn too slowly in eight
    # epochs of toy data for the student to get near its teacher.
    pre_ln = {**SMALL, "block": "pre_ln", "init": "normal"}
    other = leave_one_out(make_synthetic(600, small_dataset.n_items, n_clusters=8, seed=9))
    teacher = build_backbone("sasrec", small_dataset.n_items, pre_ln, seed=1)
    fit(teacher, other, quick(), progress=False)
    save_checkpoint(tmp_path / "teacher.pt", teacher, {})
    inputs = torch.from_numpy(small_split.valid.history.padded(np.arange(64), 20).astype(np.int64))

    def divergence(student) -> float:
        student.eval()
        with torch.no_grad():
            log_student = student.score_all(student.last_hidden(inputs))[:, 1:].log_softmax(1)
            log_teacher = teacher.score_all(teacher.last_hidden(inputs))[:, 1:].log_softmax(1)
            return float((log_teacher.exp() * (log_teacher - log_student)).sum(1).mean())

    students = {}
    for weight in (0.0, 1.0):
        students[weight] = build_backbone("sasrec", small_dataset.n_items, pre_ln, seed=2)
        fit(
            students[weight],
            small_split,
            quick(distill_weight=weight, distill_temperature=2.0, teacher=str(tmp_path / "teacher.pt")),
            progress=False,
        )
    start = divergence(build_backbone("sasrec", small_dataset.n_items, pre_ln, seed=2).eval())
    assert divergence(students[1.0]) < 0.2 * start and divergence(students[1.0]) < 0.2 * divergence(students[0.0])

    hidden = torch.randn(5, 8, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(9, 8, dtype=torch.float64, requires_grad=True)
    teacher_hidden, teacher_weights = torch.randn(5, 8, dtype=torch.float64), torch.randn(9, 8, dtype=torch.float64)
    target_weights = torch.tensor([1.0, 0.5, 1.0, 0.25, 1.0], dtype=torch.float64)
    fused = CatalogueDistillation.apply(hidden, weights, teacher_hidden, teacher_weights, target_weights, 2.0)
    fused_grads = torch.autograd.grad(fused, (hidden, weights))
    student, scores = (hidden @ weights.T / 2)[:, 1:], (teacher_hidden @ teacher_weights.T / 2)[:, 1:]
    direct = 4 * (target_weights * (scores.softmax(1) * (scores.log_softmax(1) - student.log_softmax(1))).sum(1)).sum()
    assert torch.allclose(fused, direct) and all(
        torch.allclose(a, b) for a, b in zip(fused_grads, torch.autograd.grad(direct, (hidden, weights)))
    )


def test_distillation_needs_a_teacher(small_dataset, small_split):
    from rsir.errors import ConfigError

    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    with pytest.raises(ConfigError, match="distill_weight needs a teacher"):
        fit(model, small_split, quick(distill_weight=0.5), progress=False)


class _Recorder(Callback):
    """Records the hooks it sees and ends training after ``stop_at`` epochs."""

    def __init__(self, stop_at: int) -> None:
        self.stop_at, self.calls, self.batches = stop_at, [], 0

    def on_fit_start(self, run):
        self.calls.append("fit_start")

    def on_batch_end(self, run, loss):
        self.batches += 1
        assert np.isfinite(loss)

    def stops_after(self, run):
        return run.state.epoch >= self.stop_at

    def on_validation(self, run, valid):
        self.calls.append(f"valid {run.state.epoch}")

    def on_epoch_end(self, run, record):
        self.calls.append(f"end {record['epoch']}")

    def on_train_end(self, run):
        self.calls.append("train_end")

    def on_test_end(self, run, tested):
        self.calls.append("test_end")


def test_a_callback_sees_every_hook_in_order_and_can_end_training(small_dataset, small_split):
    """A caller's callback: its stop validates the epoch it ends on (eval_every 2 skips the others)."""
    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    recorder = _Recorder(stop_at=3)
    result = fit(model, small_split, quick(eval_every=2), progress=False, callbacks=[recorder])
    assert result.epochs == 3
    assert recorder.calls == ["fit_start", "end 1", "valid 2", "end 2", "valid 3", "end 3", "train_end", "test_end"]
    assert recorder.batches == 3 * int(np.ceil(count_targets(small_split.train, 20, False)[1] / 64))
    assert "valid_ndcg@20" not in result.history[0] and "valid_ndcg@20" in result.history[2]


def test_tensorboard_callback_logs_each_epoch(small_dataset, small_split, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model = build_backbone("sasrec", small_dataset.n_items, SMALL, seed=0)
    result = fit(model, small_split, quick(max_epochs=3), progress=False, callbacks=[TensorBoard(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("valid/ndcg@20")]
    assert logged == [(r["epoch"], pytest.approx(r["valid_ndcg@20"], rel=1e-6)) for r in result.history]
    assert [e.value for e in events.Scalars("test/recall@10")] == [pytest.approx(result.test["recall@10"], rel=1e-6)]
    assert len(events.Scalars("loss")) == 3


def test_default_threads_share_the_cores_among_torchrun_local_processes(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        use_threads(0)
        assert torch.get_num_threads() == 8
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
        use_threads(0)
        assert torch.get_num_threads() == 2
        use_threads(3)  # an explicit count is kept
        assert torch.get_num_threads() == 3
        monkeypatch.setenv("LOCAL_WORLD_SIZE", "16")
        use_threads(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
