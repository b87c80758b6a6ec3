"""Forward kinematics and skinning on every body: the pose semantics the whole product relies on."""
import math

import pytest
import torch

from engine.body import rotations as R
from engine.body.body_model import load_default_body, procedural_body
from engine.body.kinematics import bone_offsets, forward_kinematics, pose_to_matrices, skin
from engine.body.skeleton import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


def descendants(j):
    out = {j}
    for c in range(NUM_JOINTS):
        if SMPL_PARENTS[c] in out:
            out.add(c)
    return out


@pytest.fixture(params=["default", "procedural"])
def body(request):
    return load_default_body() if request.param == "default" else procedural_body()


def test_rest_pose_reproduces_rest_joints(body):
    out = body.pose(torch.zeros(NUM_JOINTS, 3))
    torch.testing.assert_close(out["joints"], body.rest_joints)
    torch.testing.assert_close(out["world_rot"], torch.eye(3).expand(NUM_JOINTS, 3, 3))


def test_left_elbow_flexion_moves_only_forearm_and_hand(body):
    """T-pose + 90° left-elbow flexion (forearm swings from +x to +z: -90° about +y)."""
    pose = torch.zeros(NUM_JOINTS, 3)
    pose[J["left_elbow"]] = torch.tensor([0.0, -math.pi / 2, 0.0])
    joints = body.pose(pose)["joints"]
    rest = body.rest_joints
    moved = {J["left_wrist"], J["left_hand"]}
    for j in range(NUM_JOINTS):
        if j not in moved:
            torch.testing.assert_close(joints[j], rest[j], atol=1e-6, rtol=0, msg=SMPL_JOINT_NAMES[j])
    elbow = rest[J["left_elbow"]]
    for name in ("left_wrist", "left_hand"):
        v = rest[J[name]] - elbow  # along +x in the T-pose
        expected = elbow + torch.stack([-v[2], v[1], v[0]])  # v rotated by -90° about +y: (x, y, z) -> (-z, y, x)
        torch.testing.assert_close(joints[J[name]], expected, atol=1e-6, rtol=0)
        # Moved by the chord of a quarter circle around the elbow.
        assert abs((joints[J[name]] - rest[J[name]]).norm() - math.sqrt(2) * v.norm()) < 1e-5
        assert joints[J[name]][2] > elbow[2] + 0.1  # forearm now points forward


def test_rotation_moves_exactly_the_subtree(body):
    g = torch.Generator().manual_seed(0)
    for j in range(NUM_JOINTS):
        pose = torch.zeros(NUM_JOINTS, 3)
        pose[j] = torch.randn(3, generator=g)
        joints = body.pose(pose, root_position=body.rest_joints[0])["joints"]
        changed = {k for k in range(NUM_JOINTS) if (joints[k] - body.rest_joints[k]).norm() > 1e-6}
        assert changed <= descendants(j) - {j}, SMPL_JOINT_NAMES[j]


def test_bone_lengths_preserved_and_root_is_pelvis_position(body):
    g = torch.Generator().manual_seed(1)
    pose = torch.randn(5, 7, NUM_JOINTS, 3, generator=g)
    root = torch.randn(5, 7, 3, generator=g)
    joints = body.pose(pose, root_position=root)["joints"]
    assert joints.shape == (5, 7, NUM_JOINTS, 3)
    torch.testing.assert_close(joints[..., 0, :], root)
    lengths = (joints[..., 1:, :] - joints[..., list(SMPL_PARENTS[1:]), :]).norm(dim=-1)
    rest_lengths = bone_offsets(body.rest_joints, SMPL_PARENTS)[1:].norm(dim=-1)
    torch.testing.assert_close(lengths, rest_lengths.expand_as(lengths), atol=1e-5, rtol=0)


def test_any_tree_poses_as_a_chain_of_its_joints_with_gradients():
    """Forward kinematics multiplies a whole depth at a time: a tree whose joints are not in depth
    order, with parents repeated and out of order, poses as the joint-by-joint chain does."""
    parents = (-1, 0, 0, 2, 1, 0, 3, 3, 4)
    g = torch.Generator().manual_seed(3)
    rest = torch.randn(len(parents), 3, generator=g, dtype=torch.float64)
    local = R.axis_angle_to_matrix(torch.randn(2, len(parents), 3, generator=g, dtype=torch.float64))
    root = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    joints, world_rot = forward_kinematics(local, rest, parents, root)
    rot, pos = [local[:, 0]], [root]
    for j in range(1, len(parents)):
        p = parents[j]
        rot.append(rot[p] @ local[:, j])
        pos.append(pos[p] + (rot[p] @ (rest[j] - rest[p])[:, None])[..., 0])
    torch.testing.assert_close(world_rot, torch.stack(rot, 1), atol=1e-12, rtol=0)
    torch.testing.assert_close(joints, torch.stack(pos, 1), atol=1e-12, rtol=0)
    joints.sum().backward()
    torch.testing.assert_close(root.grad, torch.full((2, 3), float(len(parents)), dtype=torch.float64))


