"""engine.data.captions: captions of synthetic motions built with the default body, and of real clips."""
import math

import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data import captions as C

FPS = 30.0
J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
BODY = load_default_body()


def posed(yaw, root, pose=None):
    """Joints (T, 24, 3) and pelvis rotations (T, 3, 3) of the default body turned by `yaw` (T,)
    radians about +y with its pelvis at `root` (T, 3); `pose` (T, 24, 3) axis-angle for the other
    joints (rest when None)."""
    yaw, root = np.asarray(yaw, dtype=np.float32), np.asarray(root, dtype=np.float32)
    pose = np.zeros((len(yaw), 24, 3), np.float32) if pose is None else pose.astype(np.float32)
    pose[:, 0] = 0
    pose[:, 0, 1] = yaw
    out = BODY.pose(torch.from_numpy(pose), torch.from_numpy(root))
    return out["joints"].numpy(), out["world_rot"][:, 0].numpy()


def moving(seconds, velocity, yaw=0.0):
    """The rest body facing `yaw` and gliding at a constant world `velocity` (vx, vz) m/s."""
    t = np.arange(round(seconds * FPS)) / FPS
    root = np.tile(BODY.rest_joints[0].numpy(), (len(t), 1))
    root[:, 0] += velocity[0] * t
    root[:, 2] += velocity[1] * t
    return posed(np.full(len(t), yaw), root)


def captions_of(joints, rot):
    spans = C.motion_captions(joints, rot, FPS)
    check_spans(spans, len(joints))
    return [c for _, _, c in spans]


def check_spans(spans, frames):
    """Spans are ordered, non-overlapping, inside the clip, long enough and in the vocabulary."""
    end = 0
    for s, e, caption in spans:
        assert end <= s < e <= frames
        assert e - s >= round(C.MIN_SPAN_S * FPS)
        assert caption in C.CAPTIONS
        end = e


@pytest.mark.parametrize("velocity, yaw, caption", [
    ((0.0, 1.2), 0.0, C.WALK_FORWARD),
    ((0.0, -1.2), 0.0, C.WALK_BACKWARD),
    ((1.0, 0.0), 0.0, C.WALK_SIDEWAYS),   # towards its left (+x)
    ((-1.0, 0.0), 0.0, C.WALK_SIDEWAYS),
    ((1.2, 0.0), math.pi / 2, C.WALK_FORWARD),  # facing +x: forward is relative to facing
    ((0.0, 1.2), math.pi / 2, C.WALK_SIDEWAYS),
    ((0.0, 3.0), 0.0, C.RUN_FORWARD),
    ((0.0, 0.0), 0.0, C.STAND),
])
def test_steady_motion_gets_one_span_over_the_whole_clip(velocity, yaw, caption):
    joints, rot = moving(3.0, velocity, yaw)
    assert C.motion_captions(joints, rot, FPS) == [(0, len(joints), caption)]


@pytest.mark.parametrize("speed", [2.1, 0.3])
def test_speeds_between_the_bands_get_no_caption(speed):
    """Between walking and running, and between standing and walking."""
    assert captions_of(*moving(3.0, (0.0, speed))) == []


def test_diagonal_travel_gets_no_caption():
    assert captions_of(*moving(3.0, (0.85, 0.85))) == []  # 45° off facing


@pytest.mark.parametrize("turn, caption", [(math.pi / 2, C.TURN_LEFT), (-math.pi / 2, C.TURN_RIGHT)])
def test_turning_in_place(turn, caption):
    frames = round(2.0 * FPS)
    yaw = np.linspace(0.0, turn, frames)
    joints, rot = posed(yaw, np.tile(BODY.rest_joints[0].numpy(), (frames, 1)))
    assert C.motion_captions(joints, rot, FPS) == [(0, frames, caption)]


def test_stand_turn_stand_keeps_spans_apart():
    still = round(2.0 * FPS)
    yaw = np.concatenate([np.zeros(still), np.linspace(0, math.pi / 2, round(2.0 * FPS)),
                          np.full(still, math.pi / 2)])
    joints, rot = posed(yaw, np.tile(BODY.rest_joints[0].numpy(), (len(yaw), 1)))
    spans = C.motion_captions(joints, rot, FPS)
    check_spans(spans, len(yaw))
    assert [c for _, _, c in spans] == [C.STAND, C.TURN_LEFT, C.STAND]
    s, e, _ = spans[1]
    assert s <= still + 15 and e >= len(yaw) - still - 15  # covers the middle of the turn


def test_small_turn_is_not_a_turn():
    frames = round(2.0 * FPS)
    joints, rot = posed(np.linspace(0.0, math.radians(45), frames),
                        np.tile(BODY.rest_joints[0].numpy(), (frames, 1)))
    assert C.TURN_LEFT not in captions_of(joints, rot)


def test_stand_walk_stand():
    """Still stretches at both ends of a clip are captioned, in order, around the walk."""
    parts = [moving(2.0, (0, 0)), moving(3.0, (0, 1.2)), moving(2.0, (0, 0))]
    joints = [parts[0][0]]
    for j, _ in parts[1:]:  # each part starts where the previous ended
        joints.append(j - j[:1] + joints[-1][-1:])
    joints = np.concatenate(joints)
    rot = np.concatenate([r for _, r in parts])
    assert captions_of(joints, rot) == [C.STAND, C.WALK_FORWARD, C.STAND]


