"""The recorder (clients/recorder.py): .npz and .bvh takes written while streaming, and export."""
import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import bvh
import numpy as np
import pytest
import torch

from clients.cli.main import main
from clients.recorder import Recorder, export, journal_path, matrix_to_euler_zxy, unwrap_degrees
from engine.body.body_model import load_default_body
from engine.body.rotations import axis_angle_to_matrix, axis_angle_to_quat
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.mocap_io import (bvh_pose, euler_to_matrix, forward_kinematics, guess_length_unit, parse_bvh,
                                  rest_pose, skeleton_height)
from engine.live.pose_frame import PoseFrame

FPS = 30.0
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def make_frames(body, count: int, seed: int = 0) -> list[PoseFrame]:
    """`count` pose frames of random SMPL poses (some beyond 180° of Euler range) walking about."""
    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.8, (count, 24, 3))
    root = np.array([0.0, 0.95, 0.0]) + np.cumsum(rng.normal(0.0, 0.02, (count, 3)), axis=0)
    joints = body.pose(torch.from_numpy(pose), torch.from_numpy(root))["joints"].double().numpy()
    sources = ("estimated", "generated", "blended")
    return [PoseFrame(frame_id=t, t_capture=1.7e9 + t / FPS, t_emit=1.7e9 + t / FPS + 0.03, pose_aa=pose[t],
                      pose_quat=axis_angle_to_quat(pose[t]), root=root[t], joints=joints[t],
                      contacts=rng.random(6), source=sources[t % 3], confidence=float(rng.random()),
                      stature=body.stature) for t in range(count)]


def record(path, body, frames, fps=FPS) -> Recorder:
    recorder = Recorder(path, body, fps)
    for f in frames:
        recorder.publish(f)
    recorder.close()
    return recorder


