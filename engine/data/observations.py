"""Synthetic webcam observations: what a static webcam + MediaPipe Pose would report for a clip.

Used by training and by the evaluation protocol. Seeded and reproducible: the same clip, seed and
noise model give the same observation, bit for bit.

1. A virtual static camera (`sample_camera`): horizontal fov 45-75°, height 0.8-2 m, 1.5-6 m from
   the person, mostly in front of them, small pitch and roll, 640x480 or 1280x720.
2. The 33 MediaPipe Pose landmarks placed on our body (`LANDMARK_RIG`: an SMPL joint + an offset
   in that joint's rest frame; face points ride on the head, hand points on the wrist, heel and
   foot-index on ankle and toe), projected through the camera.
3. Detector behaviour measured on real MediaPipe output (`NoiseModel`, from
   assets/mediapipe_stats.json, made by tools/measure_mediapipe.py on ../shared/data/video):
   per-landmark jitter and outliers, visibility levels and how slowly visibility changes,
   left/right swaps. On top of that, the events that make real webcam input hard: limb and
   whole-body occlusion spans, self-occlusion behind the torso, and truncation at the image border.

Conventions: pixels from the image's top-left corner (u right, v down); visibility in [0, 1]; a
landmark is *missing* when its visibility is below 0.5, it lies outside the image, or the frame
has no detection (then keypoints are NaN and visibility 0).
"""
from __future__ import annotations

import json
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.camera import Camera, intrinsics, look_at
from engine.paths import ASSET_DIR
from streamer.landmarks import BODY_LANDMARKS, MIRROR, NUM_LANDMARKS, L, present_landmarks

MEDIAPIPE_STATS_PATH = ASSET_DIR / "mediapipe_stats.json"        # real video (tools/measure_mediapipe.py)
MEDIAPIPE_RENDERED_PATH = ASSET_DIR / "mediapipe_rendered.json"  # rendered frames (data compare-obs)

FPS = 30.0     # the dataset's frame rate, which synthetic observations share

# Where each landmark sits on our body: (SMPL joint, offset in metres in that joint's rest frame,
# i.e. in the T-pose: x = the body's left, y up, z forward) for a 1.70 m body; scaled with
# stature. Left side given, right side mirrored.
# Fitted to where the real MediaPipe puts its landmarks on our body: `genmo-live data compare-obs`
# on the rendered test set (29,682 frames, 279 scenes) moves each landmark, by robust least squares
# on the reprojection, to MediaPipe's; two rounds of that fit (mirror-averaged) gave this table,
# and the measurement made with it (assets/mediapipe_rendered.json) moves no landmark by more
# than 7 mm. The starting point was anatomy (face
# points on the head mesh, hand points at MediaPipe's distances from the wrist, heel and toe on the
# foot). What the fit learned: MediaPipe's face points sit inside the head outline (ears 4 cm from
# the midline, not 8), its shoulders 1.3 cm below and 1.4 cm in front of the SMPL shoulder joints,
# its hips 2 cm below the SMPL hip joints, its ankles 2 cm lower. tests/data/test_observations.py checks
# the table against the asset.
_RIG_LEFT = {
    "nose": ("head", (0.0000, 0.0016, 0.0883)),
    "left_eye_inner": ("head", (0.0111, 0.0272, 0.0717)),
    "left_eye": ("head", (0.0190, 0.0269, 0.0693)),
    "left_eye_outer": ("head", (0.0274, 0.0263, 0.0668)),
    "left_ear": ("head", (0.0390, 0.0098, 0.0451)),
    "mouth_left": ("head", (0.0141, -0.0288, 0.0833)),
    "left_shoulder": ("left_shoulder", (0.0106, -0.0132, 0.0138)),
    "left_elbow": ("left_elbow", (0.0092, 0.0010, 0.0162)),
    "left_wrist": ("left_wrist", (0.0103, -0.0040, 0.0031)),
    "left_pinky": ("left_wrist", (0.0804, -0.0099, -0.0093)),
    "left_index": ("left_wrist", (0.0821, -0.0182, 0.0088)),
    "left_thumb": ("left_wrist", (0.0577, -0.0210, 0.0156)),
    "left_hip": ("left_hip", (0.0015, -0.0205, -0.0015)),
    "left_knee": ("left_knee", (-0.0010, 0.0043, -0.0074)),
    "left_ankle": ("left_ankle", (0.0074, -0.0201, -0.0150)),
    "left_heel": ("left_ankle", (0.0088, -0.0264, -0.0145)),
    "left_foot_index": ("left_foot", (0.0036, -0.0081, 0.0141)),
}


