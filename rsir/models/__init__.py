"""Backbones by name. Adding a model means one file and its class in ``BACKBONES``."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..errors import ConfigError, did_you_mean
from .base import Backbone
from .cl4srec import CL4SRec
from .gru4rec import GRU4Rec
from .hstu import HSTU
from .markov import Markov
from .popularity import Popularity
from .sasrec import SASRec

BACKBONES: dict[str, type[Backbone]] = {cls.name: cls for cls in (SASRec, CL4SRec, HSTU, GRU4Rec, Popularity, Markov)}
DEFAULT_BACKBONE = SASRec.name  # what train, improve and the Python API use unless told otherwise


# Backbone options as the RSIR paper's SASRec had them: rsir's defaults before the SASRec parity
# study (docs/results/sasrec_parity.md), and what a checkpoint or a saved config that lacks an
# option had, since it was written before the option existed (rsir.config's "paper" preset).
PAPER_MODEL: dict[str, Any] = {
    "dim": 64,
    "blocks": 2,
    "heads": 2,
    "dropout": 0.5,
    "item_dropout": 0.0,
    "block": "pre_ln",
    "init": "normal",
    "positions": "absolute",
    "pad_keys": "masked",
}


def as_written(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """A saved description of backbone ``name`` with every option it lacks at the value it had
    when the description was written (:data:`PAPER_MODEL`, else today's default)."""
    fields = {f.name: f.default for f in dataclasses.fields(backbone_class(name).Params)}
    return {**fields, **{k: v for k, v in PAPER_MODEL.items() if k in fields}, **options}


def backbone_class(name: str) -> type[Backbone]:
    if name not in BACKBONES:
        hint = did_you_mean(name, BACKBONES)
        raise ConfigError(f"unknown backbone {name!r} (known: {', '.join(BACKBONES)}){hint}")
    return BACKBONES[name]


def build_backbone(name: str, n_items: int, params: dict[str, Any] | None = None, seed: int | None = None) -> Backbone:
    """A fresh backbone; with ``seed`` its initial weights are reproducible."""
    cls = backbone_class(name)
    fields = {f.name for f in dataclasses.fields(cls.Params)}
    params = dict(params or {})
    unknown = [key for key in params if key not in fields]
    if unknown:
        hint = did_you_mean(unknown[0], fields)
        raise ConfigError(f"backbone {name!r} has no option {unknown[0]!r}{hint}")
    if seed is None:
        return cls(n_items, cls.Params(**params))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return cls(n_items, cls.Params(**params))


__all__ = ["BACKBONES", "PAPER_MODEL", "Backbone", "as_written", "backbone_class", "build_backbone"]
