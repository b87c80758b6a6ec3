"""Choosing and describing the compute device."""
from __future__ import annotations

import torch

from configs.config import ConfigError


def select_device(preference: str = "auto") -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error, not a silent CPU run."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise ConfigError("config key 'device': 'cuda' was asked for, but torch sees no CUDA GPU")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(preference)


def native_bf16(device: torch.device) -> bool:
    """Whether bfloat16 matrix products run in hardware here: a CPU with AVX512-BF16 or AMX (oneDNN
    says), a GPU that has them. Elsewhere bfloat16 is emulated and slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without that oneDNN query
        return False


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> 'bf16' where bfloat16 is native (native_bf16), else 'fp32'; 'bf16' and 'fp32' as given."""
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"precision {precision!r}: expected auto, bf16 or fp32")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"GPU {props.name} ({props.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}"
    return f"CPU, {torch.get_num_threads()} torch threads"
