"""Long-run stability of the whole pipeline (issue: "No input stops the show"): a real
`genmo-live run` on the sample clip in a loop, recorder on, watched from outside for M minutes:

- poses: the bench is a WebSocket client of the run (binary format) and keeps, per pose, the time
  it arrived, its frame id and its capture->pose latency (t_emit - t_capture, the run's own clock);
  frame ids it never saw between two it did are gaps;
- memory: the resident set (VmRSS) of the run process and, apart, of its child processes (the
  MediaPipe ingest process, multiprocessing's resource tracker), every RSS_EVERY_S;
- drops: the client's gaps, the frames the ingest dropped (the run's report), the frames the
  recorder lost (the recorders among the report's "outputs") and the recorded take.npz's frames
  against the poses the run emitted.

Targets, for a 15-minute run: RSS slope (run + children) <= 0.5 MB/min after the warm-up, the last
3 minutes' latency p95 within 10 % of the first 3 minutes', nothing dropped.

    genmo-live bench soak [--minutes 15] [--clip PATH] [--json]

MB here are MiB (VmRSS's kB are KiB). Memory of the bench itself is fixed when it starts (arrays
sized for the run), so a long soak does not measure its own growth.
"""
from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from websockets.exceptions import WebSocketException
from websockets.sync.client import connect

from clients.live import percentiles
from clients.ws import decode_binary

log = logging.getLogger("genmo-live.bench.soak")

RSS_EVERY_S = 5.0
PROGRESS_EVERY_S = 60.0
WARMUP_S = 60.0            # RSS grows while caches and allocator pools fill: not a leak
WARMUP_FRACTION = 0.2      # ... or this much of a run shorter than 5 minutes
WINDOW_S = 180.0           # the latency windows compared: the first and last 3 minutes
MIN_WINDOWED_S = 3 * WINDOW_S  # shorter runs compare their first and last thirds instead
MAX_POSE_RATE = 120.0      # poses/s the pose arrays are sized for; faster, later poses are counted, not timed
START_TIMEOUT_S = 180.0    # model load and MediaPipe start take 10-20 s here
END_GRACE_S = 60.0         # a run past its duration by this much is stopped
END_WAIT_S = 60.0          # for the run to flush, write its recordings and report once told to stop
LOG_TAIL_LINES = 15
TARGET_SLOPE_MB_MIN = 0.5
TARGET_DRIFT_PCT = 10.0
TARGET_MINUTES = 15.0


class SoakError(RuntimeError):
    """The soak measured nothing: the run did not start, or was stopped before its first pose."""


def warmup_s(run_s: float) -> float:
    """Seconds from the first pose whose RSS samples the slope leaves out: the first minute, or
    the first 20 % of a run shorter than 5 minutes."""
    return min(WARMUP_S, WARMUP_FRACTION * run_s)


def window_s(run_s: float) -> float:
    """Length in seconds of the first and last latency windows: 3 minutes, or a third of a run
    shorter than 9 minutes (so that the two never overlap)."""
    return WINDOW_S if run_s >= MIN_WINDOWED_S else run_s / 3


def rss_slope(t_s: np.ndarray, rss_mb: np.ndarray) -> float | None:
    """Least-squares slope, MB/min, of RSS samples rss_mb (N,) MB taken at t_s (N,) seconds;
    None with fewer than 2 samples or no time between them."""
    if len(t_s) < 2 or np.ptp(t_s) == 0:
        return None
    return float(np.polyfit(np.asarray(t_s) / 60.0, rss_mb, 1)[0])


def drift_pct(first: float | None, last: float | None) -> float | None:
    """How far `last` is from `first`, % of `first` (positive: larger); None when either is missing."""
    if first is None or last is None or first == 0:
        return None
    return (last - first) / first * 100


