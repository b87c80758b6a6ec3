"""Synthetic webcam observations: the pinhole camera, where the landmarks sit on our body, and
the detector behaviour (noise, visibility, occlusion, truncation, swaps) as measured."""
import json

import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.camera import Camera, intrinsics, look_at
from engine.data.observations import (LANDMARK_OFFSET, MEDIAPIPE_RENDERED_PATH, MEDIAPIPE_STATS_PATH, Events,
                                      NoiseModel, facing_yaw, hidden_by_body, landmarks_3d, observe_clip, sample_camera,
                                      smooth_noise, synthesize)
from streamer.landmarks import BODY_LANDMARKS, LANDMARK_NAMES, MIRROR, L

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
NO_EVENTS = Events(limb_spans=(), missing_spans=(), swap_spans=())


@pytest.fixture(scope="module")
def body():
    return load_default_body()


@pytest.fixture(scope="module")
def noise():
    return NoiseModel.load()


def posed(body, T=1, pose=None, root=None):
    pose = torch.zeros(T, 24, 3) if pose is None else torch.as_tensor(pose, dtype=torch.float32)
    out = body.pose(pose, None if root is None else torch.as_tensor(root, dtype=torch.float32))
    return out["joints"].numpy().astype(np.float64), out["world_rot"].numpy().astype(np.float64)


def front_camera(distance=3.0, width=640, height=480, hfov=60.0, cam_height=1.0):
    R, t = look_at(np.array([0.0, cam_height, distance]), np.array([0.0, cam_height, 0.0]))
    return Camera(K=intrinsics(width, height, hfov), R=R, t=t, width=width, height=height)


# --- camera -----------------------------------------------------------------------------------

def test_pinhole_projection_hand_computed():
    cam = front_camera(hfov=90.0)  # f = 320 px
    assert cam.focal == pytest.approx(320.0)
    uv, depth = cam.project(np.array([[0.5, 1.5, 0.0], [0.0, 1.0, 0.0], [0.0, 1.0, 4.0]]))
    # (0.5, 1.5, 0): camera coords (0.5, -0.5, 3) -> u = 320 * 0.5 / 3 + 320, v = 240 - 320 * 0.5 / 3
    np.testing.assert_allclose(uv[0], [320 + 320 * 0.5 / 3, 240 - 320 * 0.5 / 3])
    np.testing.assert_allclose(uv[1], [320, 240])
    np.testing.assert_allclose(depth, [3.0, 3.0, -1.0])
    assert np.isnan(uv[2]).all()  # behind the camera
    np.testing.assert_allclose(cam.position, [0.0, 1.0, 3.0])
    assert cam.in_image(uv).tolist() == [True, True, False]


def test_a_frontal_camera_sees_the_left_side_on_the_right(body):
    joints, rot = posed(body)
    uv, _ = front_camera().project(landmarks_3d(joints, rot))
    assert uv[0, L["left_wrist"], 0] > uv[0, L["right_wrist"], 0]
    assert uv[0, L["nose"], 1] < uv[0, L["left_hip"], 1]  # image v grows downwards


def test_roll_turns_the_image_about_the_principal_point():
    R, t = look_at(np.array([0.0, 1.0, 3.0]), np.array([0.0, 1.0, 0.0]), roll_deg=90.0)
    cam = Camera(K=intrinsics(640, 480, 90.0), R=R, t=t, width=640, height=480)
    uv, _ = cam.project(np.array([[0.3, 1.0, 0.0]]))
    np.testing.assert_allclose(uv[0], [320.0, 240.0 + 320 * 0.3 / 3], atol=1e-9)  # right -> down


def test_sampled_cameras_stay_in_their_ranges(body, noise):
    joints, rot = posed(body, T=5, root=np.tile([1.0, 0.95, -2.0], (5, 1)))
    for seed in range(200):
        cam = sample_camera(np.random.default_rng(seed), joints[:, 0], facing_yaw(rot[:, 0]))
        hfov = np.degrees(2 * np.arctan(cam.width / 2 / cam.focal))
        assert 45 <= hfov <= 75 and (cam.width, cam.height) in ((640, 480), (1280, 720))
        assert 0.8 <= cam.position[1] <= 2.0
        horizontal = np.linalg.norm((cam.position - joints[0, 0])[[0, 2]])
        assert 1.5 - 1e-9 <= horizontal <= 6.0 + 1e-9
        forward, right = cam.R[2], cam.R[0]
        assert abs(np.degrees(np.arcsin(forward[1]))) <= 15 + 4 * 3  # pitch: clipped + noise
        assert abs(np.degrees(np.arcsin(right[1]))) <= 6 + 1e-6  # roll


