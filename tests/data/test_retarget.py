"""Retargeting onto our body: a source that IS our body (in any rest pose, facing, size, frame rate)
must come back exactly; error reports and contacts behave as defined."""
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import CONTACT_JOINTS, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.data.retarget import resample, retarget

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def world_rotations(body, local):
    return body.pose(torch.as_tensor(local, dtype=torch.float32), form="matrix")["world_rot"].numpy()


def make_source(body, pose_aa, root, fps=30.0, rest_pose=None, scale=1.0, yaw=0.0, drop_hands=False,
                drop_toes=False, rest_joints=None):
    """A SourceMotion of our own body performing `pose_aa` (T, 24, 3), whose file rest pose is
    `rest_pose` (24, 3) axis-angle (default T-pose), turned by `yaw` about y and scaled by `scale`.
    rest_joints: (24, 3) T-pose joints of another skeleton of our tree (only with a T-pose rest)."""
    local = axis_angle_to_matrix(pose_aa.astype(np.float64))
    rest_local = axis_angle_to_matrix(np.zeros((NUM_JOINTS, 3)) if rest_pose is None else rest_pose)
    turn = axis_angle_to_matrix(np.array([0.0, yaw, 0.0]))
    rest_local = rest_local.copy()
    rest_local[0] = turn @ rest_local[0]
    rest_joints = (body.rest_joints.double() if rest_joints is None else torch.as_tensor(rest_joints).double()) * scale
    rest_out = body.pose(torch.from_numpy(rest_local).float(), form="matrix")
    g_rest = rest_out["world_rot"].numpy().astype(np.float64)
    rest_positions = (rest_out["joints"].numpy() - body.rest_joints.numpy()[0]) * scale
    if rest_pose is None and yaw == 0.0:
        rest_positions = (rest_joints - rest_joints[0]).numpy()
    from engine.body.kinematics import forward_kinematics
    joints, g = forward_kinematics(torch.from_numpy(local), rest_joints, SMPL_PARENTS, torch.from_numpy(root * scale))
    names = [n for n in SMPL_JOINT_NAMES if not (drop_hands and n.endswith("_hand"))
             and not (drop_toes and n.endswith("_foot"))]
    keep = [J[n] for n in names]
    return SimpleNamespace(
        clip="test/own_body", dataset="test", subject="test:1", cmu_id=None, fps=fps,
        names=names, parents=np.array([keep.index(SMPL_PARENTS[j]) if j else -1 for j in keep]),
        rest_positions=rest_positions[keep].astype(np.float32),
        positions=joints.numpy()[:, keep].astype(np.float32),
        rotations=(g.numpy() @ np.swapaxes(g_rest, -1, -2))[:, keep].astype(np.float32),
        smpl_map={n: n for n in names},
    )


def random_motion(T, seed, amplitude=0.6):
    rng = np.random.default_rng(seed)
    pose = rng.normal(size=(T, NUM_JOINTS, 3)) * amplitude
    pose[:, [J["left_hand"], J["right_hand"]]] = 0.0
    root = np.stack([np.linspace(0, 1.0, T), np.full(T, 0.95), np.zeros(T)], -1)
    return pose, root


def assert_same_pose(body, clip, pose_aa, atol=2e-3):
    ours = body.pose(torch.from_numpy(clip.pose))["world_rot"].numpy()
    ref = body.pose(torch.from_numpy(pose_aa.astype(np.float32)))["world_rot"].numpy()
    np.testing.assert_allclose(ours, ref, atol=atol)


def test_own_body_comes_back_exactly(body):
    pose, root = random_motion(20, seed=0)
    clip = retarget(make_source(body, pose, root), body)
    assert clip.pose.shape == (20, NUM_JOINTS, 3) and clip.root.shape == (20, 3)
    assert_same_pose(body, clip, pose)
    assert clip.bone_error_deg.max() < 0.1
    # The pelvis trajectory is kept (up to the floor lift, which is vertical only).
    np.testing.assert_allclose(clip.root[:, [0, 2]], root[:, [0, 2]], atol=1e-4)
    np.testing.assert_allclose(np.diff(clip.root[:, 1]), np.diff(root[:, 1]), atol=1e-4)
    assert clip.root_error_m < 1e-3


def test_a_pose_rest_other_facing_and_size(body):
    """ACCAD-like source: rest not a T-pose, facing +x, 10 % larger; same motion must come back."""
    rest = np.zeros((NUM_JOINTS, 3))
    rest[J["left_shoulder"]] = [0, 0, -math.radians(50)]  # arms down 50° (A-pose)
    rest[J["right_shoulder"]] = [0, 0, math.radians(50)]
    rest[J["left_elbow"]] = [0, 0, -math.radians(10)]
    pose, root = random_motion(15, seed=1)
    src = make_source(body, pose, root, rest_pose=rest, scale=1.1, yaw=math.pi / 2)
    clip = retarget(src, body)
    assert_same_pose(body, clip, pose)
    assert clip.bone_error_deg.max() < 0.1
    # Leg-length scaling maps the larger source's path back onto ours.
    np.testing.assert_allclose(clip.root[:, [0, 2]], root[:, [0, 2]], atol=1e-3)


