"""CL4SRec (Xie et al., 2022): the SASRec encoder trained with the next-item loss plus a
contrastive loss between two augmented views (crop, mask, reorder) of each sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .sasrec import SASRec, SASRecParams
from .views import random_views


@dataclass
class CL4SRecParams(SASRecParams):
    cl_weight: float = 0.1  # weight of the contrastive loss
    temperature: float = 1.0
    crop_keep: float = 0.6  # crop keeps this share of the sequence
    mask_share: float = 0.3  # mask replaces this share with the mask token
    reorder_share: float = 0.6  # reorder shuffles a block of this share

    def validate(self) -> None:
        super().validate()
        if self.cl_weight < 0 or self.temperature <= 0:
            raise ConfigError("model options need cl_weight >= 0 and temperature > 0")
        for name in ("crop_keep", "mask_share", "reorder_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"model option {name} must be in [0, 1], got {getattr(self, name)}")


class CL4SRec(SASRec):
    name = "cl4srec"
    Params = CL4SRecParams

    def __init__(self, n_items: int, params: CL4SRecParams) -> None:
        super().__init__(n_items, params)
        # One extra embedding row for the mask token; it is never scored.
        self.mask_token = n_items + 1
        self.item_embedding = nn.Embedding(n_items + 2, params.dim, padding_idx=0)
        if params.init == "xavier":  # the new table is initialised as SASRec's own was
            nn.init.xavier_normal_(self.item_embedding.weight)
        else:
            nn.init.normal_(self.item_embedding.weight, std=0.02)
        with torch.no_grad():
            self.item_embedding.weight[0].zero_()

    def item_weights(self) -> torch.Tensor:
        return self.item_table()[: self.n_items + 1]

    def auxiliary_loss(self, inputs: torch.Tensor) -> torch.Tensor:
        p = self.params
        views = [random_views(inputs, p.crop_keep, p.mask_share, p.reorder_share, self.mask_token) for _ in range(2)]
        z = torch.cat([self.last_hidden(v) for v in views])  # (2B, dim)
        similarity = z @ z.T / p.temperature
        similarity.fill_diagonal_(float("-inf"))
        batch = len(inputs)
        positives = torch.cat([torch.arange(batch, 2 * batch), torch.arange(batch)]).to(z.device)
        return p.cl_weight * F.cross_entropy(similarity, positives)