# --- landmarks on our body -------------------------------------------------------------------------

def test_mirror_pairs_left_and_right():
    assert all(MIRROR[MIRROR[i]] == i for i in range(33))
    assert LANDMARK_NAMES[MIRROR[L["left_heel"]]] == "right_heel" and MIRROR[L["nose"]] == L["nose"]


def test_the_rig_is_fitted_to_mediapipe_on_rendered_frames():
    """assets/mediapipe_rendered.json (`genmo-live data compare-obs`) was measured with this rig,
    and its fit moves no landmark by a centimetre more: the rig is where MediaPipe puts them."""
    report = json.loads(MEDIAPIPE_RENDERED_PATH.read_text())
    for name, offset in report["rig_offsets_used_m"].items():
        np.testing.assert_allclose(LANDMARK_OFFSET[L[name]], offset, atol=1e-4, err_msg=name)
    assert max(np.abs(r["rig_correction_m"]).max() for r in report["landmarks"]) < 0.01


def test_the_rig_keeps_mediapipe_s_proportions(body):
    """Against MediaPipe's own world landmarks on real video (assets/mediapipe_stats.json): the
    fitted rig keeps the body's proportions (torso, hip/shoulder width, hand and foot points)."""
    geometry = json.loads(MEDIAPIPE_STATS_PATH.read_text())["world_geometry"]
    joints, rot = posed(body)
    p = landmarks_3d(joints, rot)[0]

    def dist(a, b):
        return np.linalg.norm(p[L[a]] - p[L[b]])

    torso = np.linalg.norm((p[L["left_shoulder"]] + p[L["right_shoulder"]]) / 2
                           - (p[L["left_hip"]] + p[L["right_hip"]]) / 2)
    assert torso == pytest.approx(geometry["torso_length"], rel=0.1)
    assert dist("left_wrist", "left_index") == pytest.approx(geometry["wrist_index"], rel=0.15)
    # On our renders MediaPipe puts the toe 18 cm from the ankle; on the real clips' people 15 cm.
    assert dist("left_ankle", "left_foot_index") == pytest.approx(geometry["ankle_foot_index"], rel=0.25)
    ratio = dist("left_hip", "right_hip") / dist("left_shoulder", "right_shoulder")
    assert ratio == pytest.approx(geometry["hip_width"] / geometry["shoulder_width"], rel=0.15)


def test_face_points_ride_on_the_head(body):
    """Turning the head 90° to its left carries the nose from +z to +x around the head joint."""
    pose = np.zeros((1, 24, 3))
    pose[0, J["head"]] = [0.0, np.pi / 2, 0.0]
    j0, r0 = posed(body)
    j1, r1 = posed(body, pose=pose)
    head = j0[0, J["head"]]
    before = landmarks_3d(j0, r0)[0, L["nose"]] - head
    after = landmarks_3d(j1, r1)[0, L["nose"]] - head
    np.testing.assert_allclose(after, [before[2], before[1], -before[0]], atol=1e-6)
    np.testing.assert_allclose(landmarks_3d(j1, r1)[0, L["left_hip"]], landmarks_3d(j0, r0)[0, L["left_hip"]])


def test_landmarks_scale_with_stature(body):
    tall = body.scaled(1.87)
    joints, rot = posed(tall)
    p = landmarks_3d(joints, rot, stature=1.87)[0]
    j0, r0 = posed(body)
    p0 = landmarks_3d(j0, r0)[0]
    np.testing.assert_allclose(p, p0 * 1.1, atol=1e-5)


# --- detector behaviour --------------------------------------------------------------------------

def standing(body, T=90):
    return posed(body, T=T, root=np.tile(body.rest_joints[0].numpy(), (T, 1)))


