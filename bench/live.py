"""The live pipeline's speed on a clip (default: the bundled 720x720 sample), measured in one run:

- baseline: MediaPipe alone (the ingest process, its packets read and thrown away): what the
  product would cost without the engine; unpaced for its speed, and paced like a camera for its
  capture->landmarks latency, the floor under the pipeline's capture->pose;
- the whole pipeline unpaced (`--no-realtime`: frames as fast as they are consumed), 1 and 2 steps;
- the whole pipeline paced at the clip's own frame rate like a camera, default step count:
  dropped frames, capture->pose latency, first pose; then again with the camera preview on
  (outputs.preview_width and preview_fps: what the JPEGs cost the pose path);
- with --model, the unpaced 1-step and the paced cases again with those weights (a causal model
  runs a frame at a time: engine.model.streaming), side by side.
Each case's CPU time per frame read, MediaPipe's process and the engine's (outputs included), all
threads, from the first frame: what the pipeline takes from an avatar app beside it ("cores at 30
fps").

    genmo-live bench live [--clip PATH] [--model PATH]
"""
from __future__ import annotations

import dataclasses
import queue
import time

from clients.live import percentiles, run_live
from streamer.ingest import Ingest, IngestOptions
from streamer.packets import LandmarkPacket


def mediapipe_alone(clip: str, realtime: bool = False) -> dict:
    """The ingest process, unpaced or paced at the clip's rate, packets read as they come:
    frames/s, MediaPipe's time, and capture->packet latency."""
    ingest = Ingest(IngestOptions(source=clip, realtime=realtime))
    keypoint_ms, latency_ms = [], []
    ingest.start()
    first = last = None
    try:
        while True:
            try:
                data = ingest.packets.get(timeout=0.2)
            except queue.Empty:
                try:
                    kind, payload = ingest.events.get_nowait()
                except queue.Empty:
                    continue
                if kind == "end":
                    cpu_s = payload["cpu_s"]
                    break
                continue
            p = LandmarkPacket.from_bytes(data)
            last = time.time()
            first = first or last
            keypoint_ms.append(p.keypoint_ms)
            latency_ms.append((last - p.t_capture) * 1000.0)
    finally:
        ingest.stop()
    n = len(keypoint_ms)
    cpu_ms = round(cpu_s / n * 1000, 2) if n else None
    return {"frames": n, "fps": round((n - 1) / (last - first), 1) if n > 1 else None,
            "keypoint_ms": percentiles(keypoint_ms), "latency_ms": percentiles(latency_ms), "cpu_ms_per_frame": cpu_ms,
            "cores_at_30_fps": None if cpu_ms is None else round(cpu_ms * 30 / 1000, 2)}


def run(cfg, clip: str, model: str | None = None) -> list[dict]:
    """Rows of {case, frames, dropped, fps, latency p50/p95, first pose, keypoint and engine ms,
    CPU ms per frame, cores at 30 fps, and the pipeline's previews: {sent, dropped} or None}."""
    rows = []
    for realtime in (False, True):
        base = mediapipe_alone(clip, realtime)
        rows.append({"case": f"baseline: MediaPipe alone, {'paced' if realtime else 'unpaced'}", "frames": base["frames"],
                     "dropped": 0, "fps": base["fps"], "latency_ms": base["latency_ms"] if realtime else None,
                     "first_pose_s": None, "keypoint_ms": base["keypoint_ms"], "engine_ms": None,
                     "cpu_ms_per_frame": base["cpu_ms_per_frame"], "cores_at_30_fps": base["cores_at_30_fps"],
                     "previews": None})
    weights, o = cfg.engine.weights, cfg.outputs
    paced = f"pipeline paced at the clip's rate, {cfg.engine.steps} step(s)"
    cases = [("pipeline unpaced, 1 step", False, 1, weights, False),
             ("pipeline unpaced, 2 steps", False, 2, weights, False),
             (paced, True, cfg.engine.steps, weights, False),
             (f"{paced}, camera preview on ({o.preview_width} px, {o.preview_fps:g} fps)", True, cfg.engine.steps,
              weights, True)]
    if model:
        cases += [(f"{model}: pipeline unpaced, 1 step", False, 1, model, False),
                  (f"{model}: pipeline paced at the clip's rate, 1 step", True, 1, model, False)]
    for name, realtime, steps, path, preview in cases:
        c = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, source=clip, realtime=realtime, loop=False),
                                engine=dataclasses.replace(cfg.engine, steps=steps, weights=path),
                                outputs=dataclasses.replace(cfg.outputs, preview=preview))
        r = run_live(c)
        rows.append({"case": name, "frames": r["poses_out"], "dropped": r["dropped"], "fps": r["fps_out"],
                     "latency_ms": r["latency_ms"], "first_pose_s": r["first_pose_s"],
                     "keypoint_ms": r["keypoint_ms"], "engine_ms": r["engine_ms"],
                     "cpu_ms_per_frame": r["cpu_ms_per_frame"], "cores_at_30_fps": r["cores_at_30_fps"],
                     "previews": r.get("previews")})
    return rows


def format_rows(rows: list[dict]) -> str:
    def p(d, k):
        return "—" if not d or d.get(k) is None else f"{d[k]:.1f}"

    lines = ["| case | poses (frames) | dropped | per second | latency p50 / p95 ms | first pose s | "
             "MediaPipe p50 ms | engine p50 / p95 ms | CPU ms a frame | cores at 30 fps |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['frames']} | {r['dropped']} | {r['fps']} | "
                     f"{p(r['latency_ms'], 'p50')} / {p(r['latency_ms'], 'p95')} | "
                     f"{'—' if r['first_pose_s'] is None else r['first_pose_s']} | {p(r['keypoint_ms'], 'p50')} | "
                     f"{p(r['engine_ms'], 'p50')} / {p(r['engine_ms'], 'p95')} | {p(r, 'cpu_ms_per_frame')} | "
                     f"{'—' if r['cores_at_30_fps'] is None else r['cores_at_30_fps']} |")
    return "\n".join(lines)
