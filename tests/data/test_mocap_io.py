"""engine.data.mocap_io: every motion-capture format it reads (BVH, Vicon ASF/AMC, CMU expmap rows) and
the conventions of its output (metres, y-up, the FK identity of `rotations`, true fps, ids).

Each fast test writes a small gzip file into a tmp folder named like the real one (the loader finds
the dataset from the folder name) and checks hand-computed joint positions; the "other" tests use
folders with no known name (generic rules: guessed BVH units, ASF found by name, plain or gzip).
The slow tests read the real files under ../shared/data/mocap, where that folder exists.
"""
from __future__ import annotations

import gzip
import math
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from engine.data.mocap_io import (CM, CMU_ASF_UNIT, GUESSED_UNITS_M, INCH, MIN_SKELETON_HEIGHT_M, MOCAP_ROOT,
                                  SkippedClip, SourceMotion, UnusableClip, clip_id, euler_to_matrix,
                                  extrinsic_euler_to_matrix, iter_motions, list_clips, load_motion)

U = CMU_ASF_UNIT  # metres per CMU / HDM05 ASF length unit


def write_gz(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding=encoding) as f:
        f.write(text)
    return path


def at(m: SourceMotion, name: str) -> np.ndarray:
    """(T, 3) world positions of one joint, metres."""
    return m.positions[:, m.joint(name)]


def assert_fk_identity(m: SourceMotion):
    """positions[t, c] == positions[t, p] + rotations[t, p] @ (rest[c] - rest[p]) for every joint."""
    p = m.parents[1:]
    bones = m.rest_positions[1:] - m.rest_positions[p]
    expected = m.positions[:, p] + np.einsum("tjab,jb->tja", m.rotations[:, p], bones)
    np.testing.assert_allclose(m.positions[:, 1:], expected, atol=1e-5)
    assert (p < np.arange(1, len(m.names))).all()


# ---------------------------------------------------------------------------------------------
# BVH: ACCAD MotionBuilder joint names, ZXY channels, cm, rest pose = T-pose (arms along +-x)
# ---------------------------------------------------------------------------------------------

def _bvh_side(s, x):
    return [(f"{s}UpLeg", "Hips", (10 * x, 0, 0)), (f"{s}Leg", f"{s}UpLeg", (0, -45, 0)),
            (f"{s}Foot", f"{s}Leg", (0, -45, 0)), (f"{s}ToeBase", f"{s}Foot", (0, -8, 12)),
            (f"{s}ToeBase_end", f"{s}ToeBase", (0, 0, 0)),  # zero-offset End Site: dropped
            (f"{s}Shoulder", "Spine1", (5 * x, 18, 0)), (f"{s}Arm", f"{s}Shoulder", (15 * x, 0, 0)),
            (f"{s}ForeArm", f"{s}Arm", (30 * x, 0, 0)), (f"{s}Hand", f"{s}ForeArm", (25 * x, 0, 0)),
            (f"{s}Hand_end", f"{s}Hand", (10 * x, 0, 0))]


# (joint, parent, OFFSET cm); "<parent>_end" = End Site. Root OFFSET = first frame's, as in ACCAD.
# Ankle-to-head bone path: 45 + 45 + 10 + 8 + 11 + 13 + 20 + 10 = 162 cm.
BVH_SKELETON = [("Hips", None, (10, 100, -20)), ("ToSpine", "Hips", (0, 8, 0)),
                ("Spine", "ToSpine", (0, 11, 0)), ("Spine1", "Spine", (0, 13, 0)),
                ("Neck", "Spine1", (0, 20, 0)), ("Head", "Neck", (0, 10, 0)),
                ("Head_end", "Head", (0, 15, 0)), *_bvh_side("Left", 1), *_bvh_side("Right", -1)]
BVH_CHANNELS = 6 + 3 * 21
ARMS_DOWN = {"LeftArm": (-90, 0, 0), "RightArm": (90, 0, 0)}  # (Z, X, Y) degrees


