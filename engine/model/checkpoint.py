"""Checkpoints: the file a training run writes and the weights the product loads. One format for
both architectures (the denoiser and the per-frame lifter), named by the `arch` it stores."""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch

from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.lifter import LifterConfig, PerFrameLifter
from engine.model.motion import Normalizer


class CheckpointError(ValueError):
    """A checkpoint to start from that is missing or holds another kind of model."""


# The architectures a checkpoint can hold, by the name it stores (and `genmo-live train --model` takes).
ARCHS = {"denoiser": (Denoiser, ModelConfig), "per-frame": (PerFrameLifter, LifterConfig)}


def save_checkpoint(path: Path, model: Denoiser | PerFrameLifter, norm: Normalizer, opt, step: int, cfg,
                    meta: dict) -> None:
    """Write a training checkpoint atomically: model and its architecture, normaliser, optimiser
    state, step, the run's TrainConfig (engine.train) and `meta`."""
    tmp = path.with_name(path.name + ".tmp")
    arch = next(name for name, (cls, _) in ARCHS.items() if isinstance(model, cls))
    torch.save({"arch": arch, "model": model.state_dict(), "model_config": model.config_dict(),
                "normalizer": norm.state_dict(), "optimizer": opt.state_dict() if opt is not None else None,
                "step": step, "train_config": asdict(cfg), "meta": meta}, tmp)
    tmp.replace(path)


def read_checkpoint(path: Path | str, device) -> tuple[Denoiser | PerFrameLifter, Normalizer, dict]:
    """The model, its normaliser and the whole checkpoint dict (optimiser state included)."""
    ck = torch.load(path, map_location=device, weights_only=False)
    cls, config = ARCHS[ck.get("arch", "denoiser")]  # checkpoints from before the lifter hold denoisers
    model = cls(config(**ck["model_config"])).to(device)
    model.load_state_dict(ck["model"])
    norm = Normalizer().to(device)
    norm.load_state_dict(ck["normalizer"])
    return model, norm, ck


def load_model(path: Path | str, device="cpu") -> tuple[Denoiser | PerFrameLifter, Normalizer, dict]:
    """A trained model (a Denoiser or a PerFrameLifter, as the checkpoint says), its normaliser and
    the checkpoint's metadata."""
    model, norm, ck = read_checkpoint(path, device)
    return model.eval(), norm, {k: ck[k] for k in ("step", "train_config", "meta") if k in ck}


def export_weights(checkpoint: Path | str, out: Path | str) -> Path:
    """A training checkpoint -> the weights the product loads (engine.paths.WEIGHTS_PATH): model
    (float16, half the size; loaded back as float32), normaliser, configs and metadata, without
    the optimiser state."""
    ck = torch.load(checkpoint, map_location="cpu", weights_only=False)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    slim = {**{k: ck[k] for k in ("model_config", "normalizer", "step", "train_config", "meta")},
            "arch": ck.get("arch", "denoiser"),
            "model": {k: v.half() if v.is_floating_point() else v for k, v in ck["model"].items()},
            "optimizer": None}
    tmp = out.with_name(out.name + ".tmp")
    torch.save(slim, tmp)
    tmp.replace(out)
    return out