def test_global_orientation_pivots_about_pelvis(body):
    yaw = torch.zeros(NUM_JOINTS, 3)
    yaw[0] = torch.tensor([0.0, math.pi / 2, 0.0])  # turn to face +x
    joints = body.pose(yaw)["joints"]
    pelvis = body.rest_joints[0]
    rel = body.rest_joints - pelvis
    expected = pelvis + torch.stack([rel[:, 2], rel[:, 1], -rel[:, 0]], dim=-1)
    torch.testing.assert_close(joints, expected, atol=1e-6, rtol=0)


def test_all_rotation_forms_agree(body):
    g = torch.Generator().manual_seed(2)
    aa = torch.randn(3, NUM_JOINTS, 3, generator=g) * 0.5
    m = R.axis_angle_to_matrix(aa)
    ref = body.pose(aa)["joints"]
    for form, pose in [("quat", R.matrix_to_quat(m)), ("rot6d", R.matrix_to_rot6d(m)), ("matrix", m),
                       ("axis_angle", aa.reshape(3, 72))]:
        torch.testing.assert_close(body.pose(pose, form=form)["joints"], ref, atol=1e-5, rtol=0)


def test_pose_shape_errors():
    with pytest.raises(ValueError, match="does not hold 24 joint rotations"):
        pose_to_matrices(torch.zeros(22, 3), "axis_angle", NUM_JOINTS)
    with pytest.raises(ValueError, match="no mesh"):
        procedural_body().pose(torch.zeros(NUM_JOINTS, 3), with_vertices=True)


def test_skinning_follows_the_bones():
    body = load_default_body()
    rest = body.pose(torch.zeros(NUM_JOINTS, 3), with_vertices=True)["vertices"]
    torch.testing.assert_close(rest, body.vertices, atol=1e-6, rtol=0)
    # A rigid motion of the whole body moves every vertex rigidly.
    pose = torch.zeros(NUM_JOINTS, 3)
    pose[0] = torch.tensor([0.3, -1.1, 0.2])
    out = body.pose(pose, root_position=torch.tensor([1.0, 2.0, 3.0]), with_vertices=True)
    rot = R.axis_angle_to_matrix(pose[0])
    expected = (body.vertices - body.rest_joints[0]) @ rot.T + torch.tensor([1.0, 2.0, 3.0])
    torch.testing.assert_close(out["vertices"], expected, atol=1e-5, rtol=0)
    # Bending the left elbow moves the left hand's vertices and leaves the right hand's alone.
    pose = torch.zeros(NUM_JOINTS, 3)
    pose[J["left_elbow"]] = torch.tensor([0.0, -math.pi / 2, 0.0])
    moved = (body.pose(pose, with_vertices=True)["vertices"] - body.vertices).norm(dim=-1)
    main_joint = body.weights.argmax(-1)
    assert moved[main_joint == J["left_hand"]].min() > 0.1
    assert moved[main_joint == J["right_hand"]].max() < 1e-6


def test_skin_matches_manual_single_joint():
    rest_joints = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    parents = (-1, 0)
    local = torch.eye(3).repeat(2, 1, 1)
    local[1] = R.axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2]))
    joints, world_rot = forward_kinematics(local, rest_joints, parents)
    verts = torch.tensor([[2.0, 0, 0], [0.5, 0, 0]])
    weights = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    out = skin(verts, weights, rest_joints, joints, world_rot)
    # Vertex 0 rides joint 1: (2,0,0) rotates 90° about joint 1 -> (1,1,0).
    # Vertex 1 is half fixed (0.5,0,0), half rotated about joint 1 -> (1,-0.5,0): blend (0.75,-0.25,0).
    torch.testing.assert_close(out, torch.tensor([[1.0, 1.0, 0.0], [0.75, -0.25, 0.0]]), atol=1e-6, rtol=0)
