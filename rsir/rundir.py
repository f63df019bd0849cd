"""The lock of a run directory: one writer at a time.

A process that writes a run (``rsir train``, ``rsir improve``, an experiment's cell) holds an
exclusive ``flock`` on ``RUN/.lock`` while it runs, with its pid in the file, and removes the
file when it ends. A second process is refused at once in one line that names the holder; the
operating system drops the lock when its holder is killed, so the next process takes over a
killed run's directory (and resumes it) without any clean-up.
"""

from __future__ import annotations

import fcntl
import functools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import distributed
from .errors import ConfigError, RsirError, RunInUseError

LOCK_NAME = ".lock"


@functools.cache
def provenance() -> dict[str, str | None]:
    """The rsir version, and the git commit of its source where it runs from a checkout
    (with ``+dirty`` when that has uncommitted changes), for every run's records."""
    from . import __version__

    source = Path(__file__).resolve().parent.parent
    try:
        commit = (
            subprocess.run(
                ["git", "-C", str(source), "describe", "--always", "--dirty=+dirty", "--abbrev=12"],
                capture_output=True,
                text=True,
                timeout=5,
                check=True,
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"version": __version__, "commit": commit}


def write_config(path: str | os.PathLike, sections: dict) -> None:
    """Write a run's ``config.yaml`` (atomically), headed by a comment with the rsir version
    and commit that wrote it."""
    import yaml

    from .files import atomic_open

    origin = provenance()
    with atomic_open(path) as handle:
        handle.write(
            f"# written by rsir {origin['version']}"
            + (f", commit {origin['commit']}" if origin["commit"] else "")
            + "\n"
        )
        yaml.safe_dump(sections, handle, sort_keys=False)


def holds_same_run(run_dir: str | os.PathLike, wanted: dict[str, dict], overwrite: bool = False) -> bool:
    """Whether ``run_dir`` holds a run of the config ``wanted`` (its sections), to resume; a
    run of another config there is an error. The one check of a run directory's identity,
    for the command line and the library alike.

    The saved config is read with today's defaults, so options added to rsir since the run
    started (whose defaults keep the old behaviour) do not block resuming it; a loop may be
    given more rounds, which extends it after its finished ones, not fewer."""
    from .config import changed_option, read_saved_config

    path = Path(run_dir) / "config.yaml"
    if overwrite or not path.exists():
        return False
    import yaml

    written = yaml.safe_load(path.read_text()) or {}
    saved = read_saved_config(path, tuple(wanted))
    changed = ("config", "unreadable") if saved is None else changed_option(saved, wanted)
    if saved is not None and "improve" in wanted and saved["improve"]["rounds"] > wanted["improve"]["rounds"]:
        changed = ("improve", "rounds")
    if changed:
        section, key = changed
        detail = (
            "" if saved is None else f": {section}.{key} {saved[section].get(key)!r}, now {wanted[section].get(key)!r}"
        )
        raise ConfigError(
            f"{run_dir} holds a run with a different config{detail}; "
            "pass --overwrite (overwrite=True) or choose another directory"
        )
    if any(written.get(name) != values for name, values in wanted.items()) and distributed.is_main():
        write_config(path, {**written, **wanted})  # record what the resumed run now does
    return True


@contextmanager
def locked(run_dir: str | os.PathLike) -> Iterator[None]:
    """Hold ``run_dir``'s lock (creating the directory) for the ``with`` block. A directory the
    block leaves empty is removed again if this call created it."""
    run_dir = Path(run_dir)
    path, created = run_dir / LOCK_NAME, not run_dir.exists()
    fd = _acquire(run_dir, path)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        path.unlink(missing_ok=True)  # while still holding the lock: see _acquire
        os.close(fd)
        if created:
            try:
                run_dir.rmdir()
            except OSError:  # not empty: the run wrote something
                pass


def _acquire(run_dir: Path, path: Path) -> int:
    while True:
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise RsirError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise RunInUseError(
                f"{run_dir} is being written by process {holder}; wait for it to end or choose another directory"
            ) from None
        try:  # the file may have been removed by the holder that just released it: lock the new one
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
