"""The `mediapipe-ik` baseline: what webcam avatar tools do today, built as well as they do it.

    ik = MediapipeIK(body)
    joints_world, joints_cam = ik.step(world, keypoints, visibility, width, height, t)   # one frame

MediaPipe's own 3D answer (its world landmarks, metres, hip-centred) is turned into our 24-joint
body by analytic inverse kinematics, the way XR Animator, Kalidokit-based apps and the MediaPipe
VR trackers drive an avatar:
1. One-Euro filter (engine.live.filters) on the 33 world landmarks with MediaPipe's published settings
   for them (min cutoff 0.1 Hz, beta 40, derivative cutoff 1 Hz; PEERS_AND_PROTOCOLS.md §5). In
   video mode MediaPipe has already filtered them once with these settings; the second pass is
   what a tool adds on top, and it also smooths the frames MediaPipe found by re-detection.
2. IK (`solve_ik`): each joint's world rotation from bone directions, swing and twist. The swing
   aims the joint's bone at its landmark; the twist comes from a second direction where the
   landmarks give one (the bend of the knee and elbow, the foot's pointing, the hand's
   index-pinky line, the ear line and nose), else it is carried from the parent without twist.
   The spine's turn between hips and shoulders is spread over its three joints, the head's over
   neck and head. Collars, hands and toes follow their parents (MediaPipe has nothing for them).
3. Root (`solve_translation`): the camera-frame translation that best reprojects the body's
   twelve limb landmarks (shoulders to ankles, placed on our posed body by the landmark rig) onto
   MediaPipe's 2D ones (linear least squares, visibility-weighted) through the
   camera the engine is told about (60° field of view): the person's size is our body's, 1.70 m.
   One-Euro filtered with FreeMoCap's realtime 3D settings (ROOT_FILTER).
4. World: the camera is assumed level (tools cannot know its tilt), y up; the floor is where the
   soles were lately ("auto grounding": the 10th percentile of the lowest sole's height over the
   last 2 s, so one wild frame does not move it and a jump stays a jump).
A frame without a detection holds the last pose (a T-pose 3 m in front of the camera before the
first one).

All positions: metres. Frames: `yup` is MediaPipe's world frame made y-up (streamer.pose:
x to the image's right, y up, z towards the camera), where a person facing the camera faces +z
like our rest pose; `camera` is OpenCV's (x right, y down, z forward).
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np
import torch

from engine.body.body_model import Body
from engine.body.kinematics import forward_kinematics
from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.data.observations import landmarks_3d
from engine.data.retarget import J, local_rotations, sole_height
from engine.live.filters import one_euro_step
from engine.model.conditions import assumed_focal
from streamer.landmarks import BODY_LANDMARKS, L

MEDIAPIPE_WORLD_FILTER = dict(min_cutoff=0.1, beta=40.0, d_cutoff=1.0)
# The root's depth from a fit to 2D jitters far more than a landmark: FreeMoCap's realtime 3D
# settings (1 Hz, 0.01 / mm), in metres.
ROOT_FILTER = dict(min_cutoff=1.0, beta=10.0, d_cutoff=1.0)
YUP_TO_CAMERA = np.array([1.0, -1.0, -1.0])   # yup <-> camera: flip y and z (its own inverse)
START_DEPTH_M = 3.0
# A joint's bend (sine of the angle between its two bones) sets its twist from BEND_START (the
# landmarks of a straight T-pose limb already bend up to 0.15) fully at BEND_FULL.
BEND_START, BEND_FULL = 0.2, 0.45


# ----------------------------------------------------------------------------------------------
# Inverse kinematics
# ----------------------------------------------------------------------------------------------

# Small 3-vector math in plain numpy: one frame has a few dozen of these, and numpy's general
# versions (np.cross, the torch-backed engine.body.rotations) cost more in overhead than in arithmetic.

def _unit(v):
    return v / max(float(np.sqrt(v @ v)), 1e-9)


def _cross(a, b):
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


def _perp(v, axis):
    """v's part perpendicular to the unit `axis`."""
    return v - (v @ axis) * axis


def _frame(primary, side):
    """(3, 3) orthonormal frame, columns (side made perpendicular to primary, primary, their cross),
    like engine.data.retarget.frame_from."""
    y = _unit(primary)
    x = _unit(_perp(side, y))
    return np.stack([x, y, _cross(x, y)], axis=-1)


