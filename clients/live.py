"""`genmo-live run`: the live pipeline's lifetime, from the ingest process to the outputs.

    ingest process (source -> MediaPipe) --landmark packets--> engine (this process) --> outputs

The engine loop takes every packet that has arrived (several at once when it fell behind: they
share one denoiser pass), emits one pose per frame to every output, and measures. A source that
fails is reported and the engine keeps serving its outputs until the run ends (duration, Ctrl-C,
or the end of a file that does not loop).
"""
from __future__ import annotations

import json
import logging
import queue
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from configs.config import check_setting
from engine.live.pose_frame import PoseFrame

log = logging.getLogger("genmo-live.run")
STATUS_EVERY_S = 5.0
MAX_ERROR_KINDS = 10  # distinct engine errors kept for the report (every one is counted)


class Output:
    """Where pose frames go (WebSocket, VMC, VRChat, recorder): `publish` must not block the engine."""

    name = "output"

    def publish(self, frame: PoseFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Control:
    """Commands for the engine from other threads (the WebSocket server's clients): each is applied
    by the engine loop between two pushes, and its Future resolves to the result or the error.

        future = control.submit("set_prompt", "a person walks forward")   # concurrent.futures.Future
    Commands: set_prompt(text | None), set_steps(n), set_lag(n), recenter(), pause(), resume(), state().
    """

    COMMANDS = ("set_prompt", "set_steps", "set_lag", "recenter", "pause", "resume", "state")
    # The setting each value-carrying command changes: its value is checked as the config's own
    # (configs.config.check_setting), once, before it reaches the engine.
    SETTINGS = {"set_prompt": "engine.prompt", "set_steps": "engine.steps", "set_lag": "engine.lag"}

    def __init__(self):
        self._queue: queue.Queue = queue.Queue()
        self.paused = False

    def submit(self, command: str, *args) -> Future:
        future: Future = Future()
        try:
            if command not in self.COMMANDS:
                raise ValueError(f"unknown command {command!r}; known: {', '.join(self.COMMANDS)}")
            if command in self.SETTINGS and args and args[0] is not None:
                args = (check_setting(self.SETTINGS[command], args[0]),)
        except ValueError as e:  # ConfigError included
            future.set_exception(e)
        else:
            self._queue.put((command, args, future))
        return future

    def apply_pending(self, engine) -> None:
        """Run the queued commands on `engine` (the engine loop's thread only)."""
        while True:
            try:
                command, args, future = self._queue.get_nowait()
            except queue.Empty:
                return
            if not future.set_running_or_notify_cancel():
                continue  # the asker gave up on it
            try:
                future.set_result(self._apply(engine, command, args))
            except (ValueError, TypeError) as e:
                future.set_exception(e)

    def _apply(self, engine, command: str, args: tuple):
        if command in ("pause", "resume"):
            self.paused = command == "pause"
        elif command != "state":
            getattr(engine, command)(*args)
        return {"prompt": engine.prompt, "steps": engine.steps, "lag": engine.lag, "paused": self.paused}


def percentiles(values) -> dict:
    """{p50, p95, p99} of `values` (None when empty), rounded to 0.01."""
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    p = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p[0]), 2), "p95": round(float(p[1]), 2), "p99": round(float(p[2]), 2)}