def test_missing_hands_ride_on_the_wrists(body):
    pose, root = random_motion(5, seed=2)
    clip = retarget(make_source(body, pose, root, drop_hands=True), body)
    assert_same_pose(body, clip, pose)
    np.testing.assert_allclose(clip.pose[:, [J["left_hand"], J["right_hand"]]], 0.0, atol=1e-5)


def test_resampling_to_30_fps(body):
    T = 121
    t = np.arange(T) / 120.0
    pose = np.zeros((T, NUM_JOINTS, 3))
    pose[:, J["left_elbow"], 1] = -np.sin(2 * np.pi * t)  # one slow flexion cycle per second
    root = np.stack([t, np.full(T, 0.95), np.zeros(T)], -1)
    clip = retarget(make_source(body, pose, root, fps=120.0), body)
    assert clip.pose.shape[0] == 31 and clip.fps == 30.0 and clip.source_fps == 120.0
    np.testing.assert_allclose(clip.pose[:, J["left_elbow"], 1], pose[::4, J["left_elbow"], 1], atol=1e-4)


def test_resample_interpolates_between_frames():
    pos = np.array([[[0.0, 0, 0]], [[1.0, 0, 0]]])
    rot = np.stack([np.eye(3), axis_angle_to_matrix(np.array([0.0, 0, 1.0]))])[:, None]
    p, r = resample(pos, rot, src_fps=1.0, fps=4.0)
    np.testing.assert_allclose(p[:, 0, 0], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(r[2, 0], axis_angle_to_matrix(np.array([0.0, 0, 0.5])), atol=1e-12)


def test_floor_and_contacts_for_standing_still(body):
    pose = np.zeros((30, NUM_JOINTS, 3))
    root = np.tile([0.0, 1.3, 0.0], (30, 1))  # source pelvis too high: the floor fix brings it down
    clip = retarget(make_source(body, pose, root), body)
    np.testing.assert_allclose(clip.root[:, 1], body.rest_joints[0, 1].item(), atol=1e-4)
    feet = [CONTACT_JOINTS.index(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    assert clip.contacts[:, feet].all()
    assert not clip.contacts[:, 4:].any()  # hands in the air


def test_bone_error_reports_different_proportions(body):
    """A source with hips 5 cm wider: only the pelvis->hip bones can disagree, by the known angle."""
    pose, root = random_motion(4, seed=3, amplitude=0.0)
    src = make_source(body, pose, root)
    widen = np.array([0.05, 0.0, 0.0], np.float32)
    for name, sign in (("left_hip", 1), ("right_hip", -1)):
        src.rest_positions[J[name]] += sign * widen
        src.positions[:, J[name]] += sign * widen
    clip = retarget(src, body)
    assert clip.bone_error_deg.shape == (4, NUM_JOINTS - 1)
    rest = body.rest_joints.numpy()
    ours = rest[J["left_hip"]] - rest[J["pelvis"]]
    theirs = ours + widen
    expected = np.degrees(np.arccos(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs)))
    per_bone = clip.bone_error_deg.mean(0)  # bone b ends at joint b + 1
    np.testing.assert_allclose(per_bone[[J["left_hip"] - 1, J["right_hip"] - 1]], expected, atol=0.05)
    others = np.delete(per_bone, [J["left_hip"] - 1, J["right_hip"] - 1])
    assert others.max() < 0.1


def test_unmapped_body_joint_is_an_error(body):
    pose, root = random_motion(3, seed=4)
    src = make_source(body, pose, root)
    del src.smpl_map["left_knee"]
    with pytest.raises(ValueError, match="lacks body joints"):
        retarget(src, body)


def test_short_spine_and_shared_clavicle_start(body):
    """CMU/HDM05-like rigs: SMPL spine2 and spine3 share one source joint, and both collars start
    at that same point. Nothing may become NaN; the limbs still come back exactly, the spine and
    collars aim at the next joint apart from them, and zero-length source bones are not scored."""
    pose, root = random_motion(6, seed=5)
    pose[:, [J["spine2"], J["spine3"], J["left_collar"], J["right_collar"]]] = 0.0
    src = make_source(body, pose, root)
    src.smpl_map.update(spine2="spine3", left_collar="spine3", right_collar="spine3")
    clip = retarget(src, body)
    assert np.isfinite(clip.pose).all() and np.isfinite(clip.bone_error_deg).all()
    # Unscored: spine2->spine3 and spine3->collars have no source length.
    assert clip.bone_error_deg.shape == (6, NUM_JOINTS - 1 - 3)
    ours = body.pose(torch.from_numpy(clip.pose))["world_rot"].numpy()
    ref = body.pose(torch.from_numpy(pose.astype(np.float32)))["world_rot"].numpy()
    limbs = [J[f"{s}_{n}"] for s in ("left", "right") for n in ("hip", "knee", "ankle", "elbow", "wrist")]
    np.testing.assert_allclose(ours[:, limbs], ref[:, limbs], atol=2e-3)


def walking_knees(T=60):
    """Motion whose knees bend like a person's (shin backwards, about +x) and whose feet point
    ahead: the hinge is consistent over the clip, as in real capture."""
    pose = np.zeros((T, NUM_JOINTS, 3))
    phase = np.linspace(0, 4 * np.pi, T)
    for s, shift in (("left", 0.0), ("right", np.pi)):
        pose[:, J[f"{s}_hip"], 0] = -0.4 * np.sin(phase + shift)
        pose[:, J[f"{s}_knee"], 0] = 0.3 + 0.5 * (1 + np.sin(phase + shift))
        pose[:, J[f"{s}_shoulder"], 2] = (1 if s == "right" else -1) * 1.2
        pose[:, J[f"{s}_elbow"], 1] = (1 if s == "right" else -1) * (0.4 + 0.4 * (1 + np.sin(phase)))
    root = np.stack([np.zeros(T), np.full(T, 0.95), np.linspace(0, 1.5, T)], -1)
    return pose, root


def test_a_rig_with_half_turned_legs_comes_back_untwisted(body):
    """iClone-like rig: its thighs, shins and feet turned half a turn about their own bones. The
    joint positions were right all along; the rotations must come back as our body's own."""
    pose, root = walking_knees()
    src = make_source(body, pose, root)
    clean = retarget(src, body)
    assert_same_pose(body, clean, pose)
    twisted = src.rotations.astype(np.float64).copy()
    rest = body.rest_joints.numpy().astype(np.float64)
    for s in ("left", "right"):
        for joint, child in (("hip", "knee"), ("knee", "ankle"), ("ankle", "foot")):
            axis = rest[J[f"{s}_{child}"]] - rest[J[f"{s}_{joint}"]]
            turn = axis_angle_to_matrix(axis / np.linalg.norm(axis) * math.pi)
            twisted[:, J[f"{s}_{joint}"]] = twisted[:, J[f"{s}_{joint}"]] @ turn
    src.rotations = twisted.astype(np.float32)
    clip = retarget(src, body)
    # Within 2.5°: the feet's twist is set by the world's up on average, which this walk tilts.
    assert_same_pose(body, clip, pose, atol=0.045)
    np.testing.assert_allclose(body.pose(torch.from_numpy(clip.pose), torch.from_numpy(clip.root))["joints"],
                               body.pose(torch.from_numpy(clean.pose), torch.from_numpy(clean.root))["joints"],
                               atol=1e-4)


def test_missing_toes_ride_on_the_ankles(body):
    """A rig without a toe joint or toe End Site (the Huge FBX library's CMU BVH): the toes ride on
    the ankles, which keep the source foot's rotation."""
    pose, root = random_motion(5, seed=3)
    pose[:, [J["left_foot"], J["right_foot"]]] = 0.0
    clip = retarget(make_source(body, pose, root, drop_toes=True), body)
    assert_same_pose(body, clip, pose)
    np.testing.assert_allclose(clip.pose[:, [J["left_foot"], J["right_foot"]]], 0.0, atol=1e-5)


def test_spine_starting_at_the_pelvis_bends_the_back_not_the_pelvis(body):
    """ReActIdle's rig: its first spine joint sits on the pelvis and bends the lower back. The rest
    alignment used to take its "up" from that zero-length bone (NaN, then a crash), and the pelvis,
    swung onto the bone the back bends, tilted with every bend; it must keep its own rotation."""
    rest = body.rest_joints.numpy().astype(np.float64).copy()
    rest[J["spine1"]] = rest[J["pelvis"]]
    T = 10
    pose = np.zeros((T, NUM_JOINTS, 3))
    pose[:, J["spine1"], 0] = np.linspace(0.0, math.radians(40), T)  # bend forward from the hips up
    root = np.tile([0.0, 0.95, 0.0], (T, 1))
    clip = retarget(make_source(body, pose, root, rest_joints=rest), body)
    assert np.isfinite(clip.pose).all()
    np.testing.assert_allclose(clip.pose[:, J["pelvis"]], 0.0, atol=1e-5)
    # The back bends by the source's bend (about x; plus a constant: our spine1 -> spine2 bone sits
    # 5° off the source's pelvis -> spine2 one at rest, and follows the source's).
    bend = clip.pose[:, J["spine1"]] - clip.pose[:1, J["spine1"]]
    np.testing.assert_allclose(bend, pose[:, J["spine1"]], atol=1e-4)
    assert clip.bone_error_deg.max() < 0.1
