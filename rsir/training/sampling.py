"""Negative sampling as a composable transform, kept out of the models and the losses."""

from __future__ import annotations

import torch


def uniform_items(n_items: int, shape: tuple[int, ...], device: torch.device | None = None) -> torch.Tensor:
    """Item indices drawn uniformly from 1..n_items (torch's global, seeded generator)."""
    return torch.randint(1, n_items + 1, shape, device=device)


def own_item_mask(candidates: torch.Tensor, own: torch.Tensor) -> torch.Tensor:
    """True where ``candidates[b, ...]`` is one of the items in row ``b`` of ``own``."""
    flat = candidates.reshape(len(candidates), -1)
    hit = (flat.unsqueeze(-1) == own.unsqueeze(1)).any(-1)
    return hit.reshape(candidates.shape)


def uniform_negatives_excluding_own(
    n_items: int, own: torch.Tensor, shape: tuple[int, ...], retries: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uniform negatives per row of ``own``; draws that hit the row's own items are redrawn a
    few times, and the mask returned marks the (rare) ones still colliding, to be ignored."""
    negatives = uniform_items(n_items, shape, own.device)
    collide = own_item_mask(negatives, own)
    for _ in range(retries):
        if not collide.any():
            break
        negatives = torch.where(collide, uniform_items(n_items, shape, own.device), negatives)
        collide = own_item_mask(negatives, own)
    return negatives, collide