def _rig() -> tuple[np.ndarray, np.ndarray]:
    joint, offset = np.zeros(NUM_LANDMARKS, np.int64), np.zeros((NUM_LANDMARKS, 3))
    for name, (smpl, off) in _RIG_LEFT.items():
        for side, sign in (("left", 1.0), ("right", -1.0)):
            n = name.replace("left", side)
            if n not in L or (side == "right" and n == name):
                continue
            joint[L[n]] = SMPL_JOINT_NAMES.index(smpl.replace("left", side))
            offset[L[n]] = np.array(off) * (sign, 1.0, 1.0)
    return joint, offset


LANDMARK_JOINT, LANDMARK_OFFSET = _rig()
RIG_STATURE = 1.70


def landmarks_3d(joints: np.ndarray, world_rot: np.ndarray, stature: float = RIG_STATURE) -> np.ndarray:
    """(T, 24, 3) posed joints and (T, 24, 3, 3) their world rotations -> (T, 33, 3) MediaPipe
    landmark positions, metres, world frame."""
    offsets = LANDMARK_OFFSET * (stature / RIG_STATURE)
    rot = world_rot[:, LANDMARK_JOINT]
    return joints[:, LANDMARK_JOINT] + np.einsum("tlij,lj->tli", rot, offsets)


# ---------------------------------------------------------------------------------------------
# Camera
# ---------------------------------------------------------------------------------------------

IMAGE_SIZES = ((640, 480), (1280, 720))
MIN_DEPTH_M = 1.0


def facing_yaw(world_rot: np.ndarray) -> float:
    """Mean heading (radians about +y, 0 = facing +z) of a clip from its pelvis rotations (T, 3, 3)."""
    forward = world_rot[:, :, 2].mean(0)  # pelvis +z axis in the world
    return float(np.arctan2(forward[0], forward[2]))


