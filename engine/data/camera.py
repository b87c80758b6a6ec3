"""Pinhole cameras: intrinsics, a world-to-camera pose, projection. Pure numpy functions.

World: ours (y-up, right-handed, metres). Camera: OpenCV axes (x right, y down, z forward), so a
point in front of the camera has z > 0 and pixel (u, v) grows right and down from the image's
top-left corner: u = fx x/z + cx, v = fy y/z + cy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.body.rotations import axis_angle_to_matrix
from streamer.landmarks import inside_image

UP = np.array([0.0, 1.0, 0.0])


@dataclass(frozen=True)
class Camera:
    """A static pinhole camera.

    K: (3, 3) intrinsics, pixels. R: (3, 3) world -> camera rotation (rows: the camera's right,
    down and forward axes in world coordinates). t: (3,) metres, x_cam = R x_world + t.
    width, height: image size in pixels.
    """

    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    width: int
    height: int

    @property
    def position(self) -> np.ndarray:
        """(3,) camera centre in world coordinates, metres."""
        return -self.R.T @ self.t

    @property
    def focal(self) -> float:
        return float(self.K[0, 0])

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> (..., 3) camera coordinates, metres."""
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(..., 3) world points -> (..., 2) pixels and (...,) depth in metres (z in the camera).

        Points behind the camera (depth <= 0) get NaN pixels."""
        cam = self.to_camera(points)
        z = cam[..., 2]
        safe = np.where(z > 1e-6, z, np.nan)
        uv = cam[..., :2] / safe[..., None] * self.K[[0, 1], [0, 1]] + self.K[[0, 1], 2]
        return uv, z

    def in_image(self, uv: np.ndarray) -> np.ndarray:
        """(..., 2) pixels -> (...,) bool: inside the image (NaN pixels are outside)."""
        return inside_image(uv, self.width, self.height)

    def as_dict(self) -> dict:
        return {"K": self.K.tolist(), "R": self.R.tolist(), "t": self.t.tolist(),
                "width": self.width, "height": self.height}


def intrinsics(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """(3, 3) K of a camera with square pixels, principal point at the image centre and the given
    horizontal field of view in degrees."""
    f = (width / 2) / np.tan(np.radians(hfov_deg) / 2)
    return np.array([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]])


def look_at(position: np.ndarray, target: np.ndarray, roll_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """World -> camera (R (3, 3), t (3,)) of a camera at `position` looking at `target` with its
    image upright (world +y up in the image), then rolled by `roll_deg` about its optical axis
    (positive: the image turns clockwise as seen by the viewer)."""
    forward = target - position
    forward = forward / np.linalg.norm(forward)
    right = np.cross(forward, UP)
    if np.linalg.norm(right) < 1e-8:
        raise ValueError("look_at: the camera looks straight up or down; its roll is undefined")
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = axis_angle_to_matrix(np.array([0.0, 0.0, np.radians(roll_deg)])) @ np.stack([right, down, forward])
    return R, -R @ position
