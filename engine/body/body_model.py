"""Body models on the SMPL 24-joint topology: the bundled default body, a procedural fallback
skeleton, and (through engine.body.smpl) the user's own SMPL model. All three share one FK and skinning
path (engine.body.kinematics) and read a pose vector the same way.

Rest pose: T-pose, y-up, body facing +z, its left at +x, metres, soles on y = 0, identity local
rotations. See ../shared/design/BODY.md for how the default body was made.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from engine.body.kinematics import forward_kinematics, pose_to_matrices, skin
from engine.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.paths import DEFAULT_BODY_PATH

log = logging.getLogger(__name__)

DEFAULT_STATURE = 1.70

# Procedural rest joints as fractions of stature (x = subject's left, y up, z forward), T-pose.
# Heights follow Drillis & Contini's segment fractions as tabulated by Winter (hip 0.530, knee
# 0.285, ankle 0.039, shoulder 0.818); widths and depths follow the bundled adult's proportions.
# Left joints only: right ones mirror x.
_PROCEDURAL_FRACTIONS = {
    "pelvis": (0.0, 0.556, 0.0),
    "left_hip": (0.062, 0.530, -0.007),
    "spine1": (0.0, 0.615, 0.004),
    "left_knee": (0.062, 0.285, 0.012),
    "spine2": (0.0, 0.679, -0.004),
    "left_ankle": (0.062, 0.039, -0.005),
    "spine3": (0.0, 0.750, -0.022),
    "left_foot": (0.058, 0.014, 0.081),
    "neck": (0.0, 0.855, -0.005),
    "left_collar": (0.035, 0.830, 0.0),
    "head": (0.0, 0.920, 0.005),
    "left_shoulder": (0.102, 0.818, 0.002),
    "left_elbow": (0.262, 0.818, 0.002),
    "left_wrist": (0.408, 0.818, 0.002),
    "left_hand": (0.468, 0.818, 0.002),
}


@dataclass(frozen=True)
class Body:
    """A posable SMPL-topology body.

    rest_joints: (24, 3) float32 metres. vertices: (V, 3) float32 metres or None (skeleton only).
    faces: (F, 3) int64 or None. weights: (V, 24) float32 skinning weights, rows sum to 1, or None.
    stature: standing height in the rest pose, metres. kind: "default", "procedural" or "smpl".
    """

    kind: str
    rest_joints: torch.Tensor
    stature: float
    source: str
    vertices: torch.Tensor | None = None
    faces: torch.Tensor | None = None
    weights: torch.Tensor | None = None
    names: tuple = SMPL_JOINT_NAMES
    parents: tuple = SMPL_PARENTS

    @property
    def has_mesh(self) -> bool:
        return self.vertices is not None

    def lowest_rest_point(self) -> float:
        """Lowest y of the rest mesh (or of the rest joints with no mesh), metres."""
        pts = self.vertices if self.has_mesh else self.rest_joints
        return float(pts[:, 1].min())

    def scaled(self, stature: float) -> "Body":
        """The same body uniformly scaled about the origin to `stature` metres (soles stay on y=0)."""
        if stature <= 0:
            raise ValueError(f"stature must be positive, got {stature}")
        s = stature / self.stature
        return replace(self, rest_joints=self.rest_joints * s, stature=stature,
                       vertices=None if self.vertices is None else self.vertices * s)

    def pose(self, pose: torch.Tensor, root_position: torch.Tensor | None = None,
             form: str = "axis_angle", with_vertices: bool = False) -> dict:
        """Pose the body.

        pose: (..., 24, k) rotations in `form` (engine.body.rotations.FORMS), joint 0 the global
        orientation; axis-angle may also be a flat (..., 72) SMPL vector.
        root_position: (..., 3) pelvis world position in metres, or None for the rest position.
        Returns {"joints": (..., 24, 3), "world_rot": (..., 24, 3, 3)} and, when asked and a mesh is
        loaded, "vertices": (..., V, 3).
        """
        rot = pose_to_matrices(torch.as_tensor(pose, dtype=torch.float32), form, NUM_JOINTS)
        if root_position is not None:
            root_position = torch.as_tensor(root_position, dtype=rot.dtype)
        joints, world_rot = forward_kinematics(rot, self.rest_joints, self.parents, root_position)
        out = {"joints": joints, "world_rot": world_rot}
        if with_vertices:
            if not self.has_mesh:
                raise ValueError(f"the {self.kind} body has no mesh to skin")
            out["vertices"] = skin(self.vertices, self.weights, self.rest_joints, joints, world_rot)
        return out


    def pose_arrays(self, pose: np.ndarray, root_position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A clip as numpy: pose (T, 24, 3) axis-angle and root (T, 3) metres -> float64 joints
        (T, 24, 3) and world rotations (T, 24, 3, 3), for the numpy code downstream."""
        out = self.pose(torch.from_numpy(np.asarray(pose)), torch.from_numpy(np.asarray(root_position)))
        return out["joints"].numpy().astype(np.float64), out["world_rot"].numpy().astype(np.float64)


def procedural_body(stature: float = DEFAULT_STATURE) -> Body:
    """A skeleton-only body from anthropometric fractions × stature (no asset needed)."""
    index = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
    joints = np.zeros((NUM_JOINTS, 3), np.float32)
    for name, (x, y, z) in _PROCEDURAL_FRACTIONS.items():
        joints[index[name]] = (x, y, z)
        if name.startswith("left_"):
            joints[index["right_" + name[5:]]] = (-x, y, z)
    return Body(kind="procedural", rest_joints=torch.from_numpy(joints * stature), stature=stature,
                source="anthropometric fractions (Drillis & Contini, Winter)")


def load_default_body(path: Path | str = DEFAULT_BODY_PATH, stature: float = DEFAULT_STATURE,
                      mesh: str = "lowres") -> Body:
    """The bundled CC0 body (tools/bake_default_body.py), scaled to `stature` metres.

    mesh: "lowres" (≈1.2k vertices, for viewers) or "full" (≈13.7k vertices).
    Falls back to the procedural skeleton, with a warning, when the asset file is missing.
    """
    path = Path(path)
    if not path.exists():
        log.warning("default body asset %s is missing; using the procedural skeleton (no mesh)", path)
        return procedural_body(stature)
    with np.load(path) as data:
        if f"{mesh}_vertices" not in data:
            raise ValueError(f"{path} has no {mesh!r} mesh (keys: {sorted(data.keys())})")
        names = tuple(str(n) for n in data["names"])
        parents = tuple(int(p) for p in data["parents"])
        if names != SMPL_JOINT_NAMES or parents != SMPL_PARENTS:
            raise ValueError(f"{path} is not on the SMPL 24-joint topology")
        vertices = torch.from_numpy(data[f"{mesh}_vertices"].astype(np.float32))
        body = Body(
            kind="default",
            rest_joints=torch.from_numpy(data["joints"].astype(np.float32)),
            stature=float(vertices[:, 1].max() - vertices[:, 1].min()),
            source=f"{path.name} ({json.loads(str(data['meta'])).get('source', '')})",
            vertices=vertices,
            faces=torch.from_numpy(data[f"{mesh}_faces"].astype(np.int64)),
            weights=torch.from_numpy(data[f"{mesh}_weights"].astype(np.float32)),
        )
    return body.scaled(stature)
