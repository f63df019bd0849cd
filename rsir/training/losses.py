"""Next-item losses, chosen by name. Each takes the model, the hidden states of a batch, its
input/target items and a weight per target (0 at padding), and returns the weighted sum of
the per-target losses; the training step divides by the batch's total weight."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import ConfigError, did_you_mean
from ..models.base import Backbone
from .sampling import uniform_items, uniform_negatives_excluding_own

NEGATIVES_PER = ("sequence", "target")


class SampledSoftmax:
    """Softmax over the target and N uniform negatives: shared by the positions of a
    sequence, excluding that sequence's items (``per="sequence"``), or drawn afresh for
    every target with nothing excluded (``per="target"``, as RecTools does)."""

    def __init__(self, negatives: int = 256, per: str = "sequence") -> None:
        if negatives < 1:
            raise ConfigError(f"negatives must be >= 1, got {negatives}")
        if per not in NEGATIVES_PER:
            raise ConfigError(f"negatives_per must be one of {', '.join(NEGATIVES_PER)}, got {per!r}")
        self.negatives = negatives
        self.per = per

    def __call__(
        self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        valid = targets != 0
        if self.per == "target":
            return self._per_target(model, hidden[valid], targets[valid], weights[valid])
        own = torch.cat([inputs, targets], dim=1)
        negatives, collide = uniform_negatives_excluding_own(model.n_items, own, (len(targets), self.negatives))
        embeddings = model.item_weights()
        # F.embedding, not embeddings[idx]: the backward of advanced indexing accumulates rows
        # in a thread-dependent order on CPU, so repeated runs would differ in the last bits.
        positive = (hidden * F.embedding(targets, embeddings)).sum(-1)
        negative = torch.bmm(hidden, F.embedding(negatives, embeddings).transpose(1, 2))
        negative = negative.masked_fill(collide.unsqueeze(1), float("-inf"))
        logits = torch.cat([positive.unsqueeze(-1), negative], dim=-1)[valid]
        return ((torch.logsumexp(logits, dim=-1) - logits[:, 0]) * weights[valid]).sum()

    def _per_target(
        self, model: Backbone, hidden: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        embeddings = model.item_weights()
        negatives = uniform_items(model.n_items, (len(targets), self.negatives), hidden.device)
        positive = (hidden * F.embedding(targets, embeddings)).sum(-1, keepdim=True)
        score = per_target_scoring(model.n_items, self.negatives)
        logits = torch.cat([positive, score(hidden, embeddings, negatives)], dim=-1)
        return ((torch.logsumexp(logits, dim=-1) - logits[:, 0]) * weights).sum()


# Per-target negatives: above this many catalogue items per negative, each target's own
# negatives are gathered instead of scored through a product with every distinct drawn item.
# Measured side by side (benchmarks/negatives_scoring.py): at d 256 the product is faster up to
# the benchmark catalogues (12-18k items), the gather from 50k items on; at d 64 the gather wins
# earlier. The benchmark sets keep the product, so their published runs repeat bit for bit.
GATHER_ABOVE = 128


def per_target_scoring(
    n_items: int, negatives: int
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """How per-target negatives are scored on a catalogue of ``n_items``: see GATHER_ABOVE."""
    return scores_by_gather if n_items > GATHER_ABOVE * negatives else scores_by_product


def scores_by_product(hidden: torch.Tensor, embeddings: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Each target's scores against its negatives, from one product with every distinct drawn
    item (cheap in memory; costs a full softmax's product once the draws cover the catalogue)."""
    drawn, where = distinct_items(negatives, len(embeddings))
    return (hidden @ F.embedding(drawn, embeddings).T).gather(1, where)


