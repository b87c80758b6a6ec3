"""The denoiser: one small GENMO-style transformer over a window of frames (GEM_NOTES §2).

Per frame, the conditions are embedded separately and added (additive fusion): the 33 MediaPipe
landmarks (box-normalised; a missing landmark is a learned per-landmark token, never zeros), the
person's box, the presence of a text; plus the diffusion step. That sum is concatenated with the
noisy motion and projected to the model width. Then `layers` blocks, each an optional text block
(cross-attention from frames to the tokens of each text, only inside that text's time window, the
texts' outputs summed) followed by a RoPE self-attention block over frame index with a sliding
window (or, causal, over the frames before: engine.model.streaming runs such a model a frame at a
time). Residual branches start at zero (learned gates), so every block starts as the identity.
Two heads: the clean motion x0 (engine.model.motion, normalised) and contact logits.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.motion import MOTION_DIM
from streamer.landmarks import NUM_LANDMARKS

NUM_CONTACTS = 6
TEXT_DIM = 384  # all-MiniLM-L6-v2 token embeddings


@dataclass
class ModelConfig:
    width: int = 256
    layers: int = 6
    heads: int = 4
    mlp: int = 1024
    window: int = 120          # sliding attention window, frames
    causal: bool = False       # each frame attends only to itself and the window - 1 before it (streamable)
    landmark_dim: int = 32     # per-landmark embedding before the landmark MLP
    text_blocks: bool = True
    dropout: float = 0.1


@dataclass
class Conditions:
    """What the denoiser is told, per window. B windows of L frames.

    keypoints: (B, L, 33, 2) landmarks normalised by the box, 2 (xy - centre) / size.
    visible: (B, L, 33) bool, False where a landmark is missing (or the frame has no detection).
    box: (B, L, 3) [(cx - W/2) / f, (cy - H/2) / f, size / f] with the told focal length f.
    has_box: (B, L) bool. text: (B, K, Lt, 384) token embeddings of K texts or None;
    text_mask: (B, K, Lt) bool real tokens; text_frames: (B, K, L) bool frames each text drives.
    """

    keypoints: torch.Tensor
    visible: torch.Tensor
    box: torch.Tensor
    has_box: torch.Tensor
    text: torch.Tensor | None = None
    text_mask: torch.Tensor | None = None
    text_frames: torch.Tensor | None = None


def sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer steps -> (B, dim) sinusoidal embedding (base 10000)."""
    half = dim // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angle = t.float()[:, None] * freq
    return torch.cat([angle.sin(), angle.cos()], -1)


def rope(length: int, head_dim: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) tables (L, head_dim) of rotary position embedding over frame index, pairs of
    adjacent channels (2j, 2j + 1) at frequency 10000^(-2j / head_dim)."""
    freq = 10000.0 ** (-torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    angle = torch.arange(length, device=device).float()[:, None] * freq
    angle = angle.repeat_interleave(2, -1)
    return angle.cos(), angle.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (..., L, head_dim) queries or keys by position."""
    pairs = x.unflatten(-1, (-1, 2))
    rotated = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)
    return x * cos + rotated * sin