def bvh_text(frames, frame_time="0.0333333", scale=1.0, prefix=""):
    """A BVH of BVH_SKELETON. frames: dicts {joint: (Z, X, Y) degrees, "pos": root (x, y, z) cm};
    lengths are written as cm * scale, joint names get `prefix`."""
    children = {}
    for name, parent, offset in BVH_SKELETON:
        children.setdefault(parent, []).append((name, offset))
    lines, order = [], []

    def emit(name, offset, depth):
        pad, off = "  " * depth, " ".join(f"{v * scale:.6f}" for v in offset)
        if name.endswith("_end"):
            lines.extend([pad + "End Site", pad + "{", f"{pad}  OFFSET {off}", pad + "}"])
            return
        chans = "6 Xposition Yposition Zposition" if depth == 0 else "3"
        lines.extend([f"{pad}{'ROOT' if depth == 0 else 'JOINT'} {prefix}{name}", pad + "{",
                      f"{pad}  OFFSET {off}", f"{pad}  CHANNELS {chans} Zrotation Xrotation Yrotation"])
        order.append(name)
        for child, child_offset in children.get(name, []):
            emit(child, child_offset, depth + 1)
        lines.append(pad + "}")

    emit(*children[None][0], 0)
    rows = [[v * scale for v in f.get("pos", BVH_SKELETON[0][2])]
            + [a for j in order for a in f.get(j, (0, 0, 0))] for f in frames]
    return ("HIERARCHY\n" + "\n".join(lines)
            + f"\nMOTION\nFrames:\t{len(frames)}\nFrame Time:\t{frame_time}\n"
            + "".join(" ".join(f"{v:.6f}" for v in row) + "\n" for row in rows))


def load_bvh(tmp_path, rel="accad_bvh/Male9_A1_Test.bvh.gz", frames=({},), **kw):
    return load_motion(write_gz(tmp_path / rel, bvh_text(frames, **kw)))


def test_bvh_zxy_fk_units_fps_and_rotations(tmp_path):
    # Frame 0: root yawed +90 deg about y, left arm Z=90 then X=90 (intrinsic), elsewhere zero.
    # Ry(90) maps (x, y, z) -> (z, y, -x); Rz(90) Rx(90) maps +x -> +y (Rx(90) Rz(90) would give +z).
    # Frame 1: zero rotations, root moved by (3, -5, 0) cm.
    m = load_bvh(tmp_path, frames=[{"Hips": (0, 0, 90), "LeftArm": (90, 90, 0)},
                                   {"pos": (13, 95, -20)}])
    assert (m.clip, m.dataset, m.subject, m.cmu_id) == ("accad_bvh/Male9_A1_Test", "accad_bvh",
                                                       "accad:Male9", None)
    assert m.fps == 30.0 and m.num_frames == 2
    assert m.smpl_map["left_hand"] == "LeftHand_end" and m.smpl_map["spine1"] == "Spine"  # ToSpine is skipped
    assert "LeftHand_end" in m.names and "Head_end" in m.names and "LeftToeBase_end" not in m.names
    assert m.rest_positions.dtype == m.positions.dtype == m.rotations.dtype == np.float32
    expected_rest = {"Hips": (0.10, 1.00, -0.20), "LeftHand": (0.85, 1.50, -0.20),
                     "LeftHand_end": (0.95, 1.50, -0.20), "RightToeBase": (0.0, 0.02, -0.08)}
    for name, xyz in expected_rest.items():
        np.testing.assert_allclose(m.rest_positions[m.joint(name)], xyz, atol=1e-6)
    expected_frame0 = {"Hips": (0.10, 1.00, -0.20), "Head": (0.10, 1.62, -0.20),
                       "LeftArm": (0.10, 1.50, -0.40), "LeftForeArm": (0.10, 1.80, -0.40),
                       "LeftHand": (0.10, 2.05, -0.40), "LeftHand_end": (0.10, 2.15, -0.40),
                       "RightForeArm": (0.10, 1.50, 0.30), "LeftToeBase": (0.22, 0.02, -0.30)}
    for name, xyz in expected_frame0.items():
        np.testing.assert_allclose(at(m, name)[0], xyz, atol=1e-6, err_msg=name)
    np.testing.assert_allclose(m.positions[1], m.rest_positions + [0.03, -0.05, 0.0], atol=1e-6)
    np.testing.assert_allclose(m.rotations[0, m.joint("LeftArm")], Rotation.from_euler(
        "YZX", [90, 90, 90], degrees=True).as_matrix(), atol=1e-6)  # Ry(90) @ Rz(90) @ Rx(90)
    np.testing.assert_allclose(m.rotations[1], np.broadcast_to(np.eye(3), (len(m.names), 3, 3)),
                               atol=1e-6)
    assert_fk_identity(m)


# ---------------------------------------------------------------------------------------------
# Euler angles against scipy
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("order", ["ZXY", "XYZ", "ZYX", "YXZ", "XZY", "YZX", "ZXZ"])
def test_euler_matches_scipy_beyond_180(order):
    degrees = np.random.default_rng(0).uniform(-720, 720, size=(4, 5, 3))

    def scipy(seq):
        matrices = Rotation.from_euler(seq, degrees.reshape(-1, 3), degrees=True).as_matrix()
        return matrices.reshape(4, 5, 3, 3)

    np.testing.assert_allclose(euler_to_matrix(degrees, order), scipy(order), atol=1e-12)
    np.testing.assert_allclose(extrinsic_euler_to_matrix(degrees, order), scipy(order.lower()),
                               atol=1e-12)
    np.testing.assert_allclose(euler_to_matrix(degrees + 360, order), scipy(order), atol=1e-12)


