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


# The longest text a setting takes unless it says otherwise (paths, addresses, tokens).
MAX_TEXT = 4096
# A VRM avatar's largest size: the page holds the whole file, and its textures, in memory.
MAX_AVATAR_BYTES = 64 * 1024 * 1024
GLB_MAGIC = b"glTF"  # a VRM is a binary glTF, which starts so


def setting(default, help: str, *, min=None, max=None, max_len=MAX_TEXT):
    """A config field with its help text (shown by `--help`), an optional numeric range and, for
    text, a length cap."""
    factory = {"default_factory": lambda: list(default)} if isinstance(default, list) else {"default": default}
    return field(metadata={"help": help, "min": min, "max": max, "max_len": max_len}, **factory)


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
    extra_mocap_dirs: list[str] = setting(["../shared/data/mocap_new"],
                                          "more folders of motion capture built into the same dataset "
                                          "(ReActIdle standing idle, CMU's Huge FBX library); one that "
                                          "is absent is left out")
    cmu_index: str = setting("../shared/data/cmu_index/cmu_mocap_index.csv",
                             "CMU's clip descriptions (captions)")
    cache_dir: str = setting("data_cache", "where `genmo-live data build` writes the dataset cache")


@dataclass
class EngineConfig:
    weights: str = setting("", "trained denoiser checkpoint; empty: the bundled assets/genmo_live.pt")
    steps: int = setting(1, "denoising steps per window: 1 = estimation mode (one pass), K = K DDIM steps",
                         min=1, max=50)
    lag: int = setting(0, "output lag in frames: each pose waits for this many newer frames (smoother, later)",
                       min=0, max=60)
    window: int = setting(120, "frames each estimation pass sees, the newest last (at most the model's 120): "
                               "fewer is faster and a little less accurate", min=16, max=120)
    slow_steps: bool = setting(False, "let a client (`set_steps`) ask for more denoising steps than this machine "
                                      "runs at the source's frame rate (poses then come late and frames are dropped)")
    warm_start_step: int = setting(500, "with steps > 1: the diffusion step the previous window's estimate "
                                        "is noised to as the next window's start", min=1, max=999)
    prompt: str = setting("a person stands still", "text that drives the motion while the person is not seen",
                          max_len=200)
    legs: str = setting("", "text that steers the legs while they are not seen (a desk hides them), e.g. "
                            "'a person sits on a chair'; empty: the model's prior alone", max_len=200)
    guidance: float = setting(6.0, "classifier-free guidance scale of the prompt (1 = none)", min=0.0, max=10.0)
    generation_steps: int = setting(4, "DDIM steps of a generated stretch", min=1, max=50)
    generation_horizon: int = setting(30, "frames generated ahead at a time while the person is not seen",
                                      min=4, max=100)
    generation_smooth: float = setting(3.0, "temporal smoothing of generated motion, frames (Gaussian sigma; "
                                            "0 = none)", min=0.0, max=30.0)
    generation_after: int = setting(0, "frames the body must be missing before generation takes over "
                                       "(shorter gaps are filled by estimation)", min=0, max=30)
    blend_s: float = setting(0.5, "cross-fade from generated back to estimated motion, seconds", min=0.0, max=5.0)
    match_fps: bool = setting(True, "a source slower than the 30 fps the model knows (a 15 or 20 fps webcam): "
                                    "interpolate frames between its frames so motion runs at the speed it has "
                                    "in training")
    min_body_landmarks: int = setting(4, "fewer of MediaPipe's 12 body landmarks than this = body missing",
                                      min=1, max=12)
    smooth_min_cutoff: float = setting(8.0, "One-Euro filter on the emitted motion: cutoff when still, Hz "
                                            "(0 = no filter)", min=0.0, max=30.0)
    smooth_beta: float = setting(0.5, "One-Euro filter: how fast the cutoff opens with speed (per normalised "
                                      "motion unit per second)", min=0.0, max=100.0)
    foot_lock: bool = setting(True, "pin planted feet (contact head) and keep them on the floor")
    contact_threshold: float = setting(0.5, "contact probability above which a foot counts as planted",
                                       min=0.0, max=1.0)
    mirror_average: bool = setting(False, "estimation: average each window's pass with the pass over its mirror "
                                          "image (a little more accurate and smoother; twice the work)")
    threads: int = setting(1, "torch CPU threads for the engine (MediaPipe runs in its own process)",
                           min=1, max=64)


@dataclass
class SourceConfig:
    source: str = setting("auto", "auto (webcam if present, else the sample clip looped), webcam, sample, "
                                  "webrtc, or a video file path")
    webcam_index: int = setting(0, "which camera (/dev/videoN)", min=0, max=63)
    realtime: bool = setting(True, "pace video files at their own frame rate, like a camera")
    loop: bool = setting(False, "start a video file again at its end")
    webrtc_host: str = setting("127.0.0.1", "where the WebRTC capture page listens (other addresses need a token)")
    webrtc_port: int = setting(8090, "port of the WebRTC capture page", min=1, max=65535)
    queue: int = setting(8, "landmark packets buffered between ingest and engine (a live source drops the "
                            "oldest beyond this)", min=1, max=1000)