def summarize(poses: np.ndarray, memory: np.ndarray, gaps: int, report: dict | None,
              take_frames: int | None) -> dict:
    """What a soak measured, with a verdict per target.

    poses: (N, 3) rows (t_received s, frame_id, latency ms), N >= 1, in arrival order.
    memory: (M, 4) rows (t s, run kB, children kB, bench kB) of VmRSS, same clock as t_received.
    gaps: frame ids the client missed between two it saw. report: the run's --report (None if it
    wrote none). take_frames: frames in the recorded take.npz (None if unreadable).
    The run spans the first to the last pose received; RSS samples outside it (model load,
    shutdown) are left out, and those of the warm-up (warmup_s) out of the slope."""
    t, latency = poses[:, 0], poses[:, 2]
    t0, run_s = float(t[0]), float(t[-1] - t[0])
    rel = t - t0
    window = window_s(run_s)
    first = percentiles(latency[rel <= window])
    last = percentiles(latency[rel >= run_s - window])
    during = memory[(memory[:, 0] >= t0) & (memory[:, 0] <= t[-1])]
    warm = warmup_s(run_s)
    settled = during[:, 0] >= t0 + warm
    names = ("run", "children", "total", "bench")
    mb = np.stack([during[:, 1], during[:, 2], during[:, 1] + during[:, 2], during[:, 3]], 1) / 1024

    def rss(i: int) -> dict:
        slope = rss_slope(during[settled, 0] - t0, mb[settled, i])
        return {"start_mb": round(float(mb[0, i]), 1) if len(mb) else None,
                "end_mb": round(float(mb[-1, i]), 1) if len(mb) else None,
                "slope_mb_min": None if slope is None else round(slope, 3)}

    memory_out = {**{name: rss(i) for i, name in enumerate(names)}, "warmup_s": round(warm, 1),
                  "samples": int(settled.sum())}
    drift = drift_pct(first["p95"], last["p95"])
    report = report or {}
    recordings = [o for o in report.get("outputs", []) if o.get("output") == "recorder"]
    drops = {"client_gaps": gaps, "ingest_dropped": report.get("dropped"),
             "recorder_lost": sum(r.get("frames_lost", 0) + r.get("skipped", 0) for r in recordings),
             "take_frames": take_frames, "poses_out": report.get("poses_out"),
             "take_short": None if take_frames is None or report.get("poses_out") is None
             else report["poses_out"] - take_frames}
    losses = [drops[k] for k in ("client_gaps", "ingest_dropped", "recorder_lost", "take_short")]
    slope = memory_out["total"]["slope_mb_min"]
    return {
        "run_s": round(run_s, 1),
        "poses_received": len(poses),
        "poses_per_s": round((len(poses) - 1) / run_s, 2) if run_s > 0 else None,
        "rss": memory_out,
        "latency_ms": {"window_s": round(window, 1), "thirds": run_s < MIN_WINDOWED_S, "first": first, "last": last,
                       "p95_drift_pct": None if drift is None else round(drift, 1)},
        "drops": drops,
        "ingest_restarts": report.get("ingest_restarts"),
        "engine_failures": report.get("engine_failures"),
        "recording_errors": [r["error"] for r in recordings if r.get("error")],
        "run_errors": report.get("errors", []),
        "targets": {"rss_slope": None if slope is None else slope <= TARGET_SLOPE_MB_MIN,
                    "latency_drift": None if drift is None else abs(drift) <= TARGET_DRIFT_PCT,
                    "dropped": not any(n for n in losses if n is not None)},
    }


class Series:
    """Rows of float64 values in an array allocated once for the whole run, so the bench's memory
    does not grow while it measures; rows past `capacity` are counted, not kept. Rows are written
    by one thread; another may read `rows` meanwhile (a row is complete before it is counted)."""

    def __init__(self, columns: int, capacity: int):
        self._rows = np.zeros((capacity, columns))
        self.count = 0

    def add(self, *row: float) -> None:
        if self.count < len(self._rows):
            self._rows[self.count] = row
        self.count += 1

    @property
    def rows(self) -> np.ndarray:
        """(min(count, capacity), columns) the rows kept, oldest first."""
        return self._rows[:min(self.count, len(self._rows))]


