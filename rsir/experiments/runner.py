"""Experiments: a spec file names datasets, variants, a sweep and seeds; every cell is one
``rsir train`` or ``rsir improve`` run, run once (finished cells are skipped, interrupted
ones resume), and the results are aggregated over seeds with paired gains against a
baseline variant and a paired t-test (:mod:`rsir.experiments.report`).

A spec (TOML or YAML)::

    name = "main_table"
    data_root = "../shared/data"        # a dataset NAME is data_root/NAME/NAME.txt
    datasets = ["Beauty", "Sports_and_Outdoors"]
    seeds = [0, 1, 2]
    baseline = "plain"                  # gains are paired against this variant, seed by seed
    compare = [["rsir", "hstu"]]        # optional: more head-to-head pairs, final rounds, by seed

    [common]                            # config sections shared by every cell
    train = { threads = 1 }

    [variants.plain]
    command = "train"

    [variants.rsir]
    command = "improve"
    improve = { rounds = 1 }

    [variants.hstu]
    model = { backbone = "hstu" }

    [variants.hstu_rsir]
    command = "improve"
    baseline = "hstu"                   # a variant may pair against its own baseline
    model = { backbone = "hstu" }
    improve = { rounds = 1 }

    [sweep]                             # optional: a grid crossed with the listed variants
    variants = ["rsir"]
    "generate.tau" = [5, 10, 20]

    [select]                            # optional: groups picked on validation, each pick against the first's
    plain = ["plain"]
    round = ["rsir", "hstu_rsir"]
    backbone = ["hstu"]
    [rivals]                            # optional: more headline pairs of picks
    round = ["backbone"]

The output directory holds one run directory per cell (``DATASET/VARIANT/sSEED/run``), the
cell's config and result, and the report: ``report.md``, ``report.json`` (per-seed values included),
``report.png``, and ``curves.png`` (metric against the swept value) when one numeric option is swept.

Nothing is computed twice: before a cell runs, the finished phases (a training, a round's
generation) that another cell of this spec or of any experiment beside it ran with the same
inputs are copied into its run and load instead of running; a CPU run repeats exactly, and
loading checks the data and model. The plain training is a loop's round 0 (and a
weak-to-strong loop's generator); the recursion study's first round is the main table's
RSIR cell. The cell's result names what it reused.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
import logging
import multiprocessing
import os
import signal
import threading
import time
import tomllib
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from ..config import build_config, changed_option, read_config_file
from ..errors import ConfigError
from ..files import copy_file, missing_file_text, write_json
from ..generation import phases
from ..generation.phases import AFTER_ACQUISITION, GENERATION_FILES, POOL_FILES, Phase, finished_phases, plan
from ..jobs import run_in_process
from ..rundir import RunDir
from .archive import RESTORED
from .report import round_metrics, write_report

log = logging.getLogger(__name__)

SPEC_KEYS = {
    "name",
    "data_root",
    "datasets",
    "seeds",
    "baseline",
    "common",
    "variants",
    "sweep",
    "metrics",
    "compare",
    "reference",
    "select",
    "rivals",
}
COMMANDS = ("train", "improve")


@dataclass(frozen=True)
class Cell:
    dataset: str
    variant: str  # the variant's name, with the sweep point appended (``rsir[generate.tau=5]``)
    seed: int
    command: str
    config: dict[str, Any]  # full config sections, checked
    setting: tuple[tuple[str, Any], ...] = ()  # the sweep point (``(("generate.tau", 5),)``), empty outside a sweep

    @property
    def key(self) -> str:
        return f"{self.dataset}/{self.variant}/s{self.seed}"

    @property
    def point(self) -> str:
        """The sweep point as the variant's label suffix (``[generate.tau=5]``)."""
        return _point_label(self.setting)


def _point_label(setting: tuple[tuple[str, Any], ...]) -> str:
    return f"[{','.join(f'{k}={v}' for k, v in setting)}]" if setting else ""


@dataclass
class Spec:
    name: str
    cells: list[Cell]
    baseline: str
    metrics: list[str] = field(default_factory=lambda: ["recall@10", "ndcg@10"])
    baselines: dict[str, str] = field(default_factory=dict)  # variant -> its own baseline, where it names one
    compare: list[tuple[str, str]] = field(default_factory=list)  # extra head-to-head pairs (variant, against)
    # Published numbers to set beside the variants: {"source": str, DATASET: {metric: value}}
    reference: dict[str, Any] = field(default_factory=dict)
    # Groups of candidate variants (a name covers its sweep points); per data set the report
    # picks each group's best on validation NDCG@20, and compares every other group's pick
    # with the first group's, paired by seed. A plain list is one group.
    select: dict[str, list[str]] = field(default_factory=dict)
    # Headline comparisons beyond the first group: a group's pick against each named group's
    # pick (the round against the cheapest rivals that could explain its gain).
    rivals: dict[str, list[str]] = field(default_factory=dict)

    def baseline_of(self, variant: str) -> str:
        return self.baselines.get(variant, self.baseline)