@dataclass
class RunStats:
    """What a run measured; `report()` is what `--report` writes."""

    frames_in: int = 0
    dropped: int = 0
    poses: list = field(default_factory=list)        # (t_capture, t_emit, source) per pose
    keypoint_ms: list = field(default_factory=list)
    engine_ms: list = field(default_factory=list)
    first_frame_t: float | None = None
    errors: list = field(default_factory=list)
    engine_failures: int = 0
    engine_errors: list = field(default_factory=list)  # the first of each kind, at most MAX_ERROR_KINDS

    def note(self, kind: str, payload) -> bool:
        """Take an ingest event: errors are logged and kept, the end's counts read. True at the end."""
        if kind == "error":
            log.error("%s", payload)
            self.errors.append(payload)
        elif kind == "end":
            self.frames_in, self.dropped = payload["frames_in"], payload["dropped"]
        return kind == "end"

    def engine_failed(self, error: Exception, packets: list) -> None:
        """One engine push that raised: counted; the first of each kind logged in one line and
        reported. The run goes on with the next frames."""
        self.engine_failures += 1
        kind = f"{type(error).__name__}: {error}"
        if kind not in self.engine_errors and len(self.engine_errors) < MAX_ERROR_KINDS:
            self.engine_errors.append(kind)
            log.error("the engine failed on frames %d-%d (%s); going on with the next frames",
                      packets[0].frame_id, packets[-1].frame_id, kind)

    def add(self, frame: PoseFrame) -> None:
        self.poses.append((frame.t_capture, frame.t_emit, frame.source))

    def status(self, since: float) -> str:
        """One line on the poses emitted since `since` (time.time())."""
        recent = [(c, e, s) for c, e, s in self.poses if e >= since]
        if not recent:
            return "no poses in the last few seconds (is the source delivering frames?)"
        lat = np.percentile([(e - c) * 1000 for c, e, _ in recent], [50, 95])
        kinds = {k: sum(1 for *_, s in recent if s == k) for k in ("estimated", "generated", "blended")}
        return (f"{len(recent) / STATUS_EVERY_S:.1f} poses/s, latency p50 {lat[0]:.0f} ms p95 {lat[1]:.0f} ms, "
                + ", ".join(f"{v} {k}" for k, v in kinds.items() if v) + f"; {len(self.poses)} poses so far")

    def report(self) -> dict:
        pct = percentiles
        emits = [e for _, e, _ in self.poses]
        span = (emits[-1] - emits[0]) if len(emits) > 1 else 0.0
        counts = {s: sum(1 for *_, src in self.poses if src == s) for s in ("estimated", "generated", "blended")}
        return {
            "frames_in": self.frames_in,
            "poses_out": len(self.poses),
            "dropped": self.dropped,
            "fps_out": round((len(emits) - 1) / span, 2) if span > 0 else None,
            "first_pose_s": (round(emits[0] - self.first_frame_t, 3) if emits and self.first_frame_t else None),
            "latency_ms": pct([(e - c) * 1000 for c, e, _ in self.poses]),
            "keypoint_ms": pct(self.keypoint_ms),
            "engine_ms": pct(self.engine_ms),
            "sources": counts,
            "errors": self.errors,
            "engine_failures": self.engine_failures,
            "engine_errors": self.engine_errors,
        }


def _events(ingest) -> list[tuple[str, object]]:
    """The ingest process's events (streamer.ingest) that have arrived, oldest first."""
    events = []
    try:
        while True:
            events.append(ingest.events.get_nowait())
    except queue.Empty:
        return events


def load_engine(cfg):
    """The LiveEngine for the configured weights, warmed up before any frame arrives: the first pass
    of a torch model is slow, and the text model takes a few seconds to load."""
    from configs.config import ConfigError, resolve_path
    from engine.body.loading import load_body
    from engine.live.engine import LiveEngine
    from engine.model.checkpoint import load_model
    from engine.model.device import select_device
    from engine.paths import WEIGHTS_PATH
    from streamer.packets import LandmarkPacket

    path = resolve_path(cfg.engine.weights) if cfg.engine.weights else WEIGHTS_PATH
    if not path.exists():
        raise ConfigError(f"no trained weights at {path}: train them with `genmo-live train` and pass "
                          f"--engine.weights runs/NAME/last.pt")
    torch.set_num_threads(cfg.engine.threads)
    device = select_device(cfg.device)
    model, norm, _ = load_model(path, device)
    engine = LiveEngine(model, norm, load_body(cfg.body), cfg.engine)
    LiveEngine(model, norm, engine.body, cfg.engine).push([LandmarkPacket.empty(0, time.time(), 640, 480)])
    engine.load_prompt()
    return engine


