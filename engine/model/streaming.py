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
    x0, logits = step(model, cache, frames, rows)  # a new frame for each of the streams `rows`

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
    and a concatenation a step otherwise). Folded again when the weights change: in place (a model
    being trained), or moved to another dtype or device."""
    params = (model.inp.weight, model.inp.bias, *model.time.parameters())
    # model.to() swaps in new tensors without bumping their versions: their storage tells.
    version = tuple((p._version, p.data_ptr(), p.dtype) for p in params)
    held = _FOLDED.get(model)
    if held is None or held[0] != version:
        width, weight = model.cfg.width, model.inp.weight
        time = model.time(sinusoid(torch.full((1,), NUM_STEPS - 1, device=weight.device), width).to(weight.dtype))
        bias = model.inp(torch.cat([time.new_zeros(1, MOTION_DIM), time], -1))[0]
        held = (version, (weight[:, MOTION_DIM:].contiguous(), bias))
        _FOLDED[model] = held
    return held[1]


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One query per entry: q (N, heads, head_dim) against keys and values (N, heads, window,
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
def step(model: Denoiser, cache: KVCache, frames: torch.Tensor, rows: torch.Tensor | Sequence[int] | None = None,
         text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One new frame for each entry of `rows` (N,) int64 or ints, the stream it belongs to
    (default: all streams, one each, in order; a stream given k times gets its next k frames,
    oldest first, at most `window`): frames (N, width) their Denoiser.embed_frames rows. Returns
    x0 (N, 144) normalised motion and contact logits (N, 6) of the new frames, as Denoiser.forward
    at the last diffusion step with x_t = 0 over each stream so far; the frames' keys and values
    join the cache.

    text: the new frames' texts, (tokens (N, Lt, 384), mask (N, Lt) bool, on (N,) bool the rows
    a text drives): as Denoiser.forward with each row's text over its frame (Conditions.text_frames),
    the rows it is off for as with no text at all. None: no text (the text blocks are not run)."""
    if not model.cfg.causal:
        raise ValueError("only a causal denoiser (ModelConfig.causal) can be run a frame at a time")
    n, width = frames.shape
    device = cache.count.device
    rows = list(range(n)) if rows is None else rows.tolist() if isinstance(rows, torch.Tensor) else list(rows)
    heads, head_dim = model.cfg.heads, width // model.cfg.heads
    # A stream named more than once has that many new frames, its next ones in order (a 20 fps
    # camera's frame and the one interpolated before it, or a backlog): one call for all of them.
    # Each attends to the ring as it was and to its stream's new frames up to its own (writing them
    # into the ring first would overwrite the oldest frames the earlier ones still see).
    rank, members = [], {}
    for e, r in enumerate(rows):
        rank.append(len(members.setdefault(r, [])))
        members[r].append(e)
    most = max(len(m) for m in members.values())
    if most > cache.window:
        raise ValueError(f"at most {cache.window} new frames of a stream in one step")
    repeated = most > 1
    ranks = torch.tensor(rank, device=device) if repeated else None
    # Rows in a run (all the streams of a batch in order, or one stream) are a view of the cache;
    # gathering them (advanced indexing) was most of a many-stream step's time.
    listed = torch.tensor(rows, device=device) if n > 1 else None
    run = not repeated and rows == list(range(rows[0], rows[0] + n))
    at = slice(rows[0], rows[0] + n) if run else listed
    index = cache.count[at] + ranks if repeated else cache.count[at].clone()
    slot = index % cache.window
    # Where each new row's key and value go: plain indices for one stream, else (row, slot) pairs.
    put = (rows[0], slice(None), int(slot[0])) if n == 1 else (listed, slice(None), slot)
    cos, sin = rope_at(index, head_dim)
    use_text = text is not None and model.text_blocks is not None and bool(text[2].any())
    if use_text:
        tokens, text_mask, on = text
        tokens, text_mask, on = model.text_proj(tokens)[:, None], text_mask[:, None], on[:, None, None]
        frames = frames + model.text_present * on[:, 0]
    h = F.linear(frames, *_input_layer(model))
    if repeated:
        # The frame each ring slot of the entry's stream holds: those of the entry's window.
        last = cache.count[listed, None] - 1
        held = last - (last - torch.arange(cache.window, device=device)) % cache.window
        # Per entry, its stream's new entries (padded), and which of them it sees: itself and older.
        fellows = torch.tensor([members[r] + members[r][:1] * (most - len(members[r])) for r in rows], device=device)
        older = torch.arange(most, device=device)[None] <= ranks[:, None]
        mask = torch.cat([(held >= 0) & (held > index[:, None] - cache.window), older], -1)[:, None, None]
        cache.count.index_add_(0, listed, torch.ones(n, dtype=cache.count.dtype, device=device))
    else:
        cache.count[at] += 1
        # Streams past their first `window` frames attend every slot, and need no mask.
        mask = None if int(index.min()) >= cache.window - 1 else cache.filled(at)[:, None, None]
    # The block's layers as functions of their weights: on one row, calling the modules cost a
    # sixth of the step.
    for layer, block in enumerate(model.blocks):
        if use_text:  # a row's text reaches that row alone: one frame of Denoiser.forward's text block
            h = model.text_blocks[layer](h[:, None], tokens, text_mask, on)[:, 0]
        x = F.layer_norm(h, (width,), block.norm1.weight, block.norm1.bias, block.norm1.eps)
        qkv = F.linear(x, block.qkv.weight, block.qkv.bias).view(n, 3, heads, head_dim)
        q, k = rotate(qkv[:, :2], cos, sin).unbind(1)
        ring_keys, ring_values = cache.keys[layer], cache.values[layer]
        if repeated:
            v = qkv[:, 2]
            keys = torch.cat([ring_keys.index_select(0, listed), k[fellows].transpose(1, 2)], 2)
            values = torch.cat([ring_values.index_select(0, listed), v[fellows].transpose(1, 2)], 2)
            ring_keys[put], ring_values[put] = k, v
        else:
            ring_keys[put] = k[0] if n == 1 else k
            ring_values[put] = qkv[0, 2] if n == 1 else qkv[:, 2]
            keys, values = ((ring_keys[at], ring_values[at]) if run
                            else (ring_keys.index_select(0, at), ring_values.index_select(0, at)))
        h = h + block.gate1 * F.linear(_attend(q, keys, values, mask), block.proj.weight, block.proj.bias)
        x = F.layer_norm(h, (width,), block.norm2.weight, block.norm2.bias, block.norm2.eps)
        h = h + block.gate2 * block.mlp(x)
    h = F.layer_norm(h, (width,), model.norm.weight, model.norm.bias, model.norm.eps)
    return model.x0_head(h), model.contact_head(h)
