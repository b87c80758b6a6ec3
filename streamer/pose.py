"""MediaPipe Pose, set up once for the whole product: the live pipeline, the rendered data sets and
the measurement tool all run it with the same settings, so what was measured is what runs live.

The legacy solution API with model_complexity=1 (its model ships inside the mediapipe==0.10.21
wheel, so nothing is downloaded), video mode (tracking and landmark smoothing between frames).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

POSE_SETTINGS = dict(static_image_mode=False, model_complexity=1, smooth_landmarks=True,
                     enable_segmentation=False, min_detection_confidence=0.5,
                     min_tracking_confidence=0.5)
NUM_LANDMARKS = 33


@dataclass
class Detection:
    """One frame's person. keypoints: (33, 2) pixels from the top-left. visibility: (33,) in [0, 1].
    world: (33, 3) MediaPipe's own metric estimate, metres, origin between the hips, made y-up
    (x to the image's right, y up, z towards the camera)."""

    keypoints: np.ndarray
    visibility: np.ndarray
    world: np.ndarray


class PoseDetector:
    """MediaPipe Pose over a stream of frames (one instance per stream: it tracks between frames)."""

    def __init__(self, **overrides):
        import mediapipe as mp

        self._pose = mp.solutions.pose.Pose(**{**POSE_SETTINGS, **overrides})

    def detect(self, rgb: np.ndarray) -> Detection | None:
        """(H, W, 3) uint8 RGB frame -> the person, or None when MediaPipe finds nobody."""
        h, w = rgb.shape[:2]
        result = self._pose.process(np.ascontiguousarray(rgb))
        if result.pose_landmarks is None:
            return None
        image = np.array([(p.x * w, p.y * h, p.visibility) for p in result.pose_landmarks.landmark])
        world = np.array([(p.x, -p.y, -p.z) for p in result.pose_world_landmarks.landmark])
        return Detection(keypoints=image[:, :2], visibility=image[:, 2], world=world)

    def warm_up(self, width: int = 640, height: int = 480) -> None:
        """Run the graph once on an empty frame, so the first real frame does not pay for its start."""
        self._pose.process(np.zeros((height, width, 3), np.uint8))

    def close(self) -> None:
        self._pose.close()

    def __enter__(self) -> "PoseDetector":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
