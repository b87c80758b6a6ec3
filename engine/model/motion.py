"""The motion representation the denoiser works in: one vector per frame, and its way back.

Per frame (MOTION_DIM = 144), after GENMO/GEM (../shared/design/GEM_NOTES.md §1), adapted:
    [0:126]    body joints 1..21, local rotations, 6D (first two rows)
    [126:132]  root (pelvis) orientation in the camera frame, 6D
    [132:138]  root orientation in the gravity-view frame, 6D
    [138:141]  root velocity in the heading frame (yaw of the GV root orientation), metres/frame:
               v_t = H_t^T (p_{t+1} - p_t), the last frame repeating the one before
    [141:144]  the pelvis in the camera: (x / z, y / z, log z), metres
Hands (SMPL joints 22, 23) are not estimated; they decode to identity.
Contacts are not in the vector: the model has a separate head (CONTACT_JOINTS of engine.data.retarget).

Frames. Camera: OpenCV axes (x right, y down, z forward). Gravity-view (GV): y up (against
gravity), z the camera's optical axis flattened onto the ground, x = y × z; for a static camera it
is a fixed world frame, which is where decoded world motion lives (origin at the first frame's
pelvis; heading and origin are free, as in the metrics).

The camera translation is expressed for the camera the model is told about (its focal length,
e.g. an assumed 60° field of view when uncalibrated): the pelvis where that camera would put it
to appear at the same pixel with the body's true size, i.e. the depth scaled by told / true focal
and (x / z, y / z) divided by it (the image position over the told focal, what the model sees).
"""
from __future__ import annotations

import numpy as np
import torch

from engine.body.kinematics import forward_kinematics
from engine.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, rot6d_to_matrix
from engine.body.skeleton import SMPL_PARENTS

NUM_BODY = 21
MOTION_DIM = NUM_BODY * 6 + 6 + 6 + 3 + 3
POSE = slice(0, 126)
ROOT_CAM = slice(126, 132)
ROOT_GV = slice(132, 138)
VELOCITY = slice(138, 141)
CAM_T = slice(141, 144)
ROTATIONS = slice(0, 138)  # the 23 6D blocks: body joints, root in camera, root in GV
ROOT_CAM_ROTATION, ROOT_GV_ROTATION = NUM_BODY, NUM_BODY + 1  # their places among the 23


def gv_from_camera(R_w2c: torch.Tensor) -> torch.Tensor:
    """(3, 3) world -> camera rotation of a camera in a y-up world -> (3, 3) camera -> GV rotation
    (rows: the GV axes in camera coordinates)."""
    up = R_w2c @ torch.tensor([0.0, 1.0, 0.0], dtype=R_w2c.dtype)
    forward = torch.tensor([0.0, 0.0, 1.0], dtype=R_w2c.dtype)
    z = forward - (forward @ up) * up
    z = z / z.norm()
    return torch.stack([torch.linalg.cross(up, z), up, z])


