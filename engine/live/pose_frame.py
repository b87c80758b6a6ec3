"""The pose frame: one schema for every output (WebSocket, VMC, VRChat OSC, viewer, recorder).

World frame: y up, metres, right-handed; z is the camera's viewing direction flattened onto the
ground (the person facing the camera faces -z), x = y × z. The origin is where the person first
stood (re-centred on request), on the floor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SCHEMA_VERSION = 1
SOURCES = ("estimated", "generated", "blended")


@dataclass
class PoseFrame:
    """One emitted pose.

    frame_id: the input frame it belongs to. t_capture / t_emit: time.time() seconds when the frame
    was captured and when this pose was ready. pose_aa: (24, 3) SMPL axis-angle, joint 0 the root
    orientation in the world frame, the others local to their parent. pose_quat: (24, 4) the same
    as unit quaternions (w, x, y, z). root: (3,) pelvis world position, metres. joints: (24, 3) world
    joint positions, metres. contacts: (6,) probabilities for engine.body.skeleton.CONTACT_JOINTS (ankles,
    feet, wrists). source: estimated | generated | blended. confidence: 0..1, the share of the body's
    landmarks MediaPipe saw (0 for generated frames). stature: metres; betas: SMPL shape (empty for
    the default body). joints_cam: (24, 3) the joints in the camera's frame (OpenCV axes, metres)
    as the engine sees it, for overlays on the video and for evaluation; not streamed.
    """

    frame_id: int
    t_capture: float
    t_emit: float
    pose_aa: np.ndarray
    pose_quat: np.ndarray
    root: np.ndarray
    joints: np.ndarray
    contacts: np.ndarray
    source: str
    confidence: float
    stature: float
    betas: tuple = ()
    joints_cam: np.ndarray | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (lists of floats, 6 decimals)."""
        def r(a):
            return np.round(np.asarray(a, np.float64), 6).tolist()

        return {"v": SCHEMA_VERSION, "frame_id": self.frame_id, "t_capture": self.t_capture,
                "t_emit": self.t_emit, "source": self.source, "confidence": round(self.confidence, 4),
                "root": r(self.root), "pose_aa": r(self.pose_aa), "pose_quat": r(self.pose_quat),
                "joints": r(self.joints), "contacts": r(self.contacts), "stature": round(self.stature, 4),
                "betas": list(self.betas)}
