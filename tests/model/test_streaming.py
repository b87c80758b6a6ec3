"""The causal denoiser a frame at a time (engine/model/streaming.py): the same rows as whole passes."""
import numpy as np
import pytest
import torch

from engine.model.conditions import batch_conditions
from engine.model.denoiser import Conditions, Denoiser, ModelConfig
from engine.model.diffusion import NUM_STEPS
from engine.model.motion import MOTION_DIM
from engine.model.streaming import KVCache, embed_rows, rope_at, step
from engine.model.denoiser import apply_rope, rope


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


def test_a_text_on_some_frames_equals_a_whole_pass_with_it_on_those_frames():
    """Each row's text reaches that row alone (the legs prompt on the frames whose legs are hidden);
    rows it is off for are as with no text."""
    model = small_model()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("text_blocks") and "gate" in name or name == "text_present":
                p.normal_(0.0, 0.5)
    frames = stream_frames(model, 30, seed=5)
    g = torch.Generator().manual_seed(0)
    tokens, mask = torch.randn(1, 7, 384, generator=g), torch.arange(7)[None] < 5
    on = torch.zeros(30, dtype=torch.bool)
    on[8:20] = True
    cache, plain = KVCache(model.cfg, batch=1), KVCache(model.cfg, batch=1)
    rows = torch.cat([step(model, cache, frames[i:i + 1], text=(tokens, mask, on[i:i + 1]))[0] for i in range(30)])
    none = torch.cat([step(model, plain, frames[i:i + 1])[0] for i in range(30)])
    c = Conditions(None, None, None, None, text=tokens[:, None], text_mask=mask[:, None], text_frames=on[None, None])
    with torch.no_grad():
        x0, _ = model(torch.zeros(1, 30, MOTION_DIM), torch.tensor([NUM_STEPS - 1]), c, frames[None])
    torch.testing.assert_close(rows, x0[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(rows[:8], none[:8], atol=0, rtol=0)
    assert (rows[8:20] - none[8:20]).abs().max() > 1e-2


def test_several_frames_of_a_stream_in_one_step_equal_them_one_at_a_time():
    """Streams 0 and 2 get 1-4 frames a tick in one call (a 20 fps camera's two model frames, a
    backlog), stream 1 one: from the first frame (a partly filled ring) through many slides of the
    16-frame window, every row as in a whole pass over its stream; more than `window` frames of a
    stream in one call is refused."""
    model = small_model()
    streams = [stream_frames(model, 90, seed=s) for s in (6, 7, 8)]
    cache = KVCache(model.cfg, batch=3)
    got, at = [[], [], []], [0, 0, 0]
    rng = np.random.default_rng(0)
    while at[0] < 90:
        take = [min(int(rng.integers(1, 5)), 90 - at[0]), 1, min(int(rng.integers(1, 5)), 90 - at[2])]
        rows = [k for k in range(3) for _ in range(take[k]) if at[k] + take[k] <= 90]
        frames = torch.cat([streams[k][at[k]:at[k] + take[k]] for k in sorted(set(rows))])
        x0, _ = step(model, cache, frames, rows)
        for k, row in zip(rows, x0):
            got[k].append(row)
        for k in set(rows):
            at[k] += take[k]
    for k in range(3):
        torch.testing.assert_close(torch.stack(got[k]), whole_pass(model, streams[k][:at[k]])[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at most 16 new frames of a stream"):
        step(model, KVCache(model.cfg, batch=1), streams[0][:17], [0] * 17)


def test_rope_at_rotates_as_the_tables_and_stays_relative_hours_into_a_stream():
    """x * cos + x with its pairs swapped * signed sin (the step's RoPE) is apply_rope with
    rope's tables, and only index differences count, at any index."""
    def rotated(x, index):
        cos, signed_sin = rope_at(torch.as_tensor(index).reshape(-1), 16).unbind(1)
        return x * cos + x.unflatten(-1, (8, 2)).flip(-1).flatten(-2) * signed_sin

    x = torch.randn(50, 16)
    torch.testing.assert_close(rotated(x, torch.arange(50)), apply_rope(x, *rope(50, 16)), atol=1e-5, rtol=0)
    q, k = torch.randn(1, 16), torch.randn(1, 16)
    for far in (10 ** 6, 10 ** 8):  # 9 hours and 38 days at 30 fps
        near = (rotated(q, 7) * rotated(k, 0)).sum(-1)
        at = (rotated(q, far + 7) * rotated(k, far)).sum(-1)
        torch.testing.assert_close(at, near, atol=1e-5, rtol=0)


def test_a_window_model_is_refused():
    model = small_model(causal=False)
    with pytest.raises(ValueError, match="only a causal denoiser"):
        step(model, KVCache(model.cfg, batch=1), torch.zeros(1, 64))


def test_a_model_moved_to_another_dtype_after_a_step_steps_in_it():
    """The folded input layer follows model.to(): it was kept in the old dtype before."""
    model = small_model()
    frames = stream_frames(model, 12, seed=3)
    expected = whole_pass(model, frames)[0].double()
    step(model, KVCache(model.cfg, batch=1), frames[:1])
    model.double()
    cache = KVCache(model.cfg, batch=1, dtype=torch.float64)
    rows = torch.cat([step(model, cache, frames[i:i + 1].double())[0] for i in range(len(frames))])
    assert rows.dtype == torch.float64
    torch.testing.assert_close(rows, expected, atol=1e-5, rtol=0)


def test_embedding_rows_from_their_conditions_equals_embed_frames():
    """embed_rows's folded products give Denoiser.embed_frames, missing landmarks and frames
    without a box included."""
    model = small_model()
    rng = np.random.default_rng(5)
    visible = rng.random((20, 33)) > 0.3
    visible[4] = False
    cond = {"keypoints": rng.normal(0.0, 0.5, (20, 33, 2)).astype(np.float32), "visible": visible,
            "box": rng.normal(0.0, 0.3, (20, 3)).astype(np.float32), "has_box": visible.sum(1) >= 4}
    with torch.no_grad():
        expected = model.embed_frames(batch_conditions([cond], "cpu"))[0]
        torch.testing.assert_close(embed_rows(model, cond), expected, atol=1e-5, rtol=0)