# ---------------------------------------------------------------------------------------------
# Acclaim ASF/AMC (HDM05 layout) and the expmap rows, on one CMU-style bone table
# ---------------------------------------------------------------------------------------------

def _asf_side(s, x):
    return [(f"{s}hipjoint", "root", (x, 0, 0), 2.0, (0, 0, 0), ""),
            (f"{s}femur", f"{s}hipjoint", (0, -1, 0), 7.5, (0, 0, 0), "rx ry rz"),
            (f"{s}tibia", f"{s}femur", (0, -1, 0), 7.5, (90, 90, 0), "rx"),  # C = Ry(90) Rx(90)
            (f"{s}foot", f"{s}tibia", (0, 0, 1), 2.0, (0, 0, 0), ""),
            (f"{s}toes", f"{s}foot", (0, 0, 1), 1.0, (0, 0, 0), ""),
            (f"{s}clavicle", "thorax", (x, 0, 0), 3.0, (0, 0, 0), ""),
            (f"{s}humerus", f"{s}clavicle", (x, 0, 0), 5.0, (0, 0, 0), ""),
            (f"{s}radius", f"{s}humerus", (x, 0, 0), 4.0, (0, 0, 0), ""),
            (f"{s}wrist", f"{s}radius", (x, 0, 0), 1.0, (0, 0, 0), ""),
            (f"{s}fingers", f"{s}wrist", (x, 0, 0), 1.0, (0, 0, 0), "")]


# (bone, parent, direction, length in units, axis XYZ degrees, dof). Ankle-to-head: 26 units.
BONES = [("lowerback", "root", (0, 1, 0), 2.0, (0, 0, 0), ""),
         ("upperback", "lowerback", (0, 1, 0), 2.0, (0, 0, 0), ""),
         ("thorax", "upperback", (0, 1, 0), 2.0, (0, 0, 0), ""),
         ("lowerneck", "thorax", (0, 1, 0), 1.5, (0, 0, 0), ""),
         ("upperneck", "lowerneck", (0, 1, 0), 1.5, (0, 0, 0), ""),
         ("head", "upperneck", (0, 1, 0), 1.5, (0, 0, 0), ""),
         *_asf_side("l", 1), *_asf_side("r", -1)]
ROOT_UNITS = (1.0, 20.0, 3.0)
# Bone-start joints with every dof zero and the root at ROOT_UNITS, in units.
ZERO_POSE = {"root": (1, 20, 3), "lhipjoint": (1, 20, 3), "lfemur": (3, 20, 3),
             "ltibia": (3, 12.5, 3), "lfoot": (3, 5, 3), "ltoes": (3, 5, 5),
             "ltoes_end": (3, 5, 6), "upperback": (1, 22, 3),
             "lowerneck": (1, 26, 3), "head": (1, 29, 3), "head_end": (1, 30.5, 3),
             "lclavicle": (1, 26, 3), "lhumerus": (4, 26, 3), "lwrist": (13, 26, 3),
             "lfingers_end": (15, 26, 3), "rfingers_end": (-13, 26, 3)}


def asf_text(angle="deg"):
    k = 1.0 if angle == "deg" else math.pi / 180
    blocks = []
    for i, (name, _, direction, length, axis, dof) in enumerate(BONES, start=1):
        blocks += ["  begin", f"     id {i}", f"     name {name}",
                   "     direction " + " ".join(map(str, direction)), f"     length {length}",
                   "     axis " + " ".join(repr(a * k) for a in axis) + "  XYZ"]
        if dof:
            blocks += [f"    dof {dof}", "    limits (-160.0 20.0)"]
            blocks += ["           (-70.0 70.0)"] * (len(dof.split()) - 1)
        blocks.append("  end")
    children = {}
    for name, parent, *_ in BONES:
        children.setdefault(parent, []).append(name)
    hierarchy = [f"    {p} {' '.join(c)}" for p, c in children.items()]
    return "\n".join(["# AST/ASF file written by test_mocap_io", ":version 1.10", ":name VICON",
                      ":units", "  mass 1.0", "  length 0.45", f"  angle {angle}", ":documentation",
                      "   test skeleton", ":root", "   order TX TY TZ RX RY RZ", "   axis XYZ",
                      "   position 0 0 0", "   orientation 0 0 0", ":bonedata", *blocks,
                      ":hierarchy", "  begin", *hierarchy, "  end", ""])


