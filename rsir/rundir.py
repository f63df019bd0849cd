"""A run directory: its layout, its saved config, its lock, and the rule for resuming it.

Every writer of a run (``rsir train``, ``rsir improve``, an experiment's cell, ``improve`` and
``Recommender.fit`` from Python) goes through :class:`RunDir`:

- **Layout.** ``config.yaml`` (the options, headed by the rsir version and commit), ``metrics.json``
  (the result, written last), ``phases.json`` (each phase's identity), and per loop round
  ``round-K/`` with that round's training and generation files.
- **One writer.** :meth:`RunDir.writing` holds an exclusive ``flock`` on ``.lock``, with the
  holder's pid in the file, removed when the run ends. A second process is refused at once in
  one line that names the holder; the operating system drops the lock when its holder is
  killed, so the next process takes over a killed run's directory (and resumes it) without
  any clean-up. The lock is re-entrant for the thread that holds it (a job holds it around the loop).
- **Resume.** :meth:`RunDir.holds_same_run` is the one check that the directory holds a run of
  this same config: another config is refused, naming the option and both values; a loop
  may be given more rounds.
"""

from __future__ import annotations

import fcntl
import functools
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import distributed
from .errors import ConfigError, RsirError, RunInUseError
from .files import TEMPORARY


@functools.cache
def provenance() -> dict[str, Any]:
    """The rsir version, and the git commit of its source where it runs from a checkout
    (with ``+dirty`` when that has uncommitted changes), for every run's records; and the
    numerical environment, since the last digits of a result depend on the library builds and
    the CPU kernels they choose, not only on rsir's code."""
    import platform

    import numpy
    import torch

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
    environment = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_kernels": torch.backends.cpu.get_cpu_capability(),
    }
    return {"version": __version__, "commit": commit, "environment": environment}


# Directories whose lock this process holds, each with the thread that holds it (re-entrant
# for that thread; another thread takes the lock like another process would, and is refused).
_HELD: dict[Path, int] = {}