class PoseClient:
    """The bench's WebSocket client of the run, in a thread: connects (again, if it is dropped)
    until stopped, and keeps every binary pose as a row (t_received s, frame_id, latency ms) of
    `poses`; `gaps` counts frame ids it never saw between two it did, `connects` its connections."""

    def __init__(self, url: str, capacity: int):
        self.url = url
        self.poses = Series(3, capacity)
        self.gaps = 0
        self.connects = 0
        self.last_id: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="soak client", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def take(self, message: bytes, t_received: float) -> None:
        """One binary pose message, received at t_received (time.time())."""
        pose = decode_binary(message)
        if self.last_id is not None and pose["frame_id"] > self.last_id + 1:
            self.gaps += pose["frame_id"] - self.last_id - 1
        self.last_id = pose["frame_id"]
        self.poses.add(t_received, pose["frame_id"], (pose["t_emit"] - pose["t_capture"]) * 1000)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                with connect(self.url, open_timeout=5) as ws:
                    self.connects += 1
                    while not self._stop.is_set():
                        try:
                            message = ws.recv(timeout=0.5)
                        except TimeoutError:
                            continue
                        if isinstance(message, bytes):  # text messages: the hello, acks
                            self.take(message, time.time())
            except (OSError, WebSocketException):  # not serving yet, or gone: try again until stopped
                self._stop.wait(0.2)


def rss_kb(pid: int) -> int:
    """VmRSS of process `pid` in kB (KiB); 0 when it is gone (or a zombie, which has none)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, theirs, ...), from the parent ids in /proc/*/stat
    (/proc/PID/task/*/children needs a kernel option this machine lacks)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ')'
        except (OSError, IndexError, ValueError):  # gone meanwhile
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = parents.get(todo.pop(), [])
        found += below
        todo += below
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _log_tail(path: Path) -> str:
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(lines[-LOG_TAIL_LINES:]) or "(the run wrote nothing)"


def _die_with_parent():
    """The run's preexec_fn: the kernel stops the run (SIGTERM) if the bench dies without cleaning
    up (kill -9), which no `finally` survives. prctl is looked up here, before the fork."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG


def _end(run: subprocess.Popen) -> None:
    """Stop the run as a service manager would (SIGTERM: it still reports and writes its
    recordings); kill what is left of its process group after END_WAIT_S or a second Ctrl-C."""
    try:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            run.wait(END_WAIT_S)
    except subprocess.TimeoutExpired:
        log.error("the run did not end %.0f s after it was told to: killing it", END_WAIT_S)
    except KeyboardInterrupt:
        log.info("killing the run (second Ctrl-C)")
    finally:
        try:
            # The run leads its own session: its ingest process and resource tracker go with it.
            os.killpg(run.pid, signal.SIGKILL)
        except ProcessLookupError:  # all of them ended by themselves
            pass
        run.wait()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _watch(run: subprocess.Popen, client: PoseClient, memory: Series, duration_s: float, log_path: Path) -> None:
    """Sample RSS and log progress until the run ends by itself (its --duration after the first
    frame), or stop waiting END_GRACE_S past that."""
    start = next_sample = time.time()
    next_progress = None
    while run.poll() is None:
        now = time.time()
        if now >= next_sample:
            memory.add(now, rss_kb(run.pid), sum(rss_kb(pid) for pid in descendants(run.pid)), rss_kb(os.getpid()))
            next_sample += RSS_EVERY_S
        poses = client.poses.rows
        if not len(poses):
            if now - start > START_TIMEOUT_S:
                raise SoakError(f"no pose from the run within {START_TIMEOUT_S:.0f} s; the end of its log:\n"
                                f"{_log_tail(log_path)}")
        elif now - poses[0, 0] > duration_s + END_GRACE_S:
            log.error("the run is still going %.0f s past its duration: stopping it", END_GRACE_S)
            return
        elif next_progress is None:
            next_progress = poses[0, 0] + PROGRESS_EVERY_S
        elif now >= next_progress:
            next_progress += PROGRESS_EVERY_S
            recent = poses[poses[:, 0] >= now - PROGRESS_EVERY_S, 2]
            _, run_kb, children_kb, _ = memory.rows[-1]
            p95 = f"{np.percentile(recent, 95):.0f} ms" if len(recent) else "none (no poses)"
            log.info("%.0f of %g min: %d poses, latency p95 over the last minute %s, RSS run %.0f MB + "
                     "children %.0f MB, %d frame gaps", (now - poses[0, 0]) / 60, duration_s / 60,
                     client.poses.count, p95, run_kb / 1024, children_kb / 1024, client.gaps)
        time.sleep(0.1)