def amc_text(frames, angle="deg"):
    """frames: dicts {bone: degrees (root: tx ty tz rx ry rz)}; every dof bone is written."""
    k = 1.0 if angle == "deg" else math.pi / 180
    lines = ["#!OML:ASF F:\\f\u00fcr Bonn\\HDM_xx.ASF", ":FULLY-SPECIFIED", ":DEGREES"]
    for t, f in enumerate(frames, start=1):
        root = f.get("root", (0, 0, 0))
        lines += [str(t), "root " + " ".join(map(repr, [*ROOT_UNITS, *(a * k for a in root)]))]
        lines += [f"{name} " + " ".join(repr(a * k) for a in f.get(name, [0] * len(dof.split())))
                  for name, _, _, _, _, dof in BONES if dof]
    return "\n".join(lines) + "\n"


def load_amc(tmp_path, frames, angle="deg"):
    folder = tmp_path / "hdm05_amc" / "train" / "1"
    write_gz(folder / "HDM_xx.asf.gz", asf_text(angle), "latin-1")
    amc = write_gz(folder / "HDM_xx_squat1Reps_001_120.amc.gz", amc_text(frames, angle), "latin-1")
    return load_motion(amc)


def test_asf_amc_joints_units_and_root(tmp_path):
    # Frames 1-2: zero dofs (a T-pose held, so not an added one). Frame 3: root rx = 450 (= 90,
    # unwrapped as in HDM05), ry = 90, extrinsic: M = Ry(90) Rx(90) sends +y -> +x, +x -> -z
    # (intrinsic would send +y to +z).
    m = load_amc(tmp_path, [{}, {}, {"root": (450, 90, 0)}])
    assert (m.clip, m.subject, m.cmu_id, m.fps) == ("hdm05_amc/train/1/HDM_xx_squat1Reps_001_120",
                                                   "hdm05:xx", None, 120.0)
    assert U == pytest.approx(0.0254 / 0.45)
    assert sorted(n for n in m.names if n.endswith("_end")) == [
        "head_end", "lfingers_end", "ltoes_end", "rfingers_end", "rtoes_end"]
    assert m.num_frames == 3 and m.smpl_map["spine3"] == "thorax"
    for name, xyz in ZERO_POSE.items():
        np.testing.assert_allclose(at(m, name)[0], np.array(xyz) * U, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(m.rest_positions[m.joint(name)], (np.array(xyz) - ROOT_UNITS) * U,
                                   atol=1e-6, err_msg=name)
    tibia = np.linalg.norm(at(m, "ltibia")[0] - at(m, "lfoot")[0])
    assert tibia == pytest.approx(7.5 * 0.0254 / 0.45, rel=1e-6)
    np.testing.assert_allclose(at(m, "upperback")[2], np.array([3, 20, 3]) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "lfemur")[2], np.array([1, 20, 1]) * U, atol=1e-6)
    assert_fk_identity(m)


@pytest.mark.parametrize("angle", ["deg", "rad"])
def test_asf_axis_frame_bends_child_as_c_m_ct(tmp_path, angle):
    # ltibia: axis "90 90 0 XYZ" is C = Ry(90) Rx(90) (extrinsic), dof rx = 90: local
    # C Rx(90) C^T is 90 deg about C x = -z, which turns the tibia (0, -7.5, 0) to (-7.5, 0, 0).
    # Rx(90) alone gives (0, 0, -7.5); an intrinsic C, or C^T Rx(90) C, turns it about +y: no change.
    m = load_amc(tmp_path, [{"ltibia": (90,)}], angle)
    np.testing.assert_allclose(at(m, "lfoot")[0], np.array([-4.5, 12.5, 3]) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "ltoes")[0], np.array([-4.5, 12.5, 5]) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "rfoot")[0], np.array([-1, 5, 3]) * U, atol=1e-6)
    assert_fk_identity(m)


EXPMAP_CSV_HEADER = "joint_index0,parent_index0,name_guess,offset_x,offset_y,offset_z"


def expmap_csv() -> tuple[str, list[str]]:
    """BONES as skeleton_offsets_38x3.csv rows (joints at bone starts, "<bone>_end" leaves)."""
    vector = {b[0]: np.array(b[2]) * b[3] for b in BONES}
    kids = {}
    for name, parent, *_ in BONES:
        kids.setdefault(parent, []).append(name)
    rows, names = [], []

    def add(label, name, parent, offset):
        names.append(name)
        rows.append(f"{len(rows)},{parent},{label}," + ",".join(f"{v:.5f}" for v in offset))

    def visit(bone, parent):
        add(f"{bone}(start)" + ("=L_hip" if bone == "lfemur" else ""), bone, parent,
            vector.get(names[parent], np.zeros(3)))
        me = len(rows) - 1
        for child in kids.get(bone, []):
            visit(child, me)
        if bone not in kids:
            add(f"{bone}_end", f"{bone}_end", me, vector[bone])

    add("root", "root", -1, np.zeros(3))
    for child in kids["root"]:
        visit(child, 0)
    return "\n".join([EXPMAP_CSV_HEADER, *rows]) + "\n", names


