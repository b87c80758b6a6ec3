"""The one typed configuration: dataclasses, loaded from configs/default.yaml (or another YAML file)
and overridden key by key from the command line (`--body.stature 1.82`).

Unknown keys and ill-typed or out-of-range values raise ConfigError naming the dotted key.
Later parts of the product add their own section dataclass here; the loader needs no change.
"""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default.yaml")


class ConfigError(ValueError):
    """A configuration file or override that does not fit the schema."""


def setting(default, help: str, *, min=None, max=None):
    """A config field with its help text (shown by `--help`) and an optional numeric range."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"help": help, "min": min, "max": max}, **factory)


@dataclass
class BodyConfig:
    model: Literal["default", "procedural", "smpl"] = setting(
        "default", "default: the bundled CC0 body; procedural: skeleton only, no asset; "
                   "smpl: your own SMPL model files (needs the 'smpl' extra)")
    stature: float = setting(1.70, "standing height of the default/procedural body, metres",
                             min=0.5, max=2.5)
    mesh: Literal["lowres", "full"] = setting(
        "lowres", "default body mesh: lowres (~1.2k vertices) or full (~13.7k)")
    smpl_path: str = setting("", "folder or file of your SMPL model (SMPL_NEUTRAL.pkl, "
                                 "basicmodel_*_lbs_10_207_0_v1.1.0.pkl, or a folder with smpl/)")
    gender: Literal["neutral", "male", "female"] = setting("neutral", "which SMPL model file to load")
    betas: list[float] = setting([], "SMPL shape coefficients (smpl model only)")


@dataclass
class DataConfig:
    mocap_dir: str = setting("../shared/data/mocap", "folder of motion-capture files to build the "
                                                      "dataset from (relative paths: from the repo root)")
    cmu_index: str = setting("../shared/data/cmu_index/cmu_mocap_index.csv",
                             "CMU's clip descriptions (captions)")
    cache_dir: str = setting("data_cache", "where `genmo-live data build` writes the dataset cache")


@dataclass
class Config:
    body: BodyConfig = field(default_factory=BodyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    device: Literal["auto", "cpu", "cuda"] = setting(
        "auto", "where the engine runs: auto uses a GPU when there is one")
    log_level: Literal["debug", "info", "warning", "error"] = setting("info", "how much to log")


def resolve_path(path: str) -> Path:
    """A path setting as a Path: relative paths are taken from the repo root, not the working folder."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (DEFAULT_CONFIG_PATH.parents[1] / p).resolve()


def _check_value(key: str, value, tp, meta: dict):
    """Validate (and lightly coerce, int -> float) one leaf value against its annotation."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"config key '{key}': {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}': expected a list, got {value!r}")
        return [_check_value(f"{key}[{i}]", v, item_tp, {}) for i, v in enumerate(value)]
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise ConfigError(f"config key '{key}': expected {tp.__name__}, got {value!r}")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"config key '{key}': {value} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"config key '{key}': {value} is above the maximum {meta['max']}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    """A nested dict -> an instance of dataclass `cls`, checking every key."""
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<root>'}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"unknown config key '{prefix}{unknown[0]}' (known keys here: {sorted(fields)})")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(prefix + name, value, tp, fields[name].metadata)
    return cls(**kwargs)


def leaf_fields(cls=Config, prefix: str = ""):
    """Yield (dotted key, type, dataclasses.Field) for every leaf setting, in declaration order."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            yield from leaf_fields(hints[f.name], f"{prefix}{f.name}.")
        else:
            yield prefix + f.name, hints[f.name], f


def _set_dotted(data: dict, key: str, value):
    *parents, leaf = key.split(".")
    for p in parents:
        data = data.setdefault(p, {})
        if not isinstance(data, dict):
            raise ConfigError(f"config key '{key}': '{p}' is not a section")
    data[leaf] = value


def parse_override(text: str):
    """A command-line value -> a Python value, read as YAML ('1.8' -> 1.8, '[1, 2]' -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def load_config(path: Path | str | None = None, overrides: dict | None = None) -> Config:
    """Read `path` (default configs/default.yaml), apply {dotted key: value} overrides, validate."""
    path = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    return _build(Config, data)
