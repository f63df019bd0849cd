"""A study's finished cells, kept small enough to commit, so that a study outlives its run
directory: each cell's config and result, its runs' metrics and configs, and its users' test
ranks (compressed), without models or synthetic data.

Restored into an experiment's output directory, an archived cell counts as finished for the
runner and the report, exactly as when it ran; it is never the source of a reused phase,
since it holds no model (:data:`RESTORED` marks it).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..evaluation import RANKS_FILE
from ..files import atomic_path, copy_file, write_json
from ..rundir import RunDir

if TYPE_CHECKING:
    from .runner import Spec

RESTORED = "restored.json"  # in a cell's folder: it came from an archive and has no model
_KEPT_IN_RUN = (RunDir.CONFIG, RunDir.METRICS)  # in its run, at any depth (loop rounds, generators)
_RANKS_ARCHIVED = Path(RANKS_FILE).with_suffix(".npz").name


def archive_cells(spec: Spec, out: Path, archive: Path) -> list[str]:
    """Copy the finished cells of ``spec`` in ``out`` (those it ran, not those restored) into
    ``archive``, replacing what the archive held for them. Returns their keys."""
    archived = []
    for cell in spec.cells:
        cell_dir, kept = out / cell.key, archive / cell.key
        if not (cell_dir / "result.json").exists() or (cell_dir / RESTORED).exists():
            continue
        if kept.exists():
            shutil.rmtree(kept)
        copy_file(cell_dir / RunDir.CONFIG, kept / RunDir.CONFIG)
        for name in _KEPT_IN_RUN:
            for path in (cell_dir / "run").rglob(name):
                copy_file(path, kept / path.relative_to(cell_dir))
        for path in (cell_dir / "run").rglob(RANKS_FILE):
            target = (kept / path.relative_to(cell_dir)).with_name(_RANKS_ARCHIVED)
            target.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(target) as tmp, open(tmp, "wb") as handle:
                np.savez_compressed(handle, ranks=np.load(path))
        copy_file(cell_dir / "result.json", kept / "result.json")  # last: restore reads it as complete
        archived.append(cell.key)
    return archived


def restore_cells(spec: Spec, out: Path, archive: Path) -> list[str]:
    """Restore into ``out`` the archived cells of ``spec`` that ``out`` does not hold at all
    (a cell begun or finished there is left as it is). Returns their keys."""
    restored = []
    for cell in spec.cells:
        cell_dir, kept = out / cell.key, archive / cell.key
        if cell_dir.exists() or not (kept / "result.json").exists():
            continue
        # Built beside and renamed into place, so that a restore cut short leaves no half cell.
        building = cell_dir.with_name(cell_dir.name + ".restoring")
        shutil.rmtree(building, ignore_errors=True)
        for path in (p for p in kept.rglob("*") if p.is_file()):
            target = building / path.relative_to(kept)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.name == _RANKS_ARCHIVED:
                with np.load(path) as saved:
                    np.save(target.with_name(RANKS_FILE), saved["ranks"])
            else:
                shutil.copyfile(path, target)
        write_json(building / RESTORED, {"from": str(kept)})
        building.rename(cell_dir)
        restored.append(cell.key)
    return restored