def test_still_person_gets_the_measured_error_and_visibility(body, noise):
    """Standing still, no events: the error against the truth has the measured size (the detector's
    slow error, the jitter on top) and smoothness; visibility sits at the measured level."""
    joints, rot = standing(body, T=600)
    cam = front_camera()
    obs = synthesize(landmarks_3d(joints, rot), cam, noise, NO_EVENTS, np.random.default_rng(0))
    true_uv, _ = cam.project(landmarks_3d(joints, rot))
    box_h = true_uv[0, :, 1].max() - true_uv[0, :, 1].min()
    err = (obs.keypoints - true_uv) / box_h
    for lm in (L["nose"], L["left_shoulder"], L["right_wrist"], L["left_ankle"]):
        expected = np.hypot(noise.error_std[lm], noise.jitter[lm])
        assert err[:, lm].std() == pytest.approx(expected, rel=0.3), LANDMARK_NAMES[lm]
        lag1 = np.corrcoef(err[:-1, lm, 0], err[1:, lm, 0])[0, 1]
        assert lag1 == pytest.approx(np.exp(-1 / (4 * noise.error_smooth[lm] ** 2)), abs=0.08)
    assert obs.detected.all()
    np.testing.assert_allclose(obs.visibility[50:].mean(0), np.clip(noise.visible_level, 0, 1), atol=0.02)


def test_smooth_noise_has_unit_variance_and_the_asked_smoothness():
    x = smooth_noise(np.random.default_rng(0), 4000, np.array([1.0, 2.0, 5.0] * 11))
    np.testing.assert_allclose(x.std(0)[:3], 1.0, atol=0.08)
    lag1 = [np.corrcoef(x[:-1, k, 0], x[1:, k, 0])[0, 1] for k in range(3)]
    np.testing.assert_allclose(lag1, np.exp(-1 / (4 * np.array([1.0, 2.0, 5.0]) ** 2)), atol=0.05)


def test_limb_span_lowers_the_limb_s_visibility_gradually(body, noise):
    """An arm behind something: its visibility falls to what MediaPipe reports for hidden arms
    (measured on rendered frames: about 0.5, so often still above the threshold) and comes back,
    never jumping; frames where it is missing are the partly occluded ones."""
    joints, rot = standing(body, T=200)
    left_arm = tuple(L[f"left_{n}"] for n in ("elbow", "wrist", "pinky", "index", "thumb"))
    events = Events(limb_spans=((30, 160, left_arm),), missing_spans=(), swap_spans=())
    obs = synthesize(landmarks_3d(joints, rot), front_camera(), noise, events, np.random.default_rng(1))
    vis = obs.visibility[:, L["left_wrist"]]
    assert vis[45:160].mean() == pytest.approx(noise.hidden_level[L["left_wrist"]], abs=0.05)
    assert vis[:30].mean() == pytest.approx(noise.visible_level[L["left_wrist"]], abs=0.05)
    assert vis[175:].mean() == pytest.approx(noise.visible_level[L["left_wrist"]], abs=0.05)
    assert np.abs(np.diff(vis)).max() < 0.2  # MediaPipe's visibility never jumps
    body_missing = obs.missing_landmarks()[:, list(BODY_LANDMARKS)].any(-1)
    np.testing.assert_array_equal(obs.partly_occluded(), body_missing)
    assert body_missing[:30].sum() == 0 and body_missing[45:160].sum() > 20


def test_missing_span_has_no_detection(body, noise):
    joints, rot = standing(body)
    events = Events(limb_spans=(), missing_spans=((10, 25),), swap_spans=())
    obs = synthesize(landmarks_3d(joints, rot), front_camera(), noise, events, np.random.default_rng(2))
    assert obs.detected.tolist() == [not 10 <= t < 25 for t in range(90)]
    assert np.isnan(obs.keypoints[10:25]).all() and (obs.visibility[10:25] == 0).all()
    assert obs.body_missing()[10:25].all() and not obs.body_missing()[:10].any()


def test_truncation_at_the_image_border(body, noise):
    """A close, narrow camera at chest height sees the upper body only: the legs are missing
    (outside the image) but the person is detected; walking out of view loses the detection."""
    joints, rot = standing(body, T=20)
    cam = front_camera(distance=1.6, hfov=45.0, cam_height=1.3)
    obs = synthesize(landmarks_3d(joints, rot), cam, noise, NO_EVENTS, np.random.default_rng(3))
    missing = obs.missing_landmarks()
    assert obs.detected.all() and obs.partly_occluded().all()
    assert missing[:, [L["left_ankle"], L["right_ankle"]]].all()
    assert not missing[:, [L["left_shoulder"], L["right_shoulder"]]].any()
    gone = joints + np.array([4.0, 0.0, 0.0])  # 4 m to the side
    obs = synthesize(landmarks_3d(gone, rot), front_camera(), noise, NO_EVENTS, np.random.default_rng(3))
    assert not obs.detected.any() and obs.body_missing().all()