def run_live(cfg, outputs: list[Output] = (), duration: float | None = None, control: Control | None = None,
             make_outputs=None) -> dict:
    """Run until the source ends (a file that does not loop), `duration` seconds after the first
    frame, or Ctrl-C. `control` carries commands from the outputs (paused: poses are computed but
    not published). `make_outputs(engine, control)` -> (outputs, services), called once the source
    has started (its frame rate known), adds outputs built from the config; services are only
    closed at the end. Returns the report (RunStats.report)."""
    from streamer.ingest import Ingest, IngestOptions
    from streamer.packets import LandmarkPacket

    src = cfg.source
    options = IngestOptions(source=src.source, realtime=src.realtime, loop=src.loop, webcam_index=src.webcam_index,
                            webrtc={"host": src.webrtc_host, "port": src.webrtc_port, "token": cfg.token or None}
                            if src.source == "webrtc" else {}, queue_size=src.queue)
    stats = RunStats()
    engine = load_engine(cfg)
    control = control or Control()
    outputs, services = list(outputs), []
    ingest = Ingest(options)
    ingest.start()
    source_done = False
    started = None
    last_status = time.time()

    def emit(poses) -> None:
        for pose in poses:
            stats.add(pose)
            if not control.paused:
                for out in outputs:
                    out.publish(pose)

    try:
        while True:
            # Events first: whether the source started, failed or ended.
            for kind, payload in _events(ingest):
                source_done |= stats.note(kind, payload)
                if kind == "started":
                    started = payload
                    log.info("source: %s%s", payload["name"], f" at {payload['fps']:.0f} fps" if payload["fps"] else "")
                    if payload.get("url"):
                        log.info("open %s in a browser to send your camera", payload["url"])
                    engine.fps = payload["fps"] or engine.fps
                    engine.measure_rate = payload.get("live", False)
                    if make_outputs:
                        built, services = make_outputs(engine, control)
                        outputs += built
            if not source_done and not ingest.alive and ingest.events.empty():
                stats.errors.append(f"the ingest process stopped unexpectedly (exit code {ingest.exitcode})")
                log.error("%s", stats.errors[-1])
                source_done = True
            if started is None:
                if source_done:
                    break
                time.sleep(0.02)
                continue
            control.apply_pending(engine)
            batch = []
            try:
                batch.append(ingest.packets.get(timeout=0.05))
                while True:
                    batch.append(ingest.packets.get_nowait())
            except queue.Empty:
                pass
            if batch:
                packets = [LandmarkPacket.from_bytes(b) for b in batch]
                if stats.first_frame_t is None:
                    stats.first_frame_t = packets[0].t_capture
                t0 = time.perf_counter()
                try:
                    poses = engine.push(packets)
                except Exception as e:  # one frame's failure must not end the show
                    stats.engine_failed(e, packets)
                    poses = []
                stats.engine_ms.append((time.perf_counter() - t0) * 1000)
                stats.keypoint_ms += [p.keypoint_ms for p in packets]
                emit(poses)
            elif source_done and not stats.errors:
                break  # a finished file: every packet is consumed
            if time.time() - last_status >= STATUS_EVERY_S and stats.poses:
                last_status = time.time()
                log.info("%s", stats.status(last_status - STATUS_EVERY_S))
            if duration is not None and stats.first_frame_t is not None and time.time() - stats.first_frame_t >= duration:
                break
            if source_done and stats.errors and duration is None and not outputs:
                break  # nothing left to serve
    except KeyboardInterrupt:
        log.info("stopping (Ctrl-C)")
    finally:
        ingest.stop()
        for kind, payload in _events(ingest):
            stats.note(kind, payload)
        try:
            emit(engine.flush())  # the frames the lag still holds: a recording keeps the take's end
        finally:
            for out in outputs + services:
                out.close()
    report = stats.report()
    report["source"] = started["name"] if started else src.source
    report["steps"] = engine.steps
    return report


def format_run_report(report: dict) -> str:
    lat, kp, en = report["latency_ms"], report["keypoint_ms"], report["engine_ms"]
    return (f"{report['source']}: {report['frames_in']} frames in, {report['poses_out']} poses out, "
            f"{report['dropped']} dropped, {report['fps_out']} poses/s; first pose {report['first_pose_s']} s "
            f"after the first frame\nlatency capture->pose p50/p95/p99 {lat['p50']}/{lat['p95']}/{lat['p99']} ms; "
            f"MediaPipe {kp['p50']}/{kp['p95']}/{kp['p99']} ms; engine {en['p50']}/{en['p95']}/{en['p99']} ms\n"
            f"sources: {report['sources']}" + "".join(f"\nerror: {e}" for e in report["errors"])
            + (f"\nthe engine failed {report['engine_failures']} times: " + "; ".join(report["engine_errors"])
               if report["engine_failures"] else ""))


def write_run_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
