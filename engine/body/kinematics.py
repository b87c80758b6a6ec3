"""Forward kinematics and linear blend skinning for SMPL-topology skeletons (torch, batched).

Pose semantics (the same for the default body, the procedural skeleton and real SMPL):
- `local_rot[..., 0]` is the global orientation of the pelvis; `local_rot[..., j]` for j >= 1 rotates
  joint j relative to its parent. Identity everywhere is the rest T-pose, since every rest joint
  frame is world-aligned (y-up, body facing +z, its left at +x).
- `root_position` is the **pelvis world position** in metres, (..., 3). It is not smplx's `transl`,
  which is added after skinning: for a real SMPL body, `transl = root_position - rest_joints[0]`.
  When `root_position` is None the pelvis stays at its rest position.
- The root rotation pivots about the pelvis joint.
"""
from __future__ import annotations

import torch

from engine.body.rotations import form_trailing_dims, to_matrix


def bone_offsets(rest_joints: torch.Tensor, parents) -> torch.Tensor:
    """(J, 3) rest joint positions -> (J, 3) offset of each joint from its parent (root: its position)."""
    offsets = rest_joints.clone()
    offsets[1:] = rest_joints[1:] - rest_joints[list(parents[1:])]
    return offsets


def forward_kinematics(local_rot: torch.Tensor, rest_joints: torch.Tensor, parents,
                       root_position: torch.Tensor | None = None):
    """Pose the skeleton.

    local_rot: (..., J, 3, 3) local rotation matrices (see module docstring).
    rest_joints: (J, 3) rest T-pose joint positions, metres.
    parents: length-J sequence, parents[0] == -1, every parent index lower than its child's.
    root_position: (..., 3) pelvis world position, metres, or None.
    Returns joints (..., J, 3) metres and world_rot (..., J, 3, 3) world rotation of each joint.
    """
    batch = local_rot.shape[:-3]
    offsets = bone_offsets(rest_joints.to(local_rot), parents).expand(batch + (len(parents), 3))
    if root_position is not None:
        offsets = torch.cat([root_position.to(local_rot)[..., None, :], offsets[..., 1:, :]], dim=-2)
    # Local 4x4 transforms [R_j | offset_j] built in one batched op; the chain then costs one
    # matrix product per joint, which is what matters at batch 1 (the live case).
    bottom = local_rot.new_tensor([0.0, 0.0, 0.0, 1.0]).expand(batch + (len(parents), 1, 4))
    local = torch.cat([torch.cat([local_rot, offsets[..., None]], dim=-1), bottom], dim=-2)
    chain = [local[..., 0, :, :]]
    for j in range(1, len(parents)):
        chain.append(chain[parents[j]] @ local[..., j, :, :])
    world = torch.stack(chain, dim=-3)
    return world[..., :3, 3], world[..., :3, :3]


def skin(rest_vertices: torch.Tensor, weights: torch.Tensor, rest_joints: torch.Tensor,
         joints: torch.Tensor, world_rot: torch.Tensor) -> torch.Tensor:
    """Linear blend skinning, no pose correctives.

    rest_vertices: (V, 3) rest-pose vertices, metres. weights: (V, J), rows sum to 1.
    rest_joints: (J, 3). joints: (..., J, 3) and world_rot: (..., J, 3, 3) from forward_kinematics.
    Returns (..., V, 3): v' = sum_j w_vj (R_j (v - r_j) + p_j).
    """
    rest_joints = rest_joints.to(joints)
    trans = joints - (world_rot @ rest_joints[:, :, None])[..., 0]  # (..., J, 3)
    per_joint = torch.cat([world_rot, trans[..., None]], dim=-1)  # (..., J, 3, 4)
    # Blend the 3x4 transforms with one matrix product (BLAS), then apply them to [v, 1].
    blended = weights.to(joints) @ per_joint.flatten(-2)  # (..., V, 12)
    blended = blended.unflatten(-1, (3, 4))
    v = rest_vertices.to(joints)
    v_h = torch.cat([v, torch.ones_like(v[:, :1])], dim=-1)[:, None, :]  # (V, 1, 4)
    return (blended * v_h).sum(-1)


def pose_to_matrices(pose: torch.Tensor, form: str, num_joints: int) -> torch.Tensor:
    """A pose in any rotation form -> (..., J, 3, 3), checking it has one rotation per joint.

    pose: (..., J, 3) axis-angle, (..., J, 4) quaternion, (..., J, 6) 6D or (..., J, 3, 3).
    A flat SMPL vector (..., 72) is accepted for axis-angle.
    """
    if form == "axis_angle" and pose.shape[-1] == 3 * num_joints:
        pose = pose.reshape(pose.shape[:-1] + (num_joints, 3))
    joint_axis = -1 - form_trailing_dims(form)
    if pose.dim() < -joint_axis or pose.shape[joint_axis] != num_joints:
        raise ValueError(f"pose of shape {tuple(pose.shape)} in form {form!r} does not hold "
                         f"{num_joints} joint rotations")
    return to_matrix(pose, form)