def sample_camera(rng: np.random.Generator, root: np.ndarray, yaw: float) -> Camera:
    """A static webcam for a clip whose pelvis path is `root` (T, 3) and mean heading `yaw`.

    In front of the person 80 % of the time (azimuth within ~30° of their heading), anywhere
    around them otherwise; pitch is what aims it at 1 m above the floor, kept within ±15°,
    plus a little noise; roll ~ N(0, 2°); moved back when the pelvis path would come nearer
    than MIN_DEPTH_M."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    K = intrinsics(width, height, rng.uniform(45.0, 75.0))
    distance, cam_height = rng.uniform(1.5, 6.0), rng.uniform(0.8, 2.0)
    azimuth = yaw + (rng.normal(0.0, np.radians(30)) if rng.random() < 0.8 else rng.uniform(-np.pi, np.pi))
    centre = root.mean(0)
    position = np.array([centre[0] + distance * np.sin(azimuth), cam_height,
                         centre[2] + distance * np.cos(azimuth)])
    pitch = np.clip(np.arctan2(1.0 - cam_height, distance), -np.radians(15), np.radians(15))
    pitch += rng.normal(0.0, np.radians(3))
    target = np.array([centre[0], cam_height + distance * np.tan(pitch), centre[2]])
    R, t = look_at(position, target, roll_deg=float(np.clip(rng.normal(0.0, 2.0), -6, 6)))
    return Camera(K=K, R=R, t=in_front(root, R, t, MIN_DEPTH_M), width=width, height=height)


def in_front(root: np.ndarray, R: np.ndarray, t: np.ndarray, min_depth: float) -> np.ndarray:
    """A camera's translation t (3,), stepped back along its view (like GEM's camera augmentation)
    until the pelvis path `root` (T, 3) stays at least `min_depth` metres in front of it: a person
    who walks far could pass the camera otherwise, and a pelvis beside or behind it has no place
    in its image (the motion's camera-frame translation, x / z, ran to thousands)."""
    nearest = float((root @ R.T + t)[:, 2].min())
    return t + np.array([0.0, 0.0, min_depth - nearest]) if nearest < min_depth else t


# ---------------------------------------------------------------------------------------------
# Detector behaviour
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class NoiseModel:
    """Measured behaviour of MediaPipe Pose (legacy API, model_complexity=1, video mode).

    jitter: (33,) noise std of a still landmark, fraction of the person's box height (the measured
    second-difference residual of landmarks slower than 0.1 box heights/s; faster ones mix in real
    motion, so their numbers are an upper bound). jitter_speed: (speeds, factors) how the noise
    grows with landmark speed in box heights/s (MediaPipe smooths less when things move), capped
    at the pooled measurement. outlier_rate: (33,) per-frame rate of gross errors on slow
    landmarks; outlier_size: (33,) their median size, fraction of box height.
    error_std: (33,) the detector's error against the exact truth on rendered frames (robust std
    around its mean, fraction of box height): pose- and view-dependent, slowly varying; and
    error_smooth: (33,) its correlation time, the std in frames of the Gaussian kernel whose
    lag-1 autocorrelation exp(-1 / (4 s^2)) is the measured one.
    visible_level / hidden_level: (33,) MediaPipe's mean visibility of a landmark where our model
    calls it visible / hidden, on rendered frames (real video where a landmark was never hidden).
    vis_lag: first-order lag of visibility per frame (from its measured step when it crosses 0.5).
    flip_rate, limb_swap_rate: per-frame rates of a whole-body left/right relabelling and of one
    limb's swap.
    """

    jitter: np.ndarray
    jitter_speed: tuple[np.ndarray, np.ndarray]
    outlier_rate: np.ndarray
    outlier_size: np.ndarray
    error_std: np.ndarray
    error_smooth: np.ndarray
    visible_level: np.ndarray
    hidden_level: np.ndarray
    vis_lag: float
    flip_rate: float
    limb_swap_rate: float

    @classmethod
    def load(cls, path: Path | str = MEDIAPIPE_STATS_PATH,
             rendered_path: Path | str = MEDIAPIPE_RENDERED_PATH) -> "NoiseModel":
        """Derive the model from the two measurements (see the keys used here)."""
        s = json.loads(Path(path).read_text())
        rows = json.loads(Path(rendered_path).read_text())["landmarks"]
        bins = s["jitter_speed_factor"]
        lows = np.array([float(k.split("-")[0]) for k in bins])
        highs = np.array([float(k.split("-")[1]) for k in bins])
        factors = np.array(list(bins.values()))
        centres = np.where(np.isfinite(highs), (lows + highs) / 2, lows)
        still = factors[0]
        jitter = np.asarray(s["jitter_px_per_height"]) * still
        vis = s["visibility"]
        low = np.array([np.nan if v is None else v for v in vis["mean_when_below_0.5"]])
        hidden = np.where(np.isfinite(low), low, np.nanmedian(low))
        # At a 0.5 crossing v moves (1 - lag) * (target - v) per frame, target ~ the hidden level.
        lag = 1.0 - vis["median_abs_step_at_0.5_crossing"] / (0.5 - float(np.median(hidden)))
        swaps = s["left_right_swaps"]["per_video"]
        frames = sum(v["frames_compared"] for v in swaps)
        flips = sum(v["whole_body_flip_frames"] for v in swaps)
        single = sum(v["swap_frames"] for v in swaps) - flips
        r_visible = np.array([r["vis_when_ours_visible"] for r in rows])
        r_hidden = np.array([np.nan if r["vis_when_ours_hidden"] is None else r["vis_when_ours_hidden"]
                             for r in rows])
        lag1 = np.clip([r["error_lag1_autocorr"] for r in rows], 0.05, 0.995)
        # A swap span shows as two order changes (in and out), so spans = changes / 2.
        return cls(jitter=jitter, jitter_speed=(centres, np.minimum(factors / still, 1.0 / still)),
                   outlier_rate=np.asarray(s["outlier_rate_slow"]),
                   outlier_size=np.asarray(s["outlier_size_per_height"]) / 0.816,
                   error_std=np.array([r["spread_per_height"] for r in rows]),
                   error_smooth=np.sqrt(-1.0 / (4.0 * np.log(lag1))),
                   visible_level=np.clip(r_visible, 0.0, 1.0),
                   hidden_level=np.where(np.isfinite(r_hidden), r_hidden, hidden),
                   vis_lag=float(np.clip(lag, 0.0, 0.98)), flip_rate=flips / frames / 2,
                   limb_swap_rate=single / frames / 2)

    def jitter_at(self, speed: np.ndarray) -> np.ndarray:
        """(T, 33) landmark speeds in box heights/s -> (T, 33) noise std, fraction of box height."""
        return self.jitter * np.interp(speed, *self.jitter_speed)


@dataclass(frozen=True)
class Events:
    """The hard parts of one clip's observation, as frame spans [start, end).

    limb_spans: (start, end, landmark indices) hidden behind something (a desk, a chair, the frame
    of a door). missing_spans: (start, end) with no detection at all (the person is fully occluded
    or out of view). swap_spans: (start, end, landmark indices) whose left and right labels are
    exchanged (all of them for a whole-body flip)."""

    limb_spans: tuple
    missing_spans: tuple
    swap_spans: tuple

    def limb_mask(self, num_frames: int) -> np.ndarray:
        """(T, 33) bool: the landmarks an occluder hides, frame by frame."""
        mask = np.zeros((num_frames, NUM_LANDMARKS), bool)
        for start, end, group in self.limb_spans:
            mask[start:end, list(group)] = True
        return mask

    def missing_mask(self, num_frames: int) -> np.ndarray:
        """(T,) bool: the frames with the person fully out of view."""
        mask = np.zeros(num_frames, bool)
        for start, end in self.missing_spans:
            mask[start:end] = True
        return mask


# Landmark groups an occluder can hide.
_SIDE = {s: [L[f"{s}_{n}"] for n in ("elbow", "wrist", "pinky", "index", "thumb")] for s in ("left", "right")}
OCCLUDABLE = {
    "left_arm": _SIDE["left"], "right_arm": _SIDE["right"],
    "legs": [L[f"{s}_{n}"] for s in ("left", "right") for n in ("knee", "ankle", "heel", "foot_index")],
    "lower_body": [L[f"{s}_{n}"] for s in ("left", "right")
                   for n in ("hip", "knee", "ankle", "heel", "foot_index")],
}


# What a single-limb swap exchanges (each list with its mirror image).
SWAPPABLE = {
    "arms": [L[f"left_{n}"] for n in ("elbow", "wrist", "pinky", "index", "thumb")],
    "legs": [L[f"left_{n}"] for n in ("knee", "ankle", "heel", "foot_index")],
    "feet": [L[f"left_{n}"] for n in ("ankle", "heel", "foot_index")],
}


def _spans(rng, num_frames: int, count: int, length: tuple[int, int]) -> list[tuple[int, int]]:
    out = []
    for _ in range(count):
        n = int(rng.integers(length[0], length[1] + 1))
        if num_frames > n:
            start = int(rng.integers(0, num_frames - n))
            out.append((start, start + n))
    return out


def sample_events(rng: np.random.Generator, num_frames: int, noise: NoiseModel,
                  occlusion: bool = True) -> Events:
    """Occlusion and swap spans for a clip of `num_frames` frames (seeded by `rng`).

    With occlusion: limb spans in 60 % of clips (1-3 of 10-90 frames), whole-body missing spans in
    40 % (1-2 of 5-60 frames). Swaps: Poisson numbers of whole-body flips and of single-limb swaps
    at the measured rates, 1-5 frames each."""
    limbs, missing = [], []
    if occlusion:
        if rng.random() < 0.6:
            for start, end in _spans(rng, num_frames, int(rng.integers(1, 4)), (10, 90)):
                group = list(OCCLUDABLE)[rng.integers(len(OCCLUDABLE))]
                limbs.append((start, end, tuple(OCCLUDABLE[group])))
        if rng.random() < 0.4:
            missing = _spans(rng, num_frames, int(rng.integers(1, 3)), (5, 60))
    swaps = [(a, b, tuple(range(NUM_LANDMARKS)))
             for a, b in _spans(rng, num_frames, int(rng.poisson(noise.flip_rate * num_frames)), (1, 5))]
    for a, b in _spans(rng, num_frames, int(rng.poisson(noise.limb_swap_rate * num_frames)), (1, 5)):
        swaps.append((a, b, tuple(SWAPPABLE[list(SWAPPABLE)[rng.integers(len(SWAPPABLE))]])))
    return Events(limb_spans=tuple(limbs), missing_spans=tuple(missing), swap_spans=tuple(swaps))


@dataclass
class Observation:
    """What the engine gets for one clip: the detector's output per frame, and the camera.

    keypoints: (T, 33, 2) float32 pixels, NaN on frames with no detection. visibility: (T, 33)
    float32 in [0, 1]. detected: (T,) bool. camera: the static camera the clip was seen through.
    events: the occlusion / swap spans that were applied. world: (T, 33, 3) MediaPipe's own metric
    landmarks (streamer.pose.Detection.world, NaN without a detection) where a real MediaPipe
    looked; None for synthetic observations."""

    keypoints: np.ndarray
    visibility: np.ndarray
    detected: np.ndarray
    camera: Camera
    events: Events
    world: np.ndarray | None = None

    @property
    def num_frames(self) -> int:
        return len(self.detected)

    def missing_landmarks(self) -> np.ndarray:
        """(T, 33) bool: no detection, visibility below 0.5, or outside the image."""
        present = present_landmarks(self.keypoints, self.visibility, self.camera.width, self.camera.height)
        return ~present | ~self.detected[:, None]

    def body_missing(self) -> np.ndarray:
        """(T,) bool: every body landmark missing (no detection, or the body out of view)."""
        return self.missing_landmarks()[:, BODY_LANDMARKS].all(-1)

    def partly_occluded(self) -> np.ndarray:
        """(T,) bool: some but not all body landmarks missing."""
        m = self.missing_landmarks()[:, BODY_LANDMARKS]
        return m.any(-1) & ~m.all(-1)


# A landmark behind the torso (deeper than the torso's nearest point by this much) and inside its
# outline in the image is hidden by the body itself. The outline is the shoulder-hip quad grown by
# half a chest depth, so that a side view, where the quad is edge-on, still has a body to hide behind.
_SELF_OCCLUSION_DEPTH_M = 0.06
_TORSO_HALF_DEPTH_M = 0.11
_TORSO = [L["left_shoulder"], L["right_shoulder"], L["right_hip"], L["left_hip"]]
# MediaPipe reports no person when fewer than this many body landmarks are in the image.
_MIN_BODY_IN_IMAGE = 4


def _inside_quad(pts: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """(T, N, 2) points, (T, 4, 2) convex quads in order -> (T, N) inside, either winding."""
    signs = []
    for k in range(4):
        a, b = quad[:, k, None], quad[:, (k + 1) % 4, None]
        signs.append(np.sign((b[..., 0] - a[..., 0]) * (pts[..., 1] - a[..., 1])
                             - (b[..., 1] - a[..., 1]) * (pts[..., 0] - a[..., 0])))
    s = np.stack(signs)
    return (s >= 0).all(0) | (s <= 0).all(0)


def _near_segment(pts: np.ndarray, a: np.ndarray, b: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """(T, N, 2) points within `radius` (T,) of the segments a-b (T, 2) -> (T, N) bool."""
    ab = (b - a)[:, None]
    w = np.clip(((pts - a[:, None]) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-9), 0.0, 1.0)
    return np.linalg.norm(pts - (a[:, None] + w[..., None] * ab), axis=-1) < radius[:, None]


def hidden_by_body(uv: np.ndarray, depth: np.ndarray, focal: float) -> np.ndarray:
    """(T, 33, 2) pixels and (T, 33) depths -> (T, 33) bool: behind the torso, inside its outline."""
    torso_uv, torso_z = uv[:, _TORSO], depth[:, _TORSO]
    shoulders, hips = torso_uv[:, :2].mean(1), torso_uv[:, 2:].mean(1)
    radius = _TORSO_HALF_DEPTH_M * focal / np.maximum(torso_z.mean(-1), 1e-3)
    with np.errstate(invalid="ignore"):
        inside = _inside_quad(uv, torso_uv) | _near_segment(uv, shoulders, hips, radius)
        behind = depth > torso_z.min(-1, keepdims=True) + _SELF_OCCLUSION_DEPTH_M
    hidden = inside & behind
    hidden[:, _TORSO] = False
    return hidden


def box_height(uv: np.ndarray) -> np.ndarray:
    """(T, N, 2) pixels -> (T,) height of the box around the finite ones (NaN with none)."""
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN frames: NaN is the answer
        return np.nanmax(uv[..., 1], -1) - np.nanmin(uv[..., 1], -1)


def hidden_landmarks(uv: np.ndarray, depth: np.ndarray, camera: Camera, events: Events) -> tuple[np.ndarray, np.ndarray]:
    """What our model calls hidden, per frame and landmark, from projected true landmarks (T, 33, 2)
    and their depths (T, 33): (behind an occluder, hidden at all = behind an occluder, behind the
    torso, or not in front of the camera inside the image)."""
    occluded = events.limb_mask(len(uv))
    in_view = camera.in_image(uv) & (depth > 0.1)
    return occluded, occluded | hidden_by_body(uv, depth, camera.focal) | ~in_view


def smooth_noise(rng: np.random.Generator, num_frames: int, smooth: np.ndarray) -> np.ndarray:
    """(T, 33, 2) unit-variance Gaussian noise, smoothed in time per landmark by a Gaussian kernel
    of std `smooth` (33,) frames."""
    out = np.empty((num_frames, NUM_LANDMARKS, 2))
    white = rng.normal(size=(num_frames + 64, NUM_LANDMARKS, 2))
    for lm, s in enumerate(smooth):
        k = np.exp(-0.5 * (np.arange(-32, 33) / max(s, 1e-3)) ** 2)
        k /= np.sqrt((k * k).sum())
        for axis in range(2):
            out[:, lm, axis] = np.convolve(white[:, lm, axis], k, mode="valid")[:num_frames]
    return out


def _smooth_visibility(target: np.ndarray, a: float) -> np.ndarray:
    """First-order lag: v_t = a v_{t-1} + (1 - a) target_t (MediaPipe's visibility never jumps)."""
    out = np.empty_like(target)
    out[0] = target[0]
    for t in range(1, len(target)):
        out[t] = a * out[t - 1] + (1 - a) * target[t]
    return out


def synthesize(points: np.ndarray, camera: Camera, noise: NoiseModel, events: Events,
               rng: np.random.Generator) -> Observation:
    """(T, 33, 3) world landmark positions (landmarks_3d) seen by `camera` -> an Observation."""
    T = len(points)
    uv, depth = camera.project(points)
    in_view = camera.in_image(uv) & (depth > 0.1)
    detected = ~events.missing_mask(T) & (in_view[:, BODY_LANDMARKS].sum(-1) >= _MIN_BODY_IN_IMAGE)
    # The detector's error scales with the person as it sees them: the part inside the image (a
    # webcam at a desk shows the head to the waist; the legs far below the image are no part of it).
    box_h = np.maximum(np.nan_to_num(box_height(np.where(in_view[..., None], uv, np.nan)), nan=camera.height / 2),
                       1.0)[:, None, None]
    _, hidden = hidden_landmarks(uv, depth, camera, events)

    # Position noise: the detector's slowly varying error (measured against the truth on rendered
    # frames), the frame-to-frame jitter on top (measured on real video, growing with speed),
    # three times that plus a slow drift where the detector is guessing, and the measured rate of
    # gross errors.
    speed = np.zeros((T, NUM_LANDMARKS))
    if T > 1:
        step = np.linalg.norm(np.diff(uv, axis=0), axis=-1) / box_h[1:, :, 0] * FPS
        speed[1:], speed[0] = step, step[0]
    sigma = noise.jitter_at(np.nan_to_num(speed))[..., None] * box_h
    noisy = uv + rng.normal(size=uv.shape) * sigma * np.where(hidden, 3.0, 1.0)[..., None]
    drift = np.cumsum(rng.normal(size=uv.shape) * 0.2 * sigma, axis=0)
    noisy += np.where(hidden[..., None], drift, 0.0)
    noisy += smooth_noise(rng, T, noise.error_smooth) * noise.error_std[None, :, None] * box_h
    outlier = rng.random((T, NUM_LANDMARKS)) < noise.outlier_rate
    direction = rng.normal(size=uv.shape)
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    size = rng.exponential(noise.outlier_size / np.log(2), (T, NUM_LANDMARKS))[..., None] * box_h
    noisy += np.where(outlier[..., None], direction * size, 0.0)

    level = np.clip(noise.visible_level + rng.normal(0.0, 0.02, (T, NUM_LANDMARKS)), 0.0, 1.0)
    low = np.clip(noise.hidden_level + rng.normal(0.0, 0.08, (T, NUM_LANDMARKS)), 0.02, 1.0)
    visibility = _smooth_visibility(np.where(hidden, low, level), noise.vis_lag)

    for start, end, group in events.swap_spans:
        both = sorted(set(group) | {MIRROR[i] for i in group})
        mirrored = [MIRROR[i] for i in both]
        noisy[start:end, both] = noisy[start:end, mirrored]
        visibility[start:end, both] = visibility[start:end, mirrored]
    noisy[~detected] = np.nan
    visibility[~detected] = 0.0
    return Observation(keypoints=noisy.astype(np.float32), visibility=visibility.astype(np.float32),
                       detected=detected, camera=camera, events=events)


def sample_view(rng: np.random.Generator, joints: np.ndarray, world_rot: np.ndarray, noise: NoiseModel,
                occlusion: bool = True) -> tuple[Camera, Events]:
    """The webcam and the occlusion / swap events for a clip posed as joints (T, 24, 3) with world
    rotations (T, 24, 3, 3), drawn from `rng` in that order."""
    camera = sample_camera(rng, joints[:, 0], facing_yaw(world_rot[:, 0]))
    return camera, sample_events(rng, len(joints), noise, occlusion)


# The desk scenario: a webcam on a desk or on the monitor on it, near the person.
DESK_CAMERA_HEIGHT_M = (0.9, 1.3)
DESK_DISTANCE_M = (0.6, 1.5)
HEAD_TOP_M = 0.12  # from the SMPL head joint to the top of the head, for a 1.70 m body
DESK_MIN_DEPTH_M = 0.4  # the nearest the pelvis comes to a desk webcam (a person walking about)


def sample_desk_camera(rng: np.random.Generator, joints: np.ndarray, yaw: float) -> Camera:
    """A webcam at desk height for a clip posed as joints (T, 24, 3) with mean heading `yaw`:
    0.9-1.3 m above the floor, 0.6-1.5 m in front of the person (azimuth within ~15° of their
    heading; farther where the lens is too narrow to hold them, up to the range's end), aimed at
    the middle of the span from their pelvis to the top of their head, so the image shows them from
    the head down to about the waist; a webcam's horizontal fov, 60-78°; roll ~ N(0, 2°); moved back
    along its view when the pelvis would come nearer than DESK_MIN_DEPTH_M (a person walking about)."""
    width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    K = intrinsics(width, height, rng.uniform(60.0, 78.0))
    distance, cam_height = rng.uniform(*DESK_DISTANCE_M), rng.uniform(*DESK_CAMERA_HEIGHT_M)
    azimuth = yaw + rng.normal(0.0, np.radians(15))
    pelvis, head = joints[:, 0].mean(0), joints[:, SMPL_JOINT_NAMES.index("head")].mean(0)
    top = head[1] + HEAD_TOP_M
    # Near enough to fill the image, far enough that the head to the waist fits 90 % of its height.
    fits = (top - pelvis[1]) / (2 * 0.9 * (height / 2) / K[1, 1])
    distance = min(max(distance, fits), DESK_DISTANCE_M[1])
    position = np.array([pelvis[0] + distance * np.sin(azimuth), cam_height, pelvis[2] + distance * np.cos(azimuth)])
    target = np.array([pelvis[0], (pelvis[1] + top) / 2, pelvis[2]])
    R, t = look_at(position, target, roll_deg=float(np.clip(rng.normal(0.0, 2.0), -6, 6)))
    return Camera(K=K, R=R, t=in_front(joints[:, 0], R, t, DESK_MIN_DEPTH_M), width=width, height=height)


def sample_desk_view(rng: np.random.Generator, joints: np.ndarray, world_rot: np.ndarray, noise: NoiseModel,
                     occlusion: bool = True) -> tuple[Camera, Events]:
    """sample_view's desk scenario: the desk webcam (sample_desk_camera), and a desk in front of
    the person hiding their legs (knees, ankles, heels, toes) the whole clip, whatever of them the
    image still holds; on top of that sample_events' occlusions and swaps, as in any scenario."""
    camera = sample_desk_camera(rng, joints, facing_yaw(world_rot[:, 0]))
    events = sample_events(rng, len(joints), noise, occlusion)
    desk = (0, len(joints), tuple(OCCLUDABLE["legs"]))
    return camera, Events(limb_spans=(desk, *events.limb_spans), missing_spans=events.missing_spans,
                          swap_spans=events.swap_spans)


# How each evaluation scenario sees a clip (sample_view's signature).
SCENARIOS = {"default": sample_view, "desk": sample_desk_view}


def clip_rng(clip: str, seed: int) -> np.random.Generator:
    """A generator seeded by a clip's name and a seed: the same observation on every machine."""
    return np.random.default_rng([zlib.crc32(clip.encode()), seed])


def observe_clip(clip: str, joints: np.ndarray, world_rot: np.ndarray, seed: int, noise: NoiseModel,
                 stature: float = RIG_STATURE, occlusion: bool = True, scenario: str = "default") -> Observation:
    """The synthetic observation of one clip (joints (T, 24, 3), world_rot (T, 24, 3, 3)) for a
    given seed: camera, events and noise all drawn from `clip_rng(clip, seed)`, the camera and
    events as the `scenario` (SCENARIOS) places them."""
    rng = clip_rng(clip, seed)
    camera, events = SCENARIOS[scenario](rng, joints, world_rot, noise, occlusion)
    return synthesize(landmarks_3d(joints, world_rot, stature), camera, noise, events, rng)
