"""A run from its config: what ``rsir train`` and ``rsir improve`` do, as library calls.

:func:`train_run` and :func:`improve_run` own a run directory's whole life: the check that it
holds a run of this same config (else it is refused, or started over with ``overwrite``), its
lock, its ``config.yaml``, the training or the loop, and its ``metrics.json``. The command line
and the experiment runner both call them; :func:`run_in_process` is the runner's entry, one
cell per process."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from . import distributed
from .config import RunConfig, build_config
from .data import Dataset, LeaveOneOut, leave_one_out
from .data.source import load_dataset
from .errors import ConfigError, RsirError
from .files import describe_os_error, write_json
from .generation import phases
from .generation.loop import LoopSpec, RoundResult, RunResult, improve, prepare, read_fit_result
from .models import build_backbone
from .models.checkpoint import data_entries
from .rundir import RunDir
from .training.callbacks import Callback
from .training.trainer import fit, load_teacher

log = logging.getLogger(__name__)

TRAIN_SECTIONS = ("data", "model", "train")
IMPROVE_SECTIONS = ("data", "model", "train", "generate", "improve")


def train_run(
    config: RunConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    callbacks: list[Callback] | None = None,
) -> RunResult:
    """Train the config's model in ``out`` (resuming a run of the same config there) and
    return its ``metrics.json``; a finished run's is returned as it is."""
    run = RunDir(out)
    same = run.holds_same_run(config.to_dict(TRAIN_SECTIONS), overwrite)
    metrics_path = run.metrics_file
    finished = distributed.broadcast_flag(same and metrics_path.exists())
    if finished and "rounds" in json.loads(metrics_path.read_text()):
        log.info("%s already holds a finished run with this config; its result", run.path)
        return RunResult.read(metrics_path)
    # The data and a teacher are read and checked before anything is written, so bad input leaves no run dir.
    dataset = load_dataset(config.data)
    split = leave_one_out(dataset)
    model = build_backbone(config.backbone, dataset.n_items, config.model, seed=config.train.seed)
    teacher = load_teacher(config.train, dataset.n_items) if config.train.distill_weight > 0 else None
    with run.writing():
        _start(run, config, TRAIN_SECTIONS, overwrite)
        _log_data(dataset, split)
        if finished:  # a loop's round 0 that the experiment runner copied in, in a round's form
            result = read_fit_result(metrics_path)
        else:
            meta = {
                "data": dataclasses.asdict(config.data),
                "data_fingerprint": dataset.fingerprint(),
                "n_items": dataset.n_items,
            }
            result = fit(
                model,
                config.train.training_split(split, dataset.n_items),
                config.train,
                run_dir=run.path,
                meta=meta,
                progress=progress,
                carry=data_entries(dataset),
                callbacks=callbacks,
                teacher=teacher,
            )
        summary = RunResult.new(dataset, config.backbone, [RoundResult.of_training(0, split.train, result)])
        if distributed.is_main():
            write_json(metrics_path, summary.to_dict())
            phases.record(run.path, config.to_dict(TRAIN_SECTIONS))  # a run the runner prepared has none yet
    return summary


def improve_run(
    config: RunConfig, out: str | Path, *, overwrite: bool = False, resume: bool = False, progress: bool = True
) -> RunResult:
    """Run the config's self-improvement loop in ``out``, resuming a run of the same config
    there (``resume``: only that, else an error), and return its report."""
    run = RunDir(out)
    exists = distributed.broadcast_flag(run.holds_same_run(config.to_dict(IMPROVE_SECTIONS), overwrite))
    if resume and not exists:
        raise ConfigError(f"{run.path} holds no run to resume")
    dataset = load_dataset(config.data)
    spec = LoopSpec(config.backbone, config.model, config.train, config.generate, config.improve)
    prepared = prepare(dataset, spec)  # before anything is written, so bad input leaves no run dir
    with run.writing():
        _start(run, config, IMPROVE_SECTIONS, overwrite)
        _log_data(dataset, prepared.split)
        if exists:
            log.info("resuming the run in %s", run.path)
        report = improve(
            dataset,
            spec,
            run.path,
            meta={"data": dataclasses.asdict(config.data)},
            progress=progress,
            prepared=prepared,
        )
        if distributed.is_main():  # a resumed loop given more rounds has more phases
            phases.record(run.path, config.to_dict(IMPROVE_SECTIONS))
        distributed.barrier()  # rank 0 has written the report
    return report


RUNS: dict[str, Callable[..., RunResult]] = {"train": train_run, "improve": improve_run}


def run_in_process(command: str, config: dict[str, Any], out: str, log_path: str) -> None:
    """One experiment cell as a process of its own (``multiprocessing``'s target): ``command``
    (a key of ``RUNS``) on ``config`` (a config's sections) in ``out``, its log lines and any
    output appended to ``log_path``. Exits 0 when the run finished, 2 with an error as the
    log's last line, 130 when stopped by SIGTERM (progress saved: a rerun resumes it)."""
    os.setsid()  # its own session: a terminal's Ctrl-C reaches the runner alone, which stops each cell once
    with open(log_path, "a") as stream:
        os.dup2(stream.fileno(), 1)
        os.dup2(stream.fileno(), 2)
    signal.signal(signal.SIGTERM, _interrupt)
    # tqdm's default lock is a multiprocessing semaphore, which os._exit below would leave to
    # the runner's resource tracker to report as leaked; one cell is one process, so a thread lock does.
    tqdm.set_lock(threading.RLock())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rsir: %(message)s"))
    logger = logging.getLogger("rsir")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        RUNS[command](build_config(config, source=f"{out} config"), out, progress=False)
        code = 0
    except RsirError as exc:
        log.error("error: %s", exc)
        code = 2
    except OSError as exc:  # a file error no writer or reader turned into an RsirError
        log.error("error: %s", describe_os_error(exc))
        code = 2
    except KeyboardInterrupt:
        log.error("interrupted; finished work is saved and a rerun resumes it")
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no multiprocessing clean-up: the exit code is the answer


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _start(run: RunDir, config: RunConfig, sections: tuple[str, ...], overwrite: bool) -> None:
    """Ready ``run`` for ``config`` and record its phases' identities (a new run's)."""
    new = overwrite or not run.config_file.exists()
    run.start(config.to_dict(sections), overwrite=overwrite)
    if new and distributed.is_main():
        phases.record(run.path, config.to_dict(sections))
    distributed.barrier()


def _log_data(dataset: Dataset, split: LeaveOneOut) -> None:
    log.info(
        "data %s: %d users, %d items, %d interactions%s",
        dataset.name,
        dataset.n_users,
        dataset.n_items,
        dataset.sequences.n_interactions,
        f" ({split.dropped_users} users with < 3 interactions left out)" if split.dropped_users else "",
    )
