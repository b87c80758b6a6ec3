"""The landmark packet: what the ingest process sends the engine for every frame, as 420 bytes.

Layout (little-endian): frame_id int64, t_capture float64 (time.time() seconds), width uint16,
height uint16, keypoint_ms float32 (MediaPipe's time on this frame), then 33 × (x, y, visibility)
float32 with x, y in pixels from the image's top-left. A frame where MediaPipe found nobody has
NaN coordinates and zero visibility.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from streamer.landmarks import NUM_LANDMARKS

_HEADER = struct.Struct("<qdHHf")
PACKET_BYTES = _HEADER.size + NUM_LANDMARKS * 3 * 4


@dataclass
class LandmarkPacket:
    """keypoints: (33, 2) pixels (NaN when not detected). visibility: (33,) in [0, 1]."""

    frame_id: int
    t_capture: float
    width: int
    height: int
    keypoints: np.ndarray
    visibility: np.ndarray
    keypoint_ms: float = 0.0

    @property
    def detected(self) -> bool:
        return bool(np.isfinite(self.keypoints).all() and (self.visibility > 0).any())

    @classmethod
    def empty(cls, frame_id: int, t_capture: float, width: int, height: int, keypoint_ms: float = 0.0):
        """A frame without a person."""
        return cls(frame_id, t_capture, width, height, np.full((NUM_LANDMARKS, 2), np.nan, np.float32),
                   np.zeros(NUM_LANDMARKS, np.float32), keypoint_ms)

    @classmethod
    def of_detection(cls, frame_id: int, t_capture: float, width: int, height: int, detection,
                     keypoint_ms: float = 0.0):
        """The packet of a streamer.pose.Detection (its keypoints and visibility as float32), or an
        empty one where the detector found nobody (None)."""
        if detection is None:
            return cls.empty(frame_id, t_capture, width, height, keypoint_ms)
        return cls(frame_id, t_capture, width, height, detection.keypoints.astype(np.float32),
                   detection.visibility.astype(np.float32), keypoint_ms)

    def to_bytes(self) -> bytes:
        body = np.concatenate([self.keypoints, self.visibility[:, None]], 1).astype("<f4")
        return _HEADER.pack(self.frame_id, self.t_capture, self.width, self.height, self.keypoint_ms) + body.tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> "LandmarkPacket":
        if len(data) != PACKET_BYTES:
            raise ValueError(f"a landmark packet is {PACKET_BYTES} bytes, got {len(data)}")
        frame_id, t, w, h, ms = _HEADER.unpack_from(data)
        body = np.frombuffer(data, "<f4", offset=_HEADER.size).reshape(NUM_LANDMARKS, 3).astype(np.float32)
        return cls(frame_id, t, w, h, body[:, :2].copy(), body[:, 2].copy(), ms)
