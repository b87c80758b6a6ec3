"""The sets of ../shared/data/mocap_new read by engine.data.mocap_io, on a few small real files: frame
rate (12 fps for the 60 Hz takes), joint count, metres, the added T-pose frame dropped, ids and
categories, the clips skipped for a marker glitch or stretching bones, and what the retargeter makes
of them. Skipped where the folder is not here."""
from __future__ import annotations

import gzip
import re
import shutil

import numpy as np
import pytest

from engine.body.body_model import load_default_body
from engine.data.mocap_io import (MOCAP_NEW_ROOT, SkippedClip, SourceMotion, UnusableClip, _huge_fbx_fps,
                                  clip_info, is_tpose, iter_motions, list_clips, load_motion)
from engine.data.retarget import TARGET_FPS, retarget

REACTIDLE, DAZ, MORE = (MOCAP_NEW_ROOT / s for s in ("reactidle_bvh", "cmu_hugefbx_daz_bvh", "cmu_hugefbx_more_bvh"))

pytestmark = pytest.mark.skipif(not MOCAP_NEW_ROOT.is_dir(), reason=f"{MOCAP_NEW_ROOT} is not here")


def header(path) -> tuple[int, float, list[str]]:
    """(Frames, Frame Time, joint names less End Sites) of a gzipped BVH, from its text (read up
    to the Frame Time line only)."""
    lines = []
    with gzip.open(path, "rt") as f:
        for line in f:
            lines.append(line)
            if line.startswith("Frame Time"):
                break
    text = "".join(lines)
    frames = int(re.search(r"Frames:\s*(\d+)", text)[1])
    frame_time = float(re.search(r"Frame Time:\s*(\S+)", text)[1])
    return frames, frame_time, re.findall(r"(?:ROOT|JOINT)\s+(\S+)", text.split("MOTION")[0])


def assert_fk_identity(m: SourceMotion):
    p = m.parents[1:]
    bones = m.rest_positions[1:] - m.rest_positions[p]
    expected = m.positions[:, p] + np.einsum("tjab,jb->tja", m.rotations[:, p], bones)
    np.testing.assert_allclose(m.positions[:, 1:], expected, atol=1e-4)


@pytest.fixture(scope="module")
def body():
    return load_default_body()


# ---------------------------------------------------------------------------------------------
# ReActIdle: 19-joint Blender rig, metres, 24 fps, root channels about its OFFSET
# ---------------------------------------------------------------------------------------------

def test_reactidle_clip(body):
    path = REACTIDLE / "genuine" / "003_genuine.bvh.gz"  # the shortest: 918 frames, 38.3 s
    frames, frame_time, joints = header(path)
    m = load_motion(path)
    assert (m.clip, m.dataset, m.subject, m.cmu_id, m.category) == (
        "reactidle_bvh/genuine/003_genuine", "reactidle_bvh", "reactidle:003", None, "idle_genuine")
    assert len(joints) == 19 and [n for n in m.names if not n.endswith("_end")] == joints
    assert m.fps == 24.0 and frame_time == pytest.approx(1 / 24, abs=1e-5)
    assert m.num_frames == frames == 918  # no added T-pose here: nothing dropped
    assert "left_hand" not in m.smpl_map and m.smpl_map["left_wrist"] == "forearm.L_end"
    smpl = m.smpl_positions()
    # Metres, and the pelvis at OFFSET + channel: 0.72 m up, the ankles just above the floor (read
    # as absolute, or overwritten by a child's position channels, it sat at 0 or 0.39 m).
    np.testing.assert_allclose(smpl["pelvis"][:, 1], 0.72, atol=0.03)
    ankles = np.minimum(smpl["left_ankle"][:, 1], smpl["right_ankle"][:, 1])
    assert (0.02 < ankles).all() and (ankles < 0.12).all()
    assert 1.1 < np.median(smpl["head"][:, 1] - ankles) < 1.7  # README: ankle-to-face 1.17-1.68 m
    assert_fk_identity(m)

    rc = retarget(m, body)
    assert rc.fps == TARGET_FPS and rc.source_fps == 24.0 and rc.pose.shape[1:] == (24, 3)
    assert len(rc.pose) == int((frames - 1) / 24 * 30) + 1
    assert np.isfinite(rc.pose).all() and rc.mean_bone_error_deg < 8.0
    assert rc.contacts[:, :4].mean() > 0.8  # standing idle: feet planted nearly throughout