def load_spec(path: str | Path, overrides: list[str] | None = None) -> Spec:
    """Read and check a spec; every cell's config is built and validated before any runs.
    ``overrides`` are ``KEY=VALUE`` edits applied first (see :func:`apply_overrides`)."""
    raw = apply_overrides(read_config_file(path), overrides or [])
    unknown = sorted(set(raw) - SPEC_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown spec key {unknown[0]!r} (known: {', '.join(sorted(SPEC_KEYS))})")
    for key in ("datasets", "seeds", "variants"):
        if not raw.get(key):
            raise ConfigError(f"{path}: the spec needs a non-empty {key!r}")
    for key, kind in (("datasets", str), ("seeds", int)):
        values = raw[key]
        if not isinstance(values, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in values):
            raise ConfigError(
                f"{path}: {key!r} must be a list of {'names' if kind is str else 'integers'}, got {values!r}"
            )
        if len(set(values)) < len(values):
            raise ConfigError(f"{path}: {key!r} lists {next(v for v in values if values.count(v) > 1)!r} twice")
    variants: dict[str, dict[str, Any]] = raw["variants"]
    baseline = raw.get("baseline", next(iter(variants)))
    if baseline not in variants:
        raise ConfigError(f"{path}: baseline {baseline!r} is not one of the variants ({', '.join(variants)})")
    sweep = dict(raw.get("sweep", {}))
    swept = sweep.pop("variants", list(variants))
    for name in swept:
        if name not in variants:
            raise ConfigError(f"{path}: sweep names unknown variant {name!r}")
    for key, values in sweep.items():
        if "." not in key or not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: sweep key {key!r} must be SECTION.OPTION with a non-empty list of values")
    baselines = {}
    for variant, options in variants.items():
        if "baseline" in options:
            if options["baseline"] not in variants or options["baseline"] == variant:
                raise ConfigError(
                    f"{path}: variant {variant!r}: baseline {options['baseline']!r} must be another variant"
                )
            baselines[variant] = options["baseline"]
    cells = []
    data_root = Path(raw.get("data_root", "."))
    for dataset in raw["datasets"]:
        if dataset == "synthetic":  # the built-in generator, sized by the data section
            data_path = ""
        elif str(dataset).endswith((".txt", ".inter", ".csv", ".tsv", ".parquet")):
            data_path = str(dataset)
        else:
            data_path = str(data_root / dataset / f"{dataset}.txt")
        for variant, options in variants.items():
            options = dict(options)
            command = options.pop("command", "train")
            options.pop("baseline", None)
            if command not in COMMANDS:
                raise ConfigError(f"{path}: variant {variant!r}: command must be one of {', '.join(COMMANDS)}")
            points = (
                [()]
                if variant not in swept or not sweep
                else itertools.product(*([(key, value) for value in values] for key, values in sweep.items()))
            )
            for point in points:
                label = variant + _point_label(tuple(point))
                for seed in raw["seeds"]:
                    sections = _merge(raw.get("common", {}), options)
                    for key, value in point:
                        section, option = key.split(".", 1)
                        sections.setdefault(section, {})[option] = value
                    sections.setdefault("data", {})["path"] = data_path
                    sections.setdefault("train", {})["seed"] = seed
                    config = build_config(copy.deepcopy(sections), source=f"{path} ({label})")
                    parts = ("data", "model", "train") + (("generate", "improve") if command == "improve" else ())
                    cells.append(
                        Cell(Path(str(dataset)).stem, label, int(seed), command, config.to_dict(parts), tuple(point))
                    )
    labels = {cell.variant for cell in cells}
    compare = raw.get("compare", [])
    if isinstance(compare, list):
        _refuse_unknown("compare", [name for pair in compare if isinstance(pair, list) for name in pair], labels, path)
    if not isinstance(compare, list) or any(
        not isinstance(pair, list)
        or len(pair) != 2
        or not all(isinstance(name, str) for name in pair)
        or pair[0] == pair[1]
        or not set(pair) <= labels
        for pair in compare
    ):
        raise ConfigError(f'{path}: compare must list pairs of two different variants, like [["rsir", "reordering"]]')
    return Spec(
        str(raw.get("name", Path(path).stem)),
        cells,
        baseline,
        list(raw.get("metrics", ["recall@10", "ndcg@10"])),
        baselines,
        [tuple(pair) for pair in compare],
        _check_reference(raw.get("reference", {}), path),
        select := _check_select(raw.get("select", []), variants, path),
        _check_rivals(raw.get("rivals", {}), select, path),
    )


def _check_select(select: Any, variants: dict[str, Any], path: str | Path) -> dict[str, list[str]]:
    if select == [] or select == {}:
        return {}
    groups = {"pick": select} if isinstance(select, list) else select
    if isinstance(groups, dict):
        _refuse_unknown(
            "select", [n for names in groups.values() if isinstance(names, list) for n in names], variants, path
        )
    if not isinstance(groups, dict) or not all(
        isinstance(names, list) and names and all(isinstance(name, str) and name in variants for name in names)
        for names in groups.values()
    ):
        raise ConfigError(
            f'{path}: select must list variants to choose among on validation, like select = ["a", "b"], '
            'or name groups of them, like select = { plain = ["a", "b"], round = ["c"] }'
        )
    return {str(name): list(names) for name, names in groups.items()}


def _refuse_unknown(where: str, names: list[Any], known: Any, path: str | Path) -> None:
    unknown = [name for name in names if isinstance(name, str) and name not in known]
    if unknown:
        names = list(dict.fromkeys(unknown))
        raise ConfigError(
            f"{path}: {where} names {', '.join(map(repr, names))}, "
            f"{'not a variant' if len(names) == 1 else 'not variants'} (variants: {', '.join(sorted(map(str, known)))})"
        )


def _check_rivals(rivals: Any, select: dict[str, list[str]], path: str | Path) -> dict[str, list[str]]:
    """Each pair once: no group twice in a list, no pair named both ways, and never the first
    group, whose pick every other pick meets already (a repeat would count twice in Holm)."""
    first = next(iter(select), None)
    if not isinstance(rivals, dict) or any(
        group not in select
        or group == first
        or not isinstance(names, list)
        or not names
        or len(set(map(str, names))) < len(names)
        or any(name not in select or name in (group, first) or group in rivals.get(name, []) for name in names)
        for group, names in rivals.items()
    ):
        raise ConfigError(
            f"{path}: rivals must map a select group to other select groups than the first, each pair once "
            f"({', '.join(select) or 'none'}; every pick already meets the first group's), "
            'like rivals = { round = ["augmentation", "distillation"] }'
        )
    return {str(group): list(names) for group, names in rivals.items()}


REFERENCE_USERS = ("all", "known_new_targets")


def _check_reference(reference: Any, path: str | Path) -> dict[str, Any]:
    """A spec's ``reference``: a ``source`` naming where the numbers come from, per data set a
    table of metric values, and optionally the ``users`` its protocol scored (``all``, the
    default, or ``known_new_targets``: only users whose test item occurs in training and is not
    already in their history)."""
    tables = (
        {k: v for k, v in reference.items() if k not in ("source", "users")} if isinstance(reference, dict) else None
    )
    if isinstance(reference, dict) and reference.get("users", "all") not in REFERENCE_USERS:
        raise ConfigError(
            f"{path}: reference users must be one of {', '.join(REFERENCE_USERS)}, got {reference['users']!r}"
        )
    if reference and (
        tables is None
        or not isinstance(reference.get("source"), str)
        or not all(
            isinstance(t, dict) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in t.values())
            for t in tables.values()
        )
    ):
        raise ConfigError(
            f"{path}: reference must name a source and give each data set a table of metric values, "
            'like reference = { source = "...", Beauty = { "recall@10" = 0.09 } }'
        )
    return dict(reference)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Edit a spec from the command line: ``KEY=VALUE`` with a dotted key into the spec
    (``seeds``, ``data_root``, ``common.train.device``, ``variants.rsir.generate.tau``) and a
    TOML value (``[0, 1, 2, 3, 4]``, ``20``, ``inf``, ``"cuda"``; a bare word is a string), so one
    spec serves another machine, data location or seed list without a copy."""
    raw = copy.deepcopy(raw)
    for override in overrides:
        key, sep, text = override.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ConfigError(
                f"override {override!r}: expected KEY=VALUE, like seeds=[0,1,2] or common.train.device=cuda"
            )
        try:
            value = tomllib.loads(f"value = {text}")["value"]
        except tomllib.TOMLDecodeError as exc:
            if text.strip()[:1] in ("[", "{", '"', "'"):
                raise ConfigError(f"override {key}: {text!r} is not a TOML value ({exc})") from None
            value = text.strip()
        if parts[0] == "variants" and len(parts) > 1 and parts[1] not in raw.get("variants", {}):
            raise ConfigError(
                f"override {key}: no variant {parts[1]!r} (variants: {', '.join(raw.get('variants', {}))})"
            )
        node = raw
        for depth, part in enumerate(parts[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key}: {'.'.join(parts[: depth + 1])} is a value, not a section")
        node[parts[-1]] = value
    return raw


def _merge(common: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(common)
    for section, values in options.items():
        if section == "preset":  # a name, not a section (see rsir.config.PRESETS)
            merged[section] = values
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"variant option {section!r} must be a section (for example train = {{ lr = 0.001 }})")
        merged.setdefault(section, {}).update(values)
    return merged


def run_experiment(
    spec: Spec, out: str | Path, *, jobs: int = 1, only: list[str] | None = None, reuse: bool = True
) -> dict[str, Any]:
    """Run every unfinished cell (``jobs`` at a time), then write and return the report.
    ``only`` keeps the cells whose key (``DATASET/VARIANT/sSEED``) matches one of the glob
    patterns; the report still covers every finished cell of the spec. ``reuse=False`` runs
    every phase even where another cell already ran it (for timing). One runner at a time:
    a second on the same ``out`` is refused at once, naming the first."""
    out = Path(out)
    with RunDir(out).writing():
        return _run_cells(spec, out, jobs, only, reuse)


def _run_cells(spec: Spec, out: Path, jobs: int, only: list[str] | None, reuse: bool) -> dict[str, Any]:
    chosen = [cell for cell in spec.cells if not only or any(fnmatchcase(cell.key, p) for p in only)]
    if not chosen:
        raise ConfigError(
            f"the cell patterns {' '.join(only or [])} match no cell (keys look like {spec.cells[0].key})"
        )
    todo = [cell for cell in chosen if not _finished(cell, out)]
    missing = sorted({path for cell in todo if (path := cell.config["data"]["path"]) and not Path(path).is_file()})
    if missing:  # refused before any cell starts, rather than as one failed cell per seed and variant
        raise ConfigError(
            missing_file_text(missing[0], "data file") + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    todo.sort(key=lambda cell: cell.command != "train")  # trainings first: improve runs reuse them as round 0
    log.info("%d of %d cells done; %d to run, %d at a time", len(chosen) - len(todo), len(chosen), len(todo), jobs)
    pending, training = list(todo), {cell.key: cell for cell in todo if cell.command == "train"}
    changed = threading.Condition()

    def next_cell() -> Cell | None:
        """The first pending cell that can start: a training, or a loop whose round 0 is not
        a training still to finish (it is waited for, then reused instead of retrained)."""
        with changed:
            while pending:
                for cell in pending:
                    if (
                        cell.command == "train"
                        or not reuse
                        or not any(_same_training(t, cell) for t in training.values())
                    ):
                        pending.remove(cell)
                        return cell
                changed.wait()  # every pending loop waits for a training that is running
            return None

    processes = _CellProcesses()

    def worker() -> list[str]:
        failures = []
        while not processes.stopping and (cell := next_cell()) is not None:
            try:
                if reuse:
                    _reuse_finished_phases(cell, out, spec.cells)
                failure = _run_cell(cell, out, processes)
                failures += [failure] if failure and not processes.stopping else []
            finally:
                with changed:
                    training.pop(cell.key, None)
                    changed.notify_all()
        return failures

    pool = ThreadPoolExecutor(max_workers=max(1, jobs))
    futures = [pool.submit(worker) for _ in range(max(1, jobs))]
    try:
        # Short waits: a signal the kernel hands to a worker thread runs its Python handler only
        # when the main thread next runs, and a blocking wait would hold that off until a cell ends.
        while wait(futures, timeout=1.0).not_done:
            pass
        failures = [f for future in futures for f in future.result()]
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: each running cell saves its progress, then the report is written
        processes.stop()
        with changed:
            pending.clear()
            changed.notify_all()
        pool.shutdown(wait=True)
        write_report(spec, out)
        raise
    pool.shutdown()
    report = write_report(spec, out)
    if failures:
        raise ConfigError(f"{len(failures)} cell(s) failed, first: {failures[0]} (rerun to retry them)")
    return report


def _finished(cell: Cell, out: Path) -> bool:
    """Whether ``cell`` has finished with the config the spec gives it now. A loop is finished
    once it has run at least the rounds asked for (its first rounds do not depend on how many
    follow); given more, its run continues after its last round. Any other change is an
    error, so that a report never mixes a cell's old config with the spec's new one."""
    cell_dir = out / cell.key
    if not (cell_dir / "result.json").exists():
        return False
    run = RunDir(cell_dir)
    run.refuse_other_kind(cell.command == "improve", f"delete {cell_dir} to run the cell again")
    # Read with today's defaults: options added to rsir since the cell ran keep the old behaviour.
    saved = run.saved_config(tuple(cell.config))
    if saved is None:
        raise ConfigError(
            f"{cell_dir}: finished, but its {RunDir.CONFIG} cannot be read; delete the folder to run the cell again"
        )
    wanted = cell.config
    changed = changed_option(saved, wanted)
    if changed is not None:
        section, key = changed
        raise ConfigError(
            f"{cell.key} finished with {section}.{key} = {saved[section].get(key)!r} and the spec now gives "
            f"{wanted[section][key]!r}; choose another output directory, or delete {cell_dir} to run it again"
        )
    return cell.command != "improve" or saved["improve"]["rounds"] >= wanted["improve"]["rounds"]


class _CellProcesses:
    """The running cells' processes. After :meth:`stop`, each one running, or starting later,
    gets one SIGTERM, on which rsir saves its progress and exits (SIGTERM because a runner
    started in the background by a script passes on an ignored SIGINT)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running: set[multiprocessing.process.BaseProcess] = set()
        self.stopping = False

    def run(self, command: str, config: dict[str, Any], out: Path, log: Path, heartbeat: Callable[[], float]) -> int:
        """Run ``command`` on ``config`` in ``out`` (:func:`rsir.jobs.run_in_process`, a fresh
        interpreter) to its end, calling ``heartbeat`` every minute and once at the end."""
        process = multiprocessing.get_context("spawn").Process(
            target=run_in_process, args=(command, config, str(out), str(log)), daemon=False
        )
        process.start()
        with self.lock:
            self.running.add(process)
            if self.stopping:
                _terminate(process)
        try:
            while process.exitcode is None:
                process.join(timeout=60)
                if process.exitcode is None:
                    heartbeat()
            return process.exitcode
        finally:
            heartbeat()
            with self.lock:
                self.running.discard(process)

    def stop(self) -> None:
        with self.lock:
            self.stopping = True
            for process in self.running:
                _terminate(process)


