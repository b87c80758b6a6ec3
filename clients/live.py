"""`genmo-live run`: the live pipeline's lifetime, from the ingest process to the outputs.

    ingest process (source -> MediaPipe) --landmark packets--> engine (this process) --> outputs

The engine loop takes every packet that has arrived (several at once when it fell behind: they
share one denoiser pass), emits one pose per frame to every output, and measures. A source that
fails is reported and the engine keeps serving its outputs until the run ends (duration, Ctrl-C,
or the end of a file that does not loop). An ingest process that dies (MediaPipe killed, a driver
crash) is started again, at once and then with a growing back-off while it keeps dying; a pass of
the engine that fails costs its frames, not the run. Both are counted in the report.

With the camera preview on (outputs.preview), the loop also takes the ingest's previews and hands
the newest to every output or service that shows them (`show_preview(preview)`, the viewer).
"""
from __future__ import annotations

import json
import logging
import queue
import time
from collections import deque
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
SAMPLE_SIZE = 2 ** 17  # values kept for a run's percentiles (73 min at 30 fps), 1 MB each
RECENT_POSES = 4096    # poses the status line looks back over (more than STATUS_EVERY_S at 240 fps)
RESTART_DELAYS_S = (0.0, 1.0, 2.0, 4.0, 8.0)  # before each restart of an ingest process that keeps dying
HEALTHY_S = 30.0       # an ingest process that has run this long starts its restarts over


class Output:
    """Where pose frames go (WebSocket, VMC, VRChat, recorder): `publish` must not block the engine."""

    name = "output"

    def publish(self, frame: PoseFrame) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def summary(self) -> dict | None:
        """What the run's report says of this output after close (None: nothing): {"output": its
        name, ...}, with "sent" and "skipped" where it delivers poses (a WebSocket server's per
        client too), the recorder its frames written and lost."""
        return None

    def skips(self) -> dict[str, int]:
        """{where to: poses skipped so far} (a WebSocket server: one entry per client), for the
        status line: read from the engine's thread while the output runs, so plain counters."""
        return {}


class Control:
    """Commands for the engine from other threads (the WebSocket server's clients): each is applied
    by the engine loop between two pushes, and its Future resolves to the result or the error.

        future = control.submit("set_prompt", "a person walks forward")   # concurrent.futures.Future
    Commands: set_prompt(text | None), set_legs(text | None), set_steps(n), set_lag(n), recenter(),
    pause(), resume(), state().
    """

    COMMANDS = ("set_prompt", "set_legs", "set_steps", "set_lag", "recenter", "pause", "resume", "state")
    # The setting each value-carrying command changes: its value is checked as the config's own
    # (configs.config.check_setting), once, before it reaches the engine.
    SETTINGS = {"set_prompt": "engine.prompt", "set_legs": "engine.legs", "set_steps": "engine.steps",
                "set_lag": "engine.lag"}

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
        return {"prompt": engine.prompt, "legs": engine.legs, "steps": engine.steps, "lag": engine.lag,
                "paused": self.paused}


def percentiles(values) -> dict:
    """{p50, p95, p99} of `values` (None when empty), rounded to 0.01."""
    if not len(values):
        return {"p50": None, "p95": None, "p99": None}
    p = np.percentile(values, [50, 95, 99])
    return {"p50": round(float(p[0]), 2), "p95": round(float(p[1]), 2), "p99": round(float(p[2]), 2)}


class Sample:
    """At most `size` values of a long series, for its percentiles: every value while they fit,
    then a uniform random sample of all seen (reservoir sampling, seeded), so a run's memory stays
    the same however long it lasts; the count is exact."""

    def __init__(self, size: int = SAMPLE_SIZE, seed: int = 0):
        self._values = np.empty(size)
        self._rng = np.random.default_rng(seed)
        self.count = 0

    def add(self, value: float) -> None:
        slot = self.count if self.count < len(self._values) else int(self._rng.integers(self.count + 1))
        if slot < len(self._values):
            self._values[slot] = value
        self.count += 1

    def extend(self, values) -> None:
        for value in values:
            self.add(value)

    @property
    def values(self) -> np.ndarray:
        """(min(count, size),) the values kept."""
        return self._values[:min(self.count, len(self._values))]


