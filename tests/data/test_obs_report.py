"""The synthetic-vs-MediaPipe comparison on known cases: a detector that is exactly our rig shows
no bias and no correction; one that puts a landmark a known 3D offset away shows that bias and
the fit recovers the offset."""
import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.camera import Camera, intrinsics, look_at
from engine.data.dataset import Clip
from engine.data.obs_report import compare
from engine.data.observations import LANDMARK_JOINT, Events, Observation, landmarks_3d
from engine.data.rendered import RenderedItem
from streamer.landmarks import L

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def turning_clip(T=60):
    """A person turning on the spot with swinging arms: many views of every landmark."""
    t = np.arange(T) / 30.0
    pose = np.zeros((T, 24, 3), np.float32)
    pose[:, 0, 1] = np.linspace(-1.2, 1.2, T)
    pose[:, J["left_shoulder"], 2] = -1.0 + 0.4 * np.sin(2 * np.pi * t)
    pose[:, J["right_shoulder"], 2] = 1.0 - 0.4 * np.sin(2 * np.pi * t)
    root = np.tile([0.0, 0.95, 0.0], (T, 1)).astype(np.float32)
    return Clip(clip="test/turn", subject="test:1", split="test", caption=None, pose=pose, root=root,
                contacts=np.zeros((T, 6), bool))


def detector_output(body, clip, cameras, shift=None):
    """RenderedItems whose "MediaPipe" is our rig, with landmark offsets moved by `shift` (33, 3)."""
    out = body.pose(torch.from_numpy(clip.pose), torch.from_numpy(clip.root))
    joints, rot = out["joints"].numpy().astype(float), out["world_rot"].numpy().astype(float)
    pts = landmarks_3d(joints, rot)
    if shift is not None:
        pts = pts + np.einsum("tlij,lj->tli", rot[:, LANDMARK_JOINT], shift)
    items = []
    for k, cam in enumerate(cameras):
        uv, _ = cam.project(pts)
        obs = Observation(keypoints=uv.astype(np.float32), visibility=np.ones(uv.shape[:2], np.float32),
                          detected=np.ones(len(uv), bool), camera=cam,
                          events=Events(limb_spans=(), missing_spans=(), swap_spans=()))
        items.append(RenderedItem(clip=clip.clip, camera_index=k, obs=obs,
                                  joints=joints, scene={}))
    return items


def cameras():
    out = []
    for position in ([0.0, 1.2, 3.0], [2.5, 1.5, 2.0], [-2.0, 0.9, 2.5]):
        R, t = look_at(np.array(position), np.array([0.0, 1.0, 0.0]))
        out.append(Camera(K=intrinsics(640, 480, 60.0), R=R, t=t, width=640, height=480))
    return out


def test_our_own_rig_shows_no_bias(body):
    clip = turning_clip()
    report = compare(detector_output(body, clip, cameras()), [clip], body)
    rows = {r["landmark"]: r for r in report["landmarks"]}
    assert rows["nose"]["bias_px"] == pytest.approx(0.0, abs=1e-3)
    assert rows["left_wrist"]["spread_px"] == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(rows["left_hip"]["rig_correction_m"], 0.0, atol=1e-4)


def test_a_known_offset_is_measured_and_recovered(body):
    clip = turning_clip()
    shift = np.zeros((33, 3))
    shift[L["left_hip"]] = [0.03, -0.04, 0.0]   # MediaPipe's hip 3 cm out and 4 cm down
    shift[L["nose"]] = [0.0, 0.02, 0.0]
    report = compare(detector_output(body, clip, cameras(), shift), [clip], body)
    rows = {r["landmark"]: r for r in report["landmarks"]}
    np.testing.assert_allclose(rows["left_hip"]["rig_correction_m"], shift[L["left_hip"]], atol=3e-3)
    np.testing.assert_allclose(rows["nose"]["rig_correction_m"], shift[L["nose"]], atol=3e-3)
    assert rows["left_hip"]["bias_px"] > 5 and rows["left_hip"]["bias_after_correction_px"] < 1
    assert rows["right_hip"]["bias_px"] == pytest.approx(0.0, abs=1e-3)
    # The suggested rig is mirror-symmetric: half of the left hip's shift lands on each side.
    corrected = report["rig_offsets_corrected_m"]
    assert corrected["left_hip"][0] == pytest.approx(-corrected["right_hip"][0], abs=1e-6)
