"""`genmo-live bench desk` (bench/desk.py): the desk view on real video, cropped and whole."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from bench import desk
from engine.live.pose_frame import PoseFrame
from streamer.sources import SAMPLE_CLIP


def legs(bend_deg: float) -> np.ndarray:
    """(1, 24, 3) joints: hips above knees, each shin bent `bend_deg` forward from the thigh's line."""
    joints = np.zeros((1, 24, 3))
    a = np.radians(bend_deg)
    for side, x in (("left", 0.1), ("right", -0.1)):
        joints[0, desk.J[f"{side}_hip"]] = [x, 1.0, 0.0]
        joints[0, desk.J[f"{side}_knee"]] = [x, 0.55, 0.0]
        joints[0, desk.J[f"{side}_ankle"]] = [x, 0.55 - 0.45 * np.cos(a), -0.45 * np.sin(a)]
    return joints


def test_knee_bend_is_zero_for_a_straight_leg_and_the_angle_between_thigh_and_shin():
    np.testing.assert_allclose(desk.knee_bend_deg(legs(0.0)), [[0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(desk.knee_bend_deg(legs(90.0)), [[90.0, 90.0]], atol=1e-6)


def test_crop_top_keeps_the_top_rows():
    img = np.arange(100 * 4 * 3, dtype=np.uint8).reshape(100, 4, 3)
    np.testing.assert_array_equal(desk.crop_top(img, 0.55), img[:55])


def test_summary_splits_seated_and_other_frames():
    def frame(bend, pelvis_y, seen):
        joints = legs(bend)[0]
        joints[0] = [0.0, pelvis_y, 0.0]
        return PoseFrame(0, 0.0, 0.0, np.zeros((24, 3)), np.zeros((24, 4)), joints[0], joints, np.zeros(6),
                         "estimated", 1.0, 1.7, seen=np.full(24, seen))

    frames = [frame(90.0, 0.5, False), frame(90.0, 0.6, False), frame(0.0, 0.95, True)]
    r = desk.summary(frames, np.array([True, True, False]))
    assert r["seated"] == {"frames": 2, "pelvis_height_m": 0.55, "knee_bend_deg": 90.0}
    assert r["other"] == {"frames": 1, "pelvis_height_m": 0.95, "knee_bend_deg": 0.0}
    assert r["knees_seen_share"] == pytest.approx(1 / 3, abs=1e-3)


@pytest.mark.slow
def test_bench_desk_runs_the_whole_and_the_cropped_clip(tmp_path):
    """40 frames of the sample clip through the command: three runs, every frame's pose in each,
    the crop's knees never seen, the whole image's seen, a strip and the report written."""
    cap, frames = cv2.VideoCapture(str(SAMPLE_CLIP)), []
    while len(frames) < 40:
        frames.append(cap.read()[1])
    clip = tmp_path / "clip.mp4"
    out = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 20.0, frames[0].shape[1::-1])
    for f in frames:
        out.write(f)
    out.release()
    done = subprocess.run([str(Path(sys.executable).with_name("genmo-live")), "bench", "desk", "--clip", str(clip), "--out",
                           str(tmp_path / "out"), "--threads", "1", "--json"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out" / "desk.json").read_text())
    assert report["frames"] == 40 and set(report["runs"]) == set(desk.RUN_COLORS)
    for name, r in report["runs"].items():
        assert r["seated"]["frames"] + r["other"]["frames"] == 40
    assert report["runs"]["crop"]["knees_seen_share"] == 0.0 < report["runs"]["whole image"]["knees_seen_share"]
    strip = cv2.imread(str(tmp_path / "out" / "desk_strip.jpg"))
    assert strip is not None and strip.shape[0] > 200


def test_bench_desk_refuses_a_share_of_the_image_outside_0_1_to_1():
    done = subprocess.run([str(Path(sys.executable).with_name("genmo-live")), "bench", "desk", "--keep", "5"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "bench desk: --keep 5.0: give the share of the image kept" in done.stderr
