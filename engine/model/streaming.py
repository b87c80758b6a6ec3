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
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from engine.model.denoiser import NUM_CONTACTS, Denoiser, ModelConfig, sinusoid
from engine.model.diffusion import NUM_STEPS
from engine.model.motion import MOTION_DIM
from streamer.landmarks import NUM_LANDMARKS


@functools.cache
def _frequencies(head_dim: int) -> np.ndarray:
    """(head_dim / 2,) float64 RoPE frequencies, 10000^(-2j / head_dim): made once, read every step."""
    return 10000.0 ** (-np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)


def rope_at(index: torch.Tensor, head_dim: int) -> torch.Tensor:
    """(N, 2, head_dim) float32 rotary tables [cos, signed sin] at absolute frame indices (N,)
    int64: engine.model.denoiser.rope's rows, the sin negated on even channels, so that apply_rope
    is x * cos + x with each pair swapped * signed sin (a swap is a view and a flip; the sign is
    free here). The angles are made in float64 (in numpy: a few calls of a microsecond, where
    torch's take several each, every step)."""
    angle = np.repeat(index.cpu().numpy()[:, None] * _frequencies(head_dim), 2, -1)
    sin = np.sin(angle)
    sin[:, 0::2] *= -1
    return torch.from_numpy(np.stack([np.cos(angle), sin], 1).astype(np.float32)).to(index.device)


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


class _Layer(NamedTuple):
    """One SelfAttentionBlock's weights as the one-row step uses them: transposed for addmm
    (x @ w + b), the attention's scale and the residual gates folded in."""
    norm1: tuple
    qkv: torch.Tensor    # (width, 3 width), the queries scaled
    qkv_bias: torch.Tensor
    proj: torch.Tensor   # (width, width), gate1 folded
    proj_bias: torch.Tensor
    norm2: tuple
    up: torch.Tensor     # (width, mlp)
    up_bias: torch.Tensor
    act: str             # the MLP's GELU approximation
    down: torch.Tensor   # (mlp, width), gate2 folded
    down_bias: torch.Tensor


class _Prepared(NamedTuple):
    embed: torch.Tensor  # (103, 2 width + landmark MLP width): embed_rows' first products, folded
    embed_bias: torch.Tensor
    embed_act: str
    embed_out: torch.Tensor  # (2 width + landmark MLP width, width): the two MLPs' second layers, stacked
    embed_out_bias: torch.Tensor
    inp: torch.Tensor    # (width, width): the input layer on embed_frames rows in estimation mode
    inp_bias: torch.Tensor
    layers: list[_Layer]
    heads: torch.Tensor  # (width, 2 width): the x0 and contact heads' first layers side by side
    heads_bias: torch.Tensor
    act: str
    outs: torch.Tensor   # (2 width, 144 + 6): their second layers, block-diagonal
    outs_bias: torch.Tensor


# Per model, its weights as the step uses them (_prepare), and the versions they were made from.
_PREPARED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _step_parameters(model: Denoiser) -> tuple[torch.nn.Parameter, ...]:
    """The parameters _prepare reads (the text blocks run as they are)."""
    parts = (model.landmark, model.landmarks, model.box, model.inp, model.time, model.blocks, model.norm,
             model.x0_head, model.contact_head)
    return (model.missing,) + tuple(p for part in parts for p in part.parameters())


def _version(params: tuple[torch.nn.Parameter, ...]) -> tuple:
    # model.to() swaps in new storage without bumping the versions: the storage tells.
    return params[0].dtype, tuple((p._version, p.data_ptr()) for p in params)


