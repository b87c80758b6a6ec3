"""Many streams in one batch (engine/live/batch.py): each gets the poses an engine of its own gives."""
import dataclasses

import numpy as np
import pytest
import torch

from configs.config import EngineConfig
from engine.body.body_model import load_default_body
from engine.live.batch import StreamBatch
from engine.live.engine import LiveEngine
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.motion import Normalizer
from streamer.packets import LandmarkPacket

W, H = 640, 480
CFG = dataclasses.replace(EngineConfig(), prompt="", window=24)


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=32, layers=2, heads=2, mlp=64, window=24, dropout=0.0, causal=True))
    for p in model.parameters():  # open the zero gates, so the blocks do something
        if p.dim() == 1 and not p.any():
            torch.nn.init.normal_(p, std=0.5)
    return model.eval(), Normalizer(torch.zeros(144), torch.full((144,), 0.05)), load_default_body()


def stream(seed: int, n: int, fps: float, missing=()) -> list[LandmarkPacket]:
    """A person of its own (seeded) swaying; frames in `missing` have no detection."""
    rng = np.random.default_rng(seed)
    base = np.stack([rng.uniform(250, 390, 33), rng.uniform(80, 420, 33)], -1)
    return [LandmarkPacket.empty(i, i / fps, W, H) if i in missing else
            LandmarkPacket(i, i / fps, W, H, (base + [10 * np.sin(i / (5 + seed)), 0]).astype(np.float32),
                           np.full(33, 0.9, np.float32)) for i in range(n)]


def same_poses(a, b) -> None:
    """The same frames and sources, and values to float32 rounding (a batch of N rows and a batch of
    one take different BLAS paths): 1e-4 rad, 0.1 mm."""
    assert [(f.frame_id, f.source) for f in a] == [(f.frame_id, f.source) for f in b]
    for x, y in zip(a, b):
        for key in ("root", "pose_aa", "pose_quat", "joints", "joints_cam", "contacts"):
            np.testing.assert_allclose(getattr(x, key), getattr(y, key), atol=1e-4, rtol=0, err_msg=key)


def chunks(packets: list[LandmarkPacket], every: int = 0) -> list[list[LandmarkPacket]]:
    """One packet a tick, and with `every`, two at once every that many ticks (a stream catching up)."""
    out, i = [], 0
    while i < len(packets):
        n = 2 if every and len(out) % every == every - 1 else 1
        out.append(packets[i:i + n])
        i += n
    return out


def test_streams_joining_and_leaving_get_the_poses_of_engines_of_their_own(parts):
    """Four streams in a 3-row batch: one at 20 fps (two model frames per frame) that now and then
    sends two frames at once, one occluded for a while (generated, then blended back), one with a
    lag, and a fourth that takes the row the first one left."""
    plans = {  # key: (chunks of packets, first tick, fps, config changes)
        "a": (chunks(stream(1, 60, 30.0)), 0, 30.0, {}),
        "b": (chunks(stream(2, 80, 20.0), every=7), 5, 20.0, {}),
        "c": (chunks(stream(3, 70, 30.0, missing=range(20, 40))), 10, 30.0, {"lag": 3}),
        "d": (chunks(stream(4, 40, 30.0)), 61, 30.0, {}),
    }
    batch = StreamBatch(*parts, CFG, capacity=3)
    got = {key: [] for key in plans}
    for tick in range(120):
        due = {}
        for key, (parts_of, start, fps, changes) in plans.items():
            i = tick - start
            if i == 0:
                engine = batch.join(key, fps=fps)
                engine.set_lag(changes.get("lag", 0))
            if 0 <= i < len(parts_of):
                due[key] = parts_of[i]
            elif i == len(parts_of):
                got[key] += batch.leave(key)
        for key, poses in batch.tick(due).items():
            got[key] += poses
    assert batch.streams == {} and sorted(batch._free) == [0, 1, 2]
    for key, (parts_of, _, fps, changes) in plans.items():
        alone = LiveEngine(*parts, dataclasses.replace(CFG, **changes), fps=fps)
        want = [pose for chunk in parts_of for pose in alone.push(chunk)] + alone.flush()
        same_poses(got[key], want)
    assert {f.source for f in got["c"]} >= {"generated", "blended", "estimated"}


def test_a_full_batch_and_a_taken_name_are_refused(parts):
    batch = StreamBatch(*parts, CFG, capacity=1)
    batch.join("a")
    with pytest.raises(ValueError, match="already joined"):
        batch.join("a")
    with pytest.raises(ValueError, match="full"):
        batch.join("b")
    window_model = Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64))
    with pytest.raises(ValueError, match="causal"):
        StreamBatch(window_model, parts[1], parts[2], CFG, capacity=1)
