"""Retarget source motion capture (engine.data.mocap_io.SourceMotion) onto our SMPL-topology body.

Output per frame: 24 local rotations relative to our T-pose, the pelvis world position (metres),
and foot/hand contact labels, resampled to 30 fps. Bone lengths are our body's, not the source's.

How (all in world space, y-up):
1. The source's rest pose is turned to face +z with its left at +x (rotation Q, matching its pelvis
   up-vector and hip line to ours), whatever its rest pose is (ACCAD's is not a T-pose).
2. For each SMPL joint j with a mapped child, B_j is the smallest rotation taking our T-pose bone
   direction onto the source's (faced) rest bone direction, so in the source's rest pose our body
   takes the source's rest posture; joints without a mapped child inherit their parent's B.
   The pelvis and spine3 use two directions (up + hip line, up + collar line) to fix their twist.
3. A source joint's rotation relative to its rest, R_s, then gives our joint's world rotation
   G_j = R_s(map[j]) Q^T B_j: twist comes from the source's own joint rotation. Joints the source
   lacks (hands, the toes of toeless rigs: MAY_LACK) ride rigidly on their parent.
4. A swing correction turns each G_j so its primary bone points exactly along the source's current
   bone (source positions), which also absorbs twist bones and in-between joints of the source rig;
   not where another source joint bends that bone (`swung`: ReActIdle's spine starts at its pelvis).
5. Limb twist is made the same for every rig (canonical_twist): a rig whose bind pose has a limb
   turned about its own bone (the iClone CMU legs: thigh, shin and foot all half a turn) gives the
   right joint positions with wrong rotations (kneecaps backwards, soles up: a skinned avatar
   breaks, and a model learning from several rigs sees two answers for one picture).
6. Local rotations: L_j = G_parent(j)^T G_j. The pelvis trajectory is the source's scaled by the leg
   length ratio, and the clip is lifted so its soles rest on y = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from engine.body.body_model import Body
from engine.body.kinematics import forward_kinematics
from engine.body.rotations import (axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quat, quat_slerp,
                                   quat_to_matrix, rotation_between)
from engine.body.skeleton import CONTACT_JOINTS, NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS

TARGET_FPS = 30.0
J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}

# The child whose bone direction drives each joint's rotation (None: inherits the parent's).
PRIMARY_CHILD = {
    "pelvis": "spine1", "spine1": "spine2", "spine2": "spine3", "spine3": "neck", "neck": "head",
    "head": None, "left_hip": "left_knee", "right_hip": "right_knee", "left_knee": "left_ankle",
    "right_knee": "right_ankle", "left_ankle": "left_foot", "right_ankle": "right_foot",
    "left_foot": None, "right_foot": None, "left_collar": "left_shoulder",
    "right_collar": "right_shoulder", "left_shoulder": "left_elbow", "right_shoulder": "right_elbow",
    "left_elbow": "left_wrist", "right_elbow": "right_wrist", "left_wrist": "left_hand",
    "right_wrist": "right_hand", "left_hand": None, "right_hand": None,
}
# A second direction (from joint a to joint b, left minus right) fixing the twist of branching joints:
# the first pair whose source joints are apart (CMU rigs start both clavicles at one point).
SIDE_VECTOR = {"pelvis": (("right_hip", "left_hip"),),
               "spine3": (("right_collar", "left_collar"), ("right_shoulder", "left_shoulder"))}

# A source bone shorter than this has no direction: two SMPL joints share one source joint (short
# spines), or the rig starts a bone where its parent starts (CMU's LowerBack, Neck, clavicles).
MIN_BONE_M = 0.01

# A joint touches the ground when it is near its resting height above the floor and nearly still.
CONTACT_HEIGHT_M = 0.05
CONTACT_SPEED_M_S = 0.35
FLOOR_PERCENTILE = 5


@dataclass
class RetargetedClip:
    """One clip on our body at 30 fps.

    pose: (T, 24, 3) float32 axis-angle local rotations (joint 0 = global orientation).
    root: (T, 3) float32 pelvis world position, metres. contacts: (T, 6) bool for CONTACT_JOINTS.
    bone_error_deg: (T, B) angle between our bone and the source's, for every mapped bone.
    root_error_m: mean distance between our pelvis displacement and the source's, the source scaled
        to our size (ratio of ankle-to-head chain lengths), metres.
    """

    clip: str
    dataset: str
    subject: str
    cmu_id: str | None
    pose: np.ndarray
    root: np.ndarray
    contacts: np.ndarray
    bone_error_deg: np.ndarray
    root_error_m: float
    source_fps: float
    fps: float = TARGET_FPS
    notes: list = field(default_factory=list)

    @property
    def mean_bone_error_deg(self) -> float:
        return float(self.bone_error_deg.mean())


def _unit(v):
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def frame_from(primary, side):
    """(..., 3) x (..., 3) -> (..., 3, 3) orthonormal frame, columns (side', primary, side' x primary)
    with side' = side made perpendicular to primary."""
    y = _unit(primary)
    x = _unit(side - (side * y).sum(-1, keepdims=True) * y)
    return np.stack([x, y, np.cross(x, y)], axis=-1)