@dataclass
class RunStats:
    """What a run measured, in bounded memory; `report()` is what `--report` writes. Percentiles
    are exact while a run's poses fit a Sample (SAMPLE_SIZE: over an hour at 30 fps)."""

    frames_in: int = 0
    dropped: int = 0
    poses_out: int = 0
    first_emit: float | None = None
    last_emit: float | None = None
    sources: dict = field(default_factory=lambda: dict.fromkeys(("estimated", "generated", "blended"), 0))
    latency_ms: Sample = field(default_factory=Sample)
    keypoint_ms: Sample = field(default_factory=Sample)
    engine_ms: Sample = field(default_factory=Sample)
    # (t_emit, latency ms, source) of the newest poses, for the status line
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT_POSES))
    first_frame_t: float | None = None
    errors: list = field(default_factory=list)
    engine_failures: int = 0
    engine_errors: list = field(default_factory=list)  # the first of each kind, at most MAX_ERROR_KINDS
    ingest_restarts: int = 0
    previews: int = 0          # camera previews the ingest processes encoded
    previews_dropped: int = 0  # of those, dropped on their queue
    ingest_cpu_s: float = 0.0           # the ingest processes' CPU seconds from their first frames
    engine_cpu_from: float | None = None  # this process's CPU time at the first frame

    def note(self, kind: str, payload) -> bool:
        """Take an ingest event: errors are logged and kept, the end's counts read. True at the end."""
        if kind == "error":
            log.error("%s", payload)
            self.errors.append(payload)
        elif kind == "end":  # each ingest process's own counts (a restarted source has several)
            self.frames_in += payload["frames_in"]
            self.dropped += payload["dropped"]
            self.ingest_cpu_s += payload["cpu_s"]
            self.previews += payload["previews"]
            self.previews_dropped += payload["previews_dropped"]
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
        latency = (frame.t_emit - frame.t_capture) * 1000
        self.poses_out += 1
        self.first_emit = frame.t_emit if self.first_emit is None else self.first_emit
        self.last_emit = frame.t_emit
        self.sources[frame.source] = self.sources.get(frame.source, 0) + 1
        self.latency_ms.add(latency)
        self.recent.append((frame.t_emit, latency, frame.source))

    def status(self, since: float) -> str:
        """One line on the poses emitted since `since` (time.time())."""
        recent = [(latency, source) for t, latency, source in self.recent if t >= since]
        if not recent:
            return "no poses in the last few seconds (is the source delivering frames?)"
        lat = np.percentile([latency for latency, _ in recent], [50, 95])
        kinds = {k: sum(1 for _, s in recent if s == k) for k in ("estimated", "generated", "blended")}
        return (f"{len(recent) / STATUS_EVERY_S:.1f} poses/s, latency p50 {lat[0]:.0f} ms p95 {lat[1]:.0f} ms, "
                + ", ".join(f"{v} {k}" for k, v in kinds.items() if v) + f"; {self.poses_out} poses so far")

    def report(self) -> dict:
        span = (self.last_emit - self.first_emit) if self.poses_out > 1 else 0.0
        # CPU per frame: MediaPipe's process and this one (engine, outputs, servers), all threads.
        cpu_s = self.ingest_cpu_s + (time.process_time() - self.engine_cpu_from if self.engine_cpu_from else 0.0)
        cpu_ms = round(cpu_s / self.frames_in * 1000, 2) if self.frames_in else None
        return {
            "frames_in": self.frames_in,
            "poses_out": self.poses_out,
            "dropped": self.dropped,
            "fps_out": round((self.poses_out - 1) / span, 2) if span > 0 else None,
            "first_pose_s": (round(self.first_emit - self.first_frame_t, 3)
                             if self.poses_out and self.first_frame_t else None),
            "latency_ms": percentiles(self.latency_ms.values),
            "keypoint_ms": percentiles(self.keypoint_ms.values),
            "engine_ms": percentiles(self.engine_ms.values),
            "sources": dict(self.sources),
            "errors": self.errors,
            "engine_failures": self.engine_failures,
            "engine_errors": self.engine_errors,
            "ingest_restarts": self.ingest_restarts,
            "cpu_ms_per_frame": cpu_ms,
            "cores_at_30_fps": None if cpu_ms is None else round(cpu_ms * 30 / 1000, 2),
        }


