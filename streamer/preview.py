"""The camera preview (`--outputs.preview true`): a small JPEG of what the camera sees, a few times
a second, from the ingest process to the viewer, with the landmarks of the same frame.

The ingest process encodes a preview only when one is due (preview_due, on the frames' capture
times) and only after that frame's landmark packet is on its way, so the pose path never waits for
it; previews travel on their own bounded queue, the oldest dropped and counted when it is full.

    message = Preview(packet, encode_jpeg(frame.rgb, preview_size(w, h, 320))).to_bytes()
    preview = Preview.from_bytes(message)   # the LandmarkPacket and the JPEG

A message is the frame's 420-byte landmark packet (streamer.packets) followed by the JPEG.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamer.packets import PACKET_BYTES, LandmarkPacket

JPEG_QUALITY = 70
# A camera picture can be any shape (a browser's WebRTC frames are the browser's choice): taller
# than twice its width is scaled down further, so a preview is at most width x 2 width pixels.
MAX_ASPECT = 2.0
# Above the largest preview at JPEG_QUALITY (640 x 1280 pixels of pure noise: 454 kB), so only a
# broken encoder or a forged message gets here: refused, never passed on.
MAX_JPEG_BYTES = 2 ** 20
JPEG_MAGIC = b"\xff\xd8\xff"


@dataclass(frozen=True)
class PreviewOptions:
    """width: the preview's width in pixels at most (a smaller picture is not enlarged). fps: how
    many a second at most."""

    width: int = 320
    fps: float = 5.0


def preview_size(width: int, height: int, max_width: int) -> tuple[int, int]:
    """(w, h) of the preview of a width x height picture: at most max_width wide and twice that
    tall, the picture's aspect kept, never enlarged."""
    scale = min(1.0, max_width / width, MAX_ASPECT * max_width / height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def next_preview_due(t: float, due: float, fps: float) -> float:
    """When the preview after one taken at capture time `t` (it was due at `due`) is due. On a
    fixed grid, so a camera's jittery capture times keep the asked rate on average; a source that
    stalled (past a whole interval late) starts the grid again from now instead of catching up."""
    interval = 1.0 / fps
    return due + interval if t - due < interval else t + interval


def encode_jpeg(rgb: np.ndarray, size: tuple[int, int], quality: int = JPEG_QUALITY) -> bytes:
    """An (H, W, 3) RGB picture scaled to size (w, h), as JPEG bytes."""
    import cv2

    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {size[0]}x{size[1]} JPEG")
    return data.tobytes()


@dataclass
class Preview:
    """packet: the frame's landmarks (pixels of the full camera picture). jpeg: the picture, scaled."""

    packet: LandmarkPacket
    jpeg: bytes

    def to_bytes(self) -> bytes:
        return self.packet.to_bytes() + self.jpeg

    @classmethod
    def from_bytes(cls, data: bytes) -> "Preview":
        """Raises ValueError for anything that is not a landmark packet followed by a JPEG of at
        most MAX_JPEG_BYTES."""
        jpeg = data[PACKET_BYTES:]
        if not jpeg.startswith(JPEG_MAGIC) or len(jpeg) > MAX_JPEG_BYTES:
            raise ValueError(f"not a camera preview ({len(data)} bytes)")
        return cls(LandmarkPacket.from_bytes(data[:PACKET_BYTES]), jpeg)
