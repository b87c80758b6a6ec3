"""engine.body.conventions: the SMPL → Unity/VRM bone table and SMPL → Unity / Unreal coordinates.

Hand-computed cases (SMPL: right-handed, body faces +z, its left at +x; Unity: left-handed, the
character faces +z, its right at +x; quaternions written (x, y, z, w), s = sin 45° = cos 45°):
- SMPL Ry(θ) takes (1, 0, 0) to (cos θ, 0, −sin θ), so the left forearm (+x) comes forward (+z)
  for θ = −90°: q = (w, x, y, z) = (s, 0, −s, 0) → Unity (0, s, 0, s) = Quaternion.Euler(0, 90, 0).
  In Unity the forearm lies along −x and Ry(90°)(−1, 0, 0) = (0, 0, 1): forward again.
- SMPL Rz(θ) takes the right upper arm (−1, 0, 0) to (−cos θ, −sin θ, 0): up for θ = −90°,
  q = (s, 0, 0, −s) → Unity (0, 0, s, s) = Euler(0, 0, 90); Unity Rz(90°)(1, 0, 0) = (0, 1, 0).
- SMPL Rx(θ) takes the thigh (0, −1, 0) to (0, −cos θ, −sin θ): forward for θ = −90°,
  q = (s, −s, 0, 0) → Unity (−s, 0, 0, s) = Euler(−90, 0, 0); Unity Rx(−90°)(0, −1, 0) = (0, 0, 1).
- A root yaw of +90° about SMPL y turns the facing +z to +x, the body's own left:
  q = (s, 0, s, 0) → Unity (0, −s, 0, s) = Euler(0, −90, 0), which turns Unity's facing +z to −x,
  again the character's left; its left hand then points along −z in both frames.
"""
import math

import numpy as np
import pytest
import torch

from engine.body.body_model import procedural_body
from engine.body.conventions import (BONES, MAPPED_BONES, UnityPose, bone_for_smpl, bone_for_unity, bone_for_vrm,
                                     position_to_unity, quat_from_unity, quat_to_unity, smpl_pose_to_unity,
                                     unity_euler_degrees, unity_position_to_unreal, unity_quat_to_unreal)
from engine.body.rotations import axis_angle_to_quat, quat_multiply, quat_normalize, quat_to_matrix
from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

S = math.sqrt(0.5)
IDENTITY_XYZW = np.array([0.0, 0.0, 0.0, 1.0])
MIRROR = np.diag([-1.0, 1.0, 1.0])

# Unity's humanoid hierarchy (Animator bone parents), written out independently of the table.
UNITY_PARENT = {
    "LeftUpperLeg": "Hips", "RightUpperLeg": "Hips", "Spine": "Hips",
    "LeftLowerLeg": "LeftUpperLeg", "RightLowerLeg": "RightUpperLeg", "Chest": "Spine",
    "LeftFoot": "LeftLowerLeg", "RightFoot": "RightLowerLeg", "UpperChest": "Chest",
    "LeftToes": "LeftFoot", "RightToes": "RightFoot", "Neck": "UpperChest",
    "LeftShoulder": "UpperChest", "RightShoulder": "UpperChest", "Head": "Neck",
    "LeftUpperArm": "LeftShoulder", "RightUpperArm": "RightShoulder",
    "LeftLowerArm": "LeftUpperArm", "RightLowerArm": "RightUpperArm",
    "LeftHand": "LeftLowerArm", "RightHand": "RightLowerArm",
}


@pytest.fixture(scope="module")
def body():
    return procedural_body()


def wxyz(q_xyzw):
    return np.asarray(q_xyzw)[..., [3, 0, 1, 2]]


def same_rotation(a, b, atol=1e-6):
    """Quaternions equal up to the q ~ -q double cover."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.allclose(a, b, atol=atol) or np.allclose(a, -b, atol=atol)


def unity_parent(name, bones):
    """The nearest present ancestor, as Unity's humanoid does for optional bones (UpperChest)."""
    parent = UNITY_PARENT[name]
    return parent if parent in bones else UNITY_PARENT[parent]