def _between(a, b):
    """(3, 3) the smallest rotation turning direction a onto direction b (Rodrigues)."""
    a, b = _unit(a), _unit(b)
    v, c = _cross(a, b), float(a @ b)
    if c < -1 + 1e-9:  # opposite: half a turn about any perpendicular
        axis = _unit(_perp(np.eye(3)[int(np.argmin(np.abs(a)))], a))
        return 2 * np.outer(axis, axis) - np.eye(3)
    k = np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])
    return np.eye(3) + k + k @ k / (1 + c)


def aligned(rest_primary, rest_hint, primary, hint) -> np.ndarray:
    """(3, 3) rotation taking the rest direction onto `primary` and the rest hint's side of it onto
    the hint's side."""
    return _frame(primary, hint) @ _frame(rest_primary, rest_hint).T


def limb_rotation(parent: np.ndarray, rest_dir, rest_hint, target_dir, target_hint, weight: float) -> np.ndarray:
    """A limb joint's (3, 3) world rotation: its rest bone `rest_dir` aimed at `target_dir`, twisted
    so the rest hint turns towards `target_hint` with `weight` in [0, 1]; at weight 0 the twist is
    the parent's (`parent` (3, 3) world rotation) carried by the smallest swing."""
    target_dir = _unit(target_dir)
    swung = _between(parent @ rest_dir, target_dir) @ parent
    carried = _unit(_perp(swung @ rest_hint, target_dir))
    hint = weight * _unit(_perp(target_hint, target_dir)) + (1 - weight) * carried
    if hint @ hint < 1e-12:  # opposite hints half-weighted: keep the carried twist
        hint = carried
    return aligned(rest_dir, rest_hint, target_dir, hint)


def _bend(bone, next_bone) -> float:
    """How bent a joint is, as the weight of its bend in setting the twist: 0 straight .. 1."""
    s = np.linalg.norm(_perp(_unit(next_bone), _unit(bone)))
    return float(np.clip((s - BEND_START) / (BEND_FULL - BEND_START), 0.0, 1.0))


def _fraction(R: np.ndarray, f: float) -> np.ndarray:
    """R^f: the same axis, f of the angle (Rodrigues both ways; R's angle below a half turn)."""
    cos = np.clip((np.trace(R) - 1) / 2, -1.0, 1.0)
    angle = math.acos(cos)
    if angle < 1e-9:
        return np.eye(3)
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]])
    if np.linalg.norm(axis) < 1e-9:  # a half turn: the axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(R) + 1) / 2, 0.0))
    axis = _unit(axis)
    k = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return np.eye(3) + math.sin(f * angle) * k + (1 - math.cos(f * angle)) * k @ k


def rest_landmarks(body: Body) -> np.ndarray:
    """(33, 3) where MediaPipe puts its world landmarks on our body in its T-pose, hips centred
    (engine.data.observations' landmark rig, fitted to real MediaPipe on rendered frames): the
    calibration a tool gets from a user standing in a T-pose. IK measures every rest direction
    here, so a T-pose comes back as exactly our rest pose."""
    rest = body.rest_joints.double().numpy()[None]
    marks = landmarks_3d(rest, np.tile(np.eye(3), (1, rest.shape[1], 1, 1)), body.stature)[0]
    return marks - (marks[L["left_hip"]] + marks[L["right_hip"]]) / 2