def skip_status(outputs) -> str:
    """'; WHERE: N poses skipped' for every destination of `outputs` that skipped any, else ''."""
    return "".join(f"; {where}: {n} poses skipped" for out in outputs for where, n in out.skips().items() if n)


def deliver_preview(previews, receivers) -> None:
    """The newest camera preview that has arrived on `previews` (an ingest's queue), to every one of
    `receivers` that shows previews; the older ones are stale before they could be shown."""
    from streamer.preview import Preview

    newest = None
    try:
        while True:
            newest = previews.get_nowait()
    except queue.Empty:
        pass
    if newest is None:
        return
    preview = Preview.from_bytes(newest)
    for receiver in receivers:
        if hasattr(receiver, "show_preview"):
            receiver.show_preview(preview)


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
    from streamer.preview import PreviewOptions

    src, o = cfg.source, cfg.outputs
    options = IngestOptions(source=src.source, realtime=src.realtime, loop=src.loop, webcam_index=src.webcam_index,
                            webrtc={"host": src.webrtc_host, "port": src.webrtc_port, "token": cfg.token or None}
                            if src.source == "webrtc" else {}, queue_size=src.queue,
                            preview=PreviewOptions(o.preview_width, o.preview_fps) if o.preview else None)
    stats = RunStats()
    engine = load_engine(cfg)
    control = control or Control()
    outputs, services = list(outputs), []
    ingest = Ingest(options)
    ingest.start()
    source_done = False
    started = None
    last_status = time.time()
    # The ingest's supervision: a process that dies after its source started is started again,
    # at once the first time, then after RESTART_DELAYS_S while it keeps dying.
    restart_at = healthy_from = None
    failures = received = next_id = 0

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
                    log.info("source: %s%s", payload["name"], f" at {payload['fps']:.0f} fps" if payload["fps"] else "")
                    if payload.get("url"):
                        log.info("open %s in a browser to send your camera", payload["url"])
                    engine.fps = payload["fps"] or engine.fps
                    engine.measure_rate = payload.get("live", False)
                    if make_outputs and started is None:
                        built, services = make_outputs(engine, control)
                        outputs += built
                    started = payload
            if not source_done and restart_at is None and not ingest.alive and ingest.events.empty():
                line = f"the ingest process stopped unexpectedly (exit code {ingest.exitcode})"
                if started is None:  # it never started: there is nothing to go back to
                    stats.errors.append(line)
                    log.error("%s", line)
                    source_done = True
                else:
                    delay = RESTART_DELAYS_S[min(failures, len(RESTART_DELAYS_S) - 1)]
                    log.error("%s: starting it again%s", line, f" in {delay:.0f} s" if delay else "")
                    stats.frames_in += received  # what it sent; its own counts died with it
                    stats.ingest_restarts += 1
                    failures += 1
                    restart_at = time.time() + delay
            if restart_at is not None and time.time() >= restart_at:
                ingest.restart(first_index=next_id)
                restart_at, received, healthy_from = None, 0, time.time() + HEALTHY_S
            if healthy_from is not None and time.time() >= healthy_from:
                failures, healthy_from = 0, None  # it has run a while: a later death starts at once again
            if started is None:
                if source_done:
                    break
                time.sleep(0.02)
                continue
            control.apply_pending(engine)
            if ingest.previews is not None:
                deliver_preview(ingest.previews, outputs + services)
            batch = []
            try:
                batch.append(ingest.packets.get(timeout=0.05))
                while True:
                    batch.append(ingest.packets.get_nowait())
            except queue.Empty:
                pass
            if batch:
                packets = [LandmarkPacket.from_bytes(b) for b in batch]
                received += len(packets)
                next_id = packets[-1].frame_id + 1
                if stats.first_frame_t is None:
                    stats.first_frame_t = packets[0].t_capture
                    stats.engine_cpu_from = time.process_time()
                t0 = time.perf_counter()
                try:
                    poses = engine.push(packets)
                except Exception as e:  # one frame's failure must not end the show
                    stats.engine_failed(e, packets)
                    poses = []
                stats.engine_ms.add((time.perf_counter() - t0) * 1000)
                stats.keypoint_ms.extend(p.keypoint_ms for p in packets)
                emit(poses)
            elif source_done and not stats.errors:
                break  # a finished file: every packet is consumed
            if time.time() - last_status >= STATUS_EVERY_S and stats.poses_out:
                last_status = time.time()
                log.info("%s%s", stats.status(last_status - STATUS_EVERY_S), skip_status(outputs))
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
    report["outputs"] = [s for s in (out.summary() for out in outputs) if s is not None]
    if o.preview:
        report["previews"] = {"sent": stats.previews, "dropped": stats.previews_dropped}
    return report