def unity_fk(pose: UnityPose, rest_joints):
    """A Unity-side FK: compose Unity local rotations down the humanoid hierarchy on the rest
    skeleton expressed in Unity space. Returns bone -> world quaternion (w, x, y, z, Unity frame),
    and bone -> world position (metres) when the pose has a Hips position."""
    rest_u = position_to_unity(np.asarray(rest_joints, dtype=np.float64))
    rest_by_bone = {b.unity: rest_u[b.smpl_index] for b in MAPPED_BONES}
    world, position = {}, {}
    for name, q in pose.rotations.items():  # in SMPL joint order: parents come first
        q = wxyz(q)
        if name == "Hips":
            world[name], position[name] = q, pose.hips_position
            continue
        parent = unity_parent(name, pose.rotations)
        world[name] = quat_multiply(world[parent], q)
        if pose.hips_position is not None:
            offset = rest_by_bone[name] - rest_by_bone[parent]
            position[name] = position[parent] + quat_to_matrix(world[parent]) @ offset
    return world, position


def unity_quat_from_euler(degrees):
    """Quaternion.Euler(x, y, z) -> (x, y, z, w): rotate about Z, then X, then Y (qY · qX · qZ)."""
    x, y, z = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    qx, qy, qz = (axis_angle_to_quat(np.array(v)) for v in ([x, 0, 0], [0, y, 0], [0, 0, z]))
    return quat_multiply(qy, quat_multiply(qx, qz))[[1, 2, 3, 0]]


def rest_pose():
    return np.zeros((24, 3))


# ---------------------------------------------------------------------------------------------
# The table


def test_table_covers_the_smpl_skeleton_in_order():
    assert tuple(b.smpl for b in BONES) == SMPL_JOINT_NAMES
    assert [b.smpl_index for b in BONES] == list(range(24))
    assert len(MAPPED_BONES) == 22
    assert [b.smpl for b in BONES if b.unity is None] == ["left_hand", "right_hand"]
    assert all(b.vrm is None for b in BONES if b.unity is None)


def test_names_are_unique_and_vrm_is_unity_camel_case():
    assert len({b.unity for b in MAPPED_BONES}) == 22
    assert len({b.vrm for b in MAPPED_BONES}) == 22
    assert all(b.vrm == b.unity[0].lower() + b.unity[1:] for b in MAPPED_BONES)


def test_off_by_one_joints_map_to_the_right_bones():
    expected = {
        "pelvis": ("Hips", "hips"), "spine1": ("Spine", "spine"), "spine2": ("Chest", "chest"),
        "spine3": ("UpperChest", "upperChest"),
        "left_collar": ("LeftShoulder", "leftShoulder"),
        "left_shoulder": ("LeftUpperArm", "leftUpperArm"),
        "left_elbow": ("LeftLowerArm", "leftLowerArm"), "left_wrist": ("LeftHand", "leftHand"),
        "left_hip": ("LeftUpperLeg", "leftUpperLeg"), "left_knee": ("LeftLowerLeg", "leftLowerLeg"),
        "left_ankle": ("LeftFoot", "leftFoot"), "left_foot": ("LeftToes", "leftToes"),
        "right_collar": ("RightShoulder", "rightShoulder"),
        "right_shoulder": ("RightUpperArm", "rightUpperArm"),
        "right_ankle": ("RightFoot", "rightFoot"), "right_foot": ("RightToes", "rightToes"),
    }
    for smpl, (unity, vrm) in expected.items():
        bone = bone_for_smpl(smpl)
        assert (bone.unity, bone.vrm) == (unity, vrm), smpl


def test_left_and_right_rows_mirror():
    lefts = [b for b in BONES if b.smpl.startswith("left_")]
    assert len(lefts) == 9
    for left in lefts:
        right = bone_for_smpl("right_" + left.smpl[len("left_"):])
        if left.unity is None:
            assert right.unity is None
            continue
        assert right.unity == "Right" + left.unity[len("Left"):]
        assert right.vrm == "right" + left.vrm[len("left"):]
        left_parent = BONES[SMPL_PARENTS[left.smpl_index]].smpl
        assert BONES[SMPL_PARENTS[right.smpl_index]].smpl == left_parent.replace("left_", "right_")


def test_smpl_parents_match_the_unity_humanoid_hierarchy():
    for bone in MAPPED_BONES[1:]:
        assert BONES[SMPL_PARENTS[bone.smpl_index]].unity == UNITY_PARENT[bone.unity], bone.smpl


def test_lookups_round_trip():
    for bone in BONES:
        assert bone_for_smpl(bone.smpl) is bone
        assert bone_for_smpl(bone.smpl_index) is bone
        assert bone_for_smpl(np.int64(bone.smpl_index)) is bone
    for bone in MAPPED_BONES:
        assert bone_for_unity(bone.unity) is bone
        assert bone_for_vrm(bone.vrm) is bone
    assert bone_for_unity("LeftUpperArm").smpl == "left_shoulder"
    assert bone_for_vrm("leftShoulder").smpl == "left_collar"


