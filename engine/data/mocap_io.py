"""Load every motion-capture set under ../shared/data/mocap and ../shared/data/mocap_new into one
type, `SourceMotion`.

Formats: BVH (ACCAD MotionBuilder, CMU "DAZ-friendly" dance and its Huge FBX Mocap Library
conversion, iClone CC_Base, CMU Motionbuilder- and 3dsMax-friendly, ReActIdle's Blender rig),
Vicon ASF/AMC (HDM05) and the 117-column expmap rows of the CMU motion-prediction benchmark. Each
folder's README.md documents its skeleton, units, frame rate and quirks; the per-folder
differences live in the `_DATASETS` and `_SMPL_MAPS` tables below, not in the parsers.

Output conventions (the retargeter relies on them):
- metres, right-handed, +y up; the world facing direction is left as recorded, and so is the floor
  height (never shifted: a recording's floor is wherever its data puts it). Every set's world is
  already y-up: the iClone rig's offsets are z-up, but its root rotation (-90° about x, in the
  data) stands it up.
- Joints are the source's own. BVH End Sites with a non-zero offset become leaf joints named
  "<parent>_end" (they carry the toe tip / hand end some skeletons have no joint for); ASF/AMC and
  expmap joints sit at the START of each bone, plus "<bone>_end" for the end of every leaf bone.
- `rotations[t, j]` is joint j's world rotation relative to its rest orientation (column vectors),
  so for every joint c with parent p, exactly:
      positions[t, c] = positions[t, p] + rotations[t, p] @ (rest_positions[c] - rest_positions[p]).
  The rest pose is the file's own zero-rotation pose (for ACCAD and CC_Base it is not a T-pose).
- `fps` is the true frame rate; nothing is resampled here.

Any folder of motion files can be listed and loaded (`list_clips` / `iter_motions`, and so
`genmo-live eval --data DIR`). A file is read with a known set's rules when a folder above it has
that set's name and the set's pattern claims it (so the root may be the collection, one set's
folder or a folder inside one: the clip ids are the same). Every other .bvh / .amc file, gzipped
or not, any case, at any depth, joins the generic set "other", with none of the known quirks:
- clip "other/<path relative to the listed root, less extension>", subject "other:<file stem>"
  (nothing says which files share a performer, so each stem is its own), no CMU id;
- BVH: the root's position channels are its position (the OFFSET is ignored, as in most BVH); the
  frame rate is the header's; the length unit is guessed from the skeleton's size: of metres,
  centimetres, millimetres, inches and CMU ASF units, the one putting the ankle-to-head bone path
  nearest 1.45 m (log scale), and the file is unusable if even that is outside 0.8-2.4 m;
- AMC: the skeleton is the .asf(.gz) beside it whose stem is the longest prefix of the AMC's at a
  word boundary (CMU "02.asf" for "02_01.amc", HDM05 "HDM_bd.asf" for "HDM_bd_..._120.amc"),
  else the folder's only ASF; lengths in the ASF's units; 120 fps (CMU's and HDM05's rate) unless
  the AMC header says ":SAMPLES-PER-SECOND n".
In every set, a file that cannot be parsed (corrupt, truncated), has no ASF or fits no SMPL joint
map is an UnusableClip, and a SkippedClip with that reason from `iter_motions`; so is a file of a
known set that breaks the set's rules (bones that stretch, a marker glitch: `_Dataset`).
"""
from __future__ import annotations

import csv
import functools
import gzip
import math
import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

MOCAP_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "mocap"
MOCAP_NEW_ROOT = MOCAP_ROOT.with_name("mocap_new")

CM = 0.01
INCH = 0.0254
# CMU / HDM05 ASF length unit: 1 unit = (1 / 0.45) inch (the ASF's ":units length 0.45").
CMU_ASF_UNIT = INCH / 0.45

# A skeleton whose ankle-to-head bone path is shorter than this has broken offsets (real adults:
# about 1.3-1.6 m; the cmu_misc_bvh README reports a clip coming out ~0.2 m tall).
MIN_SKELETON_HEIGHT_M = 0.8
# Bounds of the unit guess for BVH files outside the known folders (module docstring): the path a
# guessed unit should give (about 0.85 x a 1.7 m stature), and the longest a real body has.
TYPICAL_SKELETON_HEIGHT_M = 1.45
MAX_SKELETON_HEIGHT_M = 2.4
GUESSED_UNITS_M = {"m": 1.0, "cm": CM, "mm": 0.001, "inch": INCH, "CMU ASF unit": CMU_ASF_UNIT}
# AMC files carry no frame rate unless ":SAMPLES-PER-SECOND" is given; CMU and HDM05 record at 120.
AMC_DEFAULT_FPS = 120.0


@dataclass
class SourceMotion:
    """One take, on its own skeleton. J joints, T frames; see the module docstring for conventions.

    clip: "<folder>/<relative path without .gz and extension>", unique over the whole collection.
    dataset: the folder name, or "other" (module docstring). subject: namespaced performer id for
    subject-wise splits (see `_DATASETS` for how each folder's is derived). cmu_id: CMU "SS_TT"
    trial id when known. fps: true frame rate. names: (J,) joint names. parents: (J,) int, -1 for
    the root, parent < child. rest_positions: (J, 3) float32 metres, every joint rotation zero.
    positions: (T, J, 3) float32 metres, world. rotations: (T, J, 3, 3) float32, world rotation relative to the rest orientation.
    smpl_map: SMPL joint name -> source joint name for pelvis..right_wrist (left_foot/right_foot only
    where the source has a toe joint or toe End Site: TOELESS_OK) and, where the source has one,
    left_hand/right_hand. The map of an SMPL joint's parent is the same source joint or one of
    the mapped joint's ancestors; a source joint serves two SMPL joints only on spines with fewer
    joints than SMPL's three (see `_SMPL_MAPS`). category: the clip's category where its set lists
    one (`clip_info`), else None.
    """

    clip: str
    dataset: str
    subject: str
    cmu_id: str | None
    fps: float
    names: list[str]
    parents: np.ndarray
    rest_positions: np.ndarray
    positions: np.ndarray
    rotations: np.ndarray
    smpl_map: dict[str, str]
    category: str | None = None

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.fps

    def joint(self, name: str) -> int:
        """Index of a source joint by name."""
        return self.names.index(name)

    def smpl_positions(self) -> dict[str, np.ndarray]:
        """SMPL joint name -> (T, 3) positions of its mapped source joint, metres."""
        return {s: self.positions[:, self.joint(n)] for s, n in self.smpl_map.items()}


@dataclass(frozen=True)
class SkippedClip:
    """A motion file that cannot be used, and why (reported by the dataset build)."""

    clip: str
    reason: str


class UnusableClip(ValueError):
    """Raised by `load_motion` for a file that parses but cannot be used (broken, not a take, ...)."""


