"""A source's frame rate as its frames arrive: what a camera delivers, not what its driver says (a
webcam in a dim room delivers 15 fps while it reports 30; WebRTC reports none)."""
from __future__ import annotations

from collections import deque

import numpy as np


class FrameRate:
    """The median of the last `window` intervals between frames' capture times (seconds), as frames
    per second, once `min_intervals` have arrived: one late or dropped frame does not move it.
    Intervals that do not move forward, or last a second or more (a paused source), are left out."""

    def __init__(self, window: int, min_intervals: int = 10):
        self._intervals: deque[float] = deque(maxlen=window)
        self._min = min_intervals
        self._last: float | None = None

    def add(self, t_capture: float) -> None:
        if self._last is not None and 0 < t_capture - self._last < 1:
            self._intervals.append(t_capture - self._last)
        self._last = t_capture

    @property
    def fps(self) -> float | None:
        """Frames per second, or None until `min_intervals` intervals have arrived."""
        return 1.0 / float(np.median(self._intervals)) if len(self._intervals) >= self._min else None
