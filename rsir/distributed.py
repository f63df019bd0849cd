"""Running under torch.distributed, launched by ``torchrun``: this process's rank, its share
of the work, and exact combination of results across ranks.

Work is split by whole batches of a plan that every rank computes identically (same seed,
same data), so each batch is computed exactly as in a single process and the combined
result is the single-process result, bit for bit. Results are combined as integer sums,
never as averages of averages. Outside ``torchrun`` every function is the single-process
identity, so callers need no special case.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypeVar

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError

T = TypeVar("T")


def init_from_env() -> None:
    """Join the process group that ``torchrun`` describes in the environment; a no-op when
    the process was started alone (``WORLD_SIZE`` unset or 1)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or active():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "cpu:gloo,cuda:nccl"  # each collective goes by its tensors' device
    else:
        backend = "gloo"
    try:
        dist.init_process_group(backend)
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot join the torchrun process group ({str(exc).splitlines()[0]})") from None


def check_device(name: str) -> None:
    """Raise a clear error for a device name rsir cannot use anywhere; whether this machine
    has the device is :func:`resolve_device`'s question (a GPU run's config stays readable
    on a CPU machine, for its report)."""
    if name == "auto":
        return
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r} (use auto, cpu, cuda or cuda:N)") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r} (use auto, cpu, cuda or cuda:N)")


def resolve_device(name: str) -> torch.device:
    """The device this process computes on: ``auto`` is a GPU when there is one, else the
    CPU; under torchrun a GPU means this rank's own (``LOCAL_RANK``)."""
    check_device(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested, but this machine has no usable CUDA GPU")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 writes checkpoints, logs and reports; the others only compute."""
    return rank() == 0


def my_share(batches: Sequence[T]) -> list[T]:
    """This rank's batches of a plan all ranks share: every ``world_size``-th, from ``rank``."""
    return list(batches[rank() :: world_size()])


def sum_over_ranks(array: np.ndarray) -> np.ndarray:
    """Element-wise sum of ``array`` over all ranks (integer arrays sum exactly)."""
    if not active():
        return array
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.numpy()


def gather_arrays(arrays: tuple[np.ndarray, ...]) -> list[tuple[np.ndarray, ...]]:
    """Every rank's ``arrays`` (any sizes), in rank order, on every rank: each rank ships
    only what it holds."""
    if not active():
        return [arrays]
    parts: list[Any] = [None] * world_size()
    dist.all_gather_object(parts, arrays)
    return parts


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """Stack one equally shaped tensor per rank (rank order) into a new first dimension."""
    if not active():
        return tensor.unsqueeze(0)
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.stack(parts)


def broadcast_flag(flag: bool) -> bool:
    """Rank 0's value of ``flag`` on every rank (for decisions that must agree)."""
    if not active():
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier() -> None:
    if active():
        dist.barrier()


def shutdown() -> None:
    if active():
        dist.destroy_process_group()
