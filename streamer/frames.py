"""What every source is: an iterator of captured frames with explicit open/close, and the one error
a source raises when it cannot start or read (streamer.sources: webcam, video file, sample clip;
streamer.webrtc: a browser's camera)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np


class SourceError(RuntimeError):
    """A source that cannot be opened or read (no camera, unreadable file, wrong format)."""


@dataclass
class Frame:
    """One captured frame. rgb: (H, W, 3) uint8, C-contiguous. t_capture: time.time() seconds when
    it was captured (for a file: when it was due at its frame rate). index: 0, 1, ... per source."""

    rgb: np.ndarray
    t_capture: float
    index: int


class Source:
    """Base: a named iterator of frames with a nominal frame rate (None when unknown). `live`: a
    camera, whose capture times are the truth of its rate (a webcam in a dim room delivers 15 fps
    while its driver still reports 30); a file's frames are timed by the file."""

    name = "source"
    fps: float | None = None
    live = False

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