def test_the_far_arm_is_hidden_by_the_body_in_a_side_view(body, noise):
    pose = np.zeros((60, 24, 3))
    pose[:, J["left_shoulder"]] = [0.0, 0.0, -1.3]  # arms down along the body
    pose[:, J["right_shoulder"]] = [0.0, 0.0, 1.3]
    joints, rot = posed(body, T=60, pose=pose)
    R, t = look_at(np.array([3.0, 1.0, 0.0]), np.array([0.0, 1.0, 0.0]))  # camera on the body's left
    cam = Camera(K=intrinsics(640, 480, 60.0), R=R, t=t, width=640, height=480)
    pts = landmarks_3d(joints, rot)
    uv, depth = cam.project(pts)
    hidden = hidden_by_body(uv, depth, cam.focal)
    assert hidden[:, L["right_elbow"]].all() and not hidden[:, L["left_elbow"]].any()
    obs = synthesize(pts, cam, noise, NO_EVENTS, np.random.default_rng(4))
    far, near = obs.visibility[20:, L["right_elbow"]].mean(), obs.visibility[20:, L["left_elbow"]].mean()
    assert far == pytest.approx(noise.hidden_level[L["right_elbow"]], abs=0.05)
    assert near == pytest.approx(noise.visible_level[L["left_elbow"]], abs=0.05)


def test_a_swap_exchanges_left_and_right(body, noise):
    joints, rot = standing(body, T=10)
    group = tuple(L[f"left_{n}"] for n in ("knee", "ankle", "heel", "foot_index"))
    events = Events(limb_spans=(), missing_spans=(), swap_spans=((3, 5, group),))
    pts = landmarks_3d(joints, rot)
    a = synthesize(pts, front_camera(), noise, NO_EVENTS, np.random.default_rng(5))
    b = synthesize(pts, front_camera(), noise, events, np.random.default_rng(5))
    np.testing.assert_array_equal(b.keypoints[3:5, L["left_ankle"]], a.keypoints[3:5, L["right_ankle"]])
    np.testing.assert_array_equal(b.keypoints[3:5, L["right_knee"]], a.keypoints[3:5, L["left_knee"]])
    np.testing.assert_array_equal(b.keypoints[:, L["left_wrist"]], a.keypoints[:, L["left_wrist"]])
    np.testing.assert_array_equal(b.keypoints[5:], a.keypoints[5:])


def test_observations_are_reproducible(body, noise):
    T = 120
    pose = np.zeros((T, 24, 3))
    pose[:, J["left_knee"], 0] = np.linspace(0, 1.2, T)
    root = np.stack([np.linspace(0, 2, T), np.full(T, 0.95), np.zeros(T)], -1)
    joints, rot = posed(body, T=T, pose=pose, root=root)
    a = observe_clip("walk/1", joints, rot, seed=0, noise=noise)
    b = observe_clip("walk/1", joints, rot, seed=0, noise=noise)
    c = observe_clip("walk/1", joints, rot, seed=1, noise=noise)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    np.testing.assert_array_equal(a.visibility, b.visibility)
    assert a.events == b.events and not np.array_equal(np.nan_to_num(a.keypoints), np.nan_to_num(c.keypoints))


def test_noise_model_reads_the_measurements(noise):
    stats = json.loads(MEDIAPIPE_STATS_PATH.read_text())
    assert stats["settings"]["model_complexity"] == 1 and stats["settings"]["static_image_mode"] is False
    assert noise.jitter.shape == (33,) and (noise.jitter > 0).all()
    assert (noise.jitter < np.asarray(stats["jitter_px_per_height"])).all()  # still < pooled
    assert (noise.jitter_at(np.full((1, 33), 5.0)) <= np.asarray(stats["jitter_px_per_height"]) + 1e-12).all()
    assert 0.5 < noise.vis_lag < 0.98 and (noise.visible_level > 0.7).all()
    limbs = [L[f"{s}_{n}"] for s in ("left", "right") for n in ("elbow", "wrist", "knee", "ankle")]
    assert (noise.hidden_level[limbs] < noise.visible_level[limbs] - 0.2).all()
    assert (noise.error_std > noise.jitter).all() and (noise.error_smooth >= 1.0).all()
    assert 0 < noise.flip_rate < 0.05 and 0 < noise.limb_swap_rate < 0.05