def lost_recordings(report: dict) -> list[str]:
    """One line per recording that is not complete on disk (frames lost, or not finished)."""
    return [f"{o['path']}: {o['frames_written']} frames on disk, {o['frames_lost']} lost ({o['error']})"
            for o in report.get("outputs", []) if o["output"] == "recorder" and not o["complete"]]


def delivery_lines(report: dict) -> list[str]:
    """One line per output that sends poses (the recorder's are lost_recordings'): sent, skipped,
    and which WebSocket clients skipped."""
    lines = []
    for o in report.get("outputs", []):
        if "sent" not in o:
            continue
        clients = ", ".join(f"{c['name']}: {c['skipped']}" for c in o.get("clients", []) if c["skipped"])
        lines.append(f"{o['output']}: {o['sent']} poses sent, {o['skipped']} skipped"
                     + (f" ({clients})" if clients else "")
                     + (f", {o['send_errors']} datagrams refused by the system" if o.get("send_errors") else ""))
    return lines


def format_run_report(report: dict) -> str:
    lat, kp, en = report["latency_ms"], report["keypoint_ms"], report["engine_ms"]
    return (f"{report['source']}: {report['frames_in']} frames in, {report['poses_out']} poses out, "
            f"{report['dropped']} dropped, {report['fps_out']} poses/s; first pose {report['first_pose_s']} s "
            f"after the first frame\nlatency capture->pose p50/p95/p99 {lat['p50']}/{lat['p95']}/{lat['p99']} ms; "
            f"MediaPipe {kp['p50']}/{kp['p95']}/{kp['p99']} ms; engine {en['p50']}/{en['p95']}/{en['p99']} ms\n"
            f"sources: {report['sources']}"
            + (f"\nCPU {report['cpu_ms_per_frame']} ms a frame (MediaPipe, engine and outputs): "
               f"{report['cores_at_30_fps']} cores at 30 fps" if report["cpu_ms_per_frame"] is not None else "")
            + "".join(f"\nerror: {e}" for e in report["errors"])
            + (f"\nthe engine failed {report['engine_failures']} times: " + "; ".join(report["engine_errors"])
               if report["engine_failures"] else "")
            + (f"\ncamera previews: {report['previews']['sent']} sent, {report['previews']['dropped']} dropped"
               if "previews" in report else "")
            + "".join(f"\n{line}" for line in delivery_lines(report))
            + "".join(f"\nrecording incomplete: {line}" for line in lost_recordings(report)))


def write_run_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
