"""The live pipeline's speed on a clip (default: the bundled 720x720 sample), measured in one run:

- baseline: MediaPipe alone (the ingest process, its packets read and thrown away): what the
  product would cost without the engine;
- the whole pipeline unpaced (`--no-realtime`: frames as fast as they are consumed), 1 and 2 steps;
- the whole pipeline paced at the clip's own frame rate like a camera, default step count:
  dropped frames, capture->pose latency, first pose.

    genmo-live bench live [--clip PATH] [--repeats N]
"""
from __future__ import annotations

import dataclasses
import queue
import time

from clients.live import percentiles, run_live
from streamer.ingest import Ingest, IngestOptions
from streamer.packets import LandmarkPacket


def mediapipe_alone(clip: str) -> dict:
    """The ingest process unpaced, packets read as they come: frames/s and MediaPipe's time."""
    ingest = Ingest(IngestOptions(source=clip, realtime=False))
    keypoint_ms = []
    ingest.start()
    first = last = None
    try:
        while True:
            try:
                data = ingest.packets.get(timeout=0.2)
            except queue.Empty:
                try:
                    kind, _ = ingest.events.get_nowait()
                except queue.Empty:
                    continue
                if kind == "end":
                    break
                continue
            p = LandmarkPacket.from_bytes(data)
            last = time.time()
            first = first or last
            keypoint_ms.append(p.keypoint_ms)
    finally:
        ingest.stop()
    n = len(keypoint_ms)
    return {"frames": n, "fps": round((n - 1) / (last - first), 1) if n > 1 else None,
            "keypoint_ms": percentiles(keypoint_ms)}


def run(cfg, clip: str) -> list[dict]:
    """Rows of {case, frames, dropped, fps, latency p50/p95, first pose, keypoint and engine ms}."""
    rows = []
    base = mediapipe_alone(clip)
    rows.append({"case": "baseline: MediaPipe alone, unpaced", "frames": base["frames"], "dropped": 0,
                 "fps": base["fps"], "latency_ms": None, "first_pose_s": None,
                 "keypoint_ms": base["keypoint_ms"], "engine_ms": None})
    cases = [("pipeline unpaced, 1 step", False, 1), ("pipeline unpaced, 2 steps", False, 2),
             (f"pipeline paced at the clip's rate, {cfg.engine.steps} step(s)", True, cfg.engine.steps)]
    for name, realtime, steps in cases:
        c = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, source=clip, realtime=realtime, loop=False),
                                engine=dataclasses.replace(cfg.engine, steps=steps))
        r = run_live(c)
        rows.append({"case": name, "frames": r["poses_out"], "dropped": r["dropped"], "fps": r["fps_out"],
                     "latency_ms": r["latency_ms"], "first_pose_s": r["first_pose_s"],
                     "keypoint_ms": r["keypoint_ms"], "engine_ms": r["engine_ms"]})
    return rows


def format_rows(rows: list[dict]) -> str:
    def p(d, k):
        return "—" if not d or d.get(k) is None else f"{d[k]:.1f}"

    lines = ["| case | poses (frames) | dropped | per second | latency p50 / p95 ms | first pose s | "
             "MediaPipe p50 ms | engine p50 / p95 ms |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['frames']} | {r['dropped']} | {r['fps']} | "
                     f"{p(r['latency_ms'], 'p50')} / {p(r['latency_ms'], 'p95')} | "
                     f"{'—' if r['first_pose_s'] is None else r['first_pose_s']} | {p(r['keypoint_ms'], 'p50')} | "
                     f"{p(r['engine_ms'], 'p50')} / {p(r['engine_ms'], 'p95')} |")
    return "\n".join(lines)