def test_expmap_rest_row_units_and_row_vector_convention(tmp_path):
    folder = tmp_path / "cmu_motionpred_expmap"
    csv, names = expmap_csv()
    folder.mkdir()
    (folder / "skeleton_offsets_38x3.csv").write_text(csv)
    rows = np.zeros((3, 3 + 3 * len(names)))
    rows[:, :3] = [ROOT_UNITS, ROOT_UNITS, (2, 20, 3)]
    rows[0, 3 + 3 * names.index("lfemur")] = 0.366519143  # rest row: a constant, dropped
    rows[1, 3 + 3 * names.index("ltibia")] = math.pi / 2
    text = "".join(",".join(repr(v) for v in row) + "\n" for row in rows)
    m = load_motion(write_gz(folder / "train" / "walking" / "walking_1.txt.gz", text))
    assert (m.clip, m.subject, m.fps, m.num_frames) == (
        "cmu_motionpred_expmap/train/walking/walking_1", "cmu_expmap:walking_train", 120.0, 2)
    assert "ltoes_end" in m.names and m.smpl_map["left_hip"] == "lfemur"
    # Local = Rod(-e) = Rx(-90): the tibia (0, -7.5, 0) turns to (0, 0, +7.5); Rod(+e) gives -z.
    np.testing.assert_allclose(at(m, "root")[0], np.array(ROOT_UNITS) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "lfemur")[0], np.array([3, 20, 3]) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "lfoot")[0], np.array([3, 12.5, 10.5]) * U, atol=1e-6)
    np.testing.assert_allclose(at(m, "ltoes")[0], np.array([3, 14.5, 10.5]) * U, atol=1e-6)
    np.testing.assert_allclose(m.positions[1], m.rest_positions + np.multiply([2, 20, 3], U),
                               atol=1e-6)
    assert_fk_identity(m)


# ---------------------------------------------------------------------------------------------
# Quirks, failures, ids
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("frames, kept, hand_y", [
    ([{}, ARMS_DOWN, ARMS_DOWN], 2, 0.95),  # added T-pose, then a jump to arms down: dropped
    ([{}, {"LeftArm": (-1, 0, 0), "RightArm": (1, 0, 0)},
      {"LeftArm": (-2, 0, 0), "RightArm": (2, 0, 0)}], 3, 1.50),  # moved out of smoothly: kept
])
def test_leading_tpose_frame(tmp_path, frames, kept, hand_y):
    # CMU Motionbuilder-style clip, CMU ASF units; arms down puts the hands at 95 cm.
    m = load_bvh(tmp_path, "cmu_misc_bvh/02_01.bvh.gz", frames, frame_time=".0083333", scale=CM / U)
    assert (m.subject, m.cmu_id, m.fps, m.num_frames) == ("cmu:02", "02_01", 120.0, kept)
    np.testing.assert_allclose(at(m, "LeftHand")[0], (0.30 if kept == 2 else 0.85, hand_y, -0.20),
                               atol=1e-5)
    np.testing.assert_allclose(at(m, "RightHand")[0, 1], hand_y, atol=1e-5)
    assert_fk_identity(m)


def test_unknown_joint_names_are_unusable(tmp_path):
    with pytest.raises(UnusableClip, match="no SMPL joint map"):
        load_bvh(tmp_path, prefix="mixamorig:")


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_tiny_skeleton_is_unusable(tmp_path, factor):
    scale = factor * MIN_SKELETON_HEIGHT_M / 1.62
    if factor < 1:
        with pytest.raises(UnusableClip, match=r"only 0\.72 m \(broken offsets\)"):
            load_bvh(tmp_path, scale=scale)
    else:
        assert load_bvh(tmp_path, scale=scale).num_frames == 1


def test_wrong_value_count_names_the_counts(tmp_path):
    text = bvh_text([{}, {}]).rstrip().rsplit(" ", 1)[0] + "\n"
    counts = f"BVH: {2 * BVH_CHANNELS - 1} values for 2 frames x {BVH_CHANNELS} channels"
    with pytest.raises(ValueError, match=counts):
        load_motion(write_gz(tmp_path / "accad_bvh" / "Male9_A1_Short.bvh.gz", text))


def test_iter_motions_yields_good_and_skipped(tmp_path):
    write_gz(tmp_path / "accad_bvh" / "Male9_A1_Good.bvh.gz", bvh_text([{}, {}]))
    write_gz(tmp_path / "accad_bvh" / "Male9_A2_Tiny.bvh.gz", bvh_text([{}], scale=0.3))
    good, skipped = list(iter_motions(tmp_path))
    assert isinstance(good, SourceMotion)
    assert (good.clip, good.num_frames) == ("accad_bvh/Male9_A1_Good", 2)
    assert isinstance(skipped, SkippedClip) and skipped.clip == "accad_bvh/Male9_A2_Tiny"
    assert "only 0.49 m (broken offsets)" in skipped.reason


