"""Sequence augmentations on right-padded batches (0 = padding), vectorised over rows.

Used as composable transforms: CL4SRec draws two views of each sequence from them.
Each function returns a new (batch, length) tensor; rows keep right padding.
"""

from __future__ import annotations

import torch


def _lengths(items: torch.Tensor) -> torch.Tensor:
    return (items != 0).sum(1)


def crop(items: torch.Tensor, keep: float) -> torch.Tensor:
    """A random contiguous sub-sequence of ceil(keep * n) items of each row."""
    lengths = _lengths(items)
    kept = torch.clamp(torch.ceil(keep * lengths).long(), min=1)
    start = (torch.rand(len(items), device=items.device) * (lengths - kept + 1)).long()
    cols = torch.arange(items.shape[1], device=items.device)
    source = (start[:, None] + cols).clamp(max=items.shape[1] - 1)
    return torch.where(cols < kept[:, None], items.gather(1, source), 0)


def mask(items: torch.Tensor, share: float, mask_token: int) -> torch.Tensor:
    """Replace floor(share * n) random items of each row with ``mask_token``."""
    lengths = _lengths(items)
    count = torch.floor(share * lengths).long()
    noise = torch.rand(items.shape, device=items.device).masked_fill(items == 0, 2.0)  # padding never chosen
    rank = noise.argsort(1).argsort(1)
    return torch.where(rank < count[:, None], torch.full_like(items, mask_token), items)


def reorder(items: torch.Tensor, share: float) -> torch.Tensor:
    """Shuffle a random contiguous block of floor(share * n) items of each row."""
    lengths = _lengths(items)
    size = torch.floor(share * lengths).long()
    start = (torch.rand(len(items), device=items.device) * (lengths - size + 1)).long()
    cols = torch.arange(items.shape[1], device=items.device).expand_as(items)
    inside = (cols >= start[:, None]) & (cols < (start + size)[:, None])
    # Positions inside the block get random keys within the block's range, so a sort by
    # key permutes the block and leaves everything else where it was.
    keys = torch.where(
        inside, start[:, None] + torch.rand(items.shape, device=items.device) * size[:, None].clamp(min=1), cols.float()
    )
    keys = torch.where(inside, keys.clamp(max=(start + size)[:, None].float() - 1e-3), keys)
    return items.gather(1, keys.argsort(1))


def random_views(
    items: torch.Tensor, keep: float, mask_share: float, reorder_share: float, mask_token: int
) -> torch.Tensor:
    """One augmentation per row, chosen uniformly among crop, mask and reorder."""
    choice = torch.randint(0, 3, (len(items), 1), device=items.device)
    views = (crop(items, keep), mask(items, mask_share, mask_token), reorder(items, reorder_share))
    widest = max(v.shape[1] for v in views)
    out = items.new_zeros(len(items), widest)
    for index, view in enumerate(views):
        out[:, : view.shape[1]] = torch.where(choice == index, view, out[:, : view.shape[1]])
    return out