def resample(positions, rotations, src_fps, fps=TARGET_FPS):
    """Resample (T, J, 3) positions linearly and (T, J, 3, 3) rotations by slerp to `fps`."""
    n = positions.shape[0]
    t = np.arange(0, (n - 1) / src_fps + 1e-9, 1.0 / fps) * src_fps
    i0 = np.minimum(np.floor(t).astype(int), n - 1)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (t - i0).astype(np.float64)
    pos = positions[i0] * (1 - w)[:, None, None] + positions[i1] * w[:, None, None]
    q0 = matrix_to_quat(rotations[i0].astype(np.float64))
    q1 = matrix_to_quat(rotations[i1].astype(np.float64))
    rot = quat_to_matrix(quat_slerp(q0, q1, np.broadcast_to(w[:, None], q0.shape[:-1]).copy()))
    return pos, rot


def change_speed(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray, factor: float):
    """The clip played `factor` times as fast (slerp / linear resampling, TARGET_FPS kept):
    a clip sampled at TARGET_FPS / factor frames a second."""
    if abs(factor - 1.0) < 1e-3 or len(pose) < 2:
        return pose, root, contacts
    positions, rot = resample(root[:, None].astype(np.float64), axis_angle_to_matrix(pose.astype(np.float64)),
                              TARGET_FPS * factor, TARGET_FPS)
    index = np.minimum(np.round(np.arange(len(rot)) * factor).astype(int), len(contacts) - 1)
    return (matrix_to_axis_angle(rot).astype(np.float32), positions[:, 0].astype(np.float32), contacts[index])


def _leg_length(rest, hip, knee, ankle):
    return np.linalg.norm(rest[knee] - rest[hip]) + np.linalg.norm(rest[ankle] - rest[knee])


# Joints a source may lack (rigs without hands, or without a toe joint or toe End Site): they ride
# rigidly on their parent, whose rotation is the source's wrist or foot rotation.
MAY_LACK = ("left_foot", "right_foot", "left_hand", "right_hand")


def _smpl_index_of(src) -> dict:
    """SMPL joint name -> source joint index, for the mapped joints."""
    index = {n: i for i, n in enumerate(src.names)}
    missing = [s for s in SMPL_JOINT_NAMES if s not in src.smpl_map and s not in MAY_LACK]
    if missing:
        raise ValueError(f"{src.clip}: the source map lacks body joints {missing}")
    return {s: index[n] for s, n in src.smpl_map.items()}


def aim_children(src_rest, m) -> dict[int, int]:
    """SMPL joint index -> the SMPL joint its rotation aims at: its primary child, or, where the
    source bone to that child is shorter than MIN_BONE_M, the first primary descendant that is
    not. Joints with nothing to aim at are absent. src_rest: (Js, 3); m: SMPL name -> source index."""
    aims = {}
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name not in m:
            continue
        child = PRIMARY_CHILD[name]
        while child in m and np.linalg.norm(src_rest[m[child]] - src_rest[m[name]]) < MIN_BONE_M:
            child = PRIMARY_CHILD[child]
        if child in m:
            aims[j] = J[child]
    return aims


