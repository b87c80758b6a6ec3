"""The pose frame: one schema for every output (WebSocket, VMC, VRChat OSC, viewer, recorder).

World frame: y up, metres, right-handed; z is the camera's viewing direction flattened onto the
ground (the person facing the camera faces -z), x = y × z. The origin is where the person first
stood (re-centred on request), on the floor.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engine.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES
from streamer.landmarks import L

SCHEMA_VERSION = 1
SOURCES = ("estimated", "generated", "blended")

_SIDES = ("left", "right")
_HIPS, _SHOULDERS = ("left_hip", "right_hip"), ("left_shoulder", "right_shoulder")
# The MediaPipe landmarks that place each SMPL joint: a joint was seen when all of them were present.
JOINT_LANDMARKS = {
    "pelvis": _HIPS, **{f"spine{i}": _HIPS + _SHOULDERS for i in (1, 2, 3)}, "neck": _SHOULDERS, "head": ("nose",),
    **{f"{s}_{j}": (f"{s}_{j}",) for s in _SIDES for j in ("hip", "knee", "ankle", "shoulder", "elbow", "wrist")},
    **{f"{s}_foot": (f"{s}_heel", f"{s}_foot_index") for s in _SIDES},
    **{f"{s}_collar": (f"{s}_shoulder",) for s in _SIDES},
    **{f"{s}_hand": (f"{s}_wrist", f"{s}_index", f"{s}_pinky") for s in _SIDES},
}
# (24, 33) bool: row j marks the landmarks of SMPL joint j.
_PLACED_BY = np.zeros((NUM_JOINTS, len(L)), bool)
for _j, _name in enumerate(SMPL_JOINT_NAMES):
    _PLACED_BY[_j, [L[n] for n in JOINT_LANDMARKS[_name]]] = True


def seen_joints(present: np.ndarray) -> np.ndarray:
    """(33,) bool landmarks present (streamer.landmarks.present_landmarks) -> (24,) bool SMPL
    joints seen: every landmark that places the joint present (JOINT_LANDMARKS)."""
    return ~(_PLACED_BY & ~np.asarray(present, bool)).any(-1)


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
    the default body). seen: (24,) bool, the joints MediaPipe saw in this frame (seen_joints; none
    for generated frames): the others come from the model's prior, the legs behind a desk say.
    joints_cam: (24, 3) the joints in the camera's frame (OpenCV axes, metres) as the engine sees
    it, for overlays on the video and for evaluation; not streamed.
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
    seen: np.ndarray | None = None
    joints_cam: np.ndarray | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (lists of floats, 6 decimals; seen as 24 0/1 ints, where told)."""
        def r(a):
            return np.round(np.asarray(a, np.float64), 6).tolist()

        seen = {} if self.seen is None else {"seen": np.asarray(self.seen, int).tolist()}
        return {"v": SCHEMA_VERSION, "frame_id": self.frame_id, "t_capture": self.t_capture,
                "t_emit": self.t_emit, "source": self.source, "confidence": round(self.confidence, 4),
                "root": r(self.root), "pose_aa": r(self.pose_aa), "pose_quat": r(self.pose_quat),
                "joints": r(self.joints), "contacts": r(self.contacts), "stature": round(self.stature, 4),
                "betas": list(self.betas), **seen}
