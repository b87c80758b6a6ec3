"""A causal denoiser run one frame at a time: each new frame costs one row of work, not a window.

In estimation mode (engine.live) every frame's input is its own conditions with x_t = 0 at the last
diffusion step, so with a causal mask (ModelConfig.causal: a frame attends to itself and the
`window` - 1 frames before it) nothing a frame computes ever changes once it is computed. Its keys
and values in every layer are kept (KVCache) and the newest frame's row is computed alone: per
layer one query against at most `window` cached keys.

RoPE rotates queries and keys by their frame's absolute index in the stream; attention depends on
index differences only, so the cached keys stay valid as the stream goes on. The rotation angles
are made in float64: float32 angles of a stream hours long (index * frequency ~ 1e6 radians) would
be off by ~0.1 rad.

    cache = KVCache(model.cfg, batch=8)            # 8 independent streams
    x0, logits = step(model, cache, frames, rows)  # one new frame for the streams `rows`

The result equals Denoiser.forward over each whole stream so far (the causal mask makes the
newest row of a pass over the last layers * (window - 1) + 1 frames the same), to float error
(tests/model/test_streaming.py).
"""
from __future__ import annotations

import functools
import weakref
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from engine.model.denoiser import Denoiser, ModelConfig, apply_rope, sinusoid
from engine.model.diffusion import NUM_STEPS
from engine.model.motion import MOTION_DIM