def swung(m, aims) -> set[int]:
    """The SMPL joints (indices) that `world_rotations` swings onto their aim bone: those whose aim
    bone turns with them alone. A joint whose aim was reached past a zero-length bone starting at
    another source joint (ReActIdle's spine, which starts at the pelvis and bends the lower back)
    keeps its own rotation: swung onto that bone, the pelvis would tilt with every bend of the
    back. Skipping past SMPL joints that share its own source joint (short spines) is fine."""
    out = set()
    for j, aim in aims.items():
        name, child = SMPL_JOINT_NAMES[j], PRIMARY_CHILD[SMPL_JOINT_NAMES[j]]
        while J[child] != aim and m[child] == m[name]:
            child = PRIMARY_CHILD[child]
        if J[child] == aim:
            out.add(j)
    return out


def rest_alignment(src_rest, m, body_rest, aims):
    """Q (3, 3) turning the source rest pose to face like ours (+z, left at +x), and B (24, 3, 3)
    per-joint alignments.

    src_rest: (Js, 3) source rest positions; m: SMPL name -> source index; body_rest: (24, 3);
    aims: `aim_children(src_rest, m)`.
    """
    # Up: towards the joint the pelvis aims at, spine1 unless the source's spine1 starts at the
    # pelvis (ReActIdle), where spine1 - pelvis has no direction and Q came out NaN.
    up = SMPL_JOINT_NAMES[aims.get(J["pelvis"], J["spine1"])]

    def pelvis_frame(rest, index):
        return frame_from(rest[index[up]] - rest[index["pelvis"]],
                          rest[index["left_hip"]] - rest[index["right_hip"]])

    # Measured the same way on both skeletons, so our own body as a source gets Q = I exactly.
    q = pelvis_frame(body_rest, J) @ pelvis_frame(src_rest, m).T
    faced = src_rest @ q.T
    b = np.zeros((NUM_JOINTS, 3, 3))
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if j not in aims:
            b[j] = b[SMPL_PARENTS[j]] if j else np.eye(3)
            continue
        aim = aims[j]
        d_src = faced[m[SMPL_JOINT_NAMES[aim]]] - faced[m[name]]
        d_ours = body_rest[aim] - body_rest[j]
        if name in SIDE_VECTOR:
            r, l = next((r, l) for r, l in SIDE_VECTOR[name]
                        if np.linalg.norm(faced[m[l]] - faced[m[r]]) >= MIN_BONE_M)
            b[j] = frame_from(d_src, faced[m[l]] - faced[m[r]]) @ \
                frame_from(d_ours, body_rest[J[l]] - body_rest[J[r]]).T
        else:
            b[j] = rotation_between(d_ours, d_src)
    return q, b


def world_rotations(src_rot, src_pos, m, q, b, body_rest, aims):
    """(T, 24, 3, 3) world rotations of our joints, swing-corrected onto the source bones
    (each joint onto the bone to its aim joint, `aim_children`, where `swung`)."""
    T = src_rot.shape[0]
    g = np.zeros((T, NUM_JOINTS, 3, 3))
    swing = swung(m, aims)
    for j, name in enumerate(SMPL_JOINT_NAMES):
        if name not in m:  # unmapped hand or toe (MAY_LACK): rides rigidly on its parent
            g[:, j] = g[:, SMPL_PARENTS[j]]
            continue
        g[:, j] = src_rot[:, m[name]] @ (q.T @ b[j])
        if j in swing:
            aim = aims[j]
            predicted = g[:, j] @ (body_rest[aim] - body_rest[j])
            actual = src_pos[:, m[SMPL_JOINT_NAMES[aim]]] - src_pos[:, m[name]]
            g[:, j] = rotation_between(predicted, actual) @ g[:, j]
    return g


# Limb twist references (canonical_twist): for a joint, what its frame should see, as (kind, joint
# pair or None, where that reference points in the joint's rest frame; None: where it points in our
# T-pose). "bone": the bone between the pair's two joints, e.g. the knee bends the shin backwards in
# the thigh's frame; "up": the world's up.
TWIST_REFERENCES = {
    **{f"{s}_hip": ("bone", (f"{s}_knee", f"{s}_ankle"), (0.0, 0.0, -1.0)) for s in ("left", "right")},
    **{f"{s}_knee": ("bone", (f"{s}_ankle", f"{s}_foot"), None) for s in ("left", "right")},
    **{f"{s}_ankle": ("up", None, (0.0, 1.0, 0.0)) for s in ("left", "right")},
    **{f"{s}_shoulder": ("bone", (f"{s}_elbow", f"{s}_wrist"), (0.0, 0.0, 1.0)) for s in ("left", "right")},
}
TWIST_MIN_REFERENCE = 0.25   # the reference's share perpendicular to the bone for a frame to count
TWIST_MIN_AGREEMENT = 0.8    # how consistent (mean resultant length) the frames must be
TWIST_MIN_FRAMES = 15       # frames that must count (half a second) for a clip to be judged
TWIST_MIN_DEG = 10.0         # smaller offsets are left alone (natural variation)


