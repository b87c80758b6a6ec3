"""Denoiser and live-engine speed, four tables from one run.

Window passes: one 120-frame window, batch 1, for 1, 2 and 5 DDIM steps (1 = estimation mode), for
the design size (256 wide, 6 layers) and a smaller one (192 wide, 4 layers) side by side; with
--model, that checkpoint too; and each at 1 step with mirror averaging (engine.model.mirror: the
window and its mirror image in one batch of 2). Random weights time the same as trained ones. Text
blocks are not run: a window with no text skips them.

Per frame: LiveEngine.push([packet]) one packet at a time at 30 fps, after a warm-up that fills the
window, p50 and p95; for a window pass and the cached causal path (engine.model.streaming), the
same weights under each mask (masked_copy), each at 1 and 2 torch
threads; beside each, the model's own part: one window forward pass, or one streaming.step.

Rare paths: the cached causal engine per frame (1 thread) where it runs window passes after all:
the person out of view (generation: a plan sampled every `generation_horizon` frames, then read
off), coming back (the blend), 2 DDIM steps, and mirror averaging; p50, p95 and the slowest push.

Streams: one tick that gives each of N streams one new frame through the causal model, model only
(the N frames embedded, then one streaming.step for N rows, every cache full) and the whole engine
(engine.live.batch.StreamBatch.tick: landmarks in, poses out, after a warm-up that fills every
window); for a few N, and the most N whose tick fits a 30 fps frame (doubling, then bisection).

    genmo-live bench engine [--threads 2] [--repeats 50] [--frames 300] [--model PATH]
                            [--streams 1,8,32,128] [--max-streams 4096]
"""
from __future__ import annotations

import dataclasses
import itertools
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from bench.timing import median_ms
from configs.config import ConfigError, EngineConfig
from engine.body.body_model import Body, load_default_body
from engine.live.batch import StreamBatch
from engine.live.engine import LiveEngine
from engine.model.checkpoint import load_model
from engine.model.denoiser import Conditions, Denoiser, ModelConfig
from engine.model.diffusion import NUM_STEPS, cosine_alpha_bar, ddim
from engine.model.mirror import mirror_averaged
from engine.model.motion import MOTION_DIM, Normalizer
from engine.model.streaming import KVCache, embed_rows, step
from engine.paths import WEIGHTS_PATH
from streamer.packets import LandmarkPacket

WINDOW = 120
STEPS = (1, 2, 5)
SIZES = {"256 wide, 6 layers (design)": ModelConfig(), "192 wide, 4 layers": ModelConfig(width=192, layers=4, mlp=768)}
FPS = 30.0
FRAME_MS = 1000.0 / FPS
LIVE_THREADS = (1, 2)
WARMUP_FRAMES = 150       # more than the 120-frame window, so every timed push sees a full one
STREAMS = (1, 8, 32, 128)
MAX_STREAMS = 4096        # the search's ceiling: 4096 full caches of the bundled model are 3 GB
ENGINE_CONFIG = dataclasses.replace(EngineConfig(), prompt="")  # the defaults; no prompt, so no text model


def _conditions(g: torch.Generator, batch: int = 1, length: int = WINDOW) -> Conditions:
    return Conditions(keypoints=torch.randn(batch, length, 33, 2, generator=g),
                      visible=torch.rand(batch, length, 33, generator=g) > 0.2,
                      box=torch.randn(batch, length, 3, generator=g),
                      has_box=torch.ones(batch, length, dtype=torch.bool))


def _frame_conditions(g: torch.Generator, frames: int) -> dict[str, np.ndarray]:
    """landmark_conditions' fields of `frames` random frames, as the live engine embeds them."""
    c = _conditions(g, length=frames)
    return {"keypoints": c.keypoints[0].numpy(), "visible": c.visible[0].numpy(), "box": c.box[0].numpy(),
            "has_box": c.has_box[0].numpy()}