@pytest.mark.parametrize("rel, frame_time, subject, cmu_id, fps, unit", [
    ("accad_bvh/Male9_A1_Test.bvh.gz", "0.0333333", "accad:Male9", None, 30.0, CM),
    ("accad_bvh/Male2_A4_LookAround.bvh.gz", "0.0083333", "accad:Male2", None, 120.0, CM),
    ("cmu_acrnn_dance_bvh/salsa/01.bvh.gz", "0.0083333", "cmu_dance:salsa_a", None, 60.0, CM),
    ("cmu_acrnn_dance_bvh/salsa/15.bvh.gz", "0.0083333", "cmu_dance:salsa_a", None, 60.0, CM),
    ("cmu_acrnn_dance_bvh/salsa/16.bvh.gz", "0.0083333", "cmu_dance:salsa_b", None, 60.0, CM),
    ("cmu_acrnn_dance_bvh/salsa/30.bvh.gz", "0.0083333", "cmu_dance:salsa_b", None, 60.0, CM),
    ("cmu_acrnn_dance_bvh/martial/03.bvh.gz", "0.00833", "cmu_dance:martial", None, 120.0, CM),
    ("cmu_iclone_ccbase_bvh/02_02.bvh.gz", "0.016667", "cmu:02", "02_02", 60.0, CM),
    ("cmu_misc_bvh/131_01.bvh.gz", "0.008333", "cmu:131", "131_01", 120.0, U),
])
def test_ids_fps_and_units_per_folder(tmp_path, rel, frame_time, subject, cmu_id, fps, unit):
    m = load_bvh(tmp_path, rel, frame_time=frame_time, scale=CM / unit)
    assert (m.clip, m.subject, m.cmu_id, m.fps) == (rel.split(".")[0], subject, cmu_id, fps)
    assert m.rest_positions[m.joint("Head"), 1] == pytest.approx(1.62, abs=1e-5)


def test_iclone_root_position_is_offset_plus_channels(tmp_path):
    m = load_bvh(tmp_path, "cmu_iclone_ccbase_bvh/05_01.bvh.gz", [{"pos": (1, 2, 3)}],
                 frame_time="0.016667")
    np.testing.assert_allclose(at(m, "Hips")[0], (0.11, 1.02, -0.17), atol=1e-6)


def test_dance_reference_skeleton_is_not_a_take(tmp_path):
    write_gz(tmp_path / "cmu_acrnn_dance_bvh" / "standard.bvh.gz", bvh_text([{}]))
    with pytest.raises(UnusableClip, match="not a take"):
        load_motion(tmp_path / "cmu_acrnn_dance_bvh" / "standard.bvh.gz")
    assert [s.clip for s in iter_motions(tmp_path)] == ["cmu_acrnn_dance_bvh/standard"]


# ---------------------------------------------------------------------------------------------
# Folders of no known name: the generic set "other"
# ---------------------------------------------------------------------------------------------