def canonical_twist(g, body_rest, aims):
    """(T, 24, 3, 3) world rotations -> the same with each TWIST_REFERENCES joint turned about its
    own bone (the one to its aim joint) by one angle for the whole clip, the circular mean over
    frames of the angle that brings its reference onto the canonical direction. Every joint
    position is unchanged (a turn about the bone leaves its child where it is). Left alone when
    the frames disagree (not a rig offset: a hinge always bends the same way) or the offset is
    small. Frames count where the reference is clearly off the bone's line (a bent knee)."""
    g = g.copy()
    for name, (kind, pair, canonical) in TWIST_REFERENCES.items():
        j = J[name]
        if j not in aims:
            continue
        axis = _unit(body_rest[aims[j]] - body_rest[j])
        if kind == "up":
            ref = np.swapaxes(g[:, j], -1, -2) @ np.array([0.0, 1.0, 0.0])
        else:
            a, b = J[pair[0]], J[pair[1]]
            ref = np.einsum("tji,tjk,k->ti", g[:, j], g[:, a], body_rest[b] - body_rest[a])
        ref = _unit(ref)
        perp = ref - (ref @ axis)[:, None] * axis
        weight = np.linalg.norm(perp, axis=-1)
        want = body_rest[b] - body_rest[a] if canonical is None else np.asarray(canonical, np.float64)
        want = _unit(want - (want @ axis) * axis)
        angle = np.arctan2(np.cross(want, perp) @ axis, perp @ want)
        counted = weight >= TWIST_MIN_REFERENCE
        if counted.sum() < TWIST_MIN_FRAMES:
            continue
        mean = np.sum(np.exp(1j * angle[counted]))
        if abs(mean) / counted.sum() < TWIST_MIN_AGREEMENT or abs(np.degrees(np.angle(mean))) < TWIST_MIN_DEG:
            continue
        g[:, j] = g[:, j] @ axis_angle_to_matrix(axis * np.angle(mean))
    return g


def local_rotations(g):
    """(T, 24, 3, 3) world -> local rotations (joint 0 keeps its world rotation)."""
    local = g.copy()
    parents = np.array(SMPL_PARENTS[1:])
    local[:, 1:] = np.swapaxes(g[:, parents], -1, -2) @ g[:, 1:]
    return local


def mapped_bones(m, src_rest) -> list[tuple[int, int]]:
    """(parent, child) SMPL index pairs whose two ends are both mapped in the source, to source
    joints at least MIN_BONE_M apart (a shorter source bone has no direction to compare)."""
    names = SMPL_JOINT_NAMES
    return [(SMPL_PARENTS[j], j) for j in range(1, NUM_JOINTS)
            if names[j] in m and names[SMPL_PARENTS[j]] in m
            and np.linalg.norm(src_rest[m[names[j]]] - src_rest[m[names[SMPL_PARENTS[j]]]]) >= MIN_BONE_M]


def bone_direction_error_deg(ours, src_pos, m, src_rest):
    """(T, B) angle in degrees between our bones (T, 24, 3) and the source's mapped bones."""
    pairs = mapped_bones(m, src_rest)
    p, c = np.array(pairs).T
    names = SMPL_JOINT_NAMES
    sp = np.array([m[names[i]] for i in p])
    sc = np.array([m[names[i]] for i in c])
    a = _unit(ours[:, c] - ours[:, p])
    b = _unit(src_pos[:, sc] - src_pos[:, sp])
    return np.degrees(np.arccos(np.clip((a * b).sum(-1), -1.0, 1.0)))