def swaying_packet(i: int, fps: float = FPS, width: int = 640, height: int = 480) -> LandmarkPacket:
    """Frame i of one person swaying side to side (10 px, period 2 s) in the middle of the image,
    every landmark seen, captured at i / fps seconds."""
    j = np.arange(33)
    x = width * (0.5 + 0.1 * np.sin(j)) + 10 * np.sin(np.pi * i / fps)
    y = height * (0.15 + 0.75 * j / 32)
    keypoints = np.stack([x, y], -1).astype(np.float32)
    return LandmarkPacket(i, i / fps, width, height, keypoints, np.full(33, 0.9, np.float32))


def masked_copy(model: Denoiser, causal: bool) -> Denoiser:
    """The same weights under the causal mask (run a row at a time) or the sliding window (run a
    window a frame). A pass's time does not depend on which mask the weights were trained with, so
    any checkpoint times both paths."""
    copy = Denoiser(dataclasses.replace(model.cfg, causal=causal))
    copy.load_state_dict(model.state_dict())
    return copy.eval()


def window_rows(repeats: int = 50, model_path: str | None = None) -> list[dict]:
    """Rows of {case, params_m, steps, ms} (median ms per 120-frame window)."""
    models = {name: (Denoiser(cfg).eval(), Normalizer()) for name, cfg in SIZES.items()}
    if model_path:
        models[f"checkpoint {model_path}"] = load_model(model_path)[:2]
    g = torch.Generator().manual_seed(0)
    cond = _conditions(g)
    alpha_bar = cosine_alpha_bar()
    rows = []
    x = torch.zeros(1, WINDOW, MOTION_DIM)
    for name, (model, norm) in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        cases = [(name, model, steps) for steps in STEPS] + [(f"{name}, mirror-averaged", mirror_averaged(model, norm), 1)]
        for case, run_model, steps in cases:
            def window():
                with torch.inference_mode():
                    ddim(lambda x_t, t: run_model(x_t, t, cond)[0], x, steps, alpha_bar)

            rows.append({"case": case, "params_m": round(params, 2), "steps": steps,
                         "ms": round(median_ms(window, repeats), 2)})
    return rows


def push_ms(model: Denoiser, norm: Normalizer, body: Body, frames: int, warmup: int = WARMUP_FRAMES,
            cfg: EngineConfig = ENGINE_CONFIG, packet: Callable[[int], LandmarkPacket] | None = None) -> list[float]:
    """ms of each LiveEngine.push([packet]) of `frames` packets at 30 fps, after `warmup` untimed
    ones: swaying_packet, or packet(i) for the timed ones."""
    engine = LiveEngine(model, norm, body, cfg, fps=FPS)
    times = []
    for i in range(warmup + frames):
        packet_i = packet(i) if packet and i >= warmup else swaying_packet(i)
        t0 = time.perf_counter()
        engine.push([packet_i])
        if i >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    return times


def window_pass(model: Denoiser, window: int = WINDOW) -> Callable[[], None]:
    """One estimation pass as the live engine's window path runs it: the new frame embedded, then
    the model over the window's kept embeddings at the last diffusion step."""
    g = torch.Generator().manual_seed(0)
    new, frames = _frame_conditions(g, 1), torch.randn(1, window, model.cfg.width, generator=g)
    x, t = torch.zeros(1, window, MOTION_DIM), torch.tensor([NUM_STEPS - 1])

    @torch.inference_mode()
    def run():
        embed_rows(model, new)
        model(x, t, None, frames)
    return run


def stream_tick(model: Denoiser, streams: int) -> Callable[[], None]:
    """One tick of `streams` streams through the causal `model`: their new frames embedded, then
    one streaming.step for all of them. Every cache starts full, as in a stream past its first
    `window` frames, where a step attends the most keys."""
    cache = KVCache(model.cfg, streams)
    cache.count[:] = model.cfg.window
    new = _frame_conditions(torch.Generator().manual_seed(0), streams)

    @torch.inference_mode()
    def run():
        step(model, cache, embed_rows(model, new))
    return run


