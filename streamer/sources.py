"""Where frames come from: a webcam, a video file, the bundled sample clip (and WebRTC, in
streamer.webrtc). Each source is an iterator of Frame with explicit open/close (streamer.frames); a
source that cannot start raises SourceError with a message a user can act on.

    with open_source("sample", loop=True) as src:
        for frame in src:          # Frame(rgb (H, W, 3) uint8, t_capture, index)
            ...
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np

from streamer.frames import Frame, Source, SourceError

log = logging.getLogger(__name__)

SAMPLE_CLIP = Path(__file__).resolve().parents[1] / "assets" / "sample" / "webcam_sample.mp4"
MAX_BEHIND_S = 0.25  # a paced file this far behind its own clock has stalled: it goes on from now


def _bgr_to_rgb(bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(bgr[..., ::-1])


class WebcamSource(Source):
    """An OpenCV camera by index (/dev/videoN on Linux)."""

    live = True

    def __init__(self, index: int = 0, width: int | None = None, height: int | None = None):
        import cv2

        self.name = f"webcam {index}"
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"no webcam at index {index}: none is connected, or another program holds it "
                              f"(try --source sample or --source PATH)")
        if width and height:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or None

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while True:
            ok, bgr = self._cap.read()
            t = time.time()
            if not ok:
                raise SourceError(f"{self.name} stopped delivering frames (unplugged?)")
            yield Frame(_bgr_to_rgb(bgr), t, index)
            index += 1

    def close(self) -> None:
        self._cap.release()


def webcam_present(index: int = 0) -> bool:
    """Whether a camera opens at `index` and gives a frame."""
    import cv2

    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        return False  # asking OpenCV would only print warnings
    cap = cv2.VideoCapture(index)
    try:
        return bool(cap.isOpened() and cap.read()[0])
    finally:
        cap.release()


class VideoFileSource(Source):
    """A video file, paced at its own frame rate like a camera (realtime=True) or read as fast as
    the consumer takes frames; `loop` starts it again at the end."""

    def __init__(self, path: Path | str, realtime: bool = True, loop: bool = False):
        import cv2

        self.path = Path(path)
        self.name = self.path.name
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} does not exist")
        self._cap = cv2.VideoCapture(str(self.path))
        ok, first = self._cap.read() if self._cap.isOpened() else (False, None)
        if not ok:
            self._cap.release()
            raise SourceError(f"{self.path} is not a video OpenCV can read (corrupt, empty, or an unknown format)")
        self._first = first
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
        if not 1.0 <= self.fps <= 240.0:
            log.warning("%s reports %.1f fps; pacing it at 30", self.path, self.fps)
            self.fps = 30.0
        self.realtime, self.loop = realtime, loop

    def __iter__(self) -> Iterator[Frame]:
        import cv2

        index, start = 0, time.time()
        bgr = self._first
        while True:
            due = start + index / self.fps
            if self.realtime:
                delay = due - time.time()
                if delay < -MAX_BEHIND_S:
                    # A stall (the machine, or a consumer that stopped reading): go on from now, as a
                    # camera would, rather than play the missed time at double speed to catch up.
                    start, due, delay = start - delay, due - delay, 0.0
                if delay > 0:
                    time.sleep(delay)
                t = max(due, time.time()) if delay > 0 else time.time()
            else:
                t = time.time()
            yield Frame(_bgr_to_rgb(bgr), t, index)
            index += 1
            ok, bgr = self._cap.read()
            if not ok:
                if not self.loop:
                    return
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                ok, bgr = self._cap.read()
                if not ok:
                    raise SourceError(f"{self.path} could not be read again from the start")

    def close(self) -> None:
        self._cap.release()


def check_source(spec: str) -> None:
    """Raise open_source's own SourceError now for a video file that is missing or unreadable: the
    ingest process would find out only after the engine has loaded."""
    if spec not in ("auto", "webcam", "sample", "webrtc"):
        VideoFileSource(spec, realtime=False).close()


def open_source(spec: str, realtime: bool = True, loop: bool = False, webcam_index: int = 0, **webrtc) -> Source:
    """A source from the CLI's --source: `webcam`, `sample`, `webrtc`, `auto` (webcam if present,
    else the sample clip looped) or a video file path."""
    if spec == "auto":
        if webcam_present(webcam_index):
            return WebcamSource(webcam_index)
        log.info("no webcam found: playing the bundled sample clip in a loop")
        return VideoFileSource(SAMPLE_CLIP, realtime=True, loop=True)
    if spec == "webcam":
        return WebcamSource(webcam_index)
    if spec == "sample":
        return VideoFileSource(SAMPLE_CLIP, realtime=realtime, loop=loop)
    if spec == "webrtc":
        from streamer.webrtc import WebRTCSource

        return WebRTCSource(**webrtc)
    return VideoFileSource(spec, realtime=realtime, loop=loop)