def write_plain(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# Root moved and yawed, left arm raised then bent: a take that is no T-pose at any frame.
OTHER_FRAMES = [{"pos": (10, 100, -20), "Hips": (0, 0, 90), **ARMS_DOWN},
                {"pos": (13, 95, -20), "LeftArm": (90, 90, 0), "RightArm": (90, 0, 0)}]


def test_other_bvh_units_guessed_plain_or_gzip(tmp_path):
    # The same take in metres (plain text), centimetres and inches (gzip), under a folder with no
    # known name: every file loads to the accad_bvh (cm) reading of it, fps from the header.
    root = tmp_path / "new_takes"
    write_plain(root / "walk_m.bvh", bvh_text(OTHER_FRAMES, frame_time="0.0166667", scale=CM))
    write_gz(root / "sub" / "walk_cm.bvh.gz", bvh_text(OTHER_FRAMES, frame_time="0.0166667"))
    write_gz(root / "sub" / "walk_in.BVH.gz",
             bvh_text(OTHER_FRAMES, frame_time="0.0166667", scale=CM / INCH))
    reference = load_bvh(tmp_path, frames=OTHER_FRAMES, frame_time="0.0166667")
    motions = list(iter_motions(root))
    assert [(m.clip, m.dataset, m.subject, m.cmu_id, m.fps, m.num_frames) for m in motions] == [
        ("other/sub/walk_cm", "other", "other:walk_cm", None, 60.0, 2),
        ("other/sub/walk_in", "other", "other:walk_in", None, 60.0, 2),
        ("other/walk_m", "other", "other:walk_m", None, 60.0, 2)]
    for m in motions:
        np.testing.assert_allclose(m.positions, reference.positions, atol=1e-6, err_msg=m.clip)
        np.testing.assert_allclose(m.rest_positions, reference.rest_positions, atol=1e-6)
        assert_fk_identity(m)
    # Root = its position channels; the Hips yaw Ry(90) turns the shoulder's +x offset to -z.
    np.testing.assert_allclose(at(motions[0], "Hips"), [(0.10, 1.00, -0.20), (0.13, 0.95, -0.20)],
                               atol=1e-6)
    np.testing.assert_allclose(at(motions[0], "LeftArm")[0], (0.10, 1.50, -0.40), atol=1e-6)


@pytest.mark.parametrize("unit", sorted(GUESSED_UNITS_M))
def test_other_bvh_each_guessed_unit(tmp_path, unit):
    m = load_bvh(tmp_path, "mocap/take.bvh.gz", scale=CM / GUESSED_UNITS_M[unit])
    assert m.clip == "other/take"  # no root given: relative to the file's own folder
    assert m.rest_positions[m.joint("Head"), 1] == pytest.approx(1.62, abs=1e-6)
    assert m.rest_positions[m.joint("LeftHand_end"), 0] == pytest.approx(0.95, abs=1e-6)


def test_other_bvh_of_no_body_size_is_unusable(tmp_path):
    # 5 units from ankle to head: 5 m in metres, 0.28 m in CMU ASF units, less in the others.
    with pytest.raises(UnusableClip, match=r"other/take: ankle-to-head bone path of 5 file units "
                                           r"is no body of 0\.8-2\.4 m"):
        load_bvh(tmp_path, "mocap/take.bvh.gz", scale=5 / 162)


def test_other_amc_finds_its_asf_by_name(tmp_path):
    # CMU layout: 02.asf beside 02_01.amc (plain) and 02_02.amc.gz. The decoys would halve the
    # lengths: "0" is a prefix of "02_01" but not at a word boundary, 03 is no prefix at all.
    root = tmp_path / "cmu_new"
    write_plain(root / "02.asf", asf_text())
    decoy = asf_text().replace("length 0.45", "length 0.9")
    write_plain(root / "0.asf", decoy)
    write_gz(root / "03.asf.gz", decoy, "latin-1")
    frames = [{}, {}, {"ltibia": (90,)}]
    write_plain(root / "02_01.amc", amc_text(frames))
    write_gz(root / "02_02.amc.gz",
             amc_text(frames).replace(":DEGREES", ":DEGREES\n:SAMPLES-PER-SECOND 60"), "latin-1")
    motions = list(iter_motions(root))
    assert [(m.clip, m.subject, m.cmu_id, m.fps, m.num_frames) for m in motions] == [
        ("other/02_01", "other:02_01", None, 120.0, 3), ("other/02_02", "other:02_02", None, 60.0, 3)]
    for m in motions:
        for name, xyz in ZERO_POSE.items():
            np.testing.assert_allclose(at(m, name)[0], np.array(xyz) * U, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(at(m, "lfoot")[2], np.array([-4.5, 12.5, 3]) * U, atol=1e-6)
        assert_fk_identity(m)


def test_other_amc_uses_the_only_asf_of_its_folder(tmp_path):
    write_gz(tmp_path / "take" / "skeleton.asf.gz", asf_text(), "latin-1")
    m = load_motion(write_plain(tmp_path / "take" / "walk.amc", amc_text([{}, {}])))
    assert (m.clip, m.fps) == ("other/walk", 120.0)
    np.testing.assert_allclose(at(m, "head")[0], np.array(ZERO_POSE["head"]) * U, atol=1e-6)


def _truncate_gzip(path):
    path.write_bytes(path.read_bytes()[:-40])


@pytest.mark.parametrize("write, reason", [
    (lambda root: write_plain(root / "short.bvh", bvh_text([{}, {}]).rstrip().rsplit(" ", 22)[0]),
     rf"other/short: BVH: {2 * BVH_CHANNELS - 22} values for 2 frames x {BVH_CHANNELS} channels"),
    (lambda root: write_plain(root / "short.bvh", bvh_text([{}, {}]).split("MOTION")[0]),
     "other/short: BVH: no MOTION section"),
    (lambda root: _truncate_gzip(write_gz(root / "short.bvh.gz", bvh_text([{}] * 50))),
     "other/short: EOFError: Compressed file ended"),
    (lambda root: write_plain(root / "sub" / "short.amc", amc_text([{}])),
     r"other/sub/short: no ASF skeleton for short\.amc: 0 \.asf files beside it"),
    (lambda root: write_plain(root / "short.bvh", bvh_text([{}], prefix="mixamorig:")),
     "other/short: no SMPL joint map fits this skeleton"),
])
def test_other_bad_files_are_skipped_with_the_reason(tmp_path, write, reason):
    root = tmp_path / "new_takes"
    write_gz(root / "good.bvh.gz", bvh_text([{}]))
    write(root)
    items = list(iter_motions(root))
    assert [type(i) for i in items] == [SourceMotion, SkippedClip]
    assert re.match(reason, items[1].reason), items[1].reason


def test_known_folder_listed_directly_or_from_above(tmp_path):
    load_amc(tmp_path, [{}])  # hdm05_amc/train/1/HDM_xx_squat1Reps_001_120.amc.gz + its ASF
    write_gz(tmp_path / "accad_bvh" / "Male9_A1_Test.bvh.gz", bvh_text([{}]))
    write_plain(tmp_path / "accad_bvh" / "extra" / "Male9_A2_Plain.bvh", bvh_text([{}]))
    write_plain(tmp_path / "new" / "take.bvh", bvh_text([{}]))
    write_plain(tmp_path / "new" / "README.md", "not motion")
    hdm = tmp_path / "hdm05_amc" / "train" / "1" / "HDM_xx_squat1Reps_001_120.amc.gz"
    # Known sets in _DATASETS order, then "other" (a file its known folder's pattern does not
    # claim, here an uncompressed ACCAD take one level down, is read generically).
    assert list_clips(tmp_path) == [tmp_path / "accad_bvh" / "Male9_A1_Test.bvh.gz", hdm,
                                    tmp_path / "accad_bvh" / "extra" / "Male9_A2_Plain.bvh",
                                    tmp_path / "new" / "take.bvh"]
    assert [clip_id(p, tmp_path) for p in list_clips(tmp_path)] == [
        "accad_bvh/Male9_A1_Test", "hdm05_amc/train/1/HDM_xx_squat1Reps_001_120",
        "other/accad_bvh/extra/Male9_A2_Plain", "other/new/take"]
    for root in (tmp_path / "hdm05_amc", tmp_path / "hdm05_amc" / "train"):
        assert list_clips(root) == [hdm]
        (m,) = iter_motions(root)
        assert (m.clip, m.dataset, m.subject, m.fps) == (
            "hdm05_amc/train/1/HDM_xx_squat1Reps_001_120", "hdm05_amc", "hdm05:xx", 120.0)


# ---------------------------------------------------------------------------------------------
# Real files (one per folder), where the data is present
# ---------------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("rel, fps, frames", [
    ("accad_bvh/Male1_A1_Stand.bvh.gz", 30.0, None),
    ("accad_bvh/Male2_A4_LookAround.bvh.gz", 120.0, None),
    ("cmu_acrnn_dance_bvh/salsa/01.bvh.gz", 60.0, None),
    ("cmu_iclone_ccbase_bvh/02_02.bvh.gz", 60.0, None),
    ("cmu_misc_bvh/02_01.bvh.gz", 120.0, None),
    ("hdm05_amc/train/10/HDM_bd_squat1Reps_001_120.amc.gz", 120.0, None),
    ("cmu_motionpred_expmap/train/walking/walking_1.txt.gz", 120.0, 343),  # README: 1 + 343 rows
])
def test_real_files(rel, fps, frames):
    path, folder = MOCAP_ROOT / rel, MOCAP_ROOT / rel.split("/")[0]
    if not folder.exists():
        pytest.skip(f"{folder} is not here")
    if not path.exists():
        pytest.skip(f"{rel} is not here (kept aside?)")
    m = load_motion(path)
    assert m.fps == fps
    assert frames is None or m.num_frames == frames
    for a in (m.rest_positions, m.positions, m.rotations):
        assert np.isfinite(a).all()
    smpl = m.smpl_positions()
    ankles = np.minimum(smpl["left_ankle"][:, 1], smpl["right_ankle"][:, 1])
    assert 1.2 < smpl["head"][0, 1] - ankles[0] < 2.0
    assert (smpl["head"][:, 1] > ankles).mean() > 0.99  # y-up: these takes are upright throughout
    assert_fk_identity(m)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["hdm05_amc", "cmu_acrnn_dance_bvh", "cmu_motionpred_expmap"])
def test_real_known_folder_listed_directly(folder):
    if not (MOCAP_ROOT / folder).exists():
        pytest.skip(f"{MOCAP_ROOT / folder} is not here")
    inside = [p for p in list_clips() if (MOCAP_ROOT / folder) in p.parents]
    assert inside and list_clips(MOCAP_ROOT / folder) == inside
    assert [clip_id(p, MOCAP_ROOT / folder) for p in inside] == [clip_id(p) for p in inside]