@dataclass
class OutputsConfig:
    ws: list[str] = setting([], "WebSocket pose stream + control servers, HOST:PORT each")
    viewer: str = setting("", "browser viewer HOST:PORT (empty: none)")
    vmc: list[str] = setting([], "VMC protocol receivers (VSeeFace, Warudo, VNyan, EVMC4U...), HOST:PORT each")
    vmc_rate: float = setting(0.0, "VMC send rate, Hz (0: every pose)", min=0.0, max=240.0)
    vrchat: list[str] = setting([], "VRChat OSC receivers, HOST:PORT each (VRChat listens on 9000)")
    vrchat_trackers: list[str] = setting(["hip", "left_foot", "right_foot"],
                                         "trackers sent to VRChat: hip, chest, left_foot, right_foot, left_knee, "
                                         "right_knee, left_elbow, right_elbow")
    record: list[str] = setting([], "recordings written while streaming: take.npz and/or take.bvh")
    preview: bool = setting(False, "show what the camera sees in the viewer: a small picture a few times a second "
                                   "with the landmarks drawn (off: no picture is encoded at all)")
    preview_width: int = setting(320, "width of the camera preview, pixels (a smaller camera picture is not "
                                      "enlarged)", min=64, max=640)
    preview_fps: float = setting(5.0, "camera previews a second", min=0.5, max=15.0)
    avatar: str = setting("", "a VRM avatar (.vrm, VRM 0.x or 1.0) the viewer shows instead of the default body "
                              "(empty: the default body; a .vrm dropped on the page works too)")


@dataclass
class Config:
    body: BodyConfig = field(default_factory=BodyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    outputs: OutputsConfig = field(default_factory=OutputsConfig)
    token: str = setting("", "access token; required when a server listens on an address other than loopback")
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
    if tp is str:
        check_text(key, value, meta.get("max_len") or MAX_TEXT)
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(f"config key '{key}': {value} is below the minimum {meta['min']}")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(f"config key '{key}': {value} is above the maximum {meta['max']}")
    return value


def check_text(key: str, text: str, max_len: int) -> None:
    """Text from outside (YAML, a flag, a control message) is valid Unicode, holds no NUL and is at
    most `max_len` characters; else ConfigError naming the key. A lone surrogate (an undecodable
    byte in a flag, or a "\\udc80" escape in JSON) would fail later, deep in whatever encodes it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConfigError(f"config key '{key}': not valid text (an undecodable character at position {e.start})") \
            from None
    if "\0" in text:
        raise ConfigError(f"config key '{key}': a NUL character is not allowed")
    if len(text) > max_len:
        raise ConfigError(f"config key '{key}': {len(text)} characters, at most {max_len}")


def check_setting(key: str, value):
    """One setting checked as the config loader checks it (type, range, text), by dotted key, for
    values that arrive one at a time (a control message); the value, lightly coerced."""
    for name, tp, f in leaf_fields():
        if name == key:
            return _check_value(key, value, tp, f.metadata)
    raise ConfigError(f"unknown config key '{key}'")


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
    cfg = _build(Config, data)
    if cfg.engine.lag > cfg.engine.window // 2:
        # The lagged frame must stay inside the pass that estimates it, far enough from its edge.
        raise ConfigError(f"config key 'engine.lag': {cfg.engine.lag} frames is more than half of "
                          f"engine.window ({cfg.engine.window})")
    if cfg.outputs.preview and not cfg.outputs.viewer:
        raise ConfigError("config key 'outputs.preview': the camera preview is shown in the viewer; give it one "
                          "(--viewer HOST:PORT) or leave the preview off")
    if cfg.outputs.avatar:
        if not cfg.outputs.viewer:
            raise ConfigError("config key 'outputs.avatar': the avatar is shown in the viewer; give it one "
                              "(--viewer HOST:PORT) or leave the avatar out")
        check_avatar(Path(cfg.outputs.avatar))
    return cfg


def check_avatar(path: Path) -> None:
    """The avatar file the viewer will serve, checked once where it enters: it exists, is at most
    MAX_AVATAR_BYTES and starts as a binary glTF does (ConfigError otherwise). Whether it holds a
    VRM humanoid is three-vrm's to say, on the page."""
    what = f"config key 'outputs.avatar': {path}"
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise ConfigError(f"{what} is a folder, not a .vrm file")
        with path.open("rb") as f:
            magic = f.read(len(GLB_MAGIC))
    except OSError as e:
        raise ConfigError(f"{what}: {e.strerror or e}") from None
    if size > MAX_AVATAR_BYTES:
        raise ConfigError(f"{what} is {size / 2**20:.1f} MB; an avatar may be at most {MAX_AVATAR_BYTES // 2**20} MB")
    if magic != GLB_MAGIC:
        raise ConfigError(f"{what} is not a VRM file (a VRM is a binary glTF, which starts with 'glTF')")