# --- the desk scenario ---------------------------------------------------------------------------

def test_a_desk_camera_frames_the_head_to_the_waist_and_the_desk_hides_the_legs(body, noise):
    """Standing or seated (pelvis 0.5 m high, thighs forward, shins down), the desk webcam is 0.9-1.3 m
    high and 0.6-1.5 m away; the head is in the image, the pelvis near its bottom edge or below it,
    the ankles never seen (below the image or behind the desk) for any of 40 seeds. The detector's
    noise scales with the part of the person inside the image: with the whole body's box (the feet
    far below the image) the shoulders were off by hundreds of pixels, seen in 13 % of frames."""
    from engine.data.observations import (DESK_CAMERA_HEIGHT_M, DESK_DISTANCE_M, LANDMARK_JOINT, landmarks_3d,
                                          observe_clip)
    from engine.model.conditions import landmark_conditions

    arms_down = np.zeros((30, 24, 3))
    arms_down[:, 16, 2], arms_down[:, 17, 2] = -1.3, 1.3  # shoulders: the arms hang, not a T-pose
    seated = arms_down.copy()
    seated[:, [1, 2], 0] = -np.pi / 2     # thighs forward
    seated[:, [4, 5], 0] = np.pi / 2      # shins down again
    rest = body.rest_joints.numpy()
    poses = {"standing": posed(body, T=30, pose=arms_down, root=np.tile(rest[0], (30, 1))),
             "seated": posed(body, T=30, pose=seated, root=np.tile(rest[0] * [1, 0, 1] + [0, 0.5, 0], (30, 1)))}
    ankles = [L["left_ankle"], L["right_ankle"]]
    for name, (joints, world_rot) in poses.items():
        for seed in range(40):
            obs = observe_clip(f"desk/{name}", joints, world_rot, seed, noise, occlusion=False, scenario="desk")
            cam = obs.camera
            height = cam.position[1]
            away = np.linalg.norm((cam.position - joints[0, 0])[[0, 2]])
            assert DESK_CAMERA_HEIGHT_M[0] <= height <= DESK_CAMERA_HEIGHT_M[1], (name, seed)
            assert DESK_DISTANCE_M[0] - 1e-9 <= away <= DESK_DISTANCE_M[1], (name, seed)
            uv, _ = cam.project(landmarks_3d(joints[:1], world_rot[:1]))
            assert cam.in_image(uv[0, [L["nose"]]]).all(), (name, seed)
            assert uv[0, L["left_hip"], 1] > 0.6 * cam.height, (name, seed)  # the waist low in the image
            seen = landmark_conditions(obs.keypoints, obs.visibility, cam.width, cam.height, cam.focal)["visible"]
            assert not seen[:, ankles].any(), (name, seed)
            assert seen[:, L["left_shoulder"]].mean() > 0.9, (name, seed)
    assert LANDMARK_JOINT[L["nose"]] == 15


def test_a_person_walking_past_a_desk_camera_stays_in_front_of_it(body, noise):
    """A 4 m walk straight at the desk webcam: it is stepped back so the pelvis never comes
    nearer than DESK_MIN_DEPTH_M (it passed beside and behind it before, and the motion's
    camera-frame translation x / z ran to thousands, losses of 500,000 in training)."""
    from engine.data.observations import DESK_MIN_DEPTH_M, observe_clip

    T = 120
    root = np.tile(body.rest_joints.numpy()[0], (T, 1))
    root[:, 2] = np.linspace(-2.0, 2.0, T)  # facing +z, walking 4 m forward
    joints, world_rot = posed(body, T=T, pose=np.zeros((T, 24, 3)), root=root)
    for seed in range(10):
        cam = observe_clip("desk/walk", joints, world_rot, seed, noise, scenario="desk").camera
        depth = (joints[:, 0] @ cam.R.T + cam.t)[:, 2]
        assert depth.min() >= DESK_MIN_DEPTH_M - 1e-9, seed