@functools.cache
def _frequencies(head_dim: int) -> np.ndarray:
    """(head_dim / 2,) float64 RoPE frequencies, 10000^(-2j / head_dim): made once, read every step."""
    return 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope_at(index: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) (N, head_dim) float32 rotary tables at absolute frame indices (N,) int64, the
    same as engine.model.denoiser.rope's rows, with the angles made in float64 (in numpy: a few
    calls of a microsecond, where torch's take several each, every step)."""
    angle = np.repeat(index.cpu().numpy()[:, None] * _frequencies(head_dim), 2, -1)
    return tuple(torch.from_numpy(f(angle).astype(np.float32)).to(index.device) for f in (np.cos, np.sin))


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (N, ..., head_dim) rows by their own (N, head_dim) tables: apply_rope, each row's
    table broadcast over its middle dimensions (heads)."""
    shape = (len(x),) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return apply_rope(x, cos.view(shape), sin.view(shape))


class KVCache:
    """Per layer, the rotated keys and the values of each stream's last `window` frames, in a ring
    of `window` slots; `count` (B,) frames each stream has had. Streams are rows 0..batch-1: a
    stream that ends is `reset`, and its row is free for the next one."""

    def __init__(self, cfg: ModelConfig, batch: int, device=None, dtype=torch.float32):
        head_dim = cfg.width // cfg.heads
        shape = (cfg.layers, batch, cfg.heads, cfg.window, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.count = torch.zeros(batch, dtype=torch.long, device=device)
        self.window = cfg.window

    def reset(self, rows) -> None:
        """Forget the frames of the streams `rows` (a list of ints or a (N,) tensor)."""
        self.count[rows] = 0

    def filled(self, rows: torch.Tensor | slice) -> torch.Tensor:
        """(N, window) bool: the ring slots of streams `rows` ((N,) int64 or a slice) that hold a frame."""
        return torch.arange(self.window, device=self.count.device)[None] < self.count[rows, None]


# Per model, its input layer folded with estimation mode's constants (_input_layer), and the
# versions of the weights it was folded from.
_FOLDED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _input_layer(model: Denoiser) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight (width, width), bias (width,)) such that frames @ weight.T + bias is the denoiser's
    input layer on embed_frames rows in estimation mode: x_t = 0 and the last diffusion step's
    time embedding are the same every step, so they are folded into the bias once (two MLP layers
    and a concatenation a step otherwise). Folded again when the weights change in place (a model
    being trained)."""
    params = (model.inp.weight, model.inp.bias, *model.time.parameters())
    version = tuple(p._version for p in params)
    held = _FOLDED.get(model)
    if held is None or held[0] != version:
        width, device = model.cfg.width, model.inp.weight.device
        time = model.time(sinusoid(torch.full((1,), NUM_STEPS - 1, device=device), width))
        bias = model.inp(torch.cat([time.new_zeros(1, MOTION_DIM), time], -1))[0]
        held = (version, (model.inp.weight[:, MOTION_DIM:].contiguous(), bias))
        _FOLDED[model] = held
    return held[1]


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One query per stream: q (N, heads, head_dim) against keys and values (N, heads, window,
    head_dim), mask (N, 1, 1, window) bool or None -> (N, heads * head_dim). One stream through
    scaled_dot_product_attention; many through two batched products, which took 0.6 of its time at
    128 streams."""
    if len(q) == 1:
        return F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask).reshape(1, -1)
    scores = q[:, :, None] @ keys.transpose(-1, -2) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) @ values).reshape(len(q), -1)


@torch.inference_mode()
def step(model: Denoiser, cache: KVCache, frames: torch.Tensor, rows: torch.Tensor | Sequence[int] | None = None
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """One new frame for each of the streams `rows` (N,) int64 or ints (default: all, in order):
    frames (N, width) their Denoiser.embed_frames rows. Returns x0 (N, 144) normalised motion and
    contact logits (N, 6) of the new frames, as Denoiser.forward at the last diffusion step with x_t = 0 over
    each stream so far; the frames' keys and values join the cache."""
    if not model.cfg.causal:
        raise ValueError("only a causal denoiser (ModelConfig.causal) can be run a frame at a time")
    n, width = frames.shape
    device = cache.count.device
    rows = list(range(n)) if rows is None else rows.tolist() if isinstance(rows, torch.Tensor) else list(rows)
    heads, head_dim = model.cfg.heads, width // model.cfg.heads
    # Rows in a run (all the streams of a batch in order, or one stream) are a view of the cache;
    # gathering them (advanced indexing) was most of a many-stream step's time.
    listed = torch.tensor(rows, device=device) if n > 1 else None
    run = rows == list(range(rows[0], rows[0] + n))
    at = slice(rows[0], rows[0] + n) if run else listed
    index = cache.count[at].clone()
    slot = index % cache.window
    # Where each new row's key and value go: plain indices for one stream, else (row, slot) pairs.
    put = (rows[0], slice(None), int(slot[0])) if n == 1 else (listed, slice(None), slot)
    cos, sin = rope_at(index, head_dim)
    h = F.linear(frames, *_input_layer(model))
    cache.count[at] += 1
    # Streams past their first `window` frames attend every slot, and need no mask.
    mask = None if int(index.min()) >= cache.window - 1 else cache.filled(at)[:, None, None]
    # The block's layers as functions of their weights: on one row, calling the modules cost a
    # sixth of the step.
    for layer, block in enumerate(model.blocks):
        x = F.layer_norm(h, (width,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = F.linear(x, block.qkv.weight, block.qkv.bias).view(n, 3, heads, head_dim)
        q, k = rotate(qkv[:, :2], cos, sin).unbind(1)
        keys, values = cache.keys[layer], cache.values[layer]
        keys[put] = k[0] if n == 1 else k
        values[put] = qkv[0, 2] if n == 1 else qkv[:, 2]
        keys, values = (keys[at], values[at]) if run else (keys.index_select(0, at), values.index_select(0, at))
        h = h + block.gate1 * F.linear(_attend(q, keys, values, mask), block.proj.weight, block.proj.bias)
        x = F.layer_norm(h, (width,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
        h = h + block.gate2 * block.mlp(x)
    h = F.layer_norm(h, (width,), model.norm.weight, model.norm.bias, model.norm.eps)
    return model.x0_head(h), model.contact_head(h)
