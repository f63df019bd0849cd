"""Checkpoints: weights and a JSON description, loadable without unpickling arbitrary objects.

A checkpoint is a dict of tensors and strings saved with ``torch.save`` and read back with
``torch.load(weights_only=True)``, which refuses any pickled object that is not a tensor or
a plain container, so a crafted file cannot run code.
"""

from __future__ import annotations

import io
import json
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Dataset, Sequences
from ..errors import CheckpointError, ConfigError
from ..files import atomic_open, missing_file_text
from . import Backbone, as_written, build_backbone

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
    # Serialised in memory first: a failing write (disk full) then raises an OSError with
    # its reason, which torch.save's own writer reduces to an opaque RuntimeError.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with atomic_open(path, "wb") as handle:
        handle.write(buffer.getbuffer())


def data_entries(dataset: Dataset) -> dict[str, Any]:
    """What a checkpoint carries of its data so that it recommends on its own: the original
    user and item ids (JSON, so string ids survive the safe loader) and every user's history."""
    ids = {"name": dataset.name, "users": dataset.user_ids.tolist(), "items": dataset.item_ids.tolist()}
    return {
        "data_ids": json.dumps(ids),
        "data_items": torch.from_numpy(np.ascontiguousarray(dataset.sequences.items, dtype=np.int32)),
        "data_offsets": torch.from_numpy(np.ascontiguousarray(dataset.sequences.offsets, dtype=np.int64)),
    }


def embedded_dataset(payload: dict[str, Any], path: str | Path) -> Dataset | None:
    """The data a checkpoint carries (see :func:`data_entries`), or None for one without."""
    if "data_ids" not in payload:
        return None
    ids = _json_field(payload, "data_ids", path, "id maps")
    try:
        offsets = payload["data_offsets"].numpy()
        users = np.asarray(ids["users"])
        sequences = Sequences(
            payload["data_items"].numpy(), offsets, np.arange(len(offsets) - 1), np.zeros(len(offsets) - 1, np.int16)
        )
        if len(users) != len(sequences):
            raise ValueError("one user id per history expected")
        return Dataset(sequences, item_ids=np.asarray(ids["items"]), user_ids=users, name=str(ids["name"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: invalid embedded data ({_one_line(exc)})") from None


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(missing_file_text(path, "checkpoint"))
    # torch.save writes a zip archive; anything else (a data file given by mistake, random
    # bytes) would reach torch's legacy unpickler, which fails with arbitrary exceptions.
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a checkpoint (not a PyTorch zip archive)")
    try:
        with warnings.catch_warnings():  # a damaged pickle header makes torch warn before it fails
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch explains at length; the line after "WeightsUnpickler error:" names the cause.
        cause = re.search(r"WeightsUnpickler error:\s*(\S.*)", str(exc))
        reason = cause.group(1)[:160] if cause else _one_line(exc)
        raise CheckpointError(
            f"{path}: refused, it holds objects other than tensors or is damaged ({reason})"
        ) from None
    except (
        Exception
    ) as exc:  # a damaged archive can fail anywhere in the reader (IndexError, KeyError, struct.error, ...)
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an rsir checkpoint (expected format {FORMAT})")
    return payload


def load_checkpoint(path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    """The model (in eval mode) and the meta dict it was saved with."""
    return _model_and_meta(read_checkpoint(path), path)


def load_checkpoint_with_data(path: str | Path) -> tuple[Backbone, dict[str, Any], Dataset | None]:
    """:func:`load_checkpoint` and the data the checkpoint carries (None if it carries none),
    from one read of the file."""
    payload = read_checkpoint(path)
    return (*_model_and_meta(payload, path), embedded_dataset(payload, path))


def _model_and_meta(payload: dict[str, Any], path: str | Path) -> tuple[Backbone, dict[str, Any]]:
    try:
        description = json.loads(payload["model"])
        n_items = description.pop("n_items")
        name = description.pop("backbone")
        model = build_backbone(name, n_items, as_written(name, description))
        state = payload["state"]
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError, ConfigError) as exc:
        raise CheckpointError(f"{path}: invalid model description ({_one_line(exc)})") from None
    meta = checkpoint_meta(payload, path)
    load_weights(model, state, path)
    model.eval()
    return model, meta


def checkpoint_meta(payload: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The JSON meta dict a checkpoint was saved with."""
    return _json_field(payload, "meta", path, "checkpoint meta data")


def _json_field(payload: dict[str, Any], key: str, path: str | Path, what: str) -> dict[str, Any]:
    """A JSON object stored as a string in the checkpoint, or a one-line error."""
    try:
        value = json.loads(payload[key])
    except (KeyError, TypeError, ValueError):
        value = None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path}: invalid {what}")
    return value


def load_weights(model: Backbone, state: Any, path: str | Path) -> None:
    """Load a state dict, refusing (in one line) weights of another architecture or size."""
    try:
        model.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        # torch lists every mismatch on its own line; the first one says enough.
        details = [line.strip() for line in str(exc).splitlines()[1:] if line.strip()]
        reason = details[0] if details else _one_line(exc)
        raise CheckpointError(f"{path}: weights do not match the {model.name} model they describe ({reason})") from None


def check_same_model(payload: dict[str, Any], model: Backbone, path: str | Path) -> None:
    """Refuse a checkpoint saved from another backbone or another size than ``model``."""
    saved = _json_field(payload, "model", path, "model description")
    expected = {"n_items": model.n_items, **model.describe()}
    # An option added to the backbone since the checkpoint was saved had its value then.
    if isinstance(saved.get("backbone"), str) and saved["backbone"] == model.name:
        saved = {
            "n_items": saved.get("n_items"),
            "backbone": model.name,
            **as_written(model.name, {k: v for k, v in saved.items() if k not in ("n_items", "backbone")}),
        }
    if saved != expected:
        keys = [k for k in expected if saved.get(k) != expected[k]] + [k for k in saved if k not in expected]
        diff = ", ".join(f"{k} {saved.get(k)!r} instead of {expected.get(k)!r}" for k in keys[:3])
        raise CheckpointError(
            f"{path}: checkpoint of another model ({diff}); delete it or choose another run directory"
        )


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__


def check_same_data(meta: dict[str, Any], fingerprint: str, n_items: int, path: str | Path) -> None:
    """Refuse to use a checkpoint with data other than the data it was trained on."""
    if meta.get("data_fingerprint") not in (None, fingerprint) or meta.get("n_items", n_items) != n_items:
        raise CheckpointError(
            f"{path}: trained on other data (fingerprint {meta.get('data_fingerprint')}, "
            f"{meta.get('n_items')} items) than the data given (fingerprint {fingerprint}, {n_items} items)"
        )