def geodesic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle (radians) between rotation matrices (..., 3, 3)."""
    cos = (np.einsum("...ij,...ij->...", a, b) - 1) / 2
    return np.arccos(np.clip(cos, -1.0, 1.0))


def test_bad_suffix_raises(tmp_path, body):
    for name in ("take.fbx", "take"):
        with pytest.raises(ValueError, match="suffix must be .npz or .bvh"):
            Recorder(tmp_path / name, body, FPS)
    assert not list(tmp_path.iterdir())


def test_bvh_parses_with_an_independent_reader(tmp_path, body):
    frames = make_frames(body, 40)
    record(tmp_path / "take.bvh", body, frames)
    mocap = bvh.Bvh((tmp_path / "take.bvh").read_text())
    assert sorted(mocap.get_joints_names()) == sorted(SMPL_JOINT_NAMES)
    assert mocap.nframes == 40
    assert mocap.frame_time == pytest.approx(1 / FPS, abs=1e-8)
    assert mocap.joint_channels("pelvis") == ["Xposition", "Yposition", "Zposition",
                                              "Zrotation", "Xrotation", "Yrotation"]
    for name in SMPL_JOINT_NAMES[1:]:
        assert mocap.joint_channels(name) == ["Zrotation", "Xrotation", "Yrotation"]
    rest = dict(zip(SMPL_JOINT_NAMES, body.rest_joints.numpy()))
    for leaf in ("head", "left_foot", "right_foot", "left_hand", "right_hand"):
        end = list(mocap.search("JOINT", leaf)[0].filter("End"))  # an End Site under each leaf
        assert end
        # In the rest pose every End Site is on or above the floor (the toe tips were 2.2 cm under).
        assert rest[leaf][1] + float(end[0]["OFFSET"][1]) >= -1e-6
    assert mocap.frame_joint_channels(0, "pelvis", ["Xposition", "Yposition", "Zposition"]) == \
        pytest.approx(frames[0].root, abs=1e-6)


def test_bvh_reimports_through_our_loader(tmp_path, body):
    frames = make_frames(body, 60)
    record(tmp_path / "take.bvh", body, frames)
    parsed = parse_bvh((tmp_path / "take.bvh").read_text())
    assert parsed.frame_time == pytest.approx(1 / FPS, abs=1e-8)
    local, root = bvh_pose(parsed)  # file units: metres
    cols = [parsed.names.index(n) for n in SMPL_JOINT_NAMES]
    pose = np.stack([f.pose_aa for f in frames])
    assert geodesic(local[:, cols], axis_angle_to_matrix(pose)).max() < 1e-3
    np.testing.assert_allclose(root, np.stack([f.root for f in frames]), atol=1e-4)
    # The skeleton: the body's rest pose, and posing it gives the frames' joints.
    rest = rest_pose(parsed.parents, parsed.offsets)
    np.testing.assert_allclose(rest[cols], body.rest_joints.numpy(), atol=1e-5)  # µm offsets, summed
    positions, _ = forward_kinematics(parsed.parents, parsed.offsets, local, root)
    np.testing.assert_allclose(positions[:, cols], np.stack([f.joints for f in frames]), atol=1e-4)
    # Metres, and the loader's unit guess for BVH files of unknown origin agrees.
    height = skeleton_height(rest, parsed.parents, parsed.names, {n: n for n in SMPL_JOINT_NAMES})
    assert guess_length_unit(height) == 1.0


def test_a_recorded_take_loads_as_motion_capture(tmp_path, body):
    """load_motion (what `data preview` and `data build --data` read) knows our own skeleton."""
    from engine.data.mocap_io import load_motion

    frames = make_frames(body, 30)
    record(tmp_path / "take.bvh", body, frames).close()
    motion = load_motion(tmp_path / "take.bvh")
    assert motion.fps == pytest.approx(FPS) and motion.smpl_map == {n: n for n in SMPL_JOINT_NAMES}
    mapped = [motion.names.index(n) for n in SMPL_JOINT_NAMES]
    assert np.allclose(motion.positions[:, mapped], np.stack([f.joints for f in frames]), atol=1e-4)


def test_npz_round_trip_is_exact(tmp_path, body):
    frames = make_frames(body, 50)
    record(tmp_path / "take.npz", body, frames)
    with np.load(tmp_path / "take.npz") as data:
        for key in ("pose_aa", "pose_quat", "root", "joints", "contacts", "frame_id", "t_capture", "t_emit",
                    "source", "confidence"):
            np.testing.assert_array_equal(data[key], np.stack([np.asarray(getattr(f, key)) for f in frames]),
                                          err_msg=key)
        assert data["pose_aa"].shape == (50, 24, 3) and data["source"].dtype.kind == "U"
        assert float(data["fps"]) == FPS and float(data["stature"]) == pytest.approx(body.stature)
        assert tuple(data["joint_names"]) == SMPL_JOINT_NAMES and tuple(data["parents"]) == body.parents
        np.testing.assert_array_equal(data["rest_joints"], body.rest_joints.numpy())


def test_export_equals_the_recorded_bvh(tmp_path, body):
    frames = make_frames(body, 100)  # several flushes, whose angles must continue across them
    record(tmp_path / "take.npz", body, frames)
    record(tmp_path / "take.bvh", body, frames)
    out = export(tmp_path / "take.npz", tmp_path / "exported.bvh")
    assert out == tmp_path / "exported.bvh"
    assert out.read_text() == (tmp_path / "take.bvh").read_text()
    with pytest.raises(ValueError, match="suffix must be .bvh"):
        export(tmp_path / "take.npz", tmp_path / "take.fbx")


def read_take(path) -> np.ndarray:
    """(T, 3) the root positions of the take on disk at `path` now: an .npz's journal while it is
    recorded (the npz itself once finished), a .bvh's frames as its header counts them."""
    if path.suffix == ".npz":
        journal = journal_path(path)
        return np.load(journal)["root"] if journal.exists() else np.load(path)["root"]
    return bvh_pose(parse_bvh(path.read_text()))[1]


@pytest.mark.parametrize("suffix", [".npz", ".bvh"])
def test_file_holds_each_second_before_close(tmp_path, body, suffix):
    """The take is on disk and readable one second of frames after they were published (counted in
    frames, not wall time), with close() never called: what a killed run leaves."""
    path = tmp_path / f"take{suffix}"
    frames = make_frames(body, 45)  # 1.5 s at 30 fps
    recorder = Recorder(path, body, FPS)
    try:
        for f in frames[:29]:
            recorder.publish(f)
        assert recorder.frames_written == 0  # under a second of frames: nothing appended yet
        for f in frames[29:]:
            recorder.publish(f)
        assert recorder.wait_written(30, timeout=30)
        written = read_take(path)
        assert 30 <= len(written) <= 45
        np.testing.assert_allclose(written, [f.root for f in frames[:len(written)]], atol=1e-6)
        expected = {path.name} | ({journal_path(path).name} if suffix == ".npz" else set())
        assert {p.name for p in tmp_path.iterdir()} == expected  # no temporary file
    finally:
        recorder.close()
    assert {p.name for p in tmp_path.iterdir()} == {path.name}