def distinct_items(items: torch.Tensor, n_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.unique(items, return_inverse=True)`` for indices below ``n_rows``, from a presence
    table instead of a sort: the same sorted items and positions, in linear time (the sort took
    a twentieth of a default Beauty step)."""
    present = torch.zeros(n_rows, dtype=torch.bool, device=items.device)
    present[items.reshape(-1)] = True
    return present.nonzero().squeeze(1), (torch.cumsum(present, 0) - 1)[items]


def scores_by_gather(hidden: torch.Tensor, embeddings: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """Each target's scores against its negatives, from its own gathered (negatives x dim)
    embeddings (work grows with the draws, not with the catalogue)."""
    return torch.bmm(F.embedding(negatives, embeddings), hidden.unsqueeze(-1)).squeeze(-1)


class FullSoftmax:
    """Cross-entropy over the whole catalogue (scores are dot products with the item weights)."""

    def __call__(
        self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        valid = targets != 0
        return CatalogueCrossEntropy.apply(hidden[valid], model.item_weights(), targets[valid], weights[valid])


class CatalogueCrossEntropy(torch.autograd.Function):
    """Cross-entropy of ``hidden @ weights.T`` (item 0, padding, excluded) against
    ``targets``, summed with per-target weights, a block of rows at a time, with the
    gradients formed in the same pass.

    The whole (targets x catalogue) logit matrix never exists: each block's logits stay in
    cache while they are turned into probabilities and multiplied back, where the unfused
    loss writes and rereads the full matrix several times (memory-bound: on Beauty, 2,000
    targets x 12,101 items is 97 MB per batch). The loss is a scalar, so backward only
    scales the stored gradients.
    """

    BLOCK_FLOATS = 1 << 21  # about 8 MB of logits per block

    @staticmethod
    def forward(
        ctx, hidden: torch.Tensor, weights: torch.Tensor, targets: torch.Tensor, target_weights: torch.Tensor
    ) -> torch.Tensor:
        device = hidden.device.type
        exact = torch.promote_types(hidden.dtype, torch.float32)  # softmax, loss and gradient sums
        # Under autocast the three products run in its lower precision, each operand cast once.
        product = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else exact
        rows = max(16, CatalogueCrossEntropy.BLOCK_FLOATS // weights.shape[0])
        grad_hidden = torch.empty_like(hidden)
        grad_weights = torch.zeros(weights.shape, dtype=exact, device=weights.device)
        total = hidden.new_zeros((), dtype=exact)
        hidden_p, weights_p, target_weights = hidden.to(product), weights.to(product), target_weights.to(exact)
        with torch.autocast(device, enabled=False):
            for start in range(0, len(targets), rows):
                block, block_targets = hidden_p[start : start + rows], targets[start : start + rows, None]
                block_weights = target_weights[start : start + rows, None]
                logits = block @ weights_p.T
                logits[:, 0] = float("-inf")
                top = logits.amax(dim=1, keepdim=True).to(exact)
                log_target = logits.gather(1, block_targets).to(exact) - top
                probs = torch.sub(logits, top, out=logits if logits.dtype == exact else None).exp_()
                norm = probs.sum(dim=1, keepdim=True)
                log_target -= norm.log()
                total -= (log_target * block_weights).sum()
                # d(weighted loss) / d(logits) = w * (softmax - one_hot)
                probs.mul_(block_weights / norm).scatter_add_(1, block_targets, -block_weights)
                probs = probs.to(product)
                grad_hidden[start : start + rows] = probs @ weights_p
                grad_weights += probs.T @ block  # not addmm_: torch's FLOP counter skips in-place addmm
        ctx.save_for_backward(grad_hidden, grad_weights.to(weights.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weights = ctx.saved_tensors
        return grad_hidden * grad_loss.to(grad_hidden.dtype), grad_weights * grad_loss, None, None


class CatalogueDistillation(torch.autograd.Function):
    """Distillation over the whole catalogue: the sum over rows of ``target_weights`` times
    tau^2 KL(teacher || student), both softmaxes of the dot products with their item tables at
    temperature tau (item 0, padding, excluded), a block of rows at a time with the gradients
    formed in the same pass (as :class:`CatalogueCrossEntropy`): the (targets x catalogue)
    matrices never exist whole. The teacher gets no gradient."""

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weights: torch.Tensor,
        teacher_hidden: torch.Tensor,
        teacher_weights: torch.Tensor,
        target_weights: torch.Tensor,
        temperature: float,
    ) -> torch.Tensor:
        exact = torch.promote_types(hidden.dtype, torch.float32)
        hidden, weights = hidden.to(exact), weights.to(exact)
        teacher_hidden, teacher_weights = teacher_hidden.to(exact), teacher_weights.to(exact)
        rows = max(16, CatalogueCrossEntropy.BLOCK_FLOATS // weights.shape[0])
        grad_hidden = torch.empty_like(hidden)
        grad_weights = torch.zeros_like(weights)
        total = hidden.new_zeros(())
        with torch.autocast(hidden.device.type, enabled=False):
            for start in range(0, len(hidden), rows):
                block = hidden[start : start + rows]
                block_weights = target_weights[start : start + rows, None].to(exact)
                student = block @ weights.T / temperature
                teacher = teacher_hidden[start : start + rows] @ teacher_weights.T / temperature
                student[:, 0] = teacher[:, 0] = float("-inf")
                log_student, log_teacher = student.log_softmax(1), teacher.log_softmax(1)
                p_teacher = log_teacher.exp()
                kl = (p_teacher * (log_teacher - log_student)).nan_to_num_(0.0).sum(1, keepdim=True)
                total += temperature**2 * (kl * block_weights).sum()
                # d(tau^2 KL) / d(student logits before scaling) = tau (p_student - p_teacher)
                grad_logits = temperature * block_weights * (log_student.exp() - p_teacher)
                grad_hidden[start : start + rows] = grad_logits @ weights
                grad_weights += grad_logits.T @ block
        ctx.save_for_backward(grad_hidden, grad_weights)
        return total

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_hidden, grad_weights = ctx.saved_tensors
        return grad_hidden * grad_loss, grad_weights * grad_loss, None, None, None, None


class BinaryCrossEntropy:
    """The original SASRec loss: the target against one uniform negative per position."""

    def __call__(
        self, model: Backbone, hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        valid = targets != 0
        own = torch.cat([inputs, targets], dim=1)
        negatives, collide = uniform_negatives_excluding_own(model.n_items, own, tuple(targets.shape))
        positive = model.score_items(hidden, targets.unsqueeze(-1)).squeeze(-1)
        negative = model.score_items(hidden, negatives.unsqueeze(-1)).squeeze(-1)
        loss = F.softplus(-positive) + F.softplus(negative) * (~collide)
        return (loss * weights)[valid].sum()


LOSSES = {"sampled_softmax": SampledSoftmax, "softmax": FullSoftmax, "bce": BinaryCrossEntropy}


def build_loss(name: str, negatives: int = 256, negatives_per: str = "sequence"):
    if name not in LOSSES:
        hint = did_you_mean(name, LOSSES)
        raise ConfigError(f"unknown loss {name!r} (known: {', '.join(LOSSES)}){hint}")
    return SampledSoftmax(negatives, negatives_per) if name == "sampled_softmax" else LOSSES[name]()