@pytest.mark.parametrize("lookup, key", [
    (bone_for_smpl, 24), (bone_for_smpl, -1), (bone_for_smpl, "l_shoulder"),
    (bone_for_unity, "LeftThumbProximal"), (bone_for_unity, "leftUpperArm"), (bone_for_vrm, "jaw"),
])
def test_unknown_names_raise(lookup, key):
    with pytest.raises(KeyError):
        lookup(key)


# ---------------------------------------------------------------------------------------------
# Positions and quaternions


def test_position_and_quaternion_formulas():
    np.testing.assert_allclose(position_to_unity(np.array([1.0, 2.0, 3.0])), [-1.0, 2.0, 3.0])
    q = np.array([0.1, 0.2, 0.3, 0.4])  # (w, x, y, z)
    np.testing.assert_allclose(quat_to_unity(q), [0.2, -0.3, -0.4, 0.1])  # (x, -y, -z, w)
    np.testing.assert_allclose(quat_from_unity(quat_to_unity(q)), q)


def test_torch_in_torch_out_numpy_in_numpy_out():
    q = np.array([[S, 0.0, -S, 0.0]], dtype=np.float32)
    out_np = quat_to_unity(q)
    out_t = quat_to_unity(torch.from_numpy(q))
    assert isinstance(out_np, np.ndarray) and out_np.dtype == np.float32
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float32
    np.testing.assert_allclose(out_t.numpy(), out_np)
    assert isinstance(position_to_unity(torch.zeros(2, 3)), torch.Tensor)


def test_mirroring_twice_is_identity():
    rng = np.random.default_rng(0)
    p = rng.normal(size=(100, 3))
    q = quat_normalize(rng.normal(size=(100, 4)))
    np.testing.assert_allclose(position_to_unity(position_to_unity(p)), p)
    np.testing.assert_allclose(quat_from_unity(quat_to_unity(q)), q)