def _terminate(process: multiprocessing.process.BaseProcess) -> None:
    if process.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)


def _run_cell(cell: Cell, out: Path, processes: _CellProcesses) -> str | None:
    cell_dir = out / cell.key
    cell_dir.mkdir(parents=True, exist_ok=True)
    # Gone before the config changes: a finished loop given more rounds is unfinished until it ends again.
    (cell_dir / "result.json").unlink(missing_ok=True)
    RunDir(cell_dir).write_config(cell.config)  # a cell's folder records its config as a run does
    # Run time of the cell's earlier attempts, so that a resumed cell reports all of it; kept
    # up to date every minute because a runner can die without a chance to write it.
    elapsed_path = cell_dir / "elapsed.json"
    earlier = json.loads(elapsed_path.read_text())["seconds"] if elapsed_path.exists() else 0.0
    tick = time.perf_counter()

    def record_elapsed() -> float:
        seconds = round(earlier + time.perf_counter() - tick, 1)
        write_json(elapsed_path, {"seconds": seconds})
        return seconds

    # The cell's log file gets its per-epoch lines (progress bars only go to a terminal).
    returncode = processes.run(cell.command, cell.config, cell_dir / "run", cell_dir / "log.txt", record_elapsed)
    if returncode != 0:
        lines = (cell_dir / "log.txt").read_text().strip().splitlines()
        return f"{cell.key}: {lines[-1] if lines else 'exit ' + str(returncode)}"
    write_json(
        cell_dir / "result.json",
        {
            "cell": cell.key,
            "command": cell.command,
            "rounds": round_metrics(RunDir(cell_dir / "run").metrics_file),
            "wall_seconds": record_elapsed(),  # every attempt's
            **(
                {"reused": json.loads(reused.read_text())}
                if (reused := cell_dir / "run" / "reused.json").exists()
                else {}
            ),
        },
    )
    log.info("%s done in %.0f s", cell.key, time.perf_counter() - tick)
    return None


