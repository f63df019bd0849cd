"""Checkpoints: weights and a JSON description, loadable without unpickling arbitrary objects.

A checkpoint is a dict of tensors and strings saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses any pickled object that is not a tensor or
a plain container, so a crafted file cannot run code.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError
from .io import atomic_path
from .models import Backbone, build_backbone

FORMAT = "rsir-checkpoint/1"


def save_checkpoint(path: str | Path, model: Backbone, meta: dict[str, Any], **tensors: Any) -> None:
    """Write weights plus ``meta`` (JSON-serialisable) and optional extra tensor state."""
    payload = {
        "format": FORMAT,
        "model": json.dumps({"n_items": model.n_items, **model.describe()}),
        "meta": json.dumps(meta),
        "state": model.state_dict(),
        **tensors,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0][:160]
        raise CheckpointError(f"{path}: refused, it holds objects other than tensors ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rsir checkpoint (expected format {FORMAT})")
    return payload


def load_checkpoint(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    """The model (in eval mode) and the meta dict it was saved with."""
    payload = read_checkpoint(path)
    description = json.loads(payload["model"])
    n_items = description.pop("n_items")
    name = description.pop("backbone")
    model = build_backbone(name, n_items, description)
    try:
        model.load_state_dict(payload["state"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the {name} model they describe ({exc})") from None
    model.eval()
    return model, json.loads(payload["meta"])


def check_same_data(meta: dict[str, Any], fingerprint: str, n_items: int, path: str | Path) -> None:
    """Refuse to use a checkpoint with data other than the data it was trained on."""
    if meta.get("data_fingerprint") not in (None, fingerprint) or meta.get("n_items", n_items) != n_items:
        raise CheckpointError(
            f"{path}: trained on other data (fingerprint {meta.get('data_fingerprint')}, "
            f"{meta.get('n_items')} items) than the data given (fingerprint {fingerprint}, {n_items} items)"
        )