def test_lying_body_gets_no_caption():
    """The rest body tipped onto its back (pitched 90° about x), still and then sliding."""
    for velocity in [(0.0, 0.0), (0.0, 1.0)]:
        joints, _ = moving(3.0, velocity)
        pelvis = joints[:, :1]
        tip = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float32)  # 90° about x
        lying = (joints - pelvis) @ tip.T + pelvis
        assert captions_of(lying, np.tile(tip, (len(joints), 1, 1))) == []


def test_hopping_forward_is_not_walking():
    joints, rot = moving(3.0, (0.0, 1.2))
    t = np.arange(len(joints)) / FPS
    joints = joints.copy()
    joints[..., 1] += (0.25 * np.abs(np.sin(2 * math.pi * t)))[:, None]  # 25 cm hops at 2 Hz
    assert captions_of(joints, rot) == []


def test_waving_in_place_is_not_standing_still():
    joints, rot = moving(3.0, (0, 0))
    t = np.arange(len(joints)) / FPS
    joints = joints.copy()
    joints[:, [J["right_wrist"], J["right_hand"]], 1] += 0.2 * np.sin(2 * math.pi * 1.5 * t)[:, None]
    assert captions_of(joints, rot) == []


def squatting(down_s, hold_s, up_s, depth=math.radians(85)):
    """Stand 0.5 s, bend hips by `depth` and knees by twice that over `down_s`, hold, rise over
    `up_s` (0 = stay down), stand 0.5 s; soles stay on the floor and the pelvis above them."""
    stand = np.zeros(round(0.5 * FPS))
    phases = [stand, np.linspace(0, 1, round(down_s * FPS)), np.ones(round(hold_s * FPS))]
    if up_s:
        phases += [np.linspace(1, 0, round(up_s * FPS)), stand]
    bend = np.concatenate(phases) * depth
    pose = np.zeros((len(bend), 24, 3), np.float32)
    for side in ("left", "right"):
        pose[:, J[f"{side}_hip"], 0] = -bend  # thigh forward
        pose[:, J[f"{side}_knee"], 0] = 2 * bend  # shank back
        pose[:, J[f"{side}_ankle"], 0] = -bend  # foot flat
    root = np.tile(BODY.rest_joints[0].numpy(), (len(bend), 1))
    joints, rot = posed(np.zeros(len(bend)), root, pose)
    ankle = joints[:, [J["left_ankle"], J["right_ankle"]], 1].min(1)
    joints[..., 1] += (BODY.rest_joints[J["left_ankle"], 1].item() - ankle)[:, None]
    return joints, rot, int(np.argmax(bend))


def test_squat_down_and_up_is_a_squat():
    joints, rot, deepest = squatting(down_s=0.6, hold_s=0.2, up_s=0.6)
    spans = C.motion_captions(joints, rot, FPS)
    check_spans(spans, len(joints))
    squats = [(s, e) for s, e, c in spans if c == C.SQUAT]
    assert len(squats) == 1 and squats[0][0] <= deepest < squats[0][1]


def test_crouching_and_staying_down_is_not_a_squat_nor_standing():
    joints, rot, deepest = squatting(down_s=0.6, hold_s=2.5, up_s=0)
    spans = C.motion_captions(joints, rot, FPS)
    check_spans(spans, len(joints))
    assert all(c != C.SQUAT and e <= deepest for s, e, c in spans)


def test_heading_ignores_pelvis_pitch():
    """Yaw comes from the pelvis's left axis, so a pelvis pitched by 90° (facing up) still reads."""
    psi = 0.7
    yaw = np.array([[math.cos(psi), 0, math.sin(psi)], [0, 1, 0], [-math.sin(psi), 0, math.cos(psi)]])
    pitch = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]])
    rot = np.stack([yaw, yaw @ pitch])
    np.testing.assert_allclose(C.heading(rot), [psi, psi], atol=1e-12)


def test_short_clips_and_torch_inputs():
    joints, rot = moving(0.9, (0.0, 1.2))
    assert C.motion_captions(joints, rot, FPS) == []
    joints, rot = moving(2.0, (0.0, 1.2))
    spans = C.motion_captions(torch.from_numpy(joints), torch.from_numpy(rot), FPS)
    assert spans == [(0, len(joints), C.WALK_FORWARD)]


@pytest.mark.slow
def test_real_clips_get_the_captions_their_names_say(dataset_cache):
    from engine.data.dataset import load_clips

    expected = {"walk": C.WALK_FORWARD, "walk backwards": C.WALK_BACKWARD, "squat": C.SQUAT,
                "run": C.RUN_FORWARD, "stand": C.STAND}
    seconds = {name: {} for name in expected}
    for clip in load_clips(dataset_cache, "train"):
        if clip.caption not in expected:
            continue
        out = BODY.pose(torch.from_numpy(clip.pose), torch.from_numpy(clip.root))
        spans = C.motion_captions(out["joints"], out["world_rot"][:, 0], FPS)
        check_spans(spans, len(clip.pose))
        for s, e, c in spans:
            seconds[clip.caption][c] = seconds[clip.caption].get(c, 0.0) + (e - s) / FPS
    for name, caption in expected.items():
        found = seconds[name]
        assert found, name
        assert found.get(caption, 0.0) >= 0.8 * sum(found.values()), (name, found)
