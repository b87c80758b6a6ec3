"""Emitted motion rows -> the pose of each, many frames in one set of calls.

The live engine emits a normalised motion row per input frame (engine.model.motion), and each
becomes a pose: local rotations as quaternions and axis-angle, the joints posed about the pelvis
in the world and in the camera, contact probabilities, and the step the pelvis moved since the
input frame before. All of it is stateless, so the frames of every stream in a tick
(engine.live.batch) are decoded together: a few dozen torch calls for N frames, not per frame
(what a call costs on a pose, not its arithmetic, was most of a frame's time). What carries state
(the pelvis path, the foot lock) stays with each stream's engine.

    poses = decode_rows(norm, cur, before, counts, logits, rest64, parents)
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from engine.body.kinematics import forward_kinematics
from engine.body.rotations import matrix_to_quat, quat_to_axis_angle
from engine.model.motion import (ROOT_CAM_ROTATION, ROOT_GV_ROTATION, VELOCITY, Normalizer, heading, local_rotations,
                                 pelvis_in_camera, rotations)


@torch.inference_mode()
def decode_rows(norm: Normalizer, cur: torch.Tensor, before: torch.Tensor, counts: Sequence[int],
                logits: torch.Tensor, rest64: torch.Tensor, parents) -> dict[str, np.ndarray]:
    """The poses of N emitted frames.

    cur: (N, 144) normalised rows of the frames. before: (M, 144) normalised rows of the model
    frames whose velocities carry the pelvis to each frame, counts[i] of them for frame i (oldest
    first, sum M). logits: (N, 6) contact logits. rest64: (J, 3) float64 rest joints, metres.
    Returns float64 numpy arrays: step (N, 3) the pelvis's move in GV metres; pose_quat (N, 24, 4)
    and pose_aa (N, 24, 3) local rotations (joint 0 the root in GV); joints (N, 24, 3) world
    joints with the pelvis at the origin; joints_cam (N, 24, 3) the joints in the told camera,
    metres; contacts (N, 6) probabilities."""
    n = len(cur)
    # The frames' rows and those before them in one set of calls: every call costs as much as its
    # arithmetic here.
    raw = norm.inverse(torch.cat([cur, before]))
    rot = rotations(raw)  # (N + M, 23, 3, 3)
    raw, rot, before_raw, before_gv = raw[:n], rot[:n], raw[n:], rot[n:, ROOT_GV_ROTATION]
    moves = heading(before_gv) @ before_raw[:, VELOCITY, None]  # (M, 3, 1)
    owner = torch.from_numpy(np.repeat(np.arange(n), counts)).to(cur.device)
    step = torch.zeros(n, 3, dtype=moves.dtype, device=cur.device).index_add_(0, owner, moves[..., 0])
    local = local_rotations(rot)
    joints, _ = forward_kinematics(local.double(), rest64, parents, rest64.new_zeros(n, 3))
    # The camera sees the same posed skeleton about the pelvis, turned from GV to the camera.
    gv_to_cam = (rot[:, ROOT_CAM_ROTATION] @ rot[:, ROOT_GV_ROTATION].transpose(-1, -2)).double()
    joints_cam = joints @ gv_to_cam.transpose(-1, -2) + pelvis_in_camera(raw).double()[:, None]
    quat = matrix_to_quat(local)
    out = {"step": step, "pose_quat": quat, "pose_aa": quat_to_axis_angle(quat), "joints": joints,
           "joints_cam": joints_cam, "contacts": torch.sigmoid(logits)}
    return {k: v.double().cpu().numpy() for k, v in out.items()}