def test_reactidle_acted_and_genuine_are_one_performer():
    infos = [clip_info(p) for p in list_clips(REACTIDLE)]
    assert len(infos) == 20
    by_subject = {}
    for i in infos:
        by_subject.setdefault(i.subject, set()).add(i.category)
    assert len(by_subject) == 13 and by_subject["reactidle:008"] == {"idle_acted", "idle_genuine"}


def test_reactidle_bones_that_stretch_are_skipped(tmp_path):
    """Position channels on every joint are read as their OFFSETs; a file whose channels move a
    joint further than the tolerance from its OFFSET is skipped, with the reason."""
    with gzip.open(REACTIDLE / "genuine" / "003_genuine.bvh.gz", "rt") as f:
        head, motion = f.read().split("MOTION\n")
    rows = motion.splitlines()[2:5]
    names = re.findall(r"(?:ROOT|JOINT)\s+(\S+)", head)
    chans = [int(n) for n in re.findall(r"CHANNELS\s+(\d+)", head)]
    col = sum(chans[:names.index("shin.L")])  # shin.L's Xposition
    values = rows[2].split()
    values[col] = f"{float(values[col]) + 0.05:.6f}"
    rows[2] = " ".join(values)
    folder = tmp_path / "reactidle_bvh" / "acted"
    folder.mkdir(parents=True)
    for name, body_rows in (("001_acted", rows[:2]), ("002_acted", rows)):
        with gzip.open(folder / f"{name}.bvh.gz", "wt") as f:
            f.write(head + f"MOTION\nFrames: {len(body_rows)}\nFrame Time: 0.041667\n" + "\n".join(body_rows) + "\n")
    good, bad = iter_motions(tmp_path)
    assert isinstance(good, SourceMotion) and good.num_frames == 2
    assert isinstance(bad, SkippedClip) and bad.clip == "reactidle_bvh/acted/002_acted"
    assert re.search(r"shin\.L's position channels move 0\.05\d m from its OFFSET \(over 0\.03 m\)", bad.reason)


# ---------------------------------------------------------------------------------------------
# CMU through the Huge FBX library: 43-joint Daz rig, cm, T-pose frame 0, 24 or 12 fps
# ---------------------------------------------------------------------------------------------

def test_huge_fbx_clip_drops_the_tpose_frame(body):
    path = DAZ / "bvh" / "13_01.bvh.gz"  # sit on high stool, stand up: 463 frames at 24 fps
    frames, frame_time, joints = header(path)
    m = load_motion(path)
    assert (m.clip, m.dataset, m.subject, m.cmu_id, m.category) == (
        "cmu_hugefbx_daz_bvh/bvh/13_01", "cmu_hugefbx_daz_bvh", "cmu:13", "13_01", "sit_chair_stool")
    assert len(joints) == 43 and [n for n in m.names if not n.endswith("_end")] == joints
    assert m.fps == 24.0 and frame_time == pytest.approx(1 / 24, abs=1e-5)
    # Frame 0 is Hahne's T-pose, which is also the rest pose: dropped, and the take does not
    # start in one.
    assert m.num_frames == frames - 1
    rest = m.rest_positions[None]
    assert is_tpose(rest, m.names, m.smpl_map)[0] and not is_tpose(m.positions[:1], m.names, m.smpl_map)[0]
    # No toe tip (zero-length foot End Sites): the toes are left to ride on the ankles.
    assert "lFoot_end" not in m.names and "left_foot" not in m.smpl_map
    smpl = m.smpl_positions()
    # cm -> m: Hahne's one skeleton, thigh 36.8 cm and shin 45.4 cm (README)
    thigh = np.linalg.norm(m.rest_positions[m.joint("lShin")] - m.rest_positions[m.joint("lThigh")])
    shin = np.linalg.norm(m.rest_positions[m.joint("lFoot")] - m.rest_positions[m.joint("lShin")])
    assert (thigh, shin) == (pytest.approx(0.368, abs=0.002), pytest.approx(0.454, abs=0.002))
    assert 1.3 < smpl["head"][0, 1] - smpl["left_ankle"][0, 1] < 1.5
    assert_fk_identity(m)

    rc = retarget(m, body)
    assert rc.fps == TARGET_FPS and len(rc.pose) == int((frames - 2) / 24 * 30) + 1
    assert np.isfinite(rc.pose).all() and rc.mean_bone_error_deg < 8.0