def batch_tick(model: Denoiser, norm: Normalizer, body: Body, streams: int, warmup: int = WARMUP_FRAMES
               ) -> Callable[[], None]:
    """One StreamBatch.tick of `streams` live engines on the causal `model`, a new packet each, after
    `warmup` ticks that fill every stream's window: the whole engine, landmarks in, poses out."""
    batch = StreamBatch(model, norm, body, ENGINE_CONFIG, capacity=streams)
    for key in range(streams):
        batch.join(key, fps=FPS)
    frame = itertools.count()

    def run():
        packet = swaying_packet(next(frame))
        batch.tick({key: [packet] for key in range(streams)})
    for _ in range(warmup):
        run()
    return run


def per_frame_rows(model: Denoiser, norm: Normalizer, body: Body, repeats: int = 50, frames: int = 300,
                   warmup: int = WARMUP_FRAMES, threads: tuple[int, ...] = LIVE_THREADS) -> list[dict]:
    """Rows of {path, threads, engine_p50_ms, engine_p95_ms, model_ms} for `model`'s weights run a
    window at a time and a row at a time (masked_copy: a causal checkpoint's live engine would take
    the cached path for both), at each thread count. model_ms: median of `repeats` window_pass or
    one-stream stream_tick."""
    window, causal = masked_copy(model, causal=False), masked_copy(model, causal=True)
    paths = {"window pass": (window, window_pass(window)),
             "cached causal step": (causal, stream_tick(causal, 1))}
    before = torch.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            for path, (m, model_part) in paths.items():
                times = push_ms(m, norm, body, frames, warmup)
                rows.append({"path": path, "threads": n, "engine_p50_ms": round(float(np.percentile(times, 50)), 2),
                             "engine_p95_ms": round(float(np.percentile(times, 95)), 2),
                             "model_ms": round(median_ms(model_part, repeats), 2)})
    finally:
        torch.set_num_threads(before)
    return rows


def rare_path_rows(causal: Denoiser, norm: Normalizer, body: Body, frames: int = 300,
                   warmup: int = WARMUP_FRAMES) -> list[dict]:
    """Rows of {case, engine_p50_ms, engine_p95_ms, engine_max_ms} for the cached causal engine at
    1 thread: estimating (the cached path itself), the person out of view for `frames` frames,
    coming back after 60 frames out of view (blended), 2 DDIM steps, mirror-averaged."""
    def out_of_view(i):
        return LandmarkPacket.empty(i, i / FPS, 640, 480)

    def back_after_60(i):
        return out_of_view(i) if i < warmup + 60 else swaying_packet(i)

    cases = [("estimating (cached)", ENGINE_CONFIG, None),
             ("out of view: generating", ENGINE_CONFIG, out_of_view),
             ("back after 2 s out of view: blending, then estimating", ENGINE_CONFIG, back_after_60),
             ("2 DDIM steps (window passes)", dataclasses.replace(ENGINE_CONFIG, steps=2), None),
             ("mirror-averaged (window passes)", dataclasses.replace(ENGINE_CONFIG, mirror_average=True), None)]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        for case, cfg, packet in cases:
            times = push_ms(causal, norm, body, frames, warmup, cfg, packet)
            rows.append({"case": case, "engine_p50_ms": round(float(np.percentile(times, 50)), 2),
                         "engine_p95_ms": round(float(np.percentile(times, 95)), 2),
                         "engine_max_ms": round(float(np.max(times)), 2)})
    finally:
        torch.set_num_threads(before)
    return rows


