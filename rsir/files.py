"""Atomic file writing: a file is either absent, its old version, or complete."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from .errors import RsirError

# The system's words for the path mix-ups users make, in theirs.
_PATH_ERRORS = {
    errno.EEXIST: "a file is there, where a folder was to be made",
    errno.ENOTDIR: "part of this path is a file, not a folder",
    errno.EISDIR: "a folder, where a file was expected",
}


def missing_file_text(path: str | os.PathLike, what: str) -> str:
    """Why ``path`` is not the ``what`` (a data file, a checkpoint, ...) it should be: a folder, or nothing."""
    return f"{path}: a folder; give the {what} in it" if Path(path).is_dir() else f"{path}: no such {what}"


def os_error_text(exc: OSError) -> str:
    """What went wrong in a file operation, in one phrase."""
    return _PATH_ERRORS.get(exc.errno or 0, exc.strerror or str(exc))


def describe_os_error(exc: OSError) -> str:
    """An error no reader or writer turned into an RsirError: its file and what went wrong."""
    return (f"{exc.filename}: " if exc.filename else "") + os_error_text(exc)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    For writers that need a file name (pyarrow, torch.save); text goes through atomic_open.
    The temporary file is created with the usual mode (0o666 less the process's umask, applied
    by the kernel), so the finished file has it too.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp")
            try:
                os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
                break
            except FileExistsError:  # another writer's temporary file by that name: draw again
                continue
    except OSError as exc:
        raise RsirError(f"cannot write {path}: {os_error_text(exc)}") from None
    try:
        yield Path(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise RsirError(f"cannot write {path}: {os_error_text(exc)}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; it replaces ``path`` only once complete."""
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode) as handle:
                yield handle
        except OSError as exc:
            raise RsirError(f"cannot write {path}: {os_error_text(exc)}") from None


def save_figure(fig: Any, path: str | os.PathLike, dpi: int = 100) -> None:
    """Lay out a matplotlib figure, write it as PNG atomically (never half a picture), free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    plt.close(fig)


def plot_learning_curve(path: str | os.PathLike, history: list[dict[str, Any]], metric: str) -> None:
    """A training's curve: its loss and its validation ``metric`` per epoch, the selected
    (best) epoch marked, as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]
    validated = [(r["epoch"], r[f"valid_{metric}"]) for r in history if f"valid_{metric}" in r]
    fig, (loss_axis, valid_axis) = plt.subplots(1, 2, figsize=(9, 3.2))
    loss_axis.plot(epochs, [r["loss"] for r in history])
    loss_axis.set(xlabel="epoch", ylabel="training loss")
    if validated:
        valid_axis.plot(*zip(*validated), marker=".")
        best = history[-1]["best_epoch"]
        valid_axis.axvline(best, color="tab:red", linestyle="--", linewidth=1, label=f"best epoch {best}")
        valid_axis.legend(fontsize=8)
    valid_axis.set(xlabel="epoch", ylabel=f"validation {metric}")
    save_figure(fig, path)


TEMPORARY = ".*.tmp"  # the name pattern of atomic_path's temporary files


def remove_stale_temporaries(directory: str | os.PathLike) -> None:
    """Delete temporary files a killed process left behind (they never replaced anything)."""
    for path in Path(directory).rglob(TEMPORARY):
        _remove_quietly(str(path))


def copy_file(source: str | os.PathLike, target: str | os.PathLike) -> None:
    """Copy ``source`` to ``target`` atomically, making ``target``'s folder where needed."""
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)


def write_json(path: str | os.PathLike, data: Any) -> None:
    with atomic_open(path) as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")


def append_jsonl(path: str | os.PathLike, record: dict) -> None:
    """Append one JSON line; a line is written whole with a single write call."""
    try:
        with open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
    except OSError as exc:
        raise RsirError(f"cannot write {path}: {os_error_text(exc)}") from None


def write_jsonl(path: str | os.PathLike, records: list[dict]) -> None:
    """Replace a JSON-lines file as a whole (atomically)."""
    with atomic_open(path) as handle:
        handle.writelines(json.dumps(record) + "\n" for record in records)


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