def _prepare(model: Denoiser) -> _Prepared:
    """The model's weights for the one-row step, made again when they change: in place (a model
    being trained), or moved to another dtype or device. What the step saves is calls, not
    arithmetic: on one row, a call costs more than its product.
    - The input layer is folded with estimation mode's constants: x_t = 0 and the last diffusion
      step's time embedding are the same every step (two MLP layers and a concatenation).
    - The landmark embedding is folded into the landmark MLP's first layer (embed_rows).
    - The attention's 1 / sqrt(head_dim) is folded into the queries.
    - The residual gates are folded into the output products, the two heads are one pair of
      products, and the weights are transposed for addmm, which took 0.65 of linear's time on
      one row (bench engine)."""
    held = _PREPARED.get(model)
    # The parameters are listed once: listing them (Module.parameters) took longer than the step.
    if held is not None and _version(held[0]) == held[1]:
        return held[2]
    params = _step_parameters(model)
    with torch.no_grad():
        width, weight = model.cfg.width, model.inp.weight
        time = model.time(sinusoid(torch.full((1,), NUM_STEPS - 1, device=weight.device), width).to(weight.dtype))
        inp_bias = model.inp(torch.cat([time.new_zeros(1, MOTION_DIM), time], -1))[0]
        scale = torch.ones(3 * width, dtype=weight.dtype, device=weight.device)
        scale[:width] = (width // model.cfg.heads) ** -0.5
        layers = []
        for b in model.blocks:
            wq, wk, wv = (b.qkv.weight * scale[:, None]).t().split(width, 1)
            bq, bk, bv = (b.qkv.bias * scale).split(width)
            up, down = b.mlp[0], b.mlp[3]
            layers.append(_Layer(
                (b.norm1.weight, b.norm1.bias, b.norm1.eps),
                torch.cat([wq, wk, wv], 1).contiguous(),
                torch.cat([bq, bk, bv]),
                (b.proj.weight * b.gate1[:, None]).t().contiguous(), b.proj.bias * b.gate1,
                (b.norm2.weight, b.norm2.bias, b.norm2.eps),
                up.weight.t().contiguous(), up.bias.clone(), b.mlp[1].approximate,
                (down.weight * b.gate2[:, None]).t().contiguous(), down.bias * b.gate2))
        embed, embed_bias = _folded_embedding(model)
        x0, contact = model.x0_head, model.contact_head
        outs = weight.new_zeros(2 * width, MOTION_DIM + NUM_CONTACTS)
        outs[:width, :MOTION_DIM], outs[width:, MOTION_DIM:] = x0[3].weight.t(), contact[3].weight.t()
        prepared = _Prepared(embed, embed_bias, model.landmarks[1].approximate,
                             torch.cat([model.landmarks[3].weight, model.box[3].weight], 1).t().contiguous(),
                             model.landmarks[3].bias + model.box[3].bias,
                             weight[:, MOTION_DIM:].t().contiguous(), inp_bias, layers,
                             torch.cat([x0[0].weight, contact[0].weight]).t().contiguous(),
                             torch.cat([x0[0].bias, contact[0].bias]), x0[1].approximate,
                             outs, torch.cat([x0[3].bias, contact[3].bias]))
    _PREPARED[model] = (params, _version(params), prepared)
    return prepared


def _folded_embedding(model: Denoiser) -> tuple[torch.Tensor, torch.Tensor]:
    """embed_rows' first product: (weight (103, landmark hidden + width), bias) over a row
    [visible keypoints (33 x 2, zeros where missing), visible (33), box * has_box (3), has_box].
    A landmark's embedding is linear in its keypoint (or the missing token), and so is the
    landmark MLP's first layer over them: one (66 + 33)-row product instead of 33 embeddings and a
    1056-row product (whose weights were the largest the step read). The box MLP's first layer
    sits beside it, block-diagonal."""
    first, box = model.landmarks[0], model.box[0]
    hidden, width = first.out_features, box.out_features
    per_landmark = first.weight.view(hidden, NUM_LANDMARKS, -1)  # (hidden, 33, landmark_dim)
    missing = model.missing
    weight = first.weight.new_zeros(3 * NUM_LANDMARKS + 4, hidden + width)
    weight[:2 * NUM_LANDMARKS, :hidden] = torch.einsum("hjd,dc->jch", per_landmark, model.landmark.weight).reshape(-1, hidden)
    weight[2 * NUM_LANDMARKS:3 * NUM_LANDMARKS, :hidden] = torch.einsum(
        "hjd,jd->jh", per_landmark, model.landmark.bias - missing)
    weight[3 * NUM_LANDMARKS:, hidden:] = box.weight.t()
    bias = torch.cat([first.bias + torch.einsum("hjd,jd->h", per_landmark, missing), box.bias])
    return weight, bias


def embed_rows(model: Denoiser, cond: dict[str, np.ndarray], device=None) -> torch.Tensor:
    """Denoiser.embed_frames of N frames, to float error, from their
    engine.model.conditions.landmark_conditions fields (numpy: keypoints (N, 33, 2), visible
    (N, 33), box (N, 3), has_box (N,)) -> (N, width): two products and a GELU (_folded_embedding),
    not a dozen module calls a frame."""
    p = _prepare(model)
    visible, has_box = cond["visible"], cond["has_box"][:, None]
    row = np.concatenate([(cond["keypoints"] * visible[..., None]).reshape(len(visible), -1), visible,
                          cond["box"] * has_box, has_box], 1).astype(np.float32)
    hidden = F.gelu(torch.addmm(p.embed_bias, torch.from_numpy(row).to(device), p.embed), approximate=p.embed_act)
    return torch.addmm(p.embed_out_bias, hidden, p.embed_out)


def _attend(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One query per entry, scaled already: q (N, heads, head_dim) against keys and values (N,
    heads, window, head_dim), mask (N, 1, 1, window) bool or None -> (N, heads * head_dim). through scaled_dot_product_attention; many through two batched products, which took 0.6 of its
    time at 128 streams."""
    if len(q) == 1:
        return F.scaled_dot_product_attention(q[:, :, None], keys, values, attn_mask=mask, scale=1.0).reshape(1, -1)
    scores = q[:, :, None] @ keys.transpose(-1, -2)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return (torch.softmax(scores, -1) @ values).reshape(len(q), -1)


@torch.inference_mode()
def step(model: Denoiser, cache: KVCache, frames: torch.Tensor, rows: torch.Tensor | Sequence[int] | None = None,
         text: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One new frame for each entry of `rows` (N,) int64 or ints, the stream it belongs to
    (default: all streams, one each, in order; a stream given k times gets its next k frames,
    oldest first, at most `window`): frames (N, width) their Denoiser.embed_frames (embed_rows). Returns
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
    # [cos, sin] for the queries and keys of every head: (N, 2, 1, 1, head_dim).
    rope = rope_at(index, head_dim)[:, :, None, None]
    prepared = _prepare(model)
    use_text = text is not None and model.text_blocks is not None and bool(text[2].any())
    if use_text:
        tokens, text_mask, on = text
        tokens, text_mask, on = model.text_proj(tokens)[:, None], text_mask[:, None], on[:, None, None]
        frames = frames + model.text_present * on[:, 0]
    h = torch.addmm(prepared.inp_bias, frames, prepared.inp)
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
    for layer, w in enumerate(prepared.layers):
        if use_text:  # a row's text reaches that row alone: one frame of Denoiser.forward's text block
            h = model.text_blocks[layer](h[:, None], tokens, text_mask, on)[:, 0]
        qkv = torch.addmm(w.qkv_bias, F.layer_norm(h, (width,), *w.norm1), w.qkv)
        # RoPE: q and k times cos, plus their pairs swapped times the signed sin.
        qk = qkv[:, :2 * width].view(n, 2, heads, head_dim)
        swapped = qk.view(n, 2, heads, head_dim // 2, 2).flip(-1).view(n, 2, heads, head_dim)
        q, k = torch.addcmul(qk * rope[:, 0], swapped, rope[:, 1]).unbind(1)
        v = qkv[:, 2 * width:].view(n, heads, head_dim)
        ring_keys, ring_values = cache.keys[layer], cache.values[layer]
        if repeated:
            keys = torch.cat([ring_keys.index_select(0, listed), k[fellows].transpose(1, 2)], 2)
            values = torch.cat([ring_values.index_select(0, listed), v[fellows].transpose(1, 2)], 2)
            ring_keys[put], ring_values[put] = k, v
        else:
            ring_keys[put] = k[0] if n == 1 else k
            ring_values[put] = v[0] if n == 1 else v
            keys, values = ((ring_keys[at], ring_values[at]) if run
                            else (ring_keys.index_select(0, at), ring_values.index_select(0, at)))
        h = torch.addmm(h + w.proj_bias, _attend(q, keys, values, mask), w.proj)
        up = F.gelu(torch.addmm(w.up_bias, F.layer_norm(h, (width,), *w.norm2), w.up), approximate=w.act)
        h = torch.addmm(h + w.down_bias, up, w.down)
    h = F.layer_norm(h, (width,), model.norm.weight, model.norm.bias, model.norm.eps)
    out = torch.addmm(prepared.outs_bias, F.gelu(torch.addmm(prepared.heads_bias, h, prepared.heads),
                                                 approximate=prepared.act), prepared.outs)
    return out[:, :MOTION_DIM], out[:, MOTION_DIM:]