def _read_report(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        log.error("the run's report %s cannot be read (%s): its counts are missing below", path.name, e)
        return None


def _take_frames(path: Path) -> int | None:
    try:
        with np.load(path) as take:
            return len(take["frame_id"])
    except (OSError, KeyError, ValueError) as e:
        log.error("the recorded take %s cannot be read (%s)", path.name, e)
        return None


def run(minutes: float, source: str = "sample", run_args: list[str] = (), token: str = "") -> dict:
    """Soak a real `genmo-live run` on `source` in a loop for `minutes`, recorder on (npz and BVH
    into a temporary folder, deleted after), and measure it (module docstring). Ctrl-C or SIGTERM
    ends the run early and returns what was measured; the run and its children never outlive this.

    run_args: flags that come before the soak's own (--config FILE, --section.key VALUE); token:
    the run's WebSocket token, if the config sets one. Returns summarize()'s dict plus minutes
    (asked), source, stopped_early, run_exit_code and connects (the client's connections).
    Raises SoakError when no pose arrived."""
    duration_s = minutes * 60
    port = free_port()
    query = urlencode({"format": "binary", **({"token": token} if token else {})})
    client = PoseClient(f"ws://127.0.0.1:{port}/?{query}", int((duration_s + END_GRACE_S) * MAX_POSE_RATE))
    memory = Series(4, int((START_TIMEOUT_S + duration_s + END_GRACE_S) / RSS_EVERY_S) + 2)
    on_main = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    previous = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
    stopped_early = False
    try:
        with tempfile.TemporaryDirectory(prefix="genmo-live-soak-") as tmp:
            out = Path(tmp)
            command = [sys.executable, "-m", "clients.cli", "run", *run_args, "--source", source, "--loop",
                       "--headless", "--ws", f"127.0.0.1:{port}", "--record", str(out / "take.npz"), "--record",
                       str(out / "take.bvh"), "--report", str(out / "report.json"), "--duration", str(duration_s)]
            log_path = out / "run.log"
            with open(log_path, "wb") as run_log:
                run = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=run_log, stderr=subprocess.STDOUT,
                                       start_new_session=True, preexec_fn=_die_with_parent())
            try:
                client.start()
                _watch(run, client, memory, duration_s, log_path)
            except KeyboardInterrupt:
                stopped_early = True
                log.info("stopping (Ctrl-C): ending the run, then the results so far")
            finally:
                _end(run)
                client.stop()
            if not client.poses.count:
                raise SoakError(("stopped" if stopped_early else f"the run ended (exit code {run.returncode})")
                                + f" before its first pose; the end of its log:\n{_log_tail(log_path)}")
            if run.returncode:
                log.error("the run exited with code %d; the end of its log:\n%s", run.returncode, _log_tail(log_path))
            report = _read_report(out / "report.json")
            take_frames = _take_frames(out / "take.npz")
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, previous)
    result = summarize(client.poses.rows, memory.rows, client.gaps, report, take_frames)
    # every pose counts, also those past the arrays' capacity (kept untimed)
    result["poses_received"] = client.poses.count
    return {"minutes": minutes, "source": (report or {}).get("source", source), "stopped_early": stopped_early,
            "run_exit_code": run.returncode, "connects": client.connects, **result}


