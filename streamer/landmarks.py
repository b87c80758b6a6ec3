"""MediaPipe Pose's 33 landmarks: their names and order, the twelve that outline the body, each
one's mirror image, and when a landmark counts as present. The one definition the ingest, the
model's conditions and the synthetic observer share.

Pixels from the image's top-left corner (u right, v down); visibility in [0, 1].
"""
from __future__ import annotations

import numpy as np

LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)
NUM_LANDMARKS = len(LANDMARK_NAMES)
L = {n: i for i, n in enumerate(LANDMARK_NAMES)}
# The twelve that outline the body (no face, hands or feet): "occluded" and "missing" frames are
# defined on these.
BODY_LANDMARKS = tuple(L[f"{s}_{n}"] for n in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle")
                       for s in ("left", "right"))
# The knees and ankles: the legs are hidden (a desk, the bottom of the image) when none is present.
LEG_LANDMARKS = tuple(L[f"{s}_{n}"] for n in ("knee", "ankle") for s in ("left", "right"))
# Landmark index of each one's mirror image (left <-> right); centre points map to themselves.
MIRROR = tuple(L[n.replace("left", "#").replace("right", "left").replace("#", "right")]
               for n in LANDMARK_NAMES)

VISIBLE = 0.5  # MediaPipe's own threshold for "present"


def inside_image(uv: np.ndarray, width: int, height: int) -> np.ndarray:
    """(..., 2) pixels -> (...,) bool: inside a width x height image (NaN pixels are outside)."""
    with np.errstate(invalid="ignore"):
        return (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0) & (uv[..., 1] < height)


def present_landmarks(keypoints: np.ndarray, visibility: np.ndarray, width: int, height: int) -> np.ndarray:
    """(T, 33, 2) pixels and (T, 33) visibility -> (T, 33) bool: what the engine may use, a
    finite landmark inside the image with visibility at least 0.5 (the opposite of missing)."""
    with np.errstate(invalid="ignore"):  # a NaN visibility compares False: missing
        return (np.asarray(visibility) >= VISIBLE) & inside_image(keypoints, width, height)