class RunDir:
    """A run directory (see the module's docstring); creating the object touches nothing."""

    CONFIG = "config.yaml"
    METRICS = "metrics.json"
    PHASES = "phases.json"
    LOCK = ".lock"

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def config_file(self) -> Path:
        return self.path / self.CONFIG

    @property
    def metrics_file(self) -> Path:
        return self.path / self.METRICS

    @property
    def phases_file(self) -> Path:
        return self.path / self.PHASES

    def round(self, k: int) -> Path:
        """Round ``k``'s folder of a loop run (its training, generation and exports)."""
        return self.path / f"round-{k}"

    def saved_config(self, sections: tuple[str, ...] | None = None) -> dict[str, Any] | None:
        """The saved config with today's defaults filled in (see :func:`rsir.config.read_saved_config`);
        None where there is none or it cannot be read."""
        from .config import read_saved_config

        return read_saved_config(self.config_file, sections) if self.config_file.exists() else None

    def write_config(self, sections: dict[str, Any]) -> None:
        """Write ``config.yaml`` (atomically), headed by a comment with the rsir version and
        commit that wrote it."""
        import yaml

        from .files import atomic_open

        origin = provenance()
        with atomic_open(self.config_file) as handle:
            handle.write(
                f"# written by rsir {origin['version']}"
                + (f", commit {origin['commit']}" if origin["commit"] else "")
                + "\n"
            )
            yaml.safe_dump(sections, handle, sort_keys=False)

    def written_config(self) -> dict[str, Any]:
        """``config.yaml`` as written, without defaults filled in ({} where it is missing or
        does not parse as a mapping)."""
        import yaml

        try:
            written = yaml.safe_load(self.config_file.read_text())
        except (OSError, yaml.YAMLError):
            return {}
        return written if isinstance(written, dict) else {}

    def refuse_other_kind(self, loop: bool, remedy: str, written: dict[str, Any] | None = None) -> None:
        """Refuse a directory that holds a run of the other kind: a loop (rsir improve) where a
        training (rsir train) is wanted, or the reverse, whose files the other would misread
        (``written``: its config as already read)."""
        written = self.written_config() if written is None else written
        if written and ("improve" in written) != loop:
            kinds = ["a loop (rsir improve)", "a training (rsir train)"]
            held, wanted = kinds if "improve" in written else kinds[::-1]
            raise ConfigError(f"{self.path} holds {held}, not {wanted}; {remedy}")

    def holds_same_run(self, wanted: dict[str, dict], overwrite: bool = False) -> bool:
        """Whether the directory holds a run of the config ``wanted`` (its sections), to resume;
        a run of another config there is an error.

        The saved config is read with today's defaults, so options added to rsir since the run
        started (whose defaults keep the old behaviour) do not block resuming it; a loop may be
        given more rounds, which extends it after its finished ones, not fewer."""
        from .config import changed_option

        self._refuse_foreign_files()
        if overwrite or not self.config_file.exists():
            return False
        written = self.written_config()
        self.refuse_other_kind("improve" in wanted, "choose another directory or start over (--overwrite)", written)
        saved = self.saved_config(tuple(wanted))
        changed = ("config", "unreadable") if saved is None else changed_option(saved, wanted)
        if saved is not None and "improve" in wanted and saved["improve"]["rounds"] > wanted["improve"]["rounds"]:
            changed = ("improve", "rounds")
        if changed:
            section, key = changed
            detail = (
                ""
                if saved is None
                else f": {section}.{key} {saved[section].get(key)!r}, now {wanted[section].get(key)!r}"
            )
            raise ConfigError(
                f"{self.path} holds a run with a different config{detail}; "
                "choose another directory or start over (--overwrite)"
            )
        if any(written.get(name) != values for name, values in wanted.items()) and distributed.is_main():
            self.write_config({**written, **wanted})  # record what the resumed run now does
        return True

    def _refuse_foreign_files(self) -> None:
        """A path that is a file, or a folder of files and no run, cannot take a run: a run
        would mix its files with them, and ``overwrite`` would delete them."""
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"{self.path} is a file; a run needs a directory")
        if self.path.is_dir() and not self.config_file.exists():
            foreign = sorted(
                entry.name for entry in self.path.iterdir() if entry.name != self.LOCK and not entry.match(TEMPORARY)
            )
            if foreign:
                raise ConfigError(
                    f"{self.path} holds files that are not an rsir run ({', '.join(foreign[:3])}); "
                    "choose a new or empty directory"
                )

    def claim(self, wanted: dict[str, dict[str, Any]]) -> bool:
        """Resume only a run of the same options (else the error of :meth:`holds_same_run`);
        a new run records them. Returns whether it resumes."""
        same = distributed.broadcast_flag(self.holds_same_run(wanted))
        if not same and distributed.is_main():
            self.path.mkdir(parents=True, exist_ok=True)
            self.write_config(wanted)
        distributed.barrier()
        return same

    def start(self, sections: dict[str, Any], *, overwrite: bool = False) -> None:
        """Make the directory ready for a run of ``sections``, under :meth:`writing`: emptied
        for ``overwrite`` (all but the lock), a killed run's temporary files dropped, the
        config recorded where none is; the other ranks wait for it."""
        from .files import remove_stale_temporaries

        if distributed.is_main():
            if overwrite and self.path.exists():
                for entry in self.path.iterdir():
                    if entry.name != self.LOCK:
                        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            if self.path.exists():
                remove_stale_temporaries(self.path)
            if not self.config_file.exists():
                self.write_config(sections)
        distributed.barrier()

    @contextmanager
    def writing(self) -> Iterator[RunDir]:
        """Hold the directory's lock (creating the directory) for the ``with`` block: on rank 0
        only, re-entrant for the thread that holds it. A directory the block leaves empty is removed
        again if this call created it."""
        key = self.path.resolve()
        if not distributed.is_main() or _HELD.get(key) == threading.get_ident():
            yield self
            return
        path, created = self.path / self.LOCK, not self.path.exists()
        fd = _acquire(self.path, path)
        _HELD[key] = threading.get_ident()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
            yield self
        finally:
            del _HELD[key]
            path.unlink(missing_ok=True)  # while still holding the lock: see _acquire
            os.close(fd)
            if created:
                try:
                    self.path.rmdir()
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
