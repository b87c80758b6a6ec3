"""Engine-space conventions for the outputs: SMPL joints → Unity HumanBodyBones / VRM humanoid names,
and SMPL coordinates → Unity (VMC, VRChat OSC) and Unreal (VRM4U) coordinates.

Frames (see ../shared/design/PEERS_AND_PROTOCOLS.md §2.1, §2.2, §3):
- SMPL (engine.body.kinematics): right-handed, metres, +y up, the body faces +z, its left at +x.
  Identity local rotations = rest T-pose with world-aligned joint frames.
- Unity / VMC / VRChat: left-handed, metres, +y up, +z forward, +x right. A humanoid faces +z with
  its right hand at +x. Quaternions are sent as (x, y, z, w), scalar LAST ("Unity order").
- Internally (engine.body.rotations) quaternions are (w, x, y, z), scalar FIRST ("wxyz").

SMPL → Unity is a change of basis, not a mirroring of the body. Both frames share up (+y) and
forward (+z); SMPL's +x is the body's left, Unity's +x is the character's right. A point
a·left + b·up + c·forward therefore has SMPL coordinates (a, b, c) and Unity coordinates (−a, b, c):
    p_u = M p,  M = diag(−1, 1, 1).
So the rest body keeps facing +z (M leaves z alone) and its left side lands at Unity −x, which is
the character's left in Unity: left bones stay left bones, nothing is relabelled.
A rotation acting on points, R (p' = R p), becomes R_u = M R M⁻¹ = M R M. M is improper (det −1)
but M R M is a proper rotation, and M R M = P R P with P = −M = diag(1, −1, −1), the proper 180° turn
about x. Conjugating by a proper P rotates the quaternion's vector part by P, so
    (w, x, y, z) → (w, x, −y, −z),
the same formula Unity uses (Unity's Quaternion algebra is the usual Hamilton one; only the
physical reading of "positive angle" flips with the handedness, which is exactly what the sign
change compensates). Because M M = I, M (A B) M = (M A M)(M B M): converting every local rotation
and composing in Unity gives the converted world rotations, so local rotations convert one by one.

VMC wants Unity-space LOCAL rotations of HumanBodyBones in a T-pose-normalised rig (VRM 0.x style:
every bone frame world-aligned, identity in the T-pose). SMPL's local rotations have exactly that
meaning, so the Unity local rotation of a bone is the converted SMPL local rotation of its joint.

Every function taking arrays accepts a torch tensor or a numpy array and returns the same kind.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from engine.body.rotations import (form_trailing_dims, matrix_to_quat, numpy_compatible, quat_multiply, quat_to_matrix,
                                   to_matrix)
from engine.body.skeleton import NUM_JOINTS


@dataclass(frozen=True)
class BoneName:
    """One SMPL joint and the humanoid bone it drives; unity/vrm are None where there is none."""

    smpl_index: int
    smpl: str
    unity: str | None  # UnityEngine.HumanBodyBones enum name, as VMC sends it
    vrm: str | None  # VRM humanoid bone name (VRMC_vrm-1.0 / VRM 0.x)


# SMPL's "collar" is the clavicle (Unity Shoulder) and its "shoulder" the upper-arm joint (Unity
# UpperArm); SMPL's "ankle" is Unity's Foot and its "foot" the Toes. The hand joints are finger roots
# that no humanoid bone corresponds to.
BONES = (
    BoneName(0, "pelvis", "Hips", "hips"),
    BoneName(1, "left_hip", "LeftUpperLeg", "leftUpperLeg"),
    BoneName(2, "right_hip", "RightUpperLeg", "rightUpperLeg"),
    BoneName(3, "spine1", "Spine", "spine"),
    BoneName(4, "left_knee", "LeftLowerLeg", "leftLowerLeg"),
    BoneName(5, "right_knee", "RightLowerLeg", "rightLowerLeg"),
    BoneName(6, "spine2", "Chest", "chest"),
    BoneName(7, "left_ankle", "LeftFoot", "leftFoot"),
    BoneName(8, "right_ankle", "RightFoot", "rightFoot"),
    BoneName(9, "spine3", "UpperChest", "upperChest"),
    BoneName(10, "left_foot", "LeftToes", "leftToes"),
    BoneName(11, "right_foot", "RightToes", "rightToes"),
    BoneName(12, "neck", "Neck", "neck"),
    BoneName(13, "left_collar", "LeftShoulder", "leftShoulder"),
    BoneName(14, "right_collar", "RightShoulder", "rightShoulder"),
    BoneName(15, "head", "Head", "head"),
    BoneName(16, "left_shoulder", "LeftUpperArm", "leftUpperArm"),
    BoneName(17, "right_shoulder", "RightUpperArm", "rightUpperArm"),
    BoneName(18, "left_elbow", "LeftLowerArm", "leftLowerArm"),
    BoneName(19, "right_elbow", "RightLowerArm", "rightLowerArm"),
    BoneName(20, "left_wrist", "LeftHand", "leftHand"),
    BoneName(21, "right_wrist", "RightHand", "rightHand"),
    BoneName(22, "left_hand", None, None),
    BoneName(23, "right_hand", None, None),
)
MAPPED_BONES = tuple(b for b in BONES if b.unity is not None)

_BY_SMPL = {b.smpl: b for b in BONES}
_BY_UNITY = {b.unity: b for b in MAPPED_BONES}
_BY_VRM = {b.vrm: b for b in MAPPED_BONES}
_SPINE2, _SPINE3 = _BY_SMPL["spine2"].smpl_index, _BY_SMPL["spine3"].smpl_index


def bone_for_smpl(joint: int | str) -> BoneName:
    """The table row of an SMPL joint, by index (0..23) or name ("left_collar")."""
    if isinstance(joint, (int, np.integer)):
        if not 0 <= joint < NUM_JOINTS:
            raise KeyError(f"no SMPL joint {joint}; indices are 0..{NUM_JOINTS - 1}")
        return BONES[int(joint)]
    if joint not in _BY_SMPL:
        raise KeyError(f"no SMPL joint named {joint!r}")
    return _BY_SMPL[joint]


def bone_for_unity(name: str) -> BoneName:
    """The table row of a Unity HumanBodyBones name ("LeftUpperArm"); KeyError if SMPL has none."""
    if name not in _BY_UNITY:
        raise KeyError(f"no SMPL joint drives Unity bone {name!r}")
    return _BY_UNITY[name]


def bone_for_vrm(name: str) -> BoneName:
    """The table row of a VRM humanoid bone name ("leftUpperArm"); KeyError if SMPL has none."""
    if name not in _BY_VRM:
        raise KeyError(f"no SMPL joint drives VRM bone {name!r}")
    return _BY_VRM[name]


def _signed(x: torch.Tensor, order: list, signs: tuple) -> torch.Tensor:
    """x[..., order] * signs: reorder then flip components."""
    return x[..., order] * torch.tensor(signs, dtype=x.dtype, device=x.device)


@numpy_compatible
def position_to_unity(p):
    """(..., 3) SMPL-frame position, metres -> (..., 3) Unity position, metres: (−x, y, z).

    Its own inverse, so it also takes Unity positions back to the SMPL frame.
    """
    return _signed(p, [0, 1, 2], (-1.0, 1.0, 1.0))


@numpy_compatible
def quat_to_unity(q):
    """(..., 4) SMPL-frame quaternion (w, x, y, z) -> (..., 4) Unity quaternion in Unity's
    (x, y, z, w) order: (x, −y, −z, w). Norm and sign are kept (a unit w >= 0 input stays so)."""
    return _signed(q, [1, 2, 3, 0], (1.0, -1.0, -1.0, 1.0))


@numpy_compatible
def quat_from_unity(q_xyzw):
    """(..., 4) Unity quaternion (x, y, z, w) -> (..., 4) SMPL-frame quaternion (w, x, y, z);
    the inverse of quat_to_unity."""
    return _signed(q_xyzw, [3, 0, 1, 2], (1.0, 1.0, -1.0, -1.0))


def _unity_to_wxyz(q_xyzw):
    """Unity (x, y, z, w) -> (w, x, y, z) in the same Unity frame (no change of basis)."""
    return q_xyzw[..., [3, 0, 1, 2]]


@dataclass(frozen=True)
class UnityPose:
    """A pose ready for VMC.

    rotations: HumanBodyBones name -> (..., 4) Unity LOCAL rotation, (x, y, z, w), unit, w >= 0,
      relative to the T-pose-normalised rig; "Hips" holds the global orientation. In SMPL joint order.
    hips_position: (..., 3) pelvis position in Unity world space, metres, or None when not given.
    """

    rotations: dict[str, torch.Tensor | np.ndarray]
    hips_position: torch.Tensor | np.ndarray | None = None


def smpl_pose_to_unity(pose, form: str = "axis_angle", root_position=None,
                       upper_chest: bool = True) -> UnityPose:
    """Convert an SMPL pose to Unity local bone rotations (and the Hips position).

    pose: (..., 24, k) SMPL local rotations in `form` (engine.body.rotations.FORMS), joint 0 the global
      orientation; axis-angle may also be a flat (..., 72) vector. Same semantics as Body.pose.
    root_position: (..., 3) pelvis world position in the SMPL frame, metres, or None.
    upper_chest: False for avatars without an UpperChest bone (it is optional in VRM): spine3 is
      folded into Chest, Chest_local = spine2_local · spine3_local (spine3 applied first, in the
      spine2 frame), so Chest's world rotation equals SMPL spine3's and Neck / Shoulder, whose
      parent becomes Chest, keep their local rotations and end with the same world rotations.
    The SMPL hand joints (22, 23) have no humanoid bone and are dropped.
    """
    if form == "axis_angle" and pose.shape[-1] == 3 * NUM_JOINTS:
        pose = pose.reshape(tuple(pose.shape[:-1]) + (NUM_JOINTS, 3))
    joint_axis = -1 - form_trailing_dims(form)
    if len(pose.shape) < -joint_axis or pose.shape[joint_axis] != NUM_JOINTS:
        raise ValueError(f"pose of shape {tuple(pose.shape)} in form {form!r} does not hold "
                         f"{NUM_JOINTS} joint rotations")
    local = matrix_to_quat(to_matrix(pose, form))  # (..., 24, 4) wxyz, SMPL frame
    rotations = {b.unity: local[..., b.smpl_index, :] for b in MAPPED_BONES}
    if not upper_chest:
        del rotations["UpperChest"]
        rotations["Chest"] = quat_multiply(local[..., _SPINE2, :], local[..., _SPINE3, :])
    hips = None if root_position is None else position_to_unity(root_position)
    return UnityPose(rotations={name: quat_to_unity(q) for name, q in rotations.items()},
                     hips_position=hips)


@numpy_compatible
def unity_euler_degrees(q_xyzw):
    """(..., 4) Unity quaternion (x, y, z, w) -> (..., 3) Unity Euler angles (x, y, z), degrees,
    as VRChat's OSC trackers take them.

    Unity's order: rotate about Z, then X, then Y, all about the fixed parent axes, i.e.
    q = qY · qX · qZ and R = Ry(y) Rx(x) Rz(z). Expanding, R[1,2] = −sin x,
    (R[1,0], R[1,1]) = cos x (sin z, cos z) and (R[0,2], R[2,2]) = cos x (sin y, cos y).
    Ranges: x in [−90, 90], y and z in (−180, 180]; Unity's Quaternion.eulerAngles reports the same
    rotation wrapped into [0, 360). At x = ±90° (gimbal lock) only y − z (x = +90°) or y + z
    (x = −90°) is determined; there z = 0 and R = Ry(y) Rx(x) gives y = atan2(−R[2,0], R[0,0]).
    """
    # float64 so the lock test and the near-lock angles are exact for the rotation the input holds.
    m = quat_to_matrix(_unity_to_wxyz(q_xyzw).double())
    cos_x = torch.hypot(m[..., 1, 0], m[..., 1, 1])
    x = torch.atan2(-m[..., 1, 2], cos_x)  # atan2, not asin: asin loses precision near ±90°
    locked = cos_x < 1e-9
    z = torch.where(locked, torch.zeros_like(x), torch.atan2(m[..., 1, 0], m[..., 1, 1]))
    y = torch.where(locked, torch.atan2(-m[..., 2, 0], m[..., 0, 0]),
                    torch.atan2(m[..., 0, 2], m[..., 2, 2]))
    return torch.rad2deg(torch.stack([x, y, z], dim=-1)).to(q_xyzw.dtype)


# Unity -> Unreal as VRM4U converts incoming VMC (ruyo/VRM4U VrmVMCObject.cpp): Unreal's x = −Unity x,
# y = Unity z, z = Unity y, in centimetres. Both engines are left-handed, so this axis map is a proper
# rotation (det +1) and a quaternion's vector part maps like a position. VRM4U applies it itself to
# VMC input, so VMC output stays in Unity space; these are for feeding Unreal directly.
@numpy_compatible
def unity_position_to_unreal(p):
    """(..., 3) Unity position, metres -> (..., 3) Unreal position, centimetres: (−x, z, y) · 100."""
    return _signed(p, [0, 2, 1], (-100.0, 100.0, 100.0))


@numpy_compatible
def unity_quat_to_unreal(q_xyzw):
    """(..., 4) Unity quaternion (x, y, z, w) -> (..., 4) Unreal FQuat (X, Y, Z, W): (−x, z, y, w)."""
    return _signed(q_xyzw, [0, 2, 1, 3], (-1.0, 1.0, 1.0, 1.0))