def test_conversion_is_the_change_of_basis_m_r_m():
    rng = np.random.default_rng(1)
    q = quat_normalize(rng.normal(size=(50, 4)))
    q1, q2 = q[:25], q[25:]
    r_unity = quat_to_matrix(wxyz(quat_to_unity(q)))
    np.testing.assert_allclose(r_unity, MIRROR @ quat_to_matrix(q) @ MIRROR, atol=1e-12)
    # Same angle, and composition commutes with the conversion, so local rotations convert one by one.
    np.testing.assert_allclose(quat_to_unity(q)[:, 3], q[:, 0])
    composed = quat_multiply(wxyz(quat_to_unity(q1)), wxyz(quat_to_unity(q2)))
    np.testing.assert_allclose(composed, wxyz(quat_to_unity(quat_multiply(q1, q2))), atol=1e-12)
    # Rotating then converting a point equals converting both then rotating in Unity.
    p = rng.normal(size=(25, 3))
    rotated = np.einsum("nij,nj->ni", quat_to_matrix(q1), p)
    np.testing.assert_allclose(position_to_unity(rotated),
                               np.einsum("nij,nj->ni", r_unity[:25], position_to_unity(p)), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Poses


def test_rest_pose_is_identity_and_the_left_wrist_is_at_unity_minus_x(body):
    pose = smpl_pose_to_unity(rest_pose(), root_position=np.array([0.0, 0.95, 0.0]))
    assert list(pose.rotations) == [b.unity for b in MAPPED_BONES]
    for q in pose.rotations.values():
        np.testing.assert_allclose(q, IDENTITY_XYZW)
    np.testing.assert_allclose(pose.hips_position, [0.0, 0.95, 0.0])
    joints_u = position_to_unity(body.pose(torch.zeros(24, 3))["joints"].numpy())
    left = joints_u[bone_for_unity("LeftHand").smpl_index]
    right = joints_u[bone_for_unity("RightHand").smpl_index]
    assert left[0] == pytest.approx(-0.408 * 1.70, abs=1e-6)  # the character's left in Unity
    assert right[0] == pytest.approx(+0.408 * 1.70, abs=1e-6)


HAND_COMPUTED = [
    # SMPL joint, SMPL axis-angle, Unity (x, y, z, w), Unity Euler degrees, (joint, child) whose
    # Unity bone direction is checked, expected Unity direction
    ("left_elbow", [0, -math.pi / 2, 0], [0, S, 0, S], [0, 90, 0],
     ("left_elbow", "left_wrist"), [0, 0, 1]),
    ("right_shoulder", [0, 0, -math.pi / 2], [0, 0, S, S], [0, 0, 90],
     ("right_shoulder", "right_elbow"), [0, 1, 0]),
    ("left_hip", [-math.pi / 2, 0, 0], [-S, 0, 0, S], [-90, 0, 0],
     ("left_hip", "left_knee"), [0, 0, 1]),
    ("pelvis", [0, math.pi / 2, 0], [0, -S, 0, S], [0, -90, 0],
     ("right_wrist", "left_wrist"), [0, 0, -1]),
]


@pytest.mark.parametrize("joint, aa, expected_q, expected_euler, segment, direction", HAND_COMPUTED,
                         ids=[c[0] for c in HAND_COMPUTED])
def test_hand_computed_pose(body, joint, aa, expected_q, expected_euler, segment, direction):
    smpl = rest_pose()
    smpl[bone_for_smpl(joint).smpl_index] = aa
    root = np.array([0.1, 0.9, -0.2])
    pose = smpl_pose_to_unity(smpl, root_position=root)

    driven = bone_for_smpl(joint).unity
    np.testing.assert_allclose(pose.rotations[driven], expected_q, atol=1e-12)
    for name, q in pose.rotations.items():
        if name != driven:
            np.testing.assert_allclose(q, IDENTITY_XYZW, atol=1e-12)
    np.testing.assert_allclose(unity_euler_degrees(np.array(expected_q)), expected_euler, atol=1e-9)

    # Positions from SMPL FK mirrored to Unity == a Unity-side FK of the Unity local rotations.
    smpl_joints = body.pose(torch.tensor(smpl), root_position=torch.tensor(root), form="axis_angle")
    mirrored = position_to_unity(smpl_joints["joints"].double().numpy())
    _, unity_positions = unity_fk(pose, body.rest_joints.numpy())
    for bone in MAPPED_BONES:
        np.testing.assert_allclose(unity_positions[bone.unity], mirrored[bone.smpl_index], atol=1e-5)

    start, end = (mirrored[bone_for_smpl(j).smpl_index] for j in segment)
    assert np.dot((end - start) / np.linalg.norm(end - start), direction) > 0.99


def test_random_batched_pose_agrees_with_smpl_fk(body):
    rng = np.random.default_rng(2)
    smpl = rng.normal(scale=0.6, size=(3, 72))
    root = rng.normal(size=(3, 3))
    pose = smpl_pose_to_unity(smpl, root_position=root)
    assert pose.rotations["LeftLowerArm"].shape == (3, 4)
    posed = body.pose(torch.tensor(smpl).reshape(3, 24, 3), root_position=torch.tensor(root))
    mirrored = position_to_unity(posed["joints"].double().numpy())
    world_smpl = posed["world_rot"].double().numpy()
    for i in range(3):
        frame = UnityPose({k: v[i] for k, v in pose.rotations.items()}, pose.hips_position[i])
        world, positions = unity_fk(frame, body.rest_joints.numpy())
        for bone in MAPPED_BONES:
            np.testing.assert_allclose(positions[bone.unity], mirrored[i, bone.smpl_index], atol=1e-5)
            np.testing.assert_allclose(quat_to_matrix(world[bone.unity]),
                                       MIRROR @ world_smpl[i, bone.smpl_index] @ MIRROR, atol=1e-5)


def test_every_rotation_form_and_array_kind_gives_the_same_answer():
    rng = np.random.default_rng(3)
    aa = rng.normal(scale=0.6, size=(24, 3))
    reference = smpl_pose_to_unity(aa).rotations
    for pose, form in [(aa.reshape(72), "axis_angle"), (axis_angle_to_quat(aa), "quat"),
                       (torch.tensor(aa), "axis_angle")]:
        rotations = smpl_pose_to_unity(pose, form=form).rotations
        assert isinstance(rotations["Hips"], type(pose))
        for name, q in reference.items():
            np.testing.assert_allclose(np.asarray(rotations[name]), q, atol=1e-9)
    assert smpl_pose_to_unity(aa).hips_position is None


@pytest.mark.parametrize("shape, form", [((23, 3), "axis_angle"), ((71,), "axis_angle"),
                                         ((24, 3), "quat")])
def test_wrong_pose_shape_raises(shape, form):
    with pytest.raises(ValueError):
        smpl_pose_to_unity(np.zeros(shape), form=form)


def test_folding_upper_chest_keeps_the_world_rotations(body):
    rng = np.random.default_rng(4)
    smpl = rng.normal(scale=0.6, size=(24, 3))
    with_upper = smpl_pose_to_unity(smpl)
    folded = smpl_pose_to_unity(smpl, upper_chest=False)
    assert "UpperChest" not in folded.rotations and len(folded.rotations) == 21
    world_with, _ = unity_fk(with_upper, body.rest_joints.numpy())
    world_folded, _ = unity_fk(folded, body.rest_joints.numpy())
    assert same_rotation(world_folded["Chest"], world_with["UpperChest"], atol=1e-12)
    for name in ("Neck", "Head", "LeftShoulder", "RightShoulder", "LeftUpperArm", "RightLowerArm",
                 "LeftHand", "RightHand", "LeftFoot", "Spine"):
        assert same_rotation(world_folded[name], world_with[name], atol=1e-12), name
    # The order matters: spine3 · spine2 would tilt the neck for this pose.
    s2, s3 = (axis_angle_to_quat(smpl[i]) for i in (6, 9))
    assert not same_rotation(folded.rotations["Chest"], quat_to_unity(quat_multiply(s3, s2)), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Unity Euler angles (VRChat OSC trackers)

EULER_CASES = [
    ([0, 0, 0, 1], [0, 0, 0]),
    ([0, S, 0, S], [0, 90, 0]),
    ([0, -S, 0, S], [0, -90, 0]),
    ([math.sin(math.radians(15)), 0, 0, math.cos(math.radians(15))], [30, 0, 0]),
    ([0, 0, math.sin(math.radians(15)), math.cos(math.radians(15))], [0, 0, 30]),
    ([0, 0, 1, 0], [0, 0, 180]),
    ([0.5, 0.5, 0.5, 0.5], [0, 90, 90]),  # qY(90)·qZ(90): 120° about (1,1,1), x→y→z→x
    ([-S, 0, 0, S], [-90, 0, 0]),  # gimbal lock: z = 0 by convention
    ([0.5, 0.5, -0.5, 0.5], [90, 90, 0]),  # qY(90)·qX(90), gimbal lock
]


@pytest.mark.parametrize("q, degrees", EULER_CASES)
def test_known_quaternions_give_unity_euler_angles(q, degrees):
    q = np.array(q, dtype=np.float64)
    np.testing.assert_allclose(unity_euler_degrees(q), degrees, atol=1e-9)
    assert same_rotation(unity_quat_from_euler(degrees), q, atol=1e-12)


def test_euler_angles_rebuild_the_quaternion():
    rng = np.random.default_rng(5)
    degrees = np.column_stack([rng.uniform(-89, 89, 200), rng.uniform(-179, 179, 200),
                               rng.uniform(-179, 179, 200)])
    q = np.stack([unity_quat_from_euler(d) for d in degrees])
    np.testing.assert_allclose(unity_euler_degrees(q), degrees, atol=1e-9)
    # Any rotation, including near the gimbal lock, survives the degrees -> Quaternion.Euler trip.
    near_lock = [unity_quat_from_euler([90 - 1e-7, 30, 10]), unity_quat_from_euler([-90, 40, -25])]
    q_any = np.concatenate([quat_normalize(rng.normal(size=(200, 4)))[:, [1, 2, 3, 0]], near_lock])
    for qi, d in zip(q_any, unity_euler_degrees(q_any)):
        assert same_rotation(unity_quat_from_euler(d), qi, atol=1e-9)


def test_euler_of_a_float32_tensor():
    out = unity_euler_degrees(torch.tensor([[0.0, S, 0.0, S]], dtype=torch.float32))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), [[0, 90, 0]], atol=1e-4)


# ---------------------------------------------------------------------------------------------
# Unreal (VRM4U's conversion of VMC data)


def test_unreal_hand_computed():
    np.testing.assert_allclose(unity_position_to_unreal(np.array([1.0, 2.0, 3.0])), [-100, 300, 200])
    # Unity yaw about up (+y) is an Unreal rotation about up (+z).
    np.testing.assert_allclose(unity_quat_to_unreal(np.array([0, S, 0, S])), [0, 0, S, S])


def test_unreal_rotations_agree_with_unreal_positions():
    rng = np.random.default_rng(6)
    q_unity = quat_normalize(rng.normal(size=(20, 4)))[:, [1, 2, 3, 0]]
    p = rng.normal(size=(20, 3))
    rotated_unity = np.einsum("nij,nj->ni", quat_to_matrix(wxyz(q_unity)), p)
    q_unreal = unity_quat_to_unreal(q_unity)
    rotated_unreal = np.einsum("nij,nj->ni", quat_to_matrix(wxyz(q_unreal)),
                               unity_position_to_unreal(p))
    np.testing.assert_allclose(rotated_unreal, unity_position_to_unreal(rotated_unity), atol=1e-10)
