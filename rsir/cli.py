"""The ``rsir`` command line: train, improve, evaluate, recommend, compare, export, segments, experiment, data."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import signal
import sys
import threading
import time
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from tqdm.auto import tqdm

from . import distributed
from .config import (
    PRESETS,
    SECTIONS,
    RunConfig,
    build_config,
    model_option_types,
    option_docs,
    read_config_file,
    recorded_data,
)
from .data import FORMATS, Dataset, leave_one_out, read_dataset, write_dataset
from .data.source import DataParams, load_dataset
from .data.writers import RECBOLE_CONFIG, write_recbole_benchmark
from .errors import ConfigError, RsirError
from .evaluation import KS, evaluate, metrics_from_ranks
from .experiments.report import compare_runs, markdown_table, write_report
from .experiments.runner import load_spec, run_experiment
from .experiments.segments import segment_gains, segment_markdown, user_segments
from .files import atomic_open, describe_os_error, missing_file_text, write_json
from .generation.loop import round_training_set, training_labels
from .jobs import IMPROVE_SECTIONS, TRAIN_SECTIONS, improve_run, train_run
from .models import BACKBONES, Backbone
from .models.checkpoint import check_same_data, load_checkpoint, load_checkpoint_with_data
from .recommender import Recommender
from .rundir import RunDir, provenance
from .training.callbacks import TensorBoard

_FLAG_NAMES = {("data", "path"): "data"}  # --data reads better than --path


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would point at the top-level help; the command's own help lists its flags
        command = " ".join(filter(None, ["rsir", args.command, getattr(args, "data_command", None)]))
        parser.fail(f"unrecognized arguments: {' '.join(unknown)}", command)
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a scheduler's SIGTERM stops a run as Ctrl-C does
    logger = logging.getLogger("rsir")
    saved = (logger.level, logger.propagate)
    handler = _log_to_stderr(logger, getattr(args, "quiet", False))
    try:
        distributed.init_from_env()
        if distributed.world_size() > 1 and args.command not in DISTRIBUTED_COMMANDS:
            raise ConfigError(f"rsir {args.command} runs in one process; start it without torchrun")
        code = args.handler(args) or 0
        distributed.barrier()  # no rank tears down its connections while a peer still uses them
        return code
    except RsirError as exc:
        print(f"rsir: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader of our output left (`rsir ... | head`): stop quietly, as Unix tools do
        _silence_stdout()
        return 1
    except OSError as exc:  # a file error no writer or reader turned into an RsirError
        print(f"rsir: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("rsir: error: out of memory; ask for less (fewer users, items or attempts)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rsir: interrupted; finished work is saved and a rerun resumes it", file=sys.stderr)
        return 130
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
        distributed.shutdown()
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


def _log_to_stderr(logger: logging.Logger, quiet: bool) -> logging.Handler:
    """The library's log lines (per epoch, per phase) on standard error, one line each, written
    around any progress bar; ``--quiet`` keeps only warnings and errors."""
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rsir: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False  # the command presents its own lines; a host application's root handler would repeat them
    return handler


class _BarSafeHandler(logging.StreamHandler):
    """A stream handler that writes through tqdm, so a line never breaks a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging's contract: a failed write must not end the program
            self.handleError(record)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail on the closed pipe again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is no file (a test's capture): nothing would be flushed to a pipe
        pass


DISTRIBUTED_COMMANDS = ("train", "improve", "evaluate")  # the ones that work under torchrun


# ---------------------------------------------------------------- commands


def cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    summary = train_run(
        config,
        args.out,
        overwrite=args.overwrite,
        progress=not args.quiet,
        callbacks=[TensorBoard(Path(args.out) / "tensorboard")] if args.tensorboard else None,
    )
    _print(json.dumps(summary.to_dict(), indent=2))
    return 0


def cmd_improve(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    out = Path(args.out)
    report = improve_run(config, out, overwrite=args.overwrite, resume=args.resume, progress=not args.quiet)
    _print((out / "metrics.md").read_text(), end="")
    _say(args, f"per-round metrics, synthetic data and plots are in {out}")
    return 0 if report.rounds else 1


def cmd_experiment(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.set)  # every cell checked before anything runs
    out = Path(args.out or Path("runs") / "experiments" / spec.name)
    if args.jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {args.jobs}")
    if args.report_only:  # reads results only, so a GPU run's report can be written anywhere
        if not out.is_dir():
            raise ConfigError(f"{out}: no experiment there to report (run it first, or give its --out)")
        with RunDir(out).writing():
            write_report(spec, out)
    else:
        for device in {cell.config["train"]["device"] for cell in spec.cells}:
            distributed.resolve_device(device)
        run_experiment(spec, out, jobs=args.jobs, only=args.only, reuse=not args.no_reuse)
    print((out / "report.md").read_text(), end="")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model, meta, dataset = _model_and_data(args)
    split = leave_one_out(dataset)
    result = evaluate(model, getattr(split, args.split), exclude_seen=args.exclude_seen)
    report = {
        "checkpoint": str(args.checkpoint),
        "split": args.split,
        "exclude_seen": args.exclude_seen,
        **result.metrics,
    }
    if not args.output:
        _print(json.dumps(report, indent=2))
    elif distributed.is_main():
        write_json(args.output, report)
        _say(args, f"wrote {args.split} metrics to {args.output}")
    return 0


def cmd_segments(args: argparse.Namespace) -> int:
    if len(args.baseline) != len(args.candidate):
        raise ConfigError(
            f"--baseline and --candidate pair up: got {len(args.baseline)} and {len(args.candidate)} checkpoints"
        )
    started = time.perf_counter()
    metrics = tuple(args.metrics)
    unknown = [m for m in metrics if m not in metrics_from_ranks(np.zeros(1))]
    if unknown:
        raise ConfigError(f"unknown metric {unknown[0]!r} (known: recall, ndcg, mrr at {', '.join(map(str, KS))})")
    args.checkpoint = args.baseline[0]
    dataset = _model_and_data(args)[2]  # every checkpoint must have been trained on it
    split = leave_one_out(dataset)
    ranks: dict[str, list[np.ndarray]] = {"baseline": [], "candidate": []}
    for side in ranks:
        for path in getattr(args, side):
            model, meta = load_checkpoint(path)
            check_same_data(meta, dataset.fingerprint(), dataset.n_items, path)
            ranks[side].append(evaluate(model, split.test, exclude_seen=args.exclude_seen).ranks)
    rows = segment_gains(user_segments(split, dataset.n_items), ranks["baseline"], ranks["candidate"], metrics)
    if args.output:
        command = ["rsir", "segments", "--baseline", *args.baseline, "--candidate", *args.candidate]
        command += [*(["--data", args.data] if args.data is not None else []), "--metrics", *metrics]
        command += ["--exclude-seen" if args.exclude_seen else "--no-exclude-seen"]
        write_json(
            args.output,
            {
                "command": shlex.join(command),
                "rsir": provenance(),
                "seconds": round(time.perf_counter() - started, 1),
                "baseline": args.baseline,
                "candidate": args.candidate,
                "exclude_seen": args.exclude_seen,
                "rows": rows,
            },
        )
    print(segment_markdown(rows, metrics, len(args.baseline)), end="")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    if args.k < 1:  # before the checkpoint is read
        raise ConfigError(f"--k must be >= 1, got {args.k}")
    model, _, dataset = _model_and_data(args)
    recommender = Recommender.wrap(model, dataset)
    users = None if args.all_users else _requested_users(args)
    frame = recommender.recommend(users, args.k, exclude_seen=args.exclude_seen, split=args.split)
    if args.format == "json":
        grouped = frame.groupby("user_id", sort=False)
        text = (
            json.dumps(
                [
                    {
                        "user_id": _plain(user),
                        "items": [_plain(i) for i in rows["item_id"]],
                        "scores": rows["score"].astype(float).round(6).tolist(),
                    }
                    for user, rows in grouped
                ],
                indent=1,
            )
            + "\n"
        )
    else:
        text = frame.to_csv(index=False)
    if args.output:
        with atomic_open(args.output) as handle:
            handle.write(text)
        _say(args, f"wrote {len(frame)} recommendations for {frame['user_id'].nunique()} users to {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    frame = compare_runs([Path(run) for run in args.runs], args.metrics)
    text = frame.to_csv(index=False) if args.format == "csv" else markdown_table(frame)
    if args.output:
        with atomic_open(args.output) as handle:
            handle.write(text)
    else:
        sys.stdout.write(text)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    run = RunDir(args.run)
    if not run.config_file.exists():
        raise ConfigError(f"{run.path}: no rsir run there (no {run.CONFIG})")
    plain = not run.round(0).is_dir() and (run.path / "model.pt").exists()  # an `rsir train` run
    round_number = args.round if args.round is not None else 0 if plain else 1
    if args.max_len < 1:
        raise ConfigError(f"--max-len must be >= 1, got {args.max_len}")
    if plain and round_number != 0:
        raise ConfigError(f"{run.path}: an rsir train run has round 0 alone, the real data (--round 0)")
    dataset = _checkpoint_with_data(run.path / "model.pt" if plain else run.round(0) / "model.pt")[2]
    split = leave_one_out(dataset)
    train = split.train if plain else round_training_set(run.path, split.train, round_number)
    out = Path(args.out)
    written = write_recbole_benchmark(
        out,
        out.name,
        train,
        (split.valid.history, split.valid.targets),
        (split.test.history, split.test.targets),
        item_labels=dataset.item_ids,
        user_labels=training_labels(dataset, split, train),
        max_len=args.max_len,
    )
    _say(
        args,
        f"wrote {', '.join(p.name for p in written)} to {out}: round {round_number}'s training data "
        f"({int((train.origin > 0).sum())} synthetic sequences) and rsir's validation and test split",
    )
    _print(
        f"# RecBole config lines for these files\ndata_path: {out.parent}\ndataset: {out.name}\n"
        + RECBOLE_CONFIG.format(max_len=args.max_len)
    )
    return 0


def cmd_data_stats(args: argparse.Namespace) -> int:
    dataset = _read_cli_dataset(args.path, args)
    print(json.dumps(dataset.stats(), indent=2))
    return 0


def cmd_data_convert(args: argparse.Namespace) -> int:
    if Path(args.output).exists() and Path(args.input).exists() and Path(args.output).samefile(args.input):
        # rsir keeps user, item and time only, so converting in place would drop the other columns
        raise ConfigError(f"{args.output}: the output is the input file; write the conversion to another path")
    dataset = _read_cli_dataset(args.input, args)
    write_dataset(dataset, args.output, args.to, renumber=args.renumber)
    print(
        f"wrote {dataset.n_users} users, {dataset.n_items} items, "
        f"{dataset.sequences.n_interactions} interactions to {args.output}"
    )
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    dataset = load_dataset(
        DataParams(
            synthetic_users=args.users,
            synthetic_items=args.items,
            synthetic_mean_length=args.mean_length,
            synthetic_seed=args.seed,
        )
    )
    write_dataset(dataset, args.output, args.to)
    print(json.dumps(dataset.stats(), indent=2))
    return 0


# ---------------------------------------------------------------- helpers


def _config_from_args(args: argparse.Namespace) -> RunConfig:
    file_sections = read_config_file(args.config) if args.config else {}
    overrides: dict[str, dict[str, Any]] = {}
    for dest, value in vars(args).items():
        if "." in dest:
            section, key = dest.split(".", 1)
            overrides.setdefault(section, {})[key] = value
    if getattr(args, "preset", None):
        overrides["preset"] = args.preset
    config = build_config(file_sections, overrides, source=str(args.config or "options"))
    distributed.resolve_device(config.train.device)  # a missing GPU fails here, before any output
    return config


def _model_and_data(args: argparse.Namespace) -> tuple[Backbone, dict[str, Any], Dataset]:
    return _checkpoint_with_data(args.checkpoint, args.data)


def _checkpoint_with_data(path: str | Path, data: str | None = None) -> tuple[Backbone, dict[str, Any], Dataset]:
    """A checkpoint's model, meta and data: the data it carries, else (or with ``data``, a data
    file) the data it names, refused if it is not what the model was trained on."""
    model, meta, carried = load_checkpoint_with_data(path)
    if data is None and carried is not None:
        return model, meta, carried
    params = recorded_data(meta["data"]) if "data" in meta else DataParams()
    if data is not None:
        params = dataclasses.replace(params, path=data)
    dataset = load_dataset(params)
    check_same_data(meta, dataset.fingerprint(), dataset.n_items, path)
    return model, meta, dataset


def _requested_users(args: argparse.Namespace) -> list[str]:
    users: list[str] = []
    if args.users:
        users += [u.strip() for u in args.users.split(",") if u.strip()]
    if args.users_file:
        path = Path(args.users_file)
        if not path.is_file():
            raise ConfigError(missing_file_text(path, "users file"))
        users += [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not users:
        raise ConfigError("name the users with --users 1,2,3, --users-file FILE or --all-users")
    return users


def _read_cli_dataset(path: str, args: argparse.Namespace) -> Dataset:
    return read_dataset(
        path,
        args.format,
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col or None,
        kcore=args.kcore,
    )


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _say(args: argparse.Namespace, message: str) -> None:
    if not getattr(args, "quiet", False) and distributed.is_main():
        print(f"rsir: {message}", file=sys.stderr)


def _print(text: str, end: str = "\n") -> None:
    """Results go to standard output once, from rank 0."""
    if distributed.is_main():
        print(text, end=end)


# ---------------------------------------------------------------- parser


def _add_option_flags(parser: argparse.ArgumentParser, sections: tuple[str, ...]) -> None:
    """One flag per config option (``--lr``, ``--batch-size``, ``--data``...); a flag
    overrides the config file only when given."""
    groups = [(name, typing.get_type_hints(cls), cls) for name, cls in SECTIONS.items() if name in sections]
    for section, hints, cls in groups:
        group = parser.add_argument_group(f"{section} options")
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        docs = option_docs(cls)
        for key, kind in hints.items():
            _add_flag(group, section, key, kind, defaults[key], docs.get(key, ""))
    parser.add_argument(
        "--preset",
        choices=list(PRESETS),
        help="a named set of model, train and loop options under the config file's and the flags' own "
        "(length_batched: the default before RecTools' recipe, d 256 with rsir's pre-LN block and "
        "length-grouped batches; paper: the RSIR paper's SASRec and rsir's training before the "
        "parity study); both keep the round before today's (successor from scratch, every "
        "synthetic row each epoch)",
    )
    group = parser.add_argument_group("model options (see `backbone`)")
    group.add_argument(
        "--backbone",
        dest="model.backbone",
        default=argparse.SUPPRESS,
        help=f"one of {', '.join(BACKBONES)} (default sasrec)",
    )
    # An option several backbones share is described as the first of them (sasrec) describes it.
    docs = {key: doc for cls in reversed(BACKBONES.values()) for key, doc in option_docs(cls.Params).items()}
    for key, kind in model_option_types().items():
        _add_flag(group, "model", key, kind, None, docs.get(key, ""))


def _add_flag(group, section: str, key: str, kind: type, default: Any, doc: str = "") -> None:
    flag = "--" + _FLAG_NAMES.get((section, key), key).replace("_", "-")
    shown = (f": {doc}" if doc else "") + (f" (default {default!r})" if default is not None else "")
    shown = shown.replace("%", "%%")  # argparse formats help with %, and the source's comments may hold one
    if kind is bool:
        group.add_argument(
            flag,
            dest=f"{section}.{key}",
            action=argparse.BooleanOptionalAction,
            default=argparse.SUPPRESS,
            help=f"{section}.{key}{shown}",
        )
    else:
        group.add_argument(
            flag,
            dest=f"{section}.{key}",
            type=kind,
            default=argparse.SUPPRESS,
            metavar=kind.__name__.upper(),
            help=f"{section}.{key}{shown}",
        )


def _add_reader_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="auto", choices=("auto", *FORMATS))
    parser.add_argument("--user-col", default="user_id")
    parser.add_argument("--item-col", default="item_id")
    parser.add_argument("--time-col", default="timestamp", help="empty: keep the file's row order")
    parser.add_argument("--kcore", type=int, default=0)


class _Parser(argparse.ArgumentParser):
    """argparse with rsir's one-line errors: a wrong flag or value ends like any other bad input.

    Flags must be spelled out: an abbreviation such as ``--min-len`` (of generation's
    ``--min-length``) would read as the model's ``--max-len``'s sibling, and it would break
    the day another flag shares its prefix."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.fail(message, self.prog)

    def fail(self, message: str, prog: str) -> NoReturn:
        self.exit(2, f"rsir: error: {message} (see '{prog} --help')\n")


def _parser() -> _Parser:
    parser = _Parser(prog="rsir", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model (default: SASRec on built-in synthetic data)")
    train.add_argument("--config", help="TOML or YAML file with [data], [model], [train] sections")
    train.add_argument("--out", default="runs/train", help="run directory (default runs/train)")
    train.add_argument("--overwrite", action="store_true", help="start over even if --out holds a run")
    train.add_argument(
        "--tensorboard",
        action="store_true",
        help="also log each epoch for TensorBoard in OUT/tensorboard (pip install 'rsir[tensorboard]')",
    )
    train.add_argument(
        "--quiet", action="store_true", help="no progress bars, per-epoch lines or notes; errors still show"
    )
    _add_option_flags(train, TRAIN_SECTIONS)
    train.set_defaults(handler=cmd_train)

    loop = commands.add_parser(
        "improve",
        help="self-improvement loop: train, generate (filtered with --tau), fine-tune the successor; --rounds K (default 1)",
    )
    loop.add_argument("--config", help="TOML or YAML file with [data], [model], [train], [generate], [improve]")
    loop.add_argument("--out", default="runs/improve", help="run directory (default runs/improve)")
    loop.add_argument("--overwrite", action="store_true", help="start over even if --out holds a run")
    loop.add_argument("--resume", action="store_true", help="continue the run in --out (a rerun also resumes)")
    loop.add_argument(
        "--quiet", action="store_true", help="no progress bars, per-epoch lines or notes; errors still show"
    )
    _add_option_flags(loop, IMPROVE_SECTIONS)
    loop.set_defaults(handler=cmd_improve)

    experiment = commands.add_parser(
        "experiment", help="run a spec of datasets x variants x sweep x seeds, then aggregate"
    )
    experiment.add_argument("spec", help="TOML or YAML spec (see experiments/ for the paper's studies)")
    experiment.add_argument("--out", help="output directory (default runs/experiments/NAME)")
    experiment.add_argument("--jobs", type=int, default=1, help="cells run in parallel (give each --threads cores)")
    experiment.add_argument(
        "--only",
        nargs="+",
        metavar="PATTERN",
        help="run only the cells whose key DATASET/VARIANT/sSEED matches a glob, e.g. 'Beauty/*/s0'",
    )
    experiment.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="edit the spec: a dotted key and a TOML value, e.g. 'seeds=[0,1,2,3,4]', "
        "data_root=DIR, common.train.device=cuda (repeatable)",
    )
    experiment.add_argument("--report-only", action="store_true", help="rewrite the report from finished cells")
    experiment.add_argument(
        "--no-reuse",
        action="store_true",
        help="run every phase, even those another finished cell ran with the same inputs",
    )
    experiment.add_argument("--quiet", action="store_true")
    experiment.set_defaults(handler=cmd_experiment)

    for name, handler, help_text in (
        ("evaluate", cmd_evaluate, "evaluate a checkpoint on the validation or test split"),
        ("recommend", cmd_recommend, "top-K items for chosen users, in original ids"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--checkpoint", required=True)
        sub.add_argument("--data", default=None, help="data file (default: the one the checkpoint was trained on)")
        sub.add_argument(
            "--exclude-seen",
            action=argparse.BooleanOptionalAction,
            default=True,
            help="rank only items outside the user's own history (default: on)",
        )
        sub.add_argument("--output", help="write here instead of standard output")
        sub.add_argument("--quiet", action="store_true")
        sub.set_defaults(handler=handler)
        if name == "evaluate":
            sub.add_argument("--split", choices=("valid", "test"), default="test")
        else:
            sub.add_argument(
                "--split",
                choices=("valid", "test"),
                default=None,
                help="rank as of that split's cut-off, as the evaluation does (default: after the whole history)",
            )
            who = sub.add_mutually_exclusive_group()
            who.add_argument("--users", help="comma-separated original user ids")
            who.add_argument("--users-file", help="file with one original user id per line")
            who.add_argument("--all-users", action="store_true", help="every user of the data")
            sub.add_argument("--k", type=int, default=10)
            sub.add_argument("--format", choices=("csv", "json"), default="csv")

    compare = commands.add_parser("compare", help="finished runs side by side: validation and test metrics per round")
    compare.add_argument("runs", nargs="+", metavar="RUN", help="run directories of rsir train or rsir improve")
    compare.add_argument(
        "--metrics",
        nargs="+",
        default=["recall@10", "ndcg@10", "recall@20", "ndcg@20"],
        help="test metrics to show (default recall@10 ndcg@10 recall@20 ndcg@20)",
    )
    compare.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    compare.add_argument("--output", help="write here instead of standard output")
    compare.set_defaults(handler=cmd_compare)

    export = commands.add_parser(
        "export",
        help="a run's training data (a loop round's: real plus synthetic) and rsir's split as RecBole benchmark files",
    )
    export.add_argument("run", help="an rsir improve run directory (or an rsir train run: its real data)")
    export.add_argument(
        "--round",
        type=int,
        help="whose training data: real plus the synthetic data of the rounds before it "
        "(default 1, an rsir train run's 0; 0 = real only)",
    )
    export.add_argument(
        "--out",
        required=True,
        help="folder DIR/NAME for NAME.train.inter, NAME.valid.inter and "
        "NAME.test.inter (RecBole's data_path DIR and dataset NAME)",
    )
    export.add_argument("--max-len", type=int, default=50, help="history items kept before each target (default 50)")
    export.add_argument("--quiet", action="store_true")
    export.set_defaults(handler=cmd_export)

    segments = commands.add_parser(
        "segments", help="test metrics and paired gains by history length and target popularity"
    )
    segments.add_argument("--baseline", nargs="+", required=True, metavar="CHECKPOINT", help="one per seed")
    segments.add_argument(
        "--candidate", nargs="+", required=True, metavar="CHECKPOINT", help="paired with --baseline in order"
    )
    segments.add_argument("--data", default=None, help="data file (default: the one the checkpoints were trained on)")
    segments.add_argument("--metrics", nargs="+", default=["recall@10", "ndcg@10"])
    segments.add_argument(
        "--exclude-seen",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rank only items outside each user's own history (default: on)",
    )
    segments.add_argument("--output", help="also write the rows as JSON here")
    segments.set_defaults(handler=cmd_segments)

    data = commands.add_parser("data", help="dataset statistics, format conversion, synthetic data")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    stats = data_commands.add_parser("stats", help="print statistics of a data file")
    stats.add_argument("path")
    _add_reader_flags(stats)
    stats.set_defaults(handler=cmd_data_stats)
    convert = data_commands.add_parser("convert", help="convert between formats")
    convert.add_argument("input")
    convert.add_argument("output")
    convert.add_argument(
        "--to", default="auto", choices=("auto", *FORMATS), help="output format (default: from suffix)"
    )
    convert.add_argument("--renumber", action="store_true", help="write 1-based indices instead of original ids")
    _add_reader_flags(convert)
    convert.set_defaults(handler=cmd_data_convert)
    synth = data_commands.add_parser("synth", help="write the built-in synthetic data to a file")
    synth.add_argument("output")
    builtin = DataParams()  # the defaults write the built-in data
    synth.add_argument("--users", type=int, default=builtin.synthetic_users)
    synth.add_argument("--items", type=int, default=builtin.synthetic_items)
    synth.add_argument("--mean-length", type=float, default=builtin.synthetic_mean_length)
    synth.add_argument("--seed", type=int, default=builtin.synthetic_seed)
    synth.add_argument("--to", default="auto", choices=("auto", *FORMATS))
    synth.set_defaults(handler=cmd_data_synth)
    return parser


if __name__ == "__main__":
    sys.exit(main())
