"""The mediapipe-ik baseline: One-Euro filter, IK from landmarks, root from 2D, the predictor."""
import math

import numpy as np
import pytest
import torch

from bench.mediapipe_ik import (MEDIAPIPE_WORLD_FILTER, YUP_TO_CAMERA, MediapipeIK, _fraction, predictor,
                                rest_landmarks, solve_ik, solve_translation)
from engine.body.body_model import load_default_body
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import NUM_JOINTS
from engine.data.camera import Camera, intrinsics
from engine.data.observations import Events, Observation, landmarks_3d
from engine.evaluate import metrics
from engine.evaluate.protocol import TestItem as Item
from engine.live.filters import one_euro_step


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def filtered(xs, ts, **settings):
    out, state = [], None
    for x, t in zip(xs, ts):
        y, state = one_euro_step(np.asarray(x, float), t, state, **settings)
        out.append(y)
    return np.array(out)


def test_one_euro_keeps_a_constant_and_removes_jitter_but_follows_a_ramp():
    t = np.arange(300) / 30
    np.testing.assert_allclose(filtered(np.full(300, 2.5), t, **MEDIAPIPE_WORLD_FILTER), 2.5)
    noise = np.random.default_rng(0).normal(0, 0.01, 300)
    still = filtered(noise, t, **MEDIAPIPE_WORLD_FILTER)
    assert np.abs(np.diff(still)).mean() < 0.5 * np.abs(np.diff(noise)).mean()
    ramp = filtered(t * 1.0, t, **MEDIAPIPE_WORLD_FILTER)  # 1 m/s: beta opens the filter, little lag
    assert abs(ramp[-1] - t[-1]) < 0.05


def test_fraction_of_a_rotation():
    R = axis_angle_to_matrix(np.array([0.0, 0.9, 0.0]))
    np.testing.assert_allclose(_fraction(R, 1 / 3) @ _fraction(R, 1 / 3) @ _fraction(R, 1 / 3), R, atol=1e-9)
    np.testing.assert_allclose(_fraction(np.eye(3), 0.5), np.eye(3))


def landmarks_of(body, pose):
    """Where MediaPipe's world landmarks fall on our body posed by `pose` (T, 24, 3) axis-angle:
    a perfect detector. -> joints (T, 24, 3) with the pelvis at (0, 0.95, 0), the landmarks there,
    and the landmarks hips-centred (MediaPipe's world landmarks)."""
    joints, rot = body.pose_arrays(pose.astype(np.float32), np.tile([0.0, 0.95, 0.0], (len(pose), 1)).astype(np.float32))
    marks = landmarks_3d(joints, rot, body.stature)
    return joints, marks, marks - (marks[:, [23]] + marks[:, [24]]) / 2


def test_ik_brings_a_t_pose_back_exactly_and_a_posed_body_close(body):
    ik = MediapipeIK(body, None, None)
    joints, _, marks = landmarks_of(body, np.zeros((1, NUM_JOINTS, 3)))
    got = ik._fk(solve_ik(marks[0], rest_landmarks(body)))
    np.testing.assert_allclose(got, joints[0] - joints[0, 0], atol=1e-3)
    pose = np.zeros((1, NUM_JOINTS, 3))
    pose[0, 0] = [0.0, 0.8, 0.0]                        # turned
    pose[0, [4, 5], 0] = 1.2                            # knees bent
    pose[0, 16] = [0.0, 0.0, -1.0]                      # left arm down
    pose[0, 18] = [0.0, -1.3, 0.0]                      # left elbow bent forward
    joints, _, marks = landmarks_of(body, pose)
    got = ik._fk(solve_ik(marks[0], rest_landmarks(body)))
    err = np.linalg.norm(got - (joints[0] - joints[0, 0]), axis=-1)
    assert err.mean() < 0.03 and err.max() < 0.08


def test_translation_from_2d_is_exact_for_a_true_projection():
    rng = np.random.default_rng(1)
    rel = rng.normal(0, 0.4, (12, 3))
    t = np.array([0.3, -0.2, 3.5])
    f, c = 500.0, (320.0, 240.0)
    p = rel + t
    uv = p[:, :2] / p[:, 2:] * f + c
    np.testing.assert_allclose(solve_translation(rel, uv, np.ones(12), f, c), t, atol=1e-9)
    assert solve_translation(rel, uv, np.r_[1.0, np.zeros(11)], f, c) is None


def rendered_like_item(body, T=40):
    """A test item seen by a perfect MediaPipe through a 60° camera 3 m away: landmarks in 2D and
    in 3D, as a rendered set has them."""
    phase = np.linspace(0, 2 * math.pi, T)
    pose = np.zeros((T, NUM_JOINTS, 3))
    pose[:, [4, 5], 0] = 0.5 + 0.4 * np.sin(phase)[:, None]
    pose[:, [16, 17], 2] = np.stack([-0.9 - 0.2 * np.sin(phase), 0.9 + 0.2 * np.sin(phase)], 1)
    joints, world_marks, marks = landmarks_of(body, pose)
    K = intrinsics(640, 480, 60.0)
    cam = Camera(K=K, R=np.diag([1.0, -1.0, -1.0]), t=np.array([0.0, 0.9, 3.0]), width=640, height=480)
    uv, _ = cam.project(world_marks)
    obs = Observation(keypoints=uv.astype(np.float32), visibility=np.ones((T, 33), np.float32),
                      detected=np.ones(T, bool), camera=cam, events=Events((), (), ()),
                      world=marks.astype(np.float32))
    return Item(clip="test/walk", joints=joints, foot_contact=np.zeros((T, 4), bool), caption=None, obs=obs)


def test_predictor_on_a_perfect_detector_lands_on_the_truth(body):
    item = rendered_like_item(body)
    pred = predictor(body, None, None)(item)
    gt_cam = item.obs.camera.to_camera(item.joints)
    assert metrics.mpjpe_mm(pred.joints_cam, gt_cam) < 15
    # The root: the right depth from 2D alone (the told 60° camera is the true one here).
    np.testing.assert_allclose(pred.joints_cam[:, 0], gt_cam[:, 0], atol=0.05)
    # Grounded: the soles rest on y = 0 in its world.
    rest = body.rest_joints.double().numpy()
    feet = [7, 8, 10, 11]
    assert abs((pred.joints_world[:, feet, 1] - rest[feet, 1]).min(1).mean()) < 0.02


def test_predictor_needs_world_landmarks_and_holds_through_missing_frames(body):
    item = rendered_like_item(body)
    item.obs.detected[10:15] = False
    pred = predictor(body)(item)
    np.testing.assert_allclose(pred.joints_world[10:15], np.repeat(pred.joints_world[9:10], 5, 0))
    item.obs.world = None
    with pytest.raises(ValueError, match="--obs rendered"):
        predictor(body)(item)


def test_before_the_first_detection_a_t_pose_stands_in_front(body):
    ik = MediapipeIK(body)
    world, cam = ik.step(None, np.full((33, 2), np.nan), np.zeros(33), 640, 480, 0.0)
    assert np.isfinite(world).all() and cam[0, 2] == pytest.approx(3.0)
    np.testing.assert_allclose(cam * YUP_TO_CAMERA - cam[0] * YUP_TO_CAMERA,
                               body.rest_joints.numpy() - body.rest_joints.numpy()[0], atol=1e-5)
    assert torch.is_tensor(body.rest_joints)