@pytest.mark.parametrize("suffix", [".npz", ".bvh"])
def test_each_second_is_appended_not_rewritten(tmp_path, body, suffix):
    """Disk work O(new frames): after each second the file (the npz's journal) is the same file,
    its earlier bytes unchanged but the frame count, and the recorder holds no written frame."""
    path = tmp_path / f"take{suffix}"
    on_disk = journal_path(path) if suffix == ".npz" else path
    frames = make_frames(body, 90)
    recorder = Recorder(path, body, FPS)
    try:
        snapshots = []
        for second in range(3):
            for f in frames[30 * second:30 * (second + 1)]:
                recorder.publish(f)
            assert recorder.wait_written(30 * (second + 1), timeout=30)
            snapshots.append((on_disk.stat().st_ino, on_disk.read_bytes()))
            assert recorder._unwritten == [] and recorder._incoming == []
        for (ino, before), (ino_after, after) in zip(snapshots, snapshots[1:]):
            assert ino == ino_after and len(after) > len(before)
            changed = np.flatnonzero(np.frombuffer(before, np.uint8) != np.frombuffer(after[:len(before)], np.uint8))
            assert len(changed) <= 2 and (changed < 4096).all()  # a digit or two of the count in the header
    finally:
        recorder.close()


def test_a_killed_runs_npz_is_finished_by_export(tmp_path, body):
    """A run killed (-9) while recording leaves the take's metadata and its journal; `genmo-live
    export` finishes the npz from it (every frame that was on disk) and writes the BVH."""
    path = tmp_path / "take.npz"
    script = f"""
import os, signal, sys
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_recorder import make_frames, FPS
from clients.recorder import Recorder
from engine.body.body_model import load_default_body
body = load_default_body()
recorder = Recorder({str(path)!r}, body, FPS)
for f in make_frames(body, 75):
    recorder.publish(f)
recorder.wait_written(60, timeout=60)
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert journal_path(path).exists()
    with np.load(path) as data:
        assert len(data["root"]) == 0 and float(data["fps"]) == FPS
    assert main(["export", str(path)]) == 0
    assert not journal_path(path).exists()
    frames = make_frames(body, 75)
    with np.load(path) as data:
        assert 60 <= len(data["root"]) <= 75
        np.testing.assert_array_equal(data["root"], [f.root for f in frames[:len(data["root"])]])
        np.testing.assert_array_equal(data["source"], [f.source for f in frames[:len(data["root"])]])
    assert parse_bvh((tmp_path / "take.bvh").read_text()).frames.shape[0] == len(np.load(path)["root"])


def wait_until(condition, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.02)
    return condition()


@pytest.mark.parametrize("suffix", [".npz", ".bvh"])
def test_a_full_disk_holds_the_frames_until_there_is_room(small_disk, body, suffix, caplog):
    """The disk fills while recording: the frames wait in memory and are written once there is
    room again: no frame lost, the take complete, the failure reported once."""
    path = small_disk.path / f"take{suffix}"
    frames = make_frames(body, 120)
    with caplog.at_level(logging.INFO, logger="genmo-live.recorder"):
        recorder = Recorder(path, body, FPS)
        for f in frames[:30]:
            recorder.publish(f)
        assert recorder.wait_written(30, timeout=30)
        filler = small_disk.fill(1000)  # less than a second of frames
        for f in frames[30:90]:
            recorder.publish(f)
        assert wait_until(lambda: recorder.error is not None)
        assert recorder.frames_written == 30
        filler.unlink()
        for f in frames[90:]:
            recorder.publish(f)
        recorder.close()
    summary = recorder.summary()
    assert summary["error"] == "No space left on device"
    assert (summary["frames_written"], summary["frames_lost"], summary["complete"]) == (120, 0, True)
    np.testing.assert_allclose(read_take(path), [f.root for f in frames], atol=1e-6)
    messages = [r.message for r in caplog.records]
    assert sum("cannot write (No space left on device)" in m for m in messages) == 1
    assert any("writing again" in m for m in messages)


@pytest.mark.parametrize("suffix", [".npz", ".bvh"])
def test_a_disk_that_stays_full_ends_the_take_and_counts_the_rest(small_disk, body, suffix):
    """Past hold_s seconds of frames held, the take ends at what is on disk (a clean take of the
    first frames, never one with a hole) and every later frame is counted as lost."""
    path = small_disk.path / f"take{suffix}"
    frames = make_frames(body, 150)
    recorder = Recorder(path, body, FPS, hold_s=2)
    for f in frames[:30]:
        recorder.publish(f)
    assert recorder.wait_written(30, timeout=30)
    small_disk.fill(1000)
    for f in frames[30:]:
        recorder.publish(f)
    recorder.close()
    summary = recorder.summary()
    assert summary["frames_written"] == 30 and summary["frames_lost"] == 120
    assert recorder.skips() == {f"recorder {path}": 120}  # the status line's count
    assert summary["complete"] is False and summary["error"] == "No space left on device"
    if suffix == ".bvh":  # the npz cannot be finished without room: its journal holds the 30
        np.testing.assert_allclose(read_take(path), [f.root for f in frames[:30]], atol=1e-6)
    else:
        np.testing.assert_array_equal(np.load(journal_path(path))["root"], [f.root for f in frames[:30]])


def test_bad_frames_are_skipped_and_counted(tmp_path, body, caplog):
    frames = make_frames(body, 10)
    frames[2].pose_aa = frames[2].pose_aa.copy()
    frames[2].pose_aa[5, 1] = np.nan
    frames[4].root = np.array([0.0, np.inf, 0.0])
    frames[6].contacts = None
    frames[7].joints = frames[7].joints[:20]
    good = [f for k, f in enumerate(frames) if k not in (2, 4, 6, 7)]
    with caplog.at_level(logging.WARNING, logger="genmo-live.recorder"):
        recorder = record(tmp_path / "take.npz", body, frames, fps=4.0)  # flushes every 4 frames
    assert recorder.skipped == 4 and recorder.frames_written == 6
    assert sum("skipping frames" in r.message for r in caplog.records) == 1
    with np.load(tmp_path / "take.npz") as data:
        np.testing.assert_array_equal(data["frame_id"], [f.frame_id for f in good])
        assert np.isfinite(data["joints"]).all()


def test_euler_zxy_inverts_the_loaders_convention():
    rng = np.random.default_rng(1)
    m = axis_angle_to_matrix(rng.normal(0.0, 2.0, (500, 3)))
    np.testing.assert_allclose(euler_to_matrix(np.rad2deg(matrix_to_euler_zxy(m)), "ZXY"), m, atol=1e-12)
    locked = euler_to_matrix(np.array([[30.0, 90.0, 40.0], [-20.0, -90.0, 10.0]]), "ZXY")
    np.testing.assert_allclose(euler_to_matrix(np.rad2deg(matrix_to_euler_zxy(locked)), "ZXY"), locked,
                               atol=1e-12)


def test_unwrap_keeps_angles_continuous_across_calls():
    angles = np.array([170.0, -175.0, -160.0, 179.0, -179.0])[:, None]
    whole = unwrap_degrees(angles)
    np.testing.assert_allclose(whole[:, 0], [170.0, 185.0, 200.0, 179.0, 181.0])
    np.testing.assert_array_equal(np.concatenate([unwrap_degrees(angles[:2]),
                                                  unwrap_degrees(angles[2:], whole[1])]), whole)


@pytest.mark.slow
def test_run_records_the_sample_clip_and_exports(tmp_path):
    npz, bvh_path, out = tmp_path / "take.npz", tmp_path / "take.bvh", tmp_path / "exported.bvh"
    # With a lag the last frames are held back until the file ends: the take still has every frame.
    assert main(["run", "--source", "sample", "--no-realtime", "--headless", "--lag", "5",
                 "--record", str(npz), "--record", str(bvh_path)]) == 0
    with np.load(npz) as data:
        assert len(data["pose_aa"]) == 187
        np.testing.assert_array_equal(data["frame_id"], np.arange(187))
        assert np.isfinite(data["pose_aa"]).all()
    assert parse_bvh(bvh_path.read_text()).frames.shape[0] == 187
    assert main(["export", str(npz), "--to", str(out)]) == 0
    assert out.read_text() == bvh_path.read_text()


@pytest.mark.parametrize("suffix", [".npz", ".bvh"])
def test_a_camera_take_runs_at_the_rate_its_frames_came(tmp_path, body, suffix):
    """A webcam says 30 fps and delivers 15 in a dim room (one frame late): its take plays at 15; a
    file's take keeps the told rate whatever the capture times."""
    frames = make_frames(body, 40)
    times = 1.7e9 + np.arange(40) / 15.0
    times[25] += 0.02
    for f, t in zip(frames, times):
        f.t_capture = float(t)
    for timed, fps in ((True, 15.0), (False, FPS)):
        path = tmp_path / f"{timed}{suffix}"
        recorder = Recorder(path, body, FPS, timed_by_capture=timed)
        for f in frames:
            recorder.publish(f)
        recorder.close()
        if suffix == ".npz":
            with np.load(path) as data:
                assert float(data["fps"]) == pytest.approx(fps)
        else:
            assert parse_bvh(path.read_text()).frame_time == pytest.approx(1 / fps, rel=1e-5)
