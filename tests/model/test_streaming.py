"""The causal denoiser a frame at a time (engine/model/streaming.py): the same rows as whole passes."""
import numpy as np
import pytest
import torch

from engine.model.conditions import batch_conditions
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.diffusion import NUM_STEPS
from engine.model.motion import MOTION_DIM
from engine.model.streaming import KVCache, rope_at, rotate, step
from engine.model.denoiser import rope


def small_model(causal: bool = True) -> Denoiser:
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=64, layers=3, heads=4, mlp=128, window=16, causal=causal)).eval()
    with torch.no_grad():  # gates start at zero (every block the identity): open them
        for name, p in model.named_parameters():
            if "gate" in name:
                p.normal_(0.0, 0.5)
    return model


def stream_frames(model: Denoiser, length: int, seed: int) -> torch.Tensor:
    """(length, width) embed_frames of random landmark frames, some landmarks and frames missing."""
    rng = np.random.default_rng(seed)
    visible = rng.random((length, 33)) > 0.2
    visible[rng.random(length) < 0.1] = False
    cond = {"keypoints": rng.normal(0.0, 0.5, (length, 33, 2)), "visible": visible,
            "box": rng.normal(0.0, 0.3, (length, 3)), "has_box": visible.any(1)}
    with torch.no_grad():
        return model.embed_frames(batch_conditions([cond], "cpu"))[0]


def whole_pass(model: Denoiser, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Denoiser.forward in estimation mode over the whole stream `frames` (L, width)."""
    with torch.no_grad():
        x0, logits = model(torch.zeros(1, len(frames), MOTION_DIM), torch.tensor([NUM_STEPS - 1]), None, frames[None])
    return x0[0], logits[0]


def test_each_frame_alone_equals_a_whole_pass_over_the_stream():
    """Across many window slides (80 frames through a 16-frame window, 3 layers)."""
    model = small_model()
    frames = stream_frames(model, 80, seed=1)
    cache = KVCache(model.cfg, batch=1)
    rows = [step(model, cache, frames[i:i + 1]) for i in range(len(frames))]
    x0, logits = whole_pass(model, frames)
    torch.testing.assert_close(torch.cat([r[0] for r in rows]), x0, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.cat([r[1] for r in rows]), logits, atol=1e-5, rtol=0)
    assert int(cache.count[0]) == 80


def test_streams_in_one_batch_join_leave_and_reset_independently():
    """Three streams in a 4-row cache, stepped together whenever they have a frame: each gets what
    it would alone; a reset stream starts over as a new one."""
    model = small_model()
    streams = {0: stream_frames(model, 40, seed=2), 2: stream_frames(model, 25, seed=3),
               3: stream_frames(model, 30, seed=4)}
    starts = {0: 0, 2: 10, 3: 5}   # the tick at which each joins
    reset_at = {3: 12}             # stream 3 starts over after its 12th frame
    cache = KVCache(model.cfg, batch=4)
    got = {k: [] for k in streams}
    for tick in range(50):
        active = [k for k in streams if 0 <= tick - starts[k] < len(streams[k])]
        if not active:
            continue
        for k in active:
            if reset_at.get(k) == tick - starts[k]:
                cache.reset([k])
                got[k] = []
        rows = torch.tensor(active)
        x0, _ = step(model, cache, torch.stack([streams[k][tick - starts[k]] for k in active]), rows)
        for k, row in zip(active, x0):
            got[k].append(row)
    for k, frames in streams.items():
        own = frames[reset_at.get(k, 0):]
        torch.testing.assert_close(torch.stack(got[k]), whole_pass(model, own)[0], atol=1e-5, rtol=0)


def test_rope_at_is_the_tables_rows_and_stays_relative_hours_into_a_stream():
    cos, sin = rope(50, 16)
    at_cos, at_sin = rope_at(torch.arange(50), 16)
    torch.testing.assert_close(at_cos, cos, atol=1e-6, rtol=0)
    torch.testing.assert_close(at_sin, sin, atol=1e-6, rtol=0)
    q, k = torch.randn(1, 2, 16), torch.randn(1, 2, 16)
    for far in (10 ** 6, 10 ** 8):  # 9 hours and 38 days at 30 fps
        near = (rotate(q, *rope_at(torch.tensor([7]), 16)) * rotate(k, *rope_at(torch.tensor([0]), 16))).sum(-1)
        at = (rotate(q, *rope_at(torch.tensor([far + 7]), 16)) * rotate(k, *rope_at(torch.tensor([far]), 16))).sum(-1)
        torch.testing.assert_close(at, near, atol=1e-5, rtol=0)


def test_a_window_model_is_refused():
    model = small_model(causal=False)
    with pytest.raises(ValueError, match="only a causal denoiser"):
        step(model, KVCache(model.cfg, batch=1), torch.zeros(1, 64))
