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

import functools

import torch

from engine.body.rotations import form_trailing_dims, to_matrix


def bone_offsets(rest_joints: torch.Tensor, parents) -> torch.Tensor:
    """(J, 3) rest joint positions -> (J, 3) offset of each joint from its parent (root: its position)."""
    offsets = rest_joints.clone()
    offsets[1:] = rest_joints[1:] - rest_joints[list(parents[1:])]
    return offsets


def _selection(index: list[int]) -> slice | list[int]:
    """A list of indices as a slice where it can be one (consecutive, or one index repeated: a
    length-1 slice that broadcasts), for a view instead of a gather."""
    if len(set(index)) == 1:
        return slice(index[0], index[0] + 1)
    return slice(index[0], index[0] + len(index)) if index == list(range(index[0], index[0] + len(index))) else index


@functools.cache
def _levels(parents: tuple[int, ...]) -> tuple[list[tuple[slice | list[int], int, slice | list[int]]], list[int] | None]:
    """The joints below the root by depth, for one batched matrix product per depth: per depth
    (its joints; which depth above holds their parents; the parents' places in it). And the
    permutation from the depths' joints in order (root first) back to joint order, or None where
    that is joint order already."""
    depth = [0] * len(parents)
    for j in range(1, len(parents)):
        depth[j] = depth[parents[j]] + 1
    groups = [[j for j in range(len(parents)) if depth[j] == d] for d in range(max(depth) + 1)]
    levels = [(_selection(groups[d]), d - 1, _selection([groups[d - 1].index(parents[j]) for j in groups[d]]))
              for d in range(1, len(groups))]
    order = [j for g in groups for j in g]
    return levels, None if order == sorted(order) else [order.index(j) for j in range(len(order))]


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
    # Local 4x4 transforms [R_j | offset_j], written into one tensor.
    local = local_rot.new_zeros(batch + (len(parents), 4, 4))
    local[..., :3, :3] = local_rot
    local[..., :3, 3] = bone_offsets(rest_joints.to(local_rot), parents)
    if root_position is not None:
        local[..., 0, :3, 3] = root_position.to(local_rot)
    local[..., 3, 3] = 1.0
    # Each depth's world transforms in one product: a chain of joints would take one per joint,
    # and what a product costs at batch 1 (the live case) is mostly its call.
    levels, order = _levels(tuple(parents))
    worlds = [local[..., :1, :, :]]
    for joints, above, at in levels:
        worlds.append(worlds[above][..., at, :, :] @ local[..., joints, :, :])
    world = torch.cat(worlds, dim=-3)
    if order is not None:
        world = world[..., order, :, :]
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
