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
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from engine.model.denoiser import Denoiser, ModelConfig, apply_rope, sinusoid
from engine.model.diffusion import NUM_STEPS
from engine.model.motion import MOTION_DIM


@functools.cache
def _frequencies(head_dim: int) -> torch.Tensor:
    """(head_dim / 2,) float64 RoPE frequencies, 10000^(-2j / head_dim): made once, read every step."""
    return 10000.0 ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)


def rope_at(index: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) (N, head_dim) float32 rotary tables at absolute frame indices (N,) int64, the
    same as engine.model.denoiser.rope's rows, with the angles made in float64."""
    angle = index.double().cpu()[:, None] * _frequencies(head_dim)
    return tuple(f(angle).float().repeat_interleave(2, -1).to(index.device) for f in (torch.cos, torch.sin))


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
    t = torch.full((1,), NUM_STEPS - 1, device=frames.device)  # the same step for every row: embedded once
    f = frames + model.time(sinusoid(t, width))
    h = model.inp(torch.cat([frames.new_zeros(n, MOTION_DIM), f], -1))
    cache.count[at] += 1
    # Streams past their first `window` frames attend every slot, and need no mask.
    mask = None if int(index.min()) >= cache.window - 1 else cache.filled(at)[:, None, None]
    for layer, block in enumerate(model.blocks):
        qkv = block.qkv(block.norm1(h)).view(n, 3, heads, head_dim)
        q, k = rotate(qkv[:, :2], cos, sin).unbind(1)
        keys, values = cache.keys[layer], cache.values[layer]
        keys[put] = k[0] if n == 1 else k
        values[put] = qkv[0, 2] if n == 1 else qkv[:, 2]
        keys, values = (keys[at], values[at]) if run else (keys.index_select(0, at), values.index_select(0, at))
        a = F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask)
        h = h + block.gate1 * block.proj(a.reshape(n, width))
        h = h + block.gate2 * block.mlp(block.norm2(h))
    h = model.norm(h)
    return model.x0_head(h), model.contact_head(h)