def format_result(r: dict) -> str:
    """The soak's result as a markdown table and a few plain lines."""
    def num(value, fmt: str = "{:.1f}") -> str:
        return "—" if value is None else fmt.format(value)

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("pass" if ok else "FAIL")

    def memory(m: dict) -> str:
        return f"{num(m['start_mb'])} → {num(m['end_mb'])}; {num(m['slope_mb_min'], '{:+.2f}')} MB/min"

    rss, lat, drops, targets = r["rss"], r["latency_ms"], r["drops"], r["targets"]
    window = f"{lat['window_s']:.0f} s" + (" (a third: the run is under 9 min)" if lat["thirds"] else "")
    rows = [
        ("RSS of the run process, MB: first pose → end; slope", memory(rss["run"]), "", ""),
        ("RSS of its children (MediaPipe ingest, resource tracker), MB", memory(rss["children"]), "", ""),
        (f"RSS slope, run + children, after a {rss['warmup_s']:g} s warm-up ({rss['samples']} samples)",
         f"{num(rss['total']['slope_mb_min'], '{:+.2f}')} MB/min", f"≤ {TARGET_SLOPE_MB_MIN} MB/min",
         verdict(targets["rss_slope"])),
        (f"latency p50 / p95, first {window}", f"{num(lat['first']['p50'])} / {num(lat['first']['p95'])} ms", "", ""),
        (f"latency p50 / p95, last {lat['window_s']:.0f} s",
         f"{num(lat['last']['p50'])} / {num(lat['last']['p95'])} ms", "", ""),
        ("latency p95 drift, last vs first", f"{num(lat['p95_drift_pct'], '{:+.1f}')} %",
         f"within ±{TARGET_DRIFT_PCT:g} %", verdict(targets["latency_drift"])),
        ("dropped: client frame gaps / ingest / recorder lost / take.npz short of poses out",
         " / ".join(num(drops[k], "{}") for k in ("client_gaps", "ingest_dropped", "recorder_lost", "take_short")),
         "0", verdict(targets["dropped"])),
        ("poses received by the client / emitted by the run / in take.npz",
         f"{r['poses_received']} / {num(drops['poses_out'], '{}')} / {num(drops['take_frames'], '{}')}", "", ""),
        ("ingest restarts / engine failures", f"{num(r['ingest_restarts'], '{}')} / {num(r['engine_failures'], '{}')}",
         "", ""),
        ("RSS of the bench itself, MB", f"{num(rss['bench']['start_mb'])} → {num(rss['bench']['end_mb'])}", "", ""),
    ]
    lines = ["| measure | value | target | result |", "|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    lines.append(f"{r['source']}: {r['run_s'] / 60:.2f} min from the first pose received to the last, "
                 f"{num(r['poses_per_s'], '{:.2f}')} poses/s")
    if r["stopped_early"]:
        lines.append(f"stopped early (Ctrl-C) of {r['minutes']:g} min asked")
    if r["minutes"] < TARGET_MINUTES:
        lines.append(f"the targets are set for a {TARGET_MINUTES:g}-minute run (--minutes {TARGET_MINUTES:g})")
    if r["connects"] > 1:
        lines.append(f"the client lost its connection and connected again {r['connects'] - 1} time(s)")
    if r["run_exit_code"]:
        lines.append(f"the run exited with code {r['run_exit_code']}")
    lines += [f"run error: {e}" for e in r["run_errors"]] + [f"recording error: {e}" for e in r["recording_errors"]]
    return "\n".join(lines)