@pytest.mark.parametrize("name", ["79_83", "34_01"])
def test_huge_fbx_tpose_frame_dropped_where_it_is_not_detected(name):
    """The added T-pose is frame 0 of every clip (READMEs), also where detection would keep it:
    79_83 leaves it without a jump, and 34_01's is no clean T-pose (arms not level enough)."""
    path = MORE / "bvh" / f"{name}.bvh.gz"
    frames, _, _ = header(path)
    m = load_motion(path)
    assert m.num_frames == frames - 1
    with gzip.open(path, "rt") as f:
        rows = f.read().split("Frame Time")[1].splitlines()[1:3]
    frame1 = np.array(rows[1].split()[:3], dtype=float) * 0.01  # the root's position, cm -> m
    np.testing.assert_allclose(m.positions[0, m.joint("hip")], frame1, atol=1e-5)


@pytest.mark.parametrize("path, subject, frames", [
    (DAZ / "bvh" / "77_01.bvh.gz", "cmu:77", 218),    # looking around: the 60 Hz session of 77 = 139
    (DAZ / "bvh" / "139_25.bvh.gz", "cmu:77", 133),   # giving directions: 139's takes are 77's
    (DAZ / "bvh" / "143_18.bvh.gz", "cmu:143", 151),  # sit down and get up
    (MORE / "bvh" / "107_07.bvh.gz", "cmu:107", None),
])
def test_huge_fbx_60hz_takes_are_12_fps(body, path, subject, frames):
    n, frame_time, _ = header(path)
    assert frames is None or n == frames
    m = load_motion(path)
    assert (m.fps, m.subject, m.num_frames) == (12.0, subject, n - 1)
    rc = retarget(m, body)
    assert rc.source_fps == 12.0 and len(rc.pose) == int((n - 2) / 12 * 30) + 1  # 2.5 frames per frame


def test_huge_fbx_60hz_take_with_its_old_24_fps_header(tmp_path):
    """The daz set's README says its 77/139 takes were left at Frame Time 0.0416667 (2x too fast);
    the files now say 0.0833333. Either way they load at 12 fps."""
    with gzip.open(DAZ / "bvh" / "139_16.bvh.gz", "rt") as f:
        text = f.read()
    assert "Frame Time: 0.0833333" in text
    path = tmp_path / "cmu_hugefbx_daz_bvh" / "bvh" / "139_16.bvh.gz"
    path.parent.mkdir(parents=True)
    with gzip.open(path, "wt") as f:
        f.write(text.replace("Frame Time: 0.0833333", "Frame Time: 0.0416667"))
    assert (load_motion(path).fps, load_motion(DAZ / "bvh" / "139_16.bvh.gz").fps) == (12.0, 12.0)


def test_huge_fbx_frame_rates_match_the_60hz_takes():
    """The re-timed Frame Time lines and the loader's list of 60 Hz takes agree on every file."""
    for folder in (DAZ, MORE):
        for path in list_clips(folder):
            _, frame_time, _ = header(path)
            expected = _huge_fbx_fps(path.relative_to(folder)) or 24.0
            assert 1 / frame_time == pytest.approx(expected, rel=1e-4), path.name


def test_huge_fbx_marker_glitch_is_skipped(tmp_path):
    """138_54 (README: 92 m/s pops at frames 15-16) is skipped with the reason; its neighbour loads."""
    folder = tmp_path / "cmu_hugefbx_more_bvh" / "bvh"
    folder.mkdir(parents=True)
    for name in ("138_53", "138_54"):
        shutil.copy(MORE / "bvh" / f"{name}.bvh.gz", folder)
    shutil.copy(MORE / "files.tsv", folder.parent)  # the categories
    with pytest.raises(UnusableClip, match="marker glitch"):
        load_motion(folder / "138_54.bvh.gz")
    good, bad = iter_motions(tmp_path)
    assert isinstance(good, SourceMotion) and good.cmu_id == "138_53" and good.category == "walk_talk_story"
    assert isinstance(bad, SkippedClip) and bad.clip == "cmu_hugefbx_more_bvh/bvh/138_54"
    assert bad.reason == ("cmu_hugefbx_more_bvh/bvh/138_54: marker glitch: rFoot moves at 92 m/s into file "
                          "frame 15 (over 25 m/s)")


def test_every_new_clip_has_ids_and_a_category():
    infos = [clip_info(p) for p in list_clips(MOCAP_NEW_ROOT)]
    assert len(infos) == 1481 and len({i.clip for i in infos}) == 1481
    assert all(i.category for i in infos)
    cmu = [i for i in infos if i.dataset != "reactidle_bvh"]
    assert all(i.subject == "cmu:" + {"139": "77"}.get(i.cmu_id.split("_")[0], i.cmu_id.split("_")[0])
               for i in cmu)