def largest_fitting(fits: Callable[[int], bool], cap: int = MAX_STREAMS) -> int:
    """The largest n in 1..cap with fits(n), for a fits that holds up to some n and not beyond; 0
    when fits(1) does not hold. Doubling finds a bracket, bisection closes it: about 2 log2(n) calls."""
    if not fits(1):
        return 0
    lo = 1
    while lo < cap and fits(hi := min(2 * lo, cap)):
        lo = hi
    if lo == cap:
        return cap
    while hi - lo > 1:  # fits(lo), not fits(hi)
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def stream_rows(model: Denoiser, norm: Normalizer, body: Body, repeats: int = 50, streams: tuple[int, ...] = STREAMS,
                cap: int = MAX_STREAMS, warmup: int = WARMUP_FRAMES) -> tuple[list[dict], list[dict]]:
    """For the causal `model`, model only (stream_tick) and the whole engine (batch_tick): rows of
    {tick, streams, tick_ms, stream_frames_per_s} (median tick of `repeats`), and per kind of tick
    {tick, streams, tick_ms}: the most streams whose tick takes at most a 30 fps frame (33.3 ms),
    searched up to `cap`."""
    ticks = {"model only: embed_rows + streaming.step": lambda n: stream_tick(model, n),
             "whole engine: StreamBatch.tick": lambda n: batch_tick(model, norm, body, n, warmup)}
    rows, largest = [], []
    for name, tick in ticks.items():
        timed: dict[int, float] = {}

        def tick_ms(n: int) -> float:
            if n not in timed:
                timed[n] = median_ms(tick(n), repeats)
            return timed[n]

        rows += [{"tick": name, "streams": n, "tick_ms": round(tick_ms(n), 2),
                  "stream_frames_per_s": round(n / tick_ms(n) * 1e3, 1)} for n in streams]
        n = largest_fitting(lambda n: tick_ms(n) <= FRAME_MS, cap)
        largest.append({"tick": name, "streams": n, "tick_ms": round(tick_ms(n), 2) if n else None})
    return rows, largest


def run(repeats: int = 50, model_path: str | None = None, weights: str | Path = WEIGHTS_PATH, frames: int = 300,
        streams: tuple[int, ...] = STREAMS, max_streams: int = MAX_STREAMS) -> dict:
    """All four tables: {windows, per_frame, rare_paths, streams, streams_at_30fps}; the per-frame and stream
    rows with `weights`, window and stream rows at the caller's threads."""
    model, norm, _ = load_model(weights)
    if not isinstance(model, Denoiser):
        raise ConfigError(f"bench engine: {weights} holds a {type(model).__name__}, not a denoiser")
    body = load_default_body()
    windows = window_rows(repeats, model_path)
    per_frame = per_frame_rows(model, norm, body, repeats, frames)
    causal = masked_copy(model, causal=True)
    rare = rare_path_rows(causal, norm, body, frames)
    streams, largest = stream_rows(causal, norm, body, repeats, streams, max_streams)
    return {"windows": windows, "per_frame": per_frame, "rare_paths": rare, "streams": streams,
            "streams_at_30fps": largest}


def format_tables(tables: dict) -> str:
    windows = ["| model | parameters | DDIM steps | ms per 120-frame window |", "|---|---|---|---|"]
    windows += [f"| {r['case']} | {r['params_m']} M | {r['steps']} | {r['ms']:.2f} |" for r in tables["windows"]]
    per_frame = ["| live engine, 1 step | torch threads | push p50 ms | push p95 ms | model only, median ms |",
                 "|---|---|---|---|---|"]
    per_frame += [f"| {r['path']} | {r['threads']} | {r['engine_p50_ms']:.2f} | {r['engine_p95_ms']:.2f} | "
                  f"{r['model_ms']:.2f} |" for r in tables["per_frame"]]
    rare = ["| cached causal engine, 1 thread | push p50 ms | push p95 ms | slowest push ms |", "|---|---|---|---|"]
    rare += [f"| {r['case']} | {r['engine_p50_ms']:.2f} | {r['engine_p95_ms']:.2f} | {r['engine_max_ms']:.2f} |"
             for r in tables["rare_paths"]]
    streams = ["| tick | streams | ms per tick | streams x frames/s |", "|---|---|---|---|"]
    streams += [f"| {r['tick']} | {r['streams']} | {r['tick_ms']:.2f} | {r['stream_frames_per_s']:.1f} |"
                for r in tables["streams"]]
    streams += [f"| {r['tick']} | **{r['streams']}**, the most at 30 fps (tick <= {FRAME_MS:.1f} ms) | "
                + (f"{r['tick_ms']:.2f} | {r['streams'] / r['tick_ms'] * 1e3:.1f} |" if r["streams"] else "— | — |")
                for r in tables["streams_at_30fps"]]
    return "\n\n".join("\n".join(t) for t in (windows, per_frame, rare, streams))