# ---------------------------------------------------------------------------------------------
# Rotation maths (pure, numpy, batched over leading dimensions)
# ---------------------------------------------------------------------------------------------

def axis_rotation(axis: str, radians: np.ndarray) -> np.ndarray:
    """Rotation about one coordinate axis ("X", "Y" or "Z"): (...,) radians -> (..., 3, 3)."""
    c, s = np.cos(radians), np.sin(radians)
    o, i = np.zeros_like(c), np.ones_like(c)
    rows = {
        "X": [i, o, o, o, c, -s, o, s, c],
        "Y": [c, o, s, o, i, o, -s, o, c],
        "Z": [c, -s, o, s, c, o, o, o, i],
    }[axis.upper()]
    return np.stack(rows, axis=-1).reshape(c.shape + (3, 3))


def euler_to_matrix(degrees: np.ndarray, order: str) -> np.ndarray:
    """Intrinsic Euler angles to a matrix, BVH style: (..., k) degrees, order of k letters ->
    (..., 3, 3) = R_order[0] @ R_order[1] @ ... (column vectors).

    BVH "CHANNELS Zrotation Xrotation Yrotation" is order "ZXY". Extrinsic angles applied in the
    order "XYZ" (Acclaim ASF/AMC) are the same rotation as intrinsic "ZYX" with the angles reversed.
    Angles beyond ±180° are fine (HDM05 has unwrapped ones).
    """
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    out = axis_rotation(order[0], radians[..., 0])
    for k, axis in enumerate(order[1:], start=1):
        out = out @ axis_rotation(axis, radians[..., k])
    return out


def extrinsic_euler_to_matrix(degrees: np.ndarray, order: str) -> np.ndarray:
    """Extrinsic (fixed-axis) Euler angles, applied first-to-last in `order`: (..., k) -> (..., 3, 3)."""
    return euler_to_matrix(np.asarray(degrees)[..., ::-1], order[::-1])


