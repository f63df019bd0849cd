"""Backbones by name. Adding a model means one file and its class in ``BACKBONES``."""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

import torch

from ..errors import ConfigError
from .base import Backbone
from .cl4srec import CL4SRec
from .gru4rec import GRU4Rec
from .hstu import HSTU
from .popularity import Popularity
from .sasrec import SASRec

BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (SASRec, CL4SRec, HSTU, GRU4Rec, Popularity)}
DEFAULT_BACKBONE = SASRec.name  # what train, improve and the Python API use unless told otherwise


def backbone_class(name: str) -> type[Backbone]:
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, BACKBONES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)}){hint}")
    return BACKBONES[name]


def build_backbone(name: str, n_items: int, params: dict[str, Any] | None = None, seed: int | None = None) -> Backbone:
    """A fresh backbone; with ``seed`` its initial weights are reproducible."""
    cls = backbone_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    params = dict(params or {})
    unknown = [key for key in params if key not in fields]
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"backbone {name!r} has no option {unknown[0]!r}{hint}")
    if seed is None:
        return cls(n_items, cls.Params(**params))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(n_items, cls.Params(**params))


__all__ = ["BACKBONES", "Backbone", "backbone_class", "build_backbone"]
