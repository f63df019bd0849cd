"""Run configuration: sections of typed options, from a TOML/YAML file and from flags.

Unknown sections and keys are rejected with the closest known name as a suggestion;
values are checked against the option's type.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .data.source import DataParams
from .errors import ConfigError, did_you_mean
from .files import missing_file_text
from .generation.generate import GenerationParams
from .generation.loop import ImproveParams
from .models import BACKBONES, DEFAULT_BACKBONE, PAPER_MODEL, backbone_class
from .training.trainer import TrainParams


@dataclass
class RunConfig:
    data: DataParams = field(default_factory=DataParams)
    backbone: str = DEFAULT_BACKBONE
    model: dict[str, Any] = field(default_factory=dict)  # options of the chosen backbone
    train: TrainParams = field(default_factory=TrainParams)
    generate: GenerationParams = field(default_factory=GenerationParams)
    improve: ImproveParams = field(default_factory=ImproveParams)

    def to_dict(self, sections: tuple[str, ...] = ("data", "model", "train", "generate", "improve")) -> dict[str, Any]:
        data = dataclasses.asdict(self.data)
        if self.data.path:  # the built-in generator's options say nothing about a file's data
            data = {key: value for key, value in data.items() if not key.startswith("synthetic_")}
        full = {
            "data": data,
            "model": {"backbone": self.backbone, **self.model},
            "train": dataclasses.asdict(self.train),
            "generate": dataclasses.asdict(self.generate),
            "improve": dataclasses.asdict(self.improve),
        }
        return {name: full[name] for name in sections}


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "train": TrainParams,
    "generate": GenerationParams,
    "improve": ImproveParams,
}

# Named sets of options, applied under a config file's and the flags' own values
# (``--preset NAME``, or ``preset = "NAME"`` at the top of a config file or a spec's [common]).
# "paper" is the RSIR paper's SASRec (d 64, 2 blocks, 2 heads, dropout 0.5, batch 256) with
# rsir's training before the SASRec parity study: the defaults until then, so the studies made
# with them reproduce by name, and a saved config that lacks an option was written when that
# option had its "paper" value (see ``read_saved_config``). "length_batched" is the default
# between the parity study's first pick and RecTools' recipe (2026-12-05 to 2026-12-06): the
# published model's size with rsir's pre-LN block, absolute positions and masked padding (cached
# generation), length-grouped batches with equally weighted targets, and negatives per sequence.
# Both keep patience 20, the default until 2026-12-06 (their models learn slowly), and the round
# of their time: a successor trained from scratch on every synthetic row in every epoch (the
# default until 2026-12-07, when the warm, budgeted round became it on validation, issue 45),
# and the built-in data of their time (denser users over fewer items, until 2026-12-07).
_BEFORE_2026_12_07: dict[str, dict[str, Any]] = {  # the round and built-in data of both presets' time
    "improve": {"successor": "scratch"},
    "train": {"synthetic_per_epoch": 0.0},
    "data": {"synthetic_items": 500, "synthetic_mean_length": 12.0},
}
PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "length_batched": {
        "model": {
            "dim": 256,
            "blocks": 1,
            "heads": 1,
            "dropout": 0.2,
            "item_dropout": 0.2,
            "block": "pre_ln",
            "init": "normal",
            "positions": "absolute",
            "pad_keys": "masked",
        },
        "train": {
            "patience": 20,
            "batch_size": 128,
            "beta2": 0.98,
            "target_weighting": "equal",
            "batching": "length",
            "negatives_per": "sequence",
            **_BEFORE_2026_12_07["train"],
        },
        "improve": _BEFORE_2026_12_07["improve"],
        "data": _BEFORE_2026_12_07["data"],
    },
    "paper": {
        "model": PAPER_MODEL,
        "train": {
            "patience": 20,
            "batch_size": 256,
            "beta2": 0.999,
            "target_weighting": "batch",
            "batching": "length",
            "negatives_per": "sequence",
            **_BEFORE_2026_12_07["train"],
        },
        "improve": _BEFORE_2026_12_07["improve"],
        "data": _BEFORE_2026_12_07["data"],
    },
}


def model_option_types() -> dict[str, type]:
    """Every option any backbone accepts, with its type (for flags)."""
    types: dict[str, type] = {}
    for cls in BACKBONES.values():
        types.update(typing.get_type_hints(cls.Params))
    return types


def option_docs(cls: type) -> dict[str, str]:
    """Each option's description, from the comments beside and above its field in the source
    of ``cls`` and its bases (the one place options are described)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        above: list[str] = []
        for line in lines:
            stripped = line.strip()
            if stripped.startswith("#"):
                above.append(stripped.lstrip("# "))
                continue
            field = re.match(r"(\w+)\s*:[^=#]*(=[^#]*)?(#\s*(.*))?$", stripped)
            if field and field.group(1) in {f.name for f in dataclasses.fields(klass)}:
                text = " ".join([*above, field.group(4) or ""]).strip()
                if text:
                    docs[field.group(1)] = text
            above = []
    return docs


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(missing_file_text(path, "config file"))
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml", ".json"):
            data = yaml.safe_load(text) or {}
        else:
            raise ConfigError(f"{path}: config files must end in .toml, .yaml, .yml or .json")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML ({exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections ({', '.join([*SECTIONS, 'model'])})")
    return data


def build_config(
    sections: dict[str, Any], overrides: dict[str, dict[str, Any]] | None = None, source: str = "config"
) -> RunConfig:
    """Merge file sections with flag overrides and check every key and value. A ``preset``
    key (in ``sections`` or, winning, in ``overrides``) names a set of :data:`PRESETS` values
    that both override."""
    sections, overrides = dict(sections), dict(overrides or {})
    preset = overrides.pop("preset", sections.pop("preset", None))
    merged: dict[str, dict[str, Any]] = {}
    for name, values in sections.items():
        if name not in (*SECTIONS, "model"):
            raise ConfigError(f"{source}: unknown section {name!r}{_suggest(name, [*SECTIONS, 'model'])}")
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section {name!r} must be a mapping of options")
        merged[name] = dict(values)
    for name, values in overrides.items():
        merged.setdefault(name, {}).update(values)
    model = merged.get("model", {})
    backbone = model.pop("backbone", DEFAULT_BACKBONE)
    cls = backbone_class(str(backbone))
    if preset is not None:
        if not isinstance(preset, str) or preset not in PRESETS:
            raise ConfigError(f"{source}: unknown preset {preset!r}{_suggest(str(preset), list(PRESETS))}")
        own = {
            "model": typing.get_type_hints(cls.Params),
            **{name: typing.get_type_hints(c) for name, c in SECTIONS.items()},
        }
        for name, values in PRESETS[preset].items():  # a backbone takes the preset's options it has
            merged[name] = {**{k: v for k, v in values.items() if k in own[name]}, **merged.get(name, {})}
        model = merged["model"]
    return RunConfig(
        data=_make(DataParams, merged.get("data", {}), "data", source),
        backbone=cls.name,
        model=dataclasses.asdict(_make(cls.Params, model, "model", source, cls.name)),
        train=_make(TrainParams, merged.get("train", {}), "train", source),
        generate=_make(GenerationParams, merged.get("generate", {}), "generate", source),
        improve=_make(ImproveParams, merged.get("improve", {}), "improve", source),
    )


def read_saved_config(path: str | Path, sections: tuple[str, ...] | None = None) -> dict[str, Any] | None:
    """A run's saved ``config.yaml`` as full ``sections`` (by default the ones it names), or
    None if it no longer parses. An option the file lacks was added to rsir after the run was
    written: it takes the "paper" preset's value, which was the default then, or else today's
    default, which keeps the old behaviour."""
    try:
        written = yaml.safe_load(Path(path).read_text())
        full = build_config({**dict(written), "preset": "paper"}, source=str(path))
    except (ConfigError, yaml.YAMLError, TypeError, ValueError):
        return None
    return full.to_dict(sections or tuple(name for name in (*SECTIONS, "model") if name in written))


def recorded_data(values: dict[str, Any]) -> DataParams:
    """A run's recorded data options (a checkpoint's, a config's); one added to rsir since
    takes its value of then, as in :func:`read_saved_config`."""
    return build_config({"data": values, "preset": "paper"}, source="recorded data options").data


def changed_option(saved: dict[str, Any], wanted: dict[str, Any]) -> tuple[str, str] | None:
    """The first option (section, key) of ``wanted`` that ``saved`` sets otherwise and that the
    run reads: one that changes a phase's identity (:func:`rsir.generation.phases.plan`), so a
    default changed since the run was written blocks nothing where the run never reads it.
    ``improve.rounds`` is left out: a loop's first rounds do not depend on how many follow them."""
    from .generation.phases import plan

    def identities(config: dict[str, Any]) -> list[str]:
        config = {"data": {}, **config}  # a run from Python records no data options
        if "improve" in config:  # as many rounds as the saved run, whose phases are compared
            config["improve"] = {**config["improve"], "rounds": saved["improve"]["rounds"]}
        return [phase.identity for phase in plan(config)]

    differing = [
        (section, key)
        for section, options in wanted.items()
        for key, value in options.items()
        if saved.get(section, {}).get(key) != value and (section, key) != ("improve", "rounds")
    ]
    if not differing:
        return None
    if set(saved) != set(wanted):
        return differing[0]
    read = identities(saved)
    for section, key in differing:
        if identities({**saved, section: {**saved[section], key: wanted[section][key]}}) != read:
            return section, key
    # No option changes what the run reads on its own; together they still may.
    return differing[0] if identities(wanted) != read else None


def _make(cls: type, values: dict[str, Any], section: str, source: str, backbone: str = ""):
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        if key not in hints:
            raise ConfigError(f"{source}: {_unknown(section, key, list(hints), backbone)}")
        values[key] = _check_type(value, hints[key], f"{section}.{key}", source)
    params = cls(**values)
    if hasattr(params, "validate"):
        params.validate()
    return params


def _check_type(value: Any, kind: type, name: str, source: str) -> Any:
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is str and value is None:
        return ""
    if kind is float and isinstance(value, str):
        # YAML reads 1e-3 (no dot) and "inf" as strings.
        try:
            return float(value)
        except ValueError:
            pass
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: option {name} must be {kind.__name__}, got {value!r}")


# Common spellings from other tools that string similarity does not find.
_SYNONYMS = {
    "learning_rate": "lr",
    "epochs": "max_epochs",
    "num_negatives": "negatives",
    "hidden_size": "dim",
    "num_blocks": "blocks",
    "num_heads": "heads",
    "max_seq_length": "max_len",
    "early_stop": "patience",
}


def _unknown(section: str, key: str, known: list[str], backbone: str) -> str:
    """Why ``section.key`` is refused: an option of backbones other than ``backbone``, or of none."""
    owners = [name for name, cls in BACKBONES.items() if key in typing.get_type_hints(cls.Params)]
    if section == "model" and owners:
        names = ", ".join(owners[:-1]) + " and " + owners[-1] if len(owners) > 1 else owners[0]
        return f"model.{key} is an option of {names} only, not of {backbone} (model.backbone / --backbone)"
    return f"unknown option {section}.{key}{_suggest(key, known)}"


def _suggest(name: str, known: list[str]) -> str:
    if _SYNONYMS.get(name) in known:
        return f"; did you mean {_SYNONYMS[name]!r}?"
    return did_you_mean(name, known) or f" (known: {', '.join(known)})"