def _same_training(train: Cell, improve: Cell) -> bool:
    """Whether ``train`` is a training the loop ``improve`` runs (its round 0, or a generator)."""
    return train.command == "train" and plan(train.config)[0].identity in {
        phase.identity for phase in plan(improve.config) if phase.kind == "train"
    }


def _candidate_sources(cell: Cell, out: Path, cells: list[Cell]) -> Iterator[tuple[str, Path, dict[str, Any]]]:
    """Runs that may hold phases of ``cell``: those of this spec's other cells, then those of
    every experiment beside it (``runs/experiments/*``), each with the config it ran with
    (its own ``config.yaml``, not the spec's, which may have changed since)."""
    runs = [(other.key, out / other.key / "run") for other in cells if other.key != cell.key]
    runs += [
        (str(saved.parent.relative_to(out.parent)), saved.parent / "run")
        for saved in sorted(out.parent.glob("*/*/*/s*/config.yaml"))
        if saved.parents[3].resolve() != out.resolve()
    ]
    for key, run in runs:
        if (run.parent / RESTORED).exists():  # restored from an archive: its phases have no model
            continue
        config = RunDir(run).saved_config()
        if config is not None:
            yield key, run, config


def _reuse_finished_phases(cell: Cell, out: Path, cells: list[Cell]) -> None:
    """Copy into ``cell``'s run the finished phases that other runs ran with the same identity
    (:mod:`rsir.generation.phases`: the same inputs), so that they load instead of running
    again: a CPU run repeats exactly. A phase is copied only when every phase it reads is
    finished in the run or copied too, from the same run where that has it, so a run never
    holds a phase computed from results other than its own earlier ones. The run's
    ``reused.json`` names the source of each copied phase, for the cell's result."""
    run = out / cell.key / "run"
    saved = RunDir(run).saved_config()
    if saved is not None and changed_option(saved, cell.config) is not None:
        return  # a run of other options: running it refuses it, in one line that names the option
    finished: dict[str, list[tuple[str, Phase, Path]]] = {}
    for key, source, config in _candidate_sources(cell, out, cells):
        for identity, phase in finished_phases(source, config).items():
            finished.setdefault(identity, []).append((key, phase, source))
    copied: dict[str, str] = {}
    wanted = plan(cell.config)
    done = {phase.name for phase in wanted if phase.finished_in(run)}
    for index, phase in enumerate(wanted):
        if phase.name in done or phase.identity not in finished:
            continue
        if phase.kind == "pool":  # only needed where its acquisition is not found
            following = wanted[index + 1]
            if following.name in done or following.identity in finished:
                continue
        if any(read not in done for read in phase.reads):
            continue
        # The run that gave this phase's inputs, where it has it; else the first that has it.
        lineage = {copied.get(read) for read in phase.reads} - {None}
        key, source_phase, source = next(
            (entry for entry in finished[phase.identity] if entry[0] in lineage), finished[phase.identity][0]
        )
        if not (own := RunDir(run)).config_file.exists():  # first, so the run never holds phases without its config
            own.write_config(cell.config)
            phases.record(run, cell.config)
        _copy_phase(source, source_phase, run, phase)
        copied[phase.name] = key
        done.add(phase.name)
        if phase.kind == "generate":  # its pool is then not needed
            done.add(wanted[index - 1].name)
    if not copied:
        return
    record = run / "reused.json"
    write_json(record, {**(json.loads(record.read_text()) if record.exists() else {}), **copied})


def _copy_phase(source_run: Path, source: Phase, run: Path, phase: Phase) -> None:
    """Copy a finished phase's files, the marker of a finished phase last. A pool comes from a
    loop that kept all of it as its synthetic data where that loop saved no pool of its own."""
    source_dir, target_dir = source_run / source.path, run / phase.path
    if phase.kind == "pool" and not source.finished_in(source_run):
        stats = json.loads((source_dir / GENERATION_FILES[-1]).read_text())
        copy_file(source_dir / GENERATION_FILES[0], target_dir / POOL_FILES[0])
        write_json(target_dir / POOL_FILES[-1], {k: v for k, v in stats.items() if k not in AFTER_ACQUISITION})
        return
    for name in phase.files:
        if (source_dir / name).exists():
            copy_file(source_dir / name, target_dir / name)