def rest_pose(parents: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(J, 3) offsets from each joint's parent (root: its rest position) -> (J, 3) rest positions."""
    rest = np.array(offsets, dtype=np.float64)
    for j in range(1, len(parents)):
        rest[j] += rest[parents[j]]
    return rest


def forward_kinematics(parents: np.ndarray, offsets: np.ndarray, local_rot: np.ndarray,
                       root_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pose a skeleton whose rest pose has every local rotation identity.

    parents: (J,) with parents[0] == -1 and parent < child. offsets: (J, 3) rest offset of each joint
    from its parent (row 0 unused). local_rot: (T, J, 3, 3) rotation of each joint in its parent's
    frame. root_positions: (T, 3). Returns positions (T, J, 3) and world rotations (T, J, 3, 3),
    the latter relative to the rest orientation (identity in the rest pose).
    Loops over joints and vectorises over frames.
    """
    num_frames, num_joints = local_rot.shape[:2]
    positions = np.empty((num_frames, num_joints, 3))
    world = np.empty((num_frames, num_joints, 3, 3))
    positions[:, 0] = root_positions
    world[:, 0] = local_rot[:, 0]
    for j in range(1, num_joints):
        p = parents[j]
        positions[:, j] = positions[:, p] + world[:, p] @ offsets[j]
        world[:, j] = world[:, p] @ local_rot[:, j]
    return positions, world


# ---------------------------------------------------------------------------------------------
# BVH (one parser for every variant)
# ---------------------------------------------------------------------------------------------

@dataclass
class Bvh:
    """A parsed BVH file, in file units. End Sites with a zero offset are dropped (they add nothing).

    names/parents/offsets: (J,), (J,), (J, 3); offsets[0] is the root OFFSET. channels: per joint
    the channel names ("Xposition", "Zrotation", ...; none for End Sites). frame_time: seconds.
    frames: (T, C) channel values, columns in joint order then channel order.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    channels: list[list[str]]
    frame_time: float
    frames: np.ndarray


def parse_bvh(text: str, child_positions: bool = False) -> Bvh:
    """Parse BVH text (hierarchy and motion).

    child_positions: accept position channels on joints below the root (Blender exports write them
    on every joint); `bvh_pose` ignores them, so they must stay at the joint's OFFSET (see
    `child_position_drift`). Without it such a file is an error.
    """
    parts = re.split(r"^\s*MOTION\s*$", text, maxsplit=1, flags=re.MULTILINE)
    if len(parts) != 2:
        raise ValueError("BVH: no MOTION section (truncated or not a BVH file)")
    head, motion = parts
    names, parents, offsets, channels = [], [], [], []
    stack, tokens = [], iter(head.split())
    for tok in tokens:
        if tok in ("ROOT", "JOINT", "End"):
            name = next(tokens)
            if tok == "End":  # "End Site": a leaf named after its parent
                name = names[stack[-1]] + "_end"
            parents.append(stack[-1] if stack else -1)
            names.append(name)
            offsets.append(np.zeros(3))
            channels.append([])
        elif tok == "{":
            stack.append(len(names) - 1)
        elif tok == "}":
            stack.pop()
        elif tok == "OFFSET":
            offsets[-1] = np.array([float(next(tokens)) for _ in range(3)])
        elif tok == "CHANNELS":
            channels[-1] = [next(tokens) for _ in range(int(next(tokens)))]
    if not child_positions and any(ch.endswith("position") for c in channels[1:] for ch in c):
        raise ValueError("BVH: position channels are only supported on the root")

    lines = motion.strip().split("\n", 2)
    if len(lines) < 2:
        raise ValueError("BVH: truncated MOTION header (no Frames / Frame Time)")
    num_frames = int(lines[0].split(":")[1])
    frame_time = float(lines[1].split(":")[1])
    width = sum(len(c) for c in channels)
    values = np.array(lines[2].split() if len(lines) > 2 else [], dtype=np.float64)
    # Rows past the count are ignored, as players do: a recording cut short while it appended.
    if values.size < num_frames * width:
        raise ValueError(f"BVH: {values.size} values for {num_frames} frames x {width} channels")
    values = values[:num_frames * width]

    keep = [j for j, n in enumerate(names) if not (n.endswith("_end") and not offsets[j].any())]
    index = {old: new for new, old in enumerate(keep)}
    return Bvh(names=[names[j] for j in keep],
               parents=np.array([index[parents[j]] if parents[j] >= 0 else -1 for j in keep]),
               offsets=np.array([offsets[j] for j in keep]),
               channels=[channels[j] for j in keep], frame_time=frame_time,
               frames=values.reshape(num_frames, width))


def bvh_pose(bvh: Bvh) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (T, J, 3, 3) and root positions (T, 3), file units, from the channels.

    Rotation channels compose intrinsically in the listed order; the root's position channels are
    its absolute position (they replace its OFFSET, which ACCAD sets to the first frame's). Other
    joints' position channels (`parse_bvh(child_positions=True)`) are not read: each joint sits at
    its OFFSET, so the skeleton stays rigid.
    """
    num_frames, num_joints = bvh.frames.shape[0], len(bvh.names)
    local = np.broadcast_to(np.eye(3), (num_frames, num_joints, 3, 3)).copy()
    root = np.broadcast_to(bvh.offsets[0], (num_frames, 3)).copy()
    col = 0
    for j, chans in enumerate(bvh.channels):
        cols = {c: col + k for k, c in enumerate(chans)}
        col += len(chans)
        rot = [c for c in chans if c.endswith("rotation")]
        if rot:
            order = "".join(c[0] for c in rot)
            local[:, j] = euler_to_matrix(bvh.frames[:, [cols[c] for c in rot]], order)
        # Only the root's: a child's position channels (Blender exports) would overwrite the
        # root trajectory with a bone offset.
        for axis, name in enumerate(("Xposition", "Yposition", "Zposition")):
            if j == 0 and name in cols:
                root[:, axis] = bvh.frames[:, cols[name]]
    return local, root


def child_position_drift(bvh: Bvh) -> tuple[float, str | None]:
    """The largest distance, file units, between a non-root joint's position channels (any frame)
    and its OFFSET, and that joint's name; (0.0, None) when no joint below the root has them.
    Channels missing from a joint's set read as its OFFSET's coordinate."""
    worst, joint, col = 0.0, None, 0
    for j, chans in enumerate(bvh.channels):
        cols = {c: col + k for k, c in enumerate(chans)}
        col += len(chans)
        if j == 0 or not any(c.endswith("position") for c in chans):
            continue
        pos = np.broadcast_to(bvh.offsets[j], (len(bvh.frames), 3)).copy()
        for axis, name in enumerate(("Xposition", "Yposition", "Zposition")):
            if name in cols:
                pos[:, axis] = bvh.frames[:, cols[name]]
        drift = float(np.linalg.norm(pos - bvh.offsets[j], axis=-1).max(initial=0.0))
        if drift > worst:
            worst, joint = drift, bvh.names[j]
    return worst, joint


# ---------------------------------------------------------------------------------------------
# Acclaim ASF / AMC
# ---------------------------------------------------------------------------------------------

@dataclass
class Asf:
    """A parsed ASF skeleton, joints at bone starts (see module docstring), in ASF length units.

    names/parents/offsets: (J,), (J,), (J, 3); offsets[0] is the root position, offsets[j] of a
    bone joint is its parent bone's vector (direction * length, global frame) and of a "_end"
    joint its own bone's vector. axes: (J, 3, 3) each joint's `axis` frame C (local rotation is
    C @ M @ C^T). dofs: per joint the AMC value names in file order ("rx", ... ; root "TX".."RZ";
    none for "_end" joints). unit_m: metres per length unit. degrees: whether AMC angles are degrees.
    """

    names: list[str]
    parents: np.ndarray
    offsets: np.ndarray
    axes: np.ndarray
    dofs: list[list[str]]
    unit_m: float
    degrees: bool


def parse_asf(text: str) -> Asf:
    """Parse an ASF file (units, root, bonedata, hierarchy)."""
    sections: dict[str, list[list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith(":"):
            key, *rest = line[1:].split()
            current = sections.setdefault(key, [])
            if rest:
                current.append(rest)
        elif current is not None:
            current.append(line.split())

    units = {row[0]: row[1] for row in sections.get("units", [])}
    degrees = units.get("angle", "deg").lower().startswith("deg")
    root = {row[0]: row[1:] for row in sections["root"]}
    bones, bone = {}, None
    for row in sections["bonedata"]:
        if row[0] == "begin":
            bone = {}
        elif row[0] == "end":
            bones[bone["name"][0]] = bone
        elif not row[0].startswith("("):  # "(lo hi)" continuation rows of `limits`
            bone[row[0]] = row[1:]
    children: dict[str, list[str]] = {}
    for row in sections["hierarchy"]:
        if row[0] not in ("begin", "end"):
            children.setdefault(row[0], []).extend(row[1:])

    def bone_vector(name):
        b = bones[name]
        return np.array(b["direction"], dtype=np.float64) * float(b["length"][0])

    def axis_frame(angles, order):
        # `:units angle` covers every angle in the file, the axis frames included.
        values = np.array(angles, dtype=np.float64) * (1.0 if degrees else np.rad2deg(1.0))
        return extrinsic_euler_to_matrix(values, order.upper())

    names, parents, offsets = ["root"], [-1], [np.array(root["position"], dtype=np.float64)]
    axes = [axis_frame(root["orientation"], root["axis"][0])]
    dofs = [[d.upper() for d in root["order"]]]
    # Depth-first from the root so that every parent precedes its children.
    todo = [(child, 0) for child in reversed(children.get("root", []))]
    while todo:
        name, parent = todo.pop()
        b = bones[name]
        if any(d.lower() not in ("rx", "ry", "rz") for d in b.get("dof", [])):
            raise ValueError(f"ASF: bone {name} has non-rotational dof {b['dof']}")
        names.append(name)
        parents.append(parent)
        offsets.append(np.zeros(3) if parent == 0 else bone_vector(names[parent]))
        axes.append(axis_frame(b["axis"][:3], b["axis"][3]))
        dofs.append([d.lower() for d in b.get("dof", [])])
        j = len(names) - 1
        if name in children:
            todo.extend((child, j) for child in reversed(children[name]))
        else:
            names.append(name + "_end")
            parents.append(j)
            offsets.append(bone_vector(name))
            axes.append(np.eye(3))
            dofs.append([])
    return Asf(names=names, parents=np.array(parents), offsets=np.array(offsets),
               axes=np.array(axes), dofs=dofs,
               unit_m=INCH / float(units.get("length", 1.0)),
               degrees=degrees)


def parse_amc(text: str, asf: Asf) -> dict[str, np.ndarray]:
    """Parse AMC text: bone name -> (T, k) values in the ASF's dof order.

    Every frame must list the same bones in the same order (true of CMU and HDM05), which lets the
    whole file be split and reshaped at once.
    """
    body = "\n".join(line for line in text.splitlines()
                     if line.strip() and not line.startswith(("#", ":")))
    tokens = np.array(body.split())
    count = {n: len(d) for n, d in zip(asf.names, asf.dofs)}
    layout, i = [], 1  # token 0 is the first frame number
    while i < len(tokens) and tokens[i] in count:
        layout.append((tokens[i], i))
        i += 1 + count[tokens[i]]
    width = i
    if len(tokens) % width:
        raise ValueError(f"AMC: {len(tokens)} tokens is not a whole number of {width}-token frames")
    table = tokens.reshape(-1, width)
    out = {}
    for name, col in layout:
        if not (table[:, col] == name).all():
            raise ValueError(f"AMC: bone {name} is not at the same place in every frame")
        out[name] = table[:, col + 1: col + 1 + count[name]].astype(np.float64)
    return out


def amc_pose(asf: Asf, amc: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Local rotations (T, J, 3, 3) and root positions (T, 3), ASF units.

    Each joint's local rotation is C @ M @ C^T, where C is its `axis` frame and M applies the dof
    rotations extrinsically in dof order (rx, ry, rz in CMU and HDM05, so M = Rz @ Ry @ Rx, as in
    the CMU viewer). Bones absent from the AMC (e.g. the dof-less hip joints) do not rotate.
    """
    num_frames = len(next(iter(amc.values())))
    local = np.broadcast_to(np.eye(3), (num_frames, len(asf.names), 3, 3)).copy()
    root = np.zeros((num_frames, 3))
    scale = 1.0 if asf.degrees else np.rad2deg(1.0)
    for j, (name, dofs) in enumerate(zip(asf.names, asf.dofs)):
        if name not in amc or not dofs:
            continue
        values = amc[name]
        rot = [k for k, d in enumerate(dofs) if d.lower().startswith("r")]
        for k, d in enumerate(dofs):
            if d.lower().startswith("t"):
                root[:, "xyz".index(d[1].lower())] = values[:, k]
        order = "".join(dofs[k][1].upper() for k in rot)
        m = extrinsic_euler_to_matrix(values[:, rot] * scale, order)
        c = asf.axes[j]
        local[:, j] = c @ m @ c.T
    return local, root


# ---------------------------------------------------------------------------------------------
# CMU motion-prediction expmap rows
# ---------------------------------------------------------------------------------------------

def read_expmap_skeleton(csv_path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """skeleton_offsets_38x3.csv -> names (38,), parents (38,), offsets (38, 3) ASF units.

    Its name column reads like "lfemur(start)=L_hip" / "ltoes_end"; the bone name is kept, so the
    joints are named like the ASF loader's (joint = bone start, "<bone>_end" = leaf end).
    """
    rows = [line.split(",") for line in csv_path.read_text().splitlines()[1:] if line.strip()]
    names = [re.sub(r"\(start\).*$", "", r[2]) for r in rows]
    parents = np.array([int(r[1]) for r in rows])
    offsets = np.array([[float(v) for v in r[3:6]] for r in rows])
    return names, parents, offsets


def expmap_pose(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 3 + 3J) rows -> local rotations (T, J, 3, 3) and root positions (T, 3).

    The benchmark's FK is row-vector: R_i = Rod(e_i) · R_parent, x_i = offset_i · R_parent + x_parent.
    Transposed to column vectors, joint i's local rotation is Rod(e_i)^T = Rod(-e_i).
    """
    expmaps = rows[:, 3:].reshape(len(rows), -1, 3)
    return axis_angle_to_matrix(-expmaps), rows[:, :3]


# ---------------------------------------------------------------------------------------------
# SMPL maps: one per source skeleton; the first whose joints all exist in a file is used
# ---------------------------------------------------------------------------------------------

# SMPL body joints a map may leave out: the toes of rigs that have neither a toe joint nor a toe
# End Site (retarget rides them rigidly on the ankles, which keep the source foot's rotation).
TOELESS_OK = ("left_foot", "right_foot")


def _sided(table: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expand {"*_hip": "{s}UpLeg"} into left_/right_ entries with the source's side spellings."""
    out = {}
    for smpl, source in table.items():
        if smpl.startswith("*"):
            out["left" + smpl[1:]] = source.format(s=left)
            out["right" + smpl[1:]] = source.format(s=right)
        else:
            out[smpl] = source
    return out


_LIMBS = ("*_hip", "*_knee", "*_ankle", "*_foot", "*_collar", "*_shoulder", "*_elbow", "*_wrist",
          "*_hand")


def _limbs(*sources: str) -> dict[str, str]:
    return dict(zip(_LIMBS, sources))


_CMU_DAZ = _sided({"pelvis": "hip", "spine1": "abdomen", "spine2": "abdomen", "spine3": "chest",
                   "neck": "neck", "head": "head",
                   **_limbs("{s}Thigh", "{s}Shin", "{s}Foot", "{s}Foot_end", "{s}Collar", "{s}Shldr",
                            "{s}ForeArm", "{s}Hand", "{s}Mid1")}, "l", "r")

# Spines with fewer than SMPL's three joints share one: SMPL spine3 must be the joint the neck and
# both collars hang from, and the shared joint is picked by height (SMPL spine1/2/3 sit roughly
# 10/21/33 cm above the pelvis). Hands: middle-finger root where there is one, else the hand end.
_SMPL_MAPS: dict[str, dict[str, str]] = {
    # ACCAD MotionBuilder export: Spine 10 cm, Spine1 22-30 cm above Hips. Its ToSpine (absent in
    # Male2 B24, C19, C20) is a helper 7 cm in FRONT of the hips, not above them: aiming the
    # pelvis at it pitched the retargeted pelvis by 90°, so it is skipped like a twist bone.
    "accad": _sided({"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1",
                                "spine3": "Spine1", "neck": "Neck", "head": "Head",
                                **_limbs("{s}UpLeg", "{s}Leg", "{s}Foot", "{s}ToeBase",
                                         "{s}Shoulder", "{s}Arm", "{s}ForeArm", "{s}Hand",
                                         "{s}Hand_end")}, "Left", "Right"),
    # iClone CC_Base: Waist 8, Spine01 13, Spine02 28 cm; twist/share bones are skipped over.
    "cc_base": _sided({"pelvis": "CC_Base_Hip", "spine1": "CC_Base_Waist",
                       "spine2": "CC_Base_Spine01", "spine3": "CC_Base_Spine02",
                       "neck": "CC_Base_NeckTwist01", "head": "CC_Base_Head",
                       **_limbs("CC_Base_{s}_Thigh", "CC_Base_{s}_Calf", "CC_Base_{s}_Foot",
                                "CC_Base_{s}_ToeBase", "CC_Base_{s}_Clavicle",
                                "CC_Base_{s}_Upperarm", "CC_Base_{s}_Forearm", "CC_Base_{s}_Hand",
                                "CC_Base_{s}_Mid1")}, "L", "R"),
    # CMU "DAZ-friendly" (cgspeed): abdomen 21 cm, chest 32 cm; no toe joint (foot end = toe tip).
    "cmu_daz": _CMU_DAZ,
    # The same rig with zero-length foot End Sites (the Huge FBX Mocap Library's conversion back
    # to BVH): no toe tip, so the toes ride on the ankles (TOELESS_OK).
    "cmu_daz_no_toes": {k: v for k, v in _CMU_DAZ.items() if k not in TOELESS_OK},
    # ReActIdle (Blender/Rigify-style names): spine starts at the pelvis and spine.001 23 cm above
    # it (nearest SMPL's spine1 and spine2 at 10 and 21 cm); the neck and both shoulders hang from
    # spine.001; face is the head. No hand joint (the forearm's End Site is the wrist) and no toe
    # joint (the foot's End Site is the toe tip).
    "reactidle": _sided({"pelvis": "pelvis", "spine1": "spine", "spine2": "spine.001",
                         "spine3": "spine.001", "neck": "neck", "head": "face",
                         "*_hip": "thigh.{s}", "*_knee": "shin.{s}", "*_ankle": "foot.{s}",
                         "*_foot": "foot.{s}_end", "*_collar": "shoulder.{s}",
                         "*_shoulder": "upper_arm.{s}", "*_elbow": "forearm.{s}",
                         "*_wrist": "forearm.{s}_end"}, "L", "R"),
    # CMU Motionbuilder-friendly (cgspeed): the ASF bones, renamed. LowerBack/Neck/LeftShoulder
    # start where their parent does; the thorax has no length, so Spine1 is spine2 and spine3.
    "cmu_motionbuilder": _sided({"pelvis": "Hips", "spine1": "Spine", "spine2": "Spine1",
                                 "spine3": "Spine1", "neck": "Neck1", "head": "Head",
                                 **_limbs("{s}UpLeg", "{s}Leg", "{s}Foot", "{s}ToeBase",
                                          "{s}Shoulder", "{s}Arm", "{s}ForeArm", "{s}Hand",
                                          "{s}HandIndex1")}, "Left", "Right"),
    # CMU 3dsMax-friendly (bvh11's 131_*): the same bones under other names.
    "cmu_3dsmax": _sided({"pelvis": "Hips", "spine1": "Chest", "spine2": "Chest2",
                          "spine3": "Chest2", "neck": "Neck", "head": "Head",
                          **_limbs("{s}Hip", "{s}Knee", "{s}Ankle", "{s}Toe", "{s}Collar",
                                   "{s}Shoulder", "{s}Elbow", "{s}Wrist", "{s[0]}Fingers")},
                         "Left", "Right"),
    # Acclaim ASF (HDM05) and the expmap benchmark's 38 joints (bone starts): upperback 12 cm,
    # thorax 24 cm; neck and clavicles start at the thorax END, which is no joint of its own.
    "cmu_asf": _sided({"pelvis": "root", "spine1": "upperback", "spine2": "thorax",
                       "spine3": "thorax", "neck": "upperneck", "head": "head",
                       **_limbs("{s}femur", "{s}tibia", "{s}foot", "{s}toes", "{s}clavicle",
                                "{s}humerus", "{s}radius", "{s}wrist", "{s}fingers")}, "l", "r"),
    # genmo-live's own recordings (clients/recorder.py): the SMPL skeleton under SMPL's names.
    "genmo_live": {n: n for n in SMPL_JOINT_NAMES},
}


def pick_smpl_map(names: list[str]) -> dict[str, str]:
    """The first of `_SMPL_MAPS` whose source joints all exist in `names`."""
    present = set(names)
    for table in _SMPL_MAPS.values():
        if present.issuperset(table.values()):
            return dict(table)
    raise UnusableClip("no SMPL joint map fits this skeleton")


def check_smpl_map(names: list[str], parents: np.ndarray, smpl_map: dict[str, str]) -> None:
    """Raise UnusableClip unless every SMPL bone parent->child maps to the same source joint or to
    an ancestor->descendant pair, and the 22 body joints are all mapped (the toes aside, for rigs
    without them: TOELESS_OK)."""
    index = {n: j for j, n in enumerate(names)}
    missing = [s for s in SMPL_JOINT_NAMES[:22] if s not in smpl_map and s not in TOELESS_OK]
    if missing:
        raise UnusableClip(f"SMPL map lacks {missing}")
    for c, smpl in enumerate(SMPL_JOINT_NAMES):
        p = SMPL_PARENTS[c]
        if p < 0 or smpl not in smpl_map:
            continue
        anc, child = index[smpl_map[SMPL_JOINT_NAMES[p]]], index[smpl_map[smpl]]
        j = child
        while j not in (anc, -1):
            j = parents[j]
        if j != anc:
            raise UnusableClip(f"SMPL {SMPL_JOINT_NAMES[p]}->{smpl}: {names[anc]} is no "
                               f"ancestor of {names[child]}")


# ---------------------------------------------------------------------------------------------
# Whole-body measures used for quirk detection
# ---------------------------------------------------------------------------------------------

def skeleton_height(rest: np.ndarray, parents: np.ndarray, names: list[str],
                    smpl_map: dict[str, str]) -> float:
    """Pose-independent body size: the bone-length path from the left ankle up through the pelvis
    to the head joint, in the units of `rest` (J, 3). About 0.85-0.9 of stature for a real body."""
    def chain(j):
        out = [j]
        while parents[out[-1]] >= 0:
            out.append(parents[out[-1]])
        return out

    ankle, head = (chain(names.index(smpl_map[k])) for k in ("left_ankle", "head"))
    common = set(ankle) & set(head)
    path = [j for j in ankle + head if j not in common]  # each non-shared joint and its bone up
    return float(sum(np.linalg.norm(rest[j] - rest[parents[j]]) for j in path))


def is_tpose(positions: np.ndarray, names: list[str], smpl_map: dict[str, str]) -> np.ndarray:
    """(T, J, 3) y-up metres -> (T,) bool: both arms straight and level, out to the sides."""
    def at(smpl):
        return positions[:, names.index(smpl_map[smpl])]

    out = np.ones(len(positions), dtype=bool)
    for side in ("left", "right"):
        shoulder, elbow, wrist = at(side + "_shoulder"), at(side + "_elbow"), at(side + "_wrist")
        reach = np.linalg.norm(wrist - shoulder, axis=-1)
        arm = np.linalg.norm(elbow - shoulder, axis=-1) + np.linalg.norm(wrist - elbow, axis=-1)
        level = np.abs(wrist[:, 1] - shoulder[:, 1]) < 0.15 * arm
        out &= (reach > 0.97 * arm) & level
    return out


def leading_tpose_frames(positions: np.ndarray, names: list[str], smpl_map: dict[str, str]) -> int:
    """How many leading frames are an added T-pose (0 or 1): frame 0 is a T-pose and the wrists
    then jump by more than 15 cm relative to the pelvis. A T-pose the performer moved into is
    continuous and is kept."""
    if len(positions) < 2 or not is_tpose(positions[:1], names, smpl_map)[0]:
        return 0
    pelvis = names.index(smpl_map["pelvis"])
    wrists = [names.index(smpl_map[s]) for s in ("left_wrist", "right_wrist")]
    rel = positions[:2, wrists] - positions[:2, pelvis, None]
    return int(np.linalg.norm(rel[1] - rel[0], axis=-1).max() > 0.15)


# ---------------------------------------------------------------------------------------------
# Datasets: file discovery, ids and per-folder quirks
# ---------------------------------------------------------------------------------------------

def _stem(rel: Path) -> str:
    """The name less ".gz" and its extension: "05_06.bvh.gz" -> "05_06", "a.v2.BVH" -> "a.v2"."""
    name = rel.name[:-3] if rel.name.lower().endswith(".gz") else rel.name
    return name.rsplit(".", 1)[0]


def _kind(path: Path) -> str:
    """The format of a file by its name, any case, optionally gzipped: "bvh", "amc", "txt", ..."""
    name = path.name.lower()
    return (name[:-3] if name.endswith(".gz") else name).rsplit(".", 1)[-1]


# CMU subjects whose takes are exact copies of another subject's (identical motion data: one capture
# session under two numbers; mocap_new READMEs): the same performer, so one subject id for a split.
_CMU_SAME_SUBJECT = {"105": "91", "106": "141", "117": "85", "121": "90", "122": "83", "123": "70",
                     "139": "77"}


def _cmu_subject(rel: Path) -> str:
    """CMU "SS_TT" file name -> "cmu:SS", shared by every folder that names its CMU trials; a
    duplicate subject number gets the one it copies ("139_16" -> "cmu:77")."""
    number = _stem(rel).split("_")[0]
    return "cmu:" + _CMU_SAME_SUBJECT.get(number, number)


# Takes of the Huge FBX Mocap Library captured at 60 Hz: Hahne's BVH headers say 120, so the
# library's 1/24 s keys play them twice too fast; they are 12 fps. Whole sessions (139 = 77) and
# single takes, found by ballistic flight and walking cadence (mocap_new CMU READMEs).
_HUGE_FBX_60HZ_SUBJECTS = frozenset({"75", "77", "88", "89", "93", "107", "139", "141", "143"})
_HUGE_FBX_60HZ_TAKES = frozenset({"87_03", "87_04", "90_08", "90_09", "90_11", "103_08"})


def _huge_fbx_fps(rel: Path) -> float | None:
    """12.0 for a 60 Hz take of the Huge FBX library (whatever its Frame Time says), else None."""
    stem = _stem(rel)
    return 12.0 if stem.split("_")[0] in _HUGE_FBX_60HZ_SUBJECTS or stem in _HUGE_FBX_60HZ_TAKES else None


@functools.lru_cache(maxsize=None)
def _files_tsv(folder: Path, column: str) -> dict[str, str]:
    """A set's files.tsv: clip stem -> the value in `column` ({} when the file or column is absent)."""
    path = folder / "files.tsv"
    if not path.exists():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    return {_stem(Path(r["clip"] if "clip" in r else r["file"])): r[column] for r in rows if column in r}


def _tsv_category(folder: Path, rel: Path) -> str | None:
    """The category its set's files.tsv gives the clip ("sit_chair_stool", "walk_styles", ...)."""
    return _files_tsv(folder, "category").get(_stem(rel))


# A mapped joint moving faster than this from one frame to the next is a marker glitch (a pop), not
# motion: the mocap_new CMU README puts real peaks (kicks, pitches, flips) at 15-25 m/s and the
# glitches above ~25 m/s.
MARKER_GLITCH_M_S = 25.0


@dataclass(frozen=True)
class _Dataset:
    """How one folder is read. subject/cmu_id map a file's path relative to the folder to ids."""

    pattern: str                                # glob of its motion files
    subject: Callable[[Path], str]
    cmu_id: Callable[[Path], str | None] = lambda rel: None
    unit_m: float | None = None                 # metres per unit (None: ASF's; BVH: guessed)
    fps: dict[str, float] = field(default_factory=dict)  # by first path part ("" = all); else header
    fps_of: Callable[[Path], float | None] = lambda rel: None  # per file, over both of the above
    root_offset_added: bool = False             # BVH root position = OFFSET + channels, not channels
    not_takes: tuple[str, ...] = ()             # files that hold no take (skipped with a reason)
    leading_tpose: int | None = None            # frames of added T-pose always dropped (None: detected)
    # BVH position channels on every joint (Blender exports) are read as their OFFSETs, and the
    # file is skipped if any moves further than this from its OFFSET, metres (None: not allowed).
    child_position_tolerance_m: float | None = None
    max_joint_speed_m_s: float | None = None    # faster: a marker glitch, the file is skipped
    category: Callable[[Path, Path], str | None] = lambda folder, rel: None  # (folder, rel path)


_DATASETS: dict[str, _Dataset] = {
    # subject: the performer in the file name, "Male1_A1_Stand" -> "accad:Male1".
    "accad_bvh": _Dataset("*.bvh.gz", unit_m=CM,
                          subject=lambda rel: "accad:" + _stem(rel).split("_")[0]),
    # subject: the style folder; salsa 01-15 and 16-30 are the two partners (README).
    # The header says 120 fps; salsa is really 60 fps (acRNN readme.txt, and root speed: README).
    "cmu_acrnn_dance_bvh": _Dataset(
        "*/*.bvh.gz", unit_m=CM, fps={"salsa": 60.0},
        subject=lambda rel: "cmu_dance:" + (
            ("salsa_a" if int(_stem(rel)) <= 15 else "salsa_b") if rel.parts[0] == "salsa"
            else rel.parts[0]),
        not_takes=("standard.bvh.gz",)),
    # Root CC_Base_Hip has OFFSET (0, 105.2, 0) and its position channels move about it
    # (RL_BoneRoot-rooted files have a zero root OFFSET, so either reading fits them).
    "cmu_iclone_ccbase_bvh": _Dataset("*.bvh.gz", unit_m=CM, root_offset_added=True,
                                      subject=_cmu_subject, cmu_id=_stem),
    "cmu_misc_bvh": _Dataset("*.bvh.gz", unit_m=CMU_ASF_UNIT, subject=_cmu_subject, cmu_id=_stem),
    # subject: the actor of "HDM_<actor>_<class>_<idx>_120" -> "hdm05:bd".
    "hdm05_amc": _Dataset("*/*/*.amc.gz", fps={"": 120.0},
                          subject=lambda rel: "hdm05:" + _stem(rel).split("_")[1]),
    # The real CMU subject of each file is unknown: subject is "<action>_<split>", e.g.
    # "cmu_expmap:walking_train".
    "cmu_motionpred_expmap": _Dataset("*/*/*.txt.gz", unit_m=CMU_ASF_UNIT, fps={"": 120.0},
                                      subject=lambda rel: f"cmu_expmap:{rel.parts[1]}_{rel.parts[0]}"),
    # ../shared/data/mocap_new (MOCAP_NEW_ROOT; each folder's README).
    # ReActIdle: standing idle, acted/NNN and genuine/NNN by the same performer NNN ->
    # "reactidle:NNN"; category "idle_acted" / "idle_genuine". A Blender export: metres, 24 fps,
    # position channels on every joint (the thighs' wobble up to 2 cm about their OFFSETs, the
    # rest stay on them), and the root's channels move it about its OFFSET (pelvis 0.72 m up;
    # read as absolute, the pelvis would sit on the floor).
    "reactidle_bvh": _Dataset("*/*.bvh.gz", unit_m=1.0, root_offset_added=True,
                              child_position_tolerance_m=0.03, max_joint_speed_m_s=MARKER_GLITCH_M_S,
                              subject=lambda rel: "reactidle:" + _stem(rel).split("_")[0],
                              category=lambda folder, rel: "idle_" + rel.parts[0]),
    # CMU through the Huge FBX Mocap Library, converted back to BVH: Hahne's Daz-friendly rig in cm
    # without toe tips (cmu_daz_no_toes); frame 0 is Hahne's added T-pose (the rest pose), always
    # dropped; 24 fps, and 12 for the takes captured at 60 Hz (_huge_fbx_fps); category from
    # files.tsv. The two sets share no clip.
    **{name: _Dataset("bvh/*.bvh.gz", unit_m=CM, leading_tpose=1, fps_of=_huge_fbx_fps,
                      max_joint_speed_m_s=MARKER_GLITCH_M_S, subject=_cmu_subject, cmu_id=_stem,
                      category=_tsv_category)
       for name in ("cmu_hugefbx_daz_bvh", "cmu_hugefbx_more_bvh")},
}


# Files outside the known folders (module docstring): units, root and fps rules are the defaults.
_OTHER = _Dataset("*.bvh / *.amc at any depth, optionally .gz",
                  subject=lambda rel: "other:" + _stem(rel))
_OTHER_KINDS = ("bvh", "amc")


def _claims(ds: _Dataset, rel: Path) -> bool:
    """Whether `ds` reads the file at `rel` (relative to its folder) as one of its clips."""
    if ds is _OTHER:
        return _kind(rel) in _OTHER_KINDS
    depth = len(Path(ds.pattern).parts)  # Path.match anchors at the right only: pin the depth too
    return rel.as_posix() in ds.not_takes or (len(rel.parts) == depth and rel.match(ds.pattern))


def _locate(path: Path, root: Path | None = None) -> tuple[Path, str, Path, _Dataset]:
    """(folder, dataset name, path relative to the folder, its rules) of a file: the nearest folder
    above it that is named like a known set whose pattern claims it; else the set "other", relative
    to `root` (the folder being listed) when the file is under it, else to the file's own folder."""
    for folder in path.parents:
        ds = _DATASETS.get(folder.name)
        if ds is not None and _claims(ds, path.relative_to(folder)):
            return folder, folder.name, path.relative_to(folder), ds
    folder = root if root is not None and root in path.parents else path.parent
    return folder, "other", path.relative_to(folder), _OTHER


def clip_id(path: Path | str, root: Path | str | None = None) -> str:
    """"<folder>/<relative path without .gz and extension>" of a motion file ("other/..." outside
    the known folders, relative to `root`, the folder being listed; see `_locate`)."""
    _, dataset, rel, _ = _locate(Path(path), None if root is None else Path(root))
    return f"{dataset}/{(rel.parent / _stem(rel)).as_posix()}"


def list_clips(root: Path | str = MOCAP_ROOT) -> list[Path]:
    """Every motion file under `root` (any depth) that `iter_motions` visits; no parsing.

    `root` may hold known folders, be one, lie inside one, or be any other folder (module
    docstring). Order: the known sets in `_DATASETS` order, each's files sorted with its not_takes
    last, then the "other" files sorted.
    """
    root = Path(root)
    rank = {name: k for k, name in enumerate([*_DATASETS, "other"])}
    found = []
    for path in root.rglob("*"):
        _, dataset, rel, ds = _locate(path, root)
        if _claims(ds, rel) and path.is_file():
            found.append((rank[dataset], rel.as_posix() in ds.not_takes, path))
    return [path for *_, path in sorted(found)]


def _read_text(path: Path, encoding: str = "utf-8") -> str:
    """A text file, gzipped or not: told by its first bytes, as a name may say either wrongly."""
    with open(path, "rb") as f:
        opener = gzip.open if f.read(2) == b"\x1f\x8b" else open
    with opener(path, "rt", encoding=encoding) as f:
        return f.read()


def _frame_rate(frame_time: float) -> float:
    """Headers print Frame Time with 4-6 digits (0.0083333): snap to the whole rate it means."""
    fps = 1.0 / frame_time
    return float(round(fps)) if abs(fps - round(fps)) < 0.01 * fps else fps


def _amc_frame_rate(text: str) -> float:
    """An AMC's ":SAMPLES-PER-SECOND n" header, else AMC_DEFAULT_FPS."""
    found = re.search(r"^:SAMPLES-PER-SECOND\s+(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    return float(found[1]) if found else AMC_DEFAULT_FPS


def _find_asf(amc: Path) -> Path:
    """The ASF of an AMC file: the .asf(.gz) beside it whose stem is the longest prefix of the AMC's
    stem ending at a word boundary ("02" for "02_01", never "1" for "12_01"), else the only one."""
    stem = _stem(amc)
    asfs = sorted(p for p in amc.parent.iterdir() if _kind(p) == "asf")
    prefixes = [p for p in asfs if stem.startswith(_stem(p))
                and not stem[len(_stem(p)):len(_stem(p)) + 1].isalnum()]
    if prefixes:
        return max(prefixes, key=lambda p: len(_stem(p)))
    if len(asfs) == 1:
        return asfs[0]
    raise UnusableClip(f"no ASF skeleton for {amc.name}: {len(asfs)} .asf files beside it, none "
                       f"named like a prefix of it")


def _read_pose(path: Path, folder: Path, ds: _Dataset):
    """Parse any motion file: (names, parents, offsets, local rotations, root positions,
    metres per unit or None, header fps), lengths in file units."""
    kind = _kind(path)
    if kind == "bvh":
        tolerance = ds.child_position_tolerance_m
        bvh = parse_bvh(_read_text(path), child_positions=tolerance is not None)
        if tolerance is not None:
            drift, joint = child_position_drift(bvh)
            if drift * ds.unit_m > tolerance:
                raise UnusableClip(f"{joint}'s position channels move {drift * ds.unit_m:.3f} m from its "
                                   f"OFFSET (over {tolerance} m): its bones stretch, which the rigid "
                                   f"skeleton read from the OFFSETs cannot follow")
        local, root = bvh_pose(bvh)
        if ds.root_offset_added:
            root = root + bvh.offsets[0]
        return bvh.names, bvh.parents, bvh.offsets, local, root, ds.unit_m, _frame_rate(bvh.frame_time)
    if kind == "amc":
        asf = parse_asf(_read_text(_find_asf(path), "latin-1"))
        text = _read_text(path, "latin-1")
        local, root = amc_pose(asf, parse_amc(text, asf))
        return asf.names, asf.parents, asf.offsets, local, root, asf.unit_m, _amc_frame_rate(text)
    names, parents, offsets = read_expmap_skeleton(folder / "skeleton_offsets_38x3.csv")
    rows = np.array(_read_text(path).replace(",", " ").split(), dtype=np.float64)
    rows = rows.reshape(-1, 3 + 3 * len(names))[1:]  # row 0 is a rest row (README)
    local, root = expmap_pose(rows)
    return names, parents, offsets, local, root, ds.unit_m, None


def guess_length_unit(height: float) -> float:
    """Metres per file unit of a skeleton whose ankle-to-head bone path is `height` file units:
    the one of GUESSED_UNITS_M that puts it nearest TYPICAL_SKELETON_HEIGHT_M in log scale."""
    return min(GUESSED_UNITS_M.values(),
               key=lambda u: abs(math.log(max(height * u, 1e-12) / TYPICAL_SKELETON_HEIGHT_M)))


# What the parsers, numpy and gzip raise on a corrupt, truncated or mismatched file.
_BAD_INPUT = (ValueError, KeyError, IndexError, StopIteration, EOFError, OSError, zlib.error)


@dataclass(frozen=True)
class ClipInfo:
    """What a motion file's path alone says (no parsing): its ids as `load_motion` gives them, and
    its category where its set lists one (files.tsv; ReActIdle "idle_acted" / "idle_genuine")."""

    clip: str
    dataset: str
    subject: str
    cmu_id: str | None
    category: str | None


def clip_info(path: Path | str, root: Path | str | None = None) -> ClipInfo:
    """The ids and category of a motion file, from its path (`root`: as for `load_motion`)."""
    folder, dataset, rel, ds = _locate(Path(path), None if root is None else Path(root))
    return ClipInfo(clip=clip_id(path, root), dataset=dataset, subject=ds.subject(rel),
                    cmu_id=ds.cmu_id(rel), category=ds.category(folder, rel))


def fastest_step(positions: np.ndarray, names: list[str], smpl_map: dict[str, str],
                 fps: float) -> tuple[float, str, int]:
    """The fastest frame-to-frame move of any SMPL-mapped joint: (speed m/s, source joint name,
    index of the frame it moves into). positions: (T, J, 3) metres; (0.0, "", 0) for one frame.
    Fingers, eyes and other unmapped joints are left out (their jitter is no body motion)."""
    if len(positions) < 2:
        return 0.0, "", 0
    mapped = sorted({names.index(n) for n in smpl_map.values()})
    speed = np.linalg.norm(np.diff(positions[:, mapped], axis=0), axis=-1) * fps  # (T - 1, M)
    step, k = np.unravel_index(np.argmax(speed), speed.shape)
    return float(speed[step, k]), names[mapped[k]], int(step) + 1


def load_motion(path: Path | str, root: Path | str | None = None) -> SourceMotion:
    """Load one motion file: BVH, AMC (its ASF beside it) or expmap rows, gzipped or not where the
    folder's rules allow (module docstring). `root`: the folder being listed, which only "other"
    clip ids are relative to.

    Raises UnusableClip for a file that holds no usable take, cannot be parsed (the parser's
    message), fits no SMPL joint map, or breaks its set's rules (stretching bones, marker glitches);
    leading added T-pose frames are dropped where its set has them, or wherever they are detected.
    """
    path = Path(path)
    folder, dataset, rel, ds = _locate(path, None if root is None else Path(root))
    info = clip_info(path, root)
    clip = info.clip
    if not _claims(ds, rel):
        raise ValueError(f"{path}: not a motion file this loader reads (.bvh, .amc, optionally "
                         f"gzipped, or a known folder's files)")
    if rel.name in ds.not_takes:
        raise UnusableClip(f"{clip}: a skeleton reference file, not a take")

    try:
        names, parents, offsets, local, root_pos, unit_m, fps = _read_pose(path, folder, ds)
        smpl_map = pick_smpl_map(names)
        check_smpl_map(names, parents, smpl_map)
    except _BAD_INPUT as e:
        kind = "" if isinstance(e, ValueError) else f"{type(e).__name__}: "
        raise UnusableClip(f"{clip}: {kind}{e}") from e
    fps = ds.fps_of(rel) or ds.fps.get(rel.parts[0], ds.fps.get("", fps))
    rest = rest_pose(parents, offsets)
    height = skeleton_height(rest, parents, names, smpl_map)  # file units
    if unit_m is None:
        unit_m = guess_length_unit(height)
        if not MIN_SKELETON_HEIGHT_M <= height * unit_m <= MAX_SKELETON_HEIGHT_M:
            raise UnusableClip(
                f"{clip}: ankle-to-head bone path of {height:.4g} file units is no body of "
                f"{MIN_SKELETON_HEIGHT_M}-{MAX_SKELETON_HEIGHT_M} m in any of the guessed units "
                f"({', '.join(GUESSED_UNITS_M)})")
    rest *= unit_m
    height *= unit_m
    if height < MIN_SKELETON_HEIGHT_M:
        raise UnusableClip(f"{clip}: ankle-to-head bone path only {height:.2f} m (broken offsets)")

    positions, world = forward_kinematics(parents, offsets, local, root_pos)
    positions *= unit_m
    drop = ds.leading_tpose if ds.leading_tpose is not None else leading_tpose_frames(positions, names, smpl_map)
    if len(positions) <= drop:
        raise UnusableClip(f"{clip}: no frames")
    if ds.max_joint_speed_m_s is not None:
        speed, joint, step = fastest_step(positions[drop:], names, smpl_map, fps)
        if speed > ds.max_joint_speed_m_s:
            raise UnusableClip(f"{clip}: marker glitch: {joint} moves at {speed:.0f} m/s into file frame "
                               f"{step + drop} (over {ds.max_joint_speed_m_s:.0f} m/s)")
    return SourceMotion(clip=clip, dataset=dataset, subject=info.subject, cmu_id=info.cmu_id,
                        fps=float(fps), names=list(names), parents=np.asarray(parents, np.int64),
                        rest_positions=rest.astype(np.float32),
                        positions=positions[drop:].astype(np.float32),
                        rotations=world[drop:].astype(np.float32), smpl_map=smpl_map,
                        category=info.category)


def iter_motions(root: Path | str = MOCAP_ROOT) -> Iterator[SourceMotion | SkippedClip]:
    """Every clip under `root` (see `list_clips`), loaded, or a SkippedClip saying why it cannot
    be used."""
    for path in list_clips(root):
        try:
            yield load_motion(path, root)
        except UnusableClip as e:
            yield SkippedClip(clip_id(path, root), str(e))