def heading(R: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) orientations in a y-up frame -> (..., 3, 3) their yaw-only part (rotation about
    +y taking +z to the flattened forward axis)."""
    f = R[..., :, 2].clone()
    f[..., 1] = 0.0
    f = f / f.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    zero, one = torch.zeros_like(f[..., 0]), torch.ones_like(f[..., 0])
    cols = [torch.stack([f[..., 2], zero, -f[..., 0]], -1), torch.stack([zero, one, zero], -1), f]
    return torch.stack(cols, -1)


def encode(local_rot: torch.Tensor, root_world: torch.Tensor, R_w2c: torch.Tensor, t_w2c: torch.Tensor,
           focal_ratio: float | torch.Tensor = 1.0) -> torch.Tensor:
    """Motion -> (T, 144) vectors.

    local_rot: (T, 24, 3, 3) SMPL local rotations (joint 0 = world root orientation, y-up world).
    root_world: (T, 3) pelvis world positions, metres. R_w2c (3, 3), t_w2c (3,): the camera.
    focal_ratio: the told focal length over the true one (1 for a calibrated camera).
    """
    T = local_rot.shape[0]
    root_cam = R_w2c @ local_rot[:, 0]
    c2gv = gv_from_camera(R_w2c)
    root_gv = c2gv @ root_cam
    p_gv = root_world @ (c2gv @ R_w2c).T
    step = torch.zeros_like(p_gv)
    if T > 1:
        step[:-1] = p_gv[1:] - p_gv[:-1]
        step[-1] = step[-2]
    velocity = (heading(root_gv).transpose(-1, -2) @ step[..., None])[..., 0]
    pelvis_cam = root_world @ R_w2c.T + t_w2c
    z = pelvis_cam[:, 2:].clamp_min(1e-3)
    cam_t = torch.cat([pelvis_cam[:, :2] / (z * focal_ratio), torch.log(z * focal_ratio)], -1)
    return torch.cat([matrix_to_rot6d(local_rot[:, 1:22]).reshape(T, -1), matrix_to_rot6d(root_cam),
                      matrix_to_rot6d(root_gv), velocity, cam_t], -1)


def integrate(root_gv: torch.Tensor, velocity: torch.Tensor, start: torch.Tensor | None = None) -> torch.Tensor:
    """(..., T, 3, 3) GV root orientations and (..., T, 3) heading-frame velocities -> (..., T, 3)
    pelvis positions in GV: p_0 = start (default 0), p_{t+1} = p_t + H_t v_t."""
    steps = (heading(root_gv) @ velocity[..., None])[..., 0]
    p = torch.cumsum(steps, dim=-2) - steps
    return p if start is None else p + start


def rotations(x: torch.Tensor) -> torch.Tensor:
    """(..., 144) -> (..., 23, 3, 3) every rotation the vector holds, in ROTATIONS order: body joints
    1..21, then ROOT_CAM_ROTATION, then ROOT_GV_ROTATION."""
    return rot6d_to_matrix(x[..., ROTATIONS].reshape(*x.shape[:-1], -1, 6))


def local_rotations(rot: torch.Tensor) -> torch.Tensor:
    """(..., 23, 3, 3) rotations (`rotations`) -> (..., 24, 3, 3) SMPL local rotations: joint 0 the
    root orientation in GV (a y-up world), hands identity."""
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device).expand(*rot.shape[:-3], 2, 3, 3)
    return torch.cat([rot[..., ROOT_GV_ROTATION, None, :, :], rot[..., :NUM_BODY, :, :], eye], dim=-3)


def pelvis_in_camera(x: torch.Tensor) -> torch.Tensor:
    """(..., 144) -> (..., 3) the pelvis in the told camera, metres."""
    z = torch.exp(x[..., CAM_T][..., 2:])
    return torch.cat([x[..., CAM_T][..., :2] * z, z], -1)


def decode(x: torch.Tensor) -> dict:
    """(..., T, 144) -> the motion it holds.

    local_rot: (..., T, 24, 3, 3) with joint 0 = the root orientation in GV (a y-up world) and
    hands identity. root_cam: (..., T, 3, 3). root_gv: (..., T, 3, 3). root_world: (..., T, 3)
    pelvis path in GV from the origin (integrated velocities). pelvis_cam: (..., T, 3) metres in
    the told camera.
    """
    rot = rotations(x)
    root_gv = rot[..., ROOT_GV_ROTATION, :, :]
    return {"local_rot": local_rotations(rot), "root_cam": rot[..., ROOT_CAM_ROTATION, :, :], "root_gv": root_gv,
            "root_world": integrate(root_gv, x[..., VELOCITY]), "pelvis_cam": pelvis_in_camera(x)}


def shift_rows(x: torch.Tensor, source: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Move motion vectors by a share of the change that takes `source` to `target`.

    x: (..., 144) raw (not normalised) vectors; source, target: broadcastable to x; weight:
    broadcastable to x[..., 0], 0 = unchanged, 1 = the whole change. Each rotation R becomes
    exp(w log(S_target S_source^T)) R, on SO(3): a turn of 160° is spread evenly over the
    weights instead of cutting through the 6D space (which flips the body in one frame). The
    velocity and camera translation move linearly. With source = x, weight 1 gives target.
    """
    # numpy's, not torch.broadcast_shapes: torch's imports its symbolic-shapes machinery (sympy)
    # on first use, half a second, and the live engine's first use is the first time a person
    # leaves the view.
    lead = np.broadcast_shapes(x.shape, source.shape, target.shape)[:-1]
    delta = rotations(target) @ rotations(source).transpose(-1, -2)
    w = torch.as_tensor(weight, dtype=x.dtype, device=x.device).expand(lead)
    turned = axis_angle_to_matrix(matrix_to_axis_angle(delta) * w[..., None, None]) @ rotations(x)
    rest = x[..., ROTATIONS.stop:] + w[..., None] * (target[..., ROTATIONS.stop:] - source[..., ROTATIONS.stop:])
    return torch.cat([matrix_to_rot6d(turned).reshape(*lead, -1), rest.expand(*lead, -1)], -1)


def align_heading(x: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(..., 144) raw vectors with their GV root turned about the vertical by the yaw that takes
    `source`'s heading (a (144,) vector) to `target`'s: the whole path turns with it, since
    velocities live in the heading frame."""
    yaw = heading(rot6d_to_matrix(target[ROOT_GV])) @ heading(rot6d_to_matrix(source[ROOT_GV])).transpose(-1, -2)
    out = x.clone()
    out[..., ROOT_GV] = matrix_to_rot6d(yaw @ rot6d_to_matrix(x[..., ROOT_GV]))
    return out


def camera_joints(motion: dict, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded motion -> (root-relative joints (..., L, 24, 3) in the camera frame, absolute
    joints in the told camera)."""
    local = motion["local_rot"].clone()
    local[..., 0, :, :] = motion["root_cam"]
    rel, _ = forward_kinematics(local, rest, SMPL_PARENTS, torch.zeros_like(motion["pelvis_cam"]))
    return rel, rel + motion["pelvis_cam"][..., None, :]


class Normalizer(torch.nn.Module):
    """Per-dimension mean and std of the training set's motion vectors, saved with the weights.
    Stds below `min_std` are raised to it, so near-constant dimensions do not explode."""

    def __init__(self, mean: torch.Tensor | None = None, std: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("mean", torch.zeros(MOTION_DIM) if mean is None else mean.float())
        self.register_buffer("std", torch.ones(MOTION_DIM) if std is None else std.float())

    @classmethod
    def fit(cls, x: torch.Tensor, min_std: float = 1e-3) -> "Normalizer":
        """x: (N, 144) motion vectors."""
        return cls(x.mean(0), x.std(0).clamp_min(min_std))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def inverse(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.std + self.mean