def solve_ik(world: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(33, 3) MediaPipe world landmarks (yup frame) and (33, 3) the same in our T-pose
    (rest_landmarks) -> (24, 3, 3) world rotations of our joints (yup frame) that pose our body
    like the landmarks."""
    G = np.zeros((len(SMPL_JOINT_NAMES), 3, 3))
    P = {n: world[i] for n, i in L.items()}
    R = {n: rest[i] for n, i in L.items()}

    def mid(points, a, b):
        return (points[a] + points[b]) / 2

    def both(fn):
        """fn(points) on the target landmarks and on the rest ones."""
        return fn(R), fn(P)

    trunk = both(lambda p: mid(p, "left_shoulder", "right_shoulder") - mid(p, "left_hip", "right_hip"))
    hips = both(lambda p: p["left_hip"] - p["right_hip"])
    shoulders = both(lambda p: p["left_shoulder"] - p["right_shoulder"])
    G[0] = aligned(trunk[0], hips[0], trunk[1], hips[1])
    torso = aligned(trunk[0], shoulders[0], trunk[1], shoulders[1])
    spine_step = _fraction(G[0].T @ torso, 1 / 3)
    for j in ("spine1", "spine2", "spine3"):
        G[J[j]] = G[SMPL_PARENTS[J[j]]] @ spine_step
    ears = both(lambda p: p["left_ear"] - p["right_ear"])
    nose = both(lambda p: p["nose"] - mid(p, "left_ear", "right_ear"))
    neck_step = _fraction(G[J["spine3"]].T @ aligned(ears[0], nose[0], ears[1], nose[1]), 1 / 2)
    G[J["neck"]] = G[J["spine3"]] @ neck_step
    G[J["head"]] = G[J["neck"]] @ neck_step

    for s in ("left", "right"):
        def bone(a, b):
            return both(lambda p: p[f"{s}_{b}"] - p[f"{s}_{a}"])

        def limb(joint, parent, direction, hint, weight):
            G[J[f"{s}_{joint}"]] = limb_rotation(G[parent], direction[0], hint[0], direction[1], hint[1], weight)

        # Arm: the elbow bends forward in the upper arm's frame (engine.data.retarget's canonical twist),
        # the hand's index-pinky line (its thumb side) points forward in the palms-down T-pose.
        G[J[f"{s}_collar"]] = G[J["spine3"]]
        upper, fore = bone("shoulder", "elbow"), bone("elbow", "wrist")
        forward = (np.array([0.0, 0.0, 1.0]), fore[1])
        limb("shoulder", J[f"{s}_collar"], upper, forward, _bend(upper[1], fore[1]))
        across = bone("pinky", "index")
        limb("elbow", J[f"{s}_shoulder"], fore, across, 0.5)
        hand = both(lambda p: (p[f"{s}_index"] + p[f"{s}_pinky"]) / 2 - p[f"{s}_wrist"])
        limb("wrist", J[f"{s}_elbow"], hand, across, 0.5)
        G[J[f"{s}_hand"]] = G[J[f"{s}_wrist"]]
        # Leg: the knee bends the shin backwards; a straight leg takes its twist from the foot.
        thigh, shin, foot = bone("hip", "knee"), bone("knee", "ankle"), bone("heel", "foot_index")
        w = _bend(thigh[1], shin[1])
        axis = _unit(thigh[1])
        back = w * _unit(_perp(shin[1], axis)) + (1 - w) * _unit(_perp(-foot[1], axis))
        limb("hip", 0, thigh, (np.array([0.0, 0.0, -1.0]), back), 1.0)
        limb("knee", J[f"{s}_hip"], shin, foot, 1.0)
        toe = bone("ankle", "foot_index")
        limb("ankle", J[f"{s}_knee"], toe, (-shin[0], -shin[1]), 1.0)
        G[J[f"{s}_foot"]] = G[J[f"{s}_ankle"]]
    return G


def solve_translation(rel_cam: np.ndarray, keypoints: np.ndarray, weights: np.ndarray, focal: float,
                      centre: tuple[float, float]) -> np.ndarray | None:
    """The camera-frame translation t (3,) metres whose points rel_cam (N, 3) + t best project onto
    keypoints (N, 2) pixels with weights (N,), through a pinhole of `focal` pixels and principal
    point `centre`: linear least squares on f (X + t_x) = (u - c_x)(Z + t_z) and the same in y.
    None with fewer than two weighted points."""
    keep = (weights > 0) & np.isfinite(keypoints).all(-1)
    if keep.sum() < 2:
        return None
    X, uv, w = rel_cam[keep], keypoints[keep] - np.asarray(centre), np.sqrt(weights[keep])
    rows, rhs = [], []
    for axis in (0, 1):
        a = np.zeros((len(X), 3))
        a[:, axis] = focal
        a[:, 2] = -uv[:, axis]
        rows.append(a * w[:, None])
        rhs.append((uv[:, axis] * X[:, 2] - focal * X[:, axis]) * w)
    t, *_ = np.linalg.lstsq(np.concatenate(rows), np.concatenate(rhs), rcond=None)
    return t


FLOOR_FRAMES, FLOOR_PERCENTILE = 60, 10


class MediapipeIK:
    """The baseline over one stream: filter state, last pose and floor."""

    def __init__(self, body: Body, filter_settings: dict | None = MEDIAPIPE_WORLD_FILTER,
                 root_filter: dict | None = ROOT_FILTER):
        self.rest = body.rest_joints.double().numpy()
        self.rest_marks = rest_landmarks(body)
        self.stature = body.stature
        self.parents = body.parents
        self.filter, self.root_filter = filter_settings, root_filter
        self._world_state = self._root_state = None
        self._translation = np.array([0.0, 0.0, START_DEPTH_M])
        self._soles: deque[float] = deque(maxlen=FLOOR_FRAMES)
        self._last = None

    def _fk(self, G: np.ndarray) -> np.ndarray:
        """(24, 3, 3) world rotations -> (24, 3) joints, pelvis at the origin."""
        joints, _ = forward_kinematics(torch.from_numpy(local_rotations(G[None])[0]), torch.from_numpy(self.rest),
                                       self.parents, torch.zeros(3, dtype=torch.float64))
        return joints.numpy()

    @staticmethod
    def _filtered(x: np.ndarray, t: float, state, settings: dict | None):
        return (x, None) if settings is None else one_euro_step(x, t, state, **settings)

    def _sole(self, yup: np.ndarray) -> float:
        """Height of the lowest sole (engine.data.retarget.sole_height) of one frame's (24, 3) joints."""
        return float(sole_height(yup[None], self.rest)[0])

    def step(self, world, keypoints, visibility, width: int, height: int, t: float):
        """One frame: MediaPipe's world landmarks (33, 3) yup (None: no detection), keypoints
        (33, 2) pixels, visibility (33,); t seconds. -> (joints_world (24, 3) y-up with the floor
        at 0, joints_cam (24, 3) OpenCV camera frame), metres."""
        if world is None or not np.isfinite(world).all():
            if self._last is None:  # nothing seen yet: a T-pose standing in front of the camera
                cam = self._fk(np.tile(np.eye(3), (len(self.rest), 1, 1))) * YUP_TO_CAMERA + self._translation
                yup = cam * YUP_TO_CAMERA
                return yup - [0.0, self._sole(yup), 0.0], cam
            return self._last
        world, self._world_state = self._filtered(np.asarray(world, np.float64), t, self._world_state,
                                                   self.filter)
        G = solve_ik(world, self.rest_marks)
        rel = self._fk(G)
        rel_cam = rel * YUP_TO_CAMERA
        marks = list(BODY_LANDMARKS)
        on_body = landmarks_3d(rel[None], G[None], self.stature)[0, marks] * YUP_TO_CAMERA
        vis = np.nan_to_num(np.asarray(visibility, np.float64)[marks])
        found = solve_translation(on_body, np.asarray(keypoints, np.float64)[marks], vis * (vis >= 0.5),
                                  assumed_focal(width), (width / 2, height / 2))
        if found is not None and found[2] > 0.3:  # in front of the camera; else keep the last
            self._translation, self._root_state = self._filtered(found, t, self._root_state, self.root_filter)
        cam = rel_cam + self._translation
        yup = cam * YUP_TO_CAMERA
        self._soles.append(self._sole(yup))
        self._last = (yup - [0.0, float(np.percentile(self._soles, FLOOR_PERCENTILE)), 0.0], cam)
        return self._last


def predictor(body: Body, filter_settings: dict | None = MEDIAPIPE_WORLD_FILTER, root_filter: dict | None = ROOT_FILTER,
              fps: float = 30.0):
    """The baseline as an engine.evaluate.protocol Predictor: one MediapipeIK over each test sequence. Needs
    MediaPipe's world landmarks, which only real detector output has (`--obs rendered`)."""
    from engine.evaluate.protocol import Prediction

    def predict(item) -> Prediction:
        obs = item.obs
        if obs.world is None:
            raise ValueError("mediapipe-ik reads MediaPipe's own 3D landmarks, which synthetic observations "
                             "do not have: evaluate it with --obs rendered")
        ik = MediapipeIK(body, filter_settings, root_filter)
        out = [ik.step(obs.world[i] if obs.detected[i] else None, obs.keypoints[i], obs.visibility[i],
                       obs.camera.width, obs.camera.height, i / fps) for i in range(obs.num_frames)]
        return Prediction(joints_cam=np.stack([c for _, c in out]), joints_world=np.stack([w for w, _ in out]))

    return predict
