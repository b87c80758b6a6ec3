"""The ingest process: a source's frames through MediaPipe Pose into landmark packets.

It runs in its own process (MediaPipe and video decoding beside the engine, on another core) and
talks to the engine over multiprocessing queues:
- `packets`: bounded, one LandmarkPacket.to_bytes() per frame. A live source (webcam, WebRTC, a
  paced file) never waits for the engine: when the queue is full the oldest packet is dropped and
  counted, so latency stays bounded. An unpaced file waits instead, so every frame is processed.
- `previews` (only with a preview asked for, streamer.preview): bounded, a few camera previews a
  second, each encoded after its frame's packet was put; when full the oldest is dropped and
  counted, whatever the source.
- `events`: ("started", {name, fps, live, url}), ("error", message) when the source cannot start or dies,
  ("end", {frames_in, dropped, previews, previews_dropped, cpu_s}) when it finishes or is stopped
  (cpu_s: this process's CPU seconds, all its threads, from its first frame on).
The process ends with its parent, however the parent ends (a watch thread), and a process that
died is replaced by `Ingest.restart` (the engine loop decides when: clients.live).
"""
from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
from dataclasses import dataclass, field

from streamer.preview import PreviewOptions

log = logging.getLogger(__name__)
PARENT_CHECK_S = 0.25  # how often the ingest process looks for its parent
PREVIEW_QUEUE = 2  # previews waiting for the engine: it takes them every 50 ms, so one is the norm


@dataclass
class IngestOptions:
    """source: `auto`, `webcam`, `sample`, `webrtc` or a video path (streamer.sources.open_source)."""

    source: str = "auto"
    realtime: bool = True
    loop: bool = False
    webcam_index: int = 0
    webrtc: dict = field(default_factory=dict)
    queue_size: int = 8
    first_index: int = 0  # the frame id of the first frame (a restarted process numbers on)
    preview: PreviewOptions | None = None  # None: no camera preview, nothing encoded


def _put_latest(packets, data: bytes) -> bool:
    """Put without waiting; when full, drop the oldest packet first. True when one was dropped."""
    try:
        packets.put_nowait(data)
        return False
    except queue.Full:
        pass
    try:
        packets.get_nowait()
    except queue.Empty:
        pass
    try:
        packets.put_nowait(data)
    except queue.Full:
        pass  # the engine's side refilled it meanwhile; this frame is the one dropped
    return True


def _exit_with_parent(parent: int, stop) -> None:
    """End this process as soon as its parent is gone. A killed engine cannot set `stop`, and a
    source may wait for good on a frame (a WebRTC page nobody has opened), holding its port."""
    while not stop.value:
        time.sleep(PARENT_CHECK_S)
        if os.getppid() != parent:
            os._exit(0)  # nobody is left to read what this process would still say


def run_ingest(options: IngestOptions, packets, events, stop, previews=None) -> None:
    """Process entry point: read the source until it ends, fails, or `stop` (a shared flag) is set.
    previews: the preview queue, when options.preview asks for one."""
    from streamer.frames import SourceError
    from streamer.packets import LandmarkPacket
    from streamer.pose import PoseDetector
    from streamer.preview import Preview, encode_jpeg, next_preview_due, preview_size
    from streamer.sources import VideoFileSource, open_source

    # Ctrl-C and a service manager's stop reach the whole process group; the engine decides when
    # this process ends (`stop`), so it can still count what it read, and a dead engine is noticed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_exit_with_parent, args=(os.getppid(), stop), name="parent watch", daemon=True).start()
    frames_in = dropped = sent_previews = dropped_previews = 0
    preview_due = float("-inf")
    cpu_from = None  # process CPU time at the first frame: loading MediaPipe is not a frame's cost
    try:
        source = open_source(options.source, realtime=options.realtime, loop=options.loop,
                             webcam_index=options.webcam_index, **options.webrtc)
    except SourceError as e:
        events.put(("error", str(e)))
        events.put(("end", {"frames_in": 0, "dropped": 0, "previews": 0, "previews_dropped": 0, "cpu_s": 0.0}))
        return
    waits = isinstance(source, VideoFileSource) and not source.realtime
    events.put(("started", {"name": source.name, "fps": source.fps, "live": source.live,
                            "url": getattr(source, "url", None)}))
    try:
        with source, PoseDetector() as detector:
            detector.warm_up()
            for frame in source:
                if stop.value:
                    break
                h, w = frame.rgb.shape[:2]
                cpu_from = time.process_time() if cpu_from is None else cpu_from
                t0 = time.perf_counter()
                det = detector.detect(frame.rgb)
                ms = (time.perf_counter() - t0) * 1000
                frame_id = options.first_index + frame.index
                packet = LandmarkPacket.of_detection(frame_id, frame.t_capture, w, h, det, ms)
                frames_in += 1
                if waits:
                    while not stop.value:
                        try:
                            packets.put(packet.to_bytes(), timeout=0.2)
                            break
                        except queue.Full:
                            continue
                else:
                    dropped += _put_latest(packets, packet.to_bytes())
                if options.preview and frame.t_capture >= preview_due:
                    preview_due = next_preview_due(frame.t_capture, preview_due, options.preview.fps)
                    jpeg = encode_jpeg(frame.rgb, preview_size(w, h, options.preview.width))
                    dropped_previews += _put_latest(previews, Preview(packet, jpeg).to_bytes())
                    sent_previews += 1
    except SourceError as e:
        events.put(("error", str(e)))
    except Exception as e:  # a decoder or driver failure: report it, the engine keeps serving
        events.put(("error", f"source {source.name} failed: {type(e).__name__}: {e}"))
    events.put(("end", {"frames_in": frames_in, "dropped": dropped, "previews": sent_previews,
                        "previews_dropped": dropped_previews,
                        "cpu_s": 0.0 if cpu_from is None else time.process_time() - cpu_from}))


class Ingest:
    """The ingest process and its queues, with an explicit lifetime (start / stop, and restart
    when the process has died)."""

    def __init__(self, options: IngestOptions):
        self.options = options
        self._ctx = mp.get_context("spawn")
        self._open(options)

    def _open(self, options: IngestOptions) -> None:
        ctx = self._ctx
        self.packets = ctx.Queue(maxsize=options.queue_size)
        self.events = ctx.Queue()
        # A flag in shared memory, not an Event: a process killed while it held an Event's lock
        # would leave that lock taken, and setting the Event would then wait for ever.
        self._stop = ctx.RawValue("b", 0)
        self.previews = ctx.Queue(maxsize=PREVIEW_QUEUE) if options.preview else None
        self._process = ctx.Process(target=run_ingest,
                                    args=(options, self.packets, self.events, self._stop, self.previews),
                                    name="genmo-live ingest", daemon=True)

    def start(self) -> None:
        self._process.start()

    def restart(self, first_index: int) -> None:
        """A new process for the same source, numbering its frames from `first_index`, with new
        queues: a process killed in the middle of a put may have left the old ones unusable."""
        self._process.join(0.0)
        self._open(dataclasses.replace(self.options, first_index=first_index))
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.value = 1
        self._process.join(timeout)
        if self._process.is_alive():
            log.warning("the ingest process did not stop within %.0f s; killing it", timeout)
            self._process.kill()  # it ignores SIGTERM
            self._process.join(1.0)

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    @property
    def exitcode(self) -> int | None:
        return self._process.exitcode