def contact_labels(joints, rest_joints, fps=TARGET_FPS):
    """(T, 24, 3) posed joints (floor at y = 0) -> (T, 6) bool contacts for CONTACT_JOINTS.

    A joint is in contact when it is within CONTACT_HEIGHT_M of its rest height above the floor
    (ankles and toes rest above y = 0) and moves slower than CONTACT_SPEED_M_S.
    """
    idx = [J[n] for n in CONTACT_JOINTS]
    rest_height = rest_joints[idx, 1].copy()
    rest_height[4:] = 0.0  # a hand on the floor: wrist near the ground, not at its T-pose height
    height = joints[:, idx, 1] - rest_height
    pos = joints[:, idx]
    vel = np.zeros(pos.shape[:2])
    if len(pos) > 1:
        step = np.linalg.norm(np.diff(pos, axis=0), axis=-1) * fps
        vel[1:] = step
        vel[0] = step[0]
    return (height < CONTACT_HEIGHT_M) & (vel < CONTACT_SPEED_M_S)


def sole_height(joints, rest_joints):
    """(T,) lowest of ankle and toe heights above their rest heights: where the soles are."""
    idx = [J["left_ankle"], J["right_ankle"], J["left_foot"], J["right_foot"]]
    return (joints[:, idx, 1] - rest_joints[idx, 1]).min(-1)


def retarget(src, body: Body, fps: float = TARGET_FPS) -> RetargetedClip:
    """Retarget one SourceMotion onto `body` at `fps` (see the module docstring)."""
    m = _smpl_index_of(src)
    body_rest = body.rest_joints.numpy().astype(np.float64)
    src_rest = np.asarray(src.rest_positions, np.float64)
    pos, rot = resample(np.asarray(src.positions, np.float64), np.asarray(src.rotations, np.float64),
                        src.fps, fps)
    aims = aim_children(src_rest, m)
    q, b = rest_alignment(src_rest, m, body_rest, aims)
    local = local_rotations(canonical_twist(world_rotations(rot, pos, m, q, b, body_rest, aims), body_rest, aims))

    legs = [(m["left_hip"], m["left_knee"], m["left_ankle"]), (m["right_hip"], m["right_knee"], m["right_ankle"])]
    our_legs = [(J["left_hip"], J["left_knee"], J["left_ankle"]), (J["right_hip"], J["right_knee"], J["right_ankle"])]
    leg_scale = sum(_leg_length(body_rest, *l) for l in our_legs) / sum(_leg_length(src_rest, *l) for l in legs)
    root = pos[:, m["pelvis"]] * leg_scale

    joints, _ = forward_kinematics(torch.from_numpy(local), torch.from_numpy(body_rest), SMPL_PARENTS,
                                   torch.from_numpy(root))
    joints = joints.numpy()
    lift = -np.percentile(sole_height(joints, body_rest), FLOOR_PERCENTILE)
    root[:, 1] += lift
    joints[..., 1] += lift

    stature_scale = height_chain_length(body_rest, J) / height_chain_length(src_rest, m)
    src_disp = (pos[:, m["pelvis"]] - pos[0, m["pelvis"]]) * stature_scale
    root_error = float(np.linalg.norm((root - root[0]) - src_disp, axis=-1).mean())
    return RetargetedClip(
        clip=src.clip, dataset=src.dataset, subject=src.subject, cmu_id=src.cmu_id,
        pose=matrix_to_axis_angle(local).astype(np.float32), root=root.astype(np.float32),
        contacts=contact_labels(joints, body_rest, fps),
        bone_error_deg=bone_direction_error_deg(joints, pos, m, src_rest).astype(np.float32),
        root_error_m=root_error, source_fps=float(src.fps), fps=fps,
    )


# The chain from the ankles up to the head: its length measures a body's size whatever its posture.
_HEIGHT_CHAIN = (("left_ankle", "left_knee"), ("left_knee", "left_hip"), ("right_ankle", "right_knee"),
                 ("right_knee", "right_hip"), ("pelvis", "spine1"), ("spine1", "spine2"),
                 ("spine2", "spine3"), ("spine3", "neck"), ("neck", "head"))


def height_chain_length(rest, index) -> float:
    """Ankle-to-head chain length (legs averaged) of a rest skeleton (Js, 3) with SMPL name -> index."""
    lengths = {pair: np.linalg.norm(rest[index[pair[1]]] - rest[index[pair[0]]]) for pair in _HEIGHT_CHAIN}
    legs = sum(v for k, v in lengths.items() if "ankle" in k[0] or "knee" in k[0]) / 2
    return float(legs + sum(v for k, v in lengths.items() if "ankle" not in k[0] and "knee" not in k[0]))
