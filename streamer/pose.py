"""MediaPipe Pose, set up once for the whole product: the live pipeline, the rendered data sets and
the measurement tool all run it with the same settings, so what was measured is what runs live.

The legacy solution API with model_complexity=1 (its model ships inside the mediapipe==0.10.21
wheel, so nothing is downloaded), video mode (tracking and landmark smoothing between frames).

Re-detection in a crop: MediaPipe's person detector looks at the whole frame shrunk to 224 x 224,
so it often misses a small person (a quarter of the image height, far from a wide camera), both
before its tracker has locked on and after it has lost them; once locked on, its tracker follows
a person of any size. So on the frames where the tracker returns nothing, a second MediaPipe Pose
looks at one crop in which the person is large: around where they were last seen, if that was
recently, else the next of a set of tiles covering the image (a person too small for the whole
frame is found within one round of the tiles). The tracker itself is left as it is: whenever it
finds the person, its (smoothed) landmarks are what detect() returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSE_SETTINGS = dict(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                     enable_segmentation=False, min_detection_confidence=0.5,
                     min_tracking_confidence=0.5)
REDETECT_FRAMES = 60   # how long after the last sighting a crop is tried (2 s at 30 frames/s)
CROP_SCALE = 2.2       # the crop's side, in multiples of the last box's longer side
SCAN_TILE = 0.5        # the scan's square tiles, side as a fraction of the image's shorter side


@dataclass
class Detection:
    """One frame's person. keypoints: (33, 2) pixels from the top-left. visibility: (33,) in [0, 1].
    world: (33, 3) MediaPipe's own metric estimate, metres, origin between the hips, made y-up
    (x to the image's right, y up, z towards the camera)."""

    keypoints: np.ndarray
    visibility: np.ndarray
    world: np.ndarray


def landmark_box(keypoints: np.ndarray) -> tuple[float, float, float, float]:
    """(N, 2) pixels -> their bounding box (x0, y0, x1, y1), pixels."""
    (x0, y0), (x1, y1) = keypoints.min(0), keypoints.max(0)
    return float(x0), float(y0), float(x1), float(y1)


def crop_box(box: tuple, width: int, height: int, scale: float = CROP_SCALE) -> tuple[int, int, int, int]:
    """The integer pixel box (x0, y0, x1, y1) to look for a person last seen in `box`: a square of
    `scale` times the box's longer side around its centre, moved inside the (width, height) image
    where it fits and cut to it where it does not. Never empty."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    side = scale * max(box[2] - box[0], box[3] - box[1], 1.0)
    out = []
    for c, size in ((cx, width), (cy, height)):
        lo = min(max(c - side / 2, 0.0), max(size - side, 0.0))  # inside the image where it fits
        a = int(np.clip(np.floor(lo), 0, size - 1))
        out.append((a, int(np.clip(np.ceil(lo + side), a + 1, size))))
    (x0, x1), (y0, y1) = out
    return x0, y0, x1, y1


def scan_tiles(width: int, height: int, side: float = SCAN_TILE) -> list[tuple[int, int, int, int]]:
    """Square integer pixel boxes (x0, y0, x1, y1) of `side` times the image's shorter side, row by
    row, overlapping by half a tile, so that anything up to half a tile across lies wholly inside
    one of them."""
    s = max(1, round(side * min(width, height)))
    starts = [np.linspace(0, size - s, int(np.ceil((size - s) / (s / 2))) + 1).round().astype(int)
              for size in (width, height)]
    return [(int(x), int(y), int(x) + s, int(y) + s) for y in starts[1] for x in starts[0]]


def from_crop(normalized: np.ndarray, crop: tuple) -> np.ndarray:
    """(N, 2) MediaPipe coordinates normalised to a crop (0..1 across its width and height) ->
    (N, 2) pixels of the full image the integer crop box (x0, y0, x1, y1) was cut from."""
    x0, y0, x1, y1 = crop
    return np.array([x0, y0], float) + normalized * np.array([x1 - x0, y1 - y0], float)


def _detection(result, crop: tuple) -> Detection | None:
    """A MediaPipe Pose result for the image `crop` (x0, y0, x1, y1) of the frame -> a Detection in
    the frame's pixels, or None without a person. World landmarks do not depend on the crop."""
    if result.pose_landmarks is None:
        return None
    image = np.array([(p.x, p.y, p.visibility) for p in result.pose_landmarks.landmark])
    world = np.array([(p.x, -p.y, -p.z) for p in result.pose_world_landmarks.landmark])
    return Detection(keypoints=from_crop(image[:, :2], crop), visibility=image[:, 2], world=world)


class PoseDetector:
    """MediaPipe Pose over a stream of frames (one instance per stream: it tracks between frames).

    redetect: on the frames where the tracker finds nobody, a second, single-image MediaPipe Pose
    looks in one crop: around the last detection (crop_box) if it is at most `redetect_frames`
    frames old, else the next of the scan tiles (scan_tiles, one per frame, in turn; scan_tile None:
    no scan). overrides: MediaPipe Pose settings over POSE_SETTINGS (for the tracker; the crop
    detector shares all but the mode)."""

    def __init__(self, redetect: bool = True, redetect_frames: int = REDETECT_FRAMES,
                 crop_scale: float = CROP_SCALE, scan_tile: float | None = SCAN_TILE, **overrides):
        import mediapipe as mp

        settings = {**POSE_SETTINGS, **overrides}
        self._pose = mp.solutions.pose.Pose(**settings)
        # Single-image mode: a video-mode tracker fed crops that move with the person measured
        # slower and less accurate (its tracking and smoothing assume a fixed image).
        self._crop_pose = mp.solutions.pose.Pose(**{**settings, "static_image_mode": True}) if redetect else None
        self._redetect_frames = redetect_frames
        self._crop_scale = crop_scale
        self._last_box = None       # (x0, y0, x1, y1) of the last detection, pixels
        self._since_seen = 0        # frames since then
        self._scan_tile = scan_tile
        self._scan_index = -1       # the scan tile looked at last

    def detect(self, rgb: np.ndarray) -> Detection | None:
        """(H, W, 3) uint8 RGB frame -> the person, or None when MediaPipe finds nobody."""
        h, w = rgb.shape[:2]
        found = _detection(self._pose.process(np.ascontiguousarray(rgb)), (0, 0, w, h))
        crop = self._next_crop(w, h) if found is None and self._crop_pose is not None else None
        if crop is not None:
            x0, y0, x1, y1 = crop
            found = _detection(self._crop_pose.process(np.ascontiguousarray(rgb[y0:y1, x0:x1])), crop)
        if found is None:
            self._since_seen += 1
        else:
            self._last_box, self._since_seen = landmark_box(found.keypoints), 0
        return found

    def _next_crop(self, width: int, height: int) -> tuple[int, int, int, int] | None:
        """Where to look when the tracker found nobody, or None."""
        if self._last_box is not None and self._since_seen < self._redetect_frames:
            return crop_box(self._last_box, width, height, self._crop_scale)
        if self._scan_tile is None:
            return None
        tiles = scan_tiles(width, height, self._scan_tile)
        self._scan_index = (self._scan_index + 1) % len(tiles)
        return tiles[self._scan_index]

    def warm_up(self, width: int = 640, height: int = 480) -> None:
        """Run the graphs once on an empty frame, so the first real frame does not pay for their start."""
        for pose in (self._pose, self._crop_pose):
            if pose is not None:
                pose.process(np.zeros((height, width, 3), np.uint8))

    def close(self) -> None:
        for pose in (self._pose, self._crop_pose):
            if pose is not None:
                pose.close()

    def __enter__(self) -> "PoseDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