def window_mask(length: int, window: int, device=None, causal: bool = False) -> torch.Tensor | None:
    """(L, L) bool, True where frame i may attend frame j: `window` frames around i, shifted at the
    ends so that every frame sees exactly `window` frames; None (full attention) when L <= window.
    causal: frame i and the window - 1 frames before it (fewer at the start)."""
    i = torch.arange(length, device=device)
    if causal:
        return (i[None] <= i[:, None]) & (i[None] > i[:, None] - window)
    if length <= window:
        return None
    start = (i - window // 2).clamp(0, length - window)
    j = torch.arange(length, device=device)
    return (j[None] >= start[:, None]) & (j[None] < start[:, None] + window)


class Mlp(nn.Sequential):
    def __init__(self, dim_in: int, hidden: int, dim_out: int, dropout: float = 0.0):
        super().__init__(nn.Linear(dim_in, hidden), nn.GELU(approximate="tanh"), nn.Dropout(dropout),
                         nn.Linear(hidden, dim_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Its layers as functions: calling four modules cost more than their arithmetic on the
        # live engine's one row a frame.
        first, act, drop, last = self
        h = F.dropout(F.gelu(F.linear(x, first.weight, first.bias), approximate=act.approximate), drop.p, self.training)
        return F.linear(h, last.weight, last.bias)


class SelfAttentionBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.heads
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width, eps=1e-6), nn.LayerNorm(cfg.width, eps=1e-6)
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.mlp = Mlp(cfg.width, cfg.mlp, cfg.width, cfg.dropout)
        self.gate1 = nn.Parameter(torch.zeros(cfg.width))
        self.gate2 = nn.Parameter(torch.zeros(cfg.width))
        self.dropout = cfg.dropout

    def forward(self, h, cos, sin, mask):
        B, L, D = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(B, L, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        a = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        h = h + self.gate1 * self.proj(a.transpose(1, 2).reshape(B, L, D))
        return h + self.gate2 * self.mlp(self.norm2(h))


class TextBlock(nn.Module):
    """Multi-text injection: each text's cross-attention reaches only the frames of its window;
    the texts' contributions are summed (GENMO Eq. 2-3)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(cfg.width, eps=1e-6), nn.LayerNorm(cfg.width, eps=1e-6)
        self.attn = nn.MultiheadAttention(cfg.width, cfg.heads, dropout=cfg.dropout, batch_first=True)
        self.mlp = Mlp(cfg.width, cfg.mlp, cfg.width, cfg.dropout)
        self.gate1 = nn.Parameter(torch.zeros(cfg.width))
        self.gate2 = nn.Parameter(torch.zeros(cfg.width))

    def forward(self, h, text, text_mask, text_frames):
        B, L, D = h.shape
        K = text.shape[1]
        q = self.norm1(h)[:, None].expand(B, K, L, D).reshape(B * K, L, D)
        out, _ = self.attn(q, text.reshape(B * K, -1, D), text.reshape(B * K, -1, D),
                           key_padding_mask=~text_mask.reshape(B * K, -1), need_weights=False)
        out = (out.view(B, K, L, D) * text_frames[..., None]).sum(1)
        h = h + self.gate1 * out
        # Frames no text reaches pass through untouched, exactly as with no text at all.
        return h + self.gate2 * self.mlp(self.norm2(h)) * text_frames.any(1)[..., None]


class Denoiser(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        D = cfg.width
        self.landmark = nn.Linear(2, cfg.landmark_dim)
        self.missing = nn.Parameter(torch.randn(NUM_LANDMARKS, cfg.landmark_dim) * 0.02)
        self.landmarks = Mlp(NUM_LANDMARKS * cfg.landmark_dim, 2 * D, D)
        self.box = Mlp(4, D, D)
        self.text_present = nn.Parameter(torch.zeros(D))
        self.time = Mlp(D, D, D)
        self.text_proj = nn.Linear(TEXT_DIM, D)
        self.inp = nn.Linear(MOTION_DIM + D, D)
        self.blocks = nn.ModuleList(SelfAttentionBlock(cfg) for _ in range(cfg.layers))
        self.text_blocks = nn.ModuleList(TextBlock(cfg) for _ in range(cfg.layers)) if cfg.text_blocks else None
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.x0_head = Mlp(D, D, MOTION_DIM)
        self.contact_head = Mlp(D, D, NUM_CONTACTS)

    def embed_frames(self, c: Conditions) -> torch.Tensor:
        """(B, L, width): the landmark and box embeddings of each frame, which depend on that frame
        alone (a caller that slides a window over a stream can keep each frame's)."""
        lm = torch.where(c.visible[..., None], self.landmark(c.keypoints), self.missing)
        f = self.landmarks(lm.flatten(-2))
        return f + self.box(torch.cat([c.box * c.has_box[..., None], c.has_box[..., None].float()], -1))

    def embed_conditions(self, c: Conditions, frames: torch.Tensor | None = None) -> torch.Tensor:
        """(B, L, width): the sum of the per-frame condition embeddings; `frames`, when given, is
        embed_frames(c) already made."""
        f = self.embed_frames(c) if frames is None else frames
        if c.text is not None:
            f = f + self.text_present * c.text_frames.any(1)[..., None]
        return f

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, c: Conditions | None,
                frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t (B, L, 144) noisy normalised motion at steps t (B,) -> x0 (B, L, 144), contact
        logits (B, L, 6). frames: (B, L, width) embed_frames of the window's conditions, when the
        caller keeps each frame's (the live engine); c's landmark and box fields are then not read,
        and c may be None (no text)."""
        B, L, _ = x_t.shape
        f = frames if c is None else self.embed_conditions(c, frames)
        f = f + self.time(sinusoid(t, self.cfg.width))[:, None]
        h = self.inp(torch.cat([x_t, f], -1))
        cos, sin = rope(L, self.cfg.width // self.cfg.heads, h.device)
        mask = window_mask(L, self.cfg.window, h.device, self.cfg.causal)
        use_text = c is not None and c.text is not None and self.text_blocks is not None and bool(c.text_frames.any())
        text = self.text_proj(c.text) if use_text else None
        for i, block in enumerate(self.blocks):
            if use_text:
                h = self.text_blocks[i](h, text, c.text_mask, c.text_frames)
            h = block(h, cos, sin, mask)
        h = self.norm(h)
        return self.x0_head(h), self.contact_head(h)

    def config_dict(self) -> dict:
        return asdict(self.cfg)


def deepen(model: Denoiser, layers: int) -> Denoiser:
    """A copy of `model` with `layers` blocks: its own blocks, in order and spread evenly, and new
    ones between them. New blocks start with zero gates (the identity), so the deeper model computes
    exactly what `model` does until training moves them: more capacity without starting over."""
    if not isinstance(model, Denoiser):
        raise ValueError(f"only a denoiser can be deepened, not a {type(model).__name__}")
    old = model.cfg.layers
    if layers < old:
        raise ValueError(f"cannot deepen a {old}-layer model to {layers} layers")
    deeper = Denoiser(replace(model.cfg, layers=layers)).to(next(model.parameters()).device)
    slots = [i * layers // old for i in range(old)]  # where the old blocks go; 4 -> 6: 0 1 3 4
    state = {}
    for key, value in model.state_dict().items():
        kind, _, rest = key.partition(".")
        if kind in ("blocks", "text_blocks"):
            index, _, name = rest.partition(".")
            key = f"{kind}.{slots[int(index)]}.{name}"
        state[key] = value
    fresh = deeper.state_dict()
    fresh.update(state)
    deeper.load_state_dict(fresh)
    return deeper
