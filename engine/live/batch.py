"""Many live streams, one batched call of the denoiser per tick: the core a multi-user server and a
GPU sit on.

Each stream is a LiveEngine of its own (window, filters, trajectory, prompt, occlusion state) whose
causal denoiser cache is one row of a cache the batch shares (engine.model.streaming.KVCache).
A tick adds every stream's new frames, puts all their new slots through the denoiser together
(engine.live.engine.stream_slots: one call per frame of the stream with the most new frames, N
rows each), decodes every stream's due frames in one engine.live.decode.decode_rows, and lets each
stream finish its poses (its pelvis path and foot lock). Streams join and leave at any time; a stream's
poses are those it would get from an engine of its own (tests/live/test_batch.py).

    batch = StreamBatch(model, norm, body, cfg, capacity=128)
    batch.join("alice", fps=30.0)
    poses = batch.tick({"alice": [packet]})    # {"alice": [PoseFrame, ...]}
    batch.leave("alice")
"""
from __future__ import annotations

from collections.abc import Hashable

from engine.body.body_model import Body
from engine.live.engine import LiveEngine, decode_due, stream_slots
from engine.live.pose_frame import PoseFrame
from engine.model.denoiser import Denoiser
from engine.model.motion import Normalizer
from engine.model.streaming import KVCache
from streamer.packets import LandmarkPacket


class StreamBatch:
    """Up to `capacity` streams of one causal denoiser (model.cfg.causal), keyed by any hashable
    name. cfg: the engine config every stream starts from (each may change its own prompt, steps,
    lag later); text_encoder: shared by the streams (its prompt cache too)."""

    def __init__(self, model: Denoiser, norm: Normalizer, body: Body, cfg, capacity: int, text_encoder=None):
        if not (isinstance(model, Denoiser) and model.cfg.causal):
            raise ValueError("a stream batch needs a causal denoiser (ModelConfig.causal)")
        self.model, self.norm, self.body, self.cfg = model.eval(), norm, body, cfg
        self.text_encoder = text_encoder
        self.cache = KVCache(model.cfg, capacity, next(model.parameters()).device)
        self._rest64 = body.rest_joints.double().to(self.cache.count.device)
        self._free = list(range(capacity - 1, -1, -1))  # rows, the lowest handed out first
        self.streams: dict[Hashable, LiveEngine] = {}

    def join(self, key: Hashable, fps: float | None = None, seed: int = 0) -> LiveEngine:
        """A new stream: its engine (to steer: set_prompt, set_steps, recenter, ...). ValueError when
        the key is taken or the batch is full."""
        if key in self.streams:
            raise ValueError(f"stream {key!r} has already joined")
        if not self._free:
            raise ValueError(f"the batch is full ({len(self.streams)} streams)")
        row = self._free.pop()
        self.cache.reset([row])
        engine = LiveEngine(self.model, self.norm, self.body, self.cfg, self.text_encoder, fps, seed,
                            cache=(self.cache, row))
        self.streams[key] = engine
        return engine

    def leave(self, key: Hashable) -> list[PoseFrame]:
        """End a stream: the poses its lag still held (its engine's flush), and its row is free."""
        engine = self.streams.pop(key)
        poses = engine.flush()
        self._free.append(engine.cache_row)
        return poses

    def tick(self, packets: dict[Hashable, list[LandmarkPacket]]) -> dict[Hashable, list[PoseFrame]]:
        """Each named stream's new frames (oldest first) -> the poses each now has due."""
        engines = {key: self.streams[key] for key in packets}
        for key, engine in engines.items():
            engine.add(packets[key])
        stream_slots(self.model, self.cache,
                     [(e.take_uncached(), e.cache_row, e.legs_text()) for e in engines.values()])
        due = {key: engine.take_due() for key, engine in engines.items()}
        every = [d for frames in due.values() for d in frames]
        poses = decode_due(every, self.norm, self._rest64, self.body.parents) if every else {}
        out, start = {}, 0
        for key, frames in due.items():
            end = start + len(frames)
            out[key] = engines[key].finish(frames, {k: v[start:end] for k, v in poses.items()})
            start = end
        return out
