"""Captions read off the motion itself, for training text-conditioned generation.

    spans = motion_captions(joints, pelvis_rot)   # [(start, end, caption), ...], frames [start, end)

The dataset's own captions describe whole clips ("walk turn left 90"); these describe stretches
within a clip in a small fixed vocabulary, which also labels the still stretches at the starts and
ends of clips (the data has few idle clips, and "a person stands still" is what the live system asks
for when the person leaves the frame).

Every frame gets at most one label from smoothed root velocity, heading, leg extension, pelvis
bounce and limb speed; runs of one label lasting at least MIN_SPAN_S become spans. Frames that fit no label, or
whose run is too short, get no caption. Sitting down is not detected: from joints alone a chair
sit looks like a held crouch.

Conventions (engine.body.body_model): y up, metres, the body faces +z of its pelvis frame with its left at +x;
heading (yaw) is the facing direction's angle about +y, so turning left increases it.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d

STAND = "a person stands still"
WALK_FORWARD = "a person walks forward"
WALK_BACKWARD = "a person walks backward"
WALK_SIDEWAYS = "a person walks sideways"
RUN_FORWARD = "a person runs forward"
TURN_LEFT = "a person turns left"
TURN_RIGHT = "a person turns right"
SQUAT = "a person squats"
CAPTIONS = (STAND, WALK_FORWARD, WALK_BACKWARD, WALK_SIDEWAYS, RUN_FORWARD, TURN_LEFT, TURN_RIGHT,
            SQUAT)

PELVIS, LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 0, 1, 2, 4, 5, 7, 8

# Shortest captioned span: the text windows the denoiser trains on are at least this long, and a
# shorter stretch is usually a transition rather than an activity.
MIN_SPAN_S = 1.0
# Box-filter length for velocities and heading: one walking stride (two steps, ~1 s), so the
# pelvis's per-stride sway and yaw swing average out instead of flipping the direction labels.
SMOOTH_S = 1.0
# Leg extension = (hip height above the lower ankle) / leg length: ~0.95 standing or walking, >= 0.77
# at a run's deepest stance, ~0.5 kneeling or sitting, ~0 lying or crawling. Below this the body is
# not upright and gets no stand/walk/run/turn caption.
UPRIGHT_EXTENSION = 0.7
# Standing still: the root drifts less than this (quiet standing sway is a few cm/s)...
STILL_ROOT_SPEED = 0.15  # m/s
# ...and no joint moves faster than this relative to the pelvis (a resting body's hands drift at
# < 0.1 m/s; gesturing or dancing in place moves them at 0.5-2 m/s).
STILL_LIMB_SPEED = 0.3  # m/s
# Walking speeds: the slowest steady gait and the walk-run transition (humans switch at ~2 m/s).
WALK_SPEED = (0.5, 2.0)  # m/s
# Running: above the walk-run transition with a margin, so speeds in between get no caption.
RUN_SPEED = 2.2  # m/s
# Largest rise and fall of the pelvis within SMOOTH_S for a walk and for a run. Measured: walks
# bob it by ~4 cm (95th percentile 11 cm), runs by ~10 cm (up to 23 cm while speeding up or
# cutting a turn), hops and skips by 20-35 cm and jumps by 45-70 cm; those travel at walking and
# running speeds but are neither.
WALK_MAX_BOUNCE = 0.15  # m
RUN_MAX_BOUNCE = 0.25  # m
# Direction of travel relative to facing: within FORWARD_DEG of facing is forward, beyond
# BACKWARD_DEG is backward, SIDEWAYS_DEG apart is sideways; diagonal travel between these bands
# fits none of the words and gets no caption.
FORWARD_DEG = 30.0
BACKWARD_DEG = 150.0
SIDEWAYS_DEG = (60.0, 120.0)
# On the spot (turning, squatting): the root moves slower than this. Stepping round while turning,
# or the hips going back in a squat, moves the pelvis at up to ~0.3 m/s; walking starts at 0.5.
IN_PLACE_ROOT_SPEED = 0.4  # m/s
# Turning in place: heading rate over a centred TURN_WINDOW_S window above TURN_RATE_DEG while on
# the spot (so walking a curve is not a turn), and the whole run turns by at least TURN_DEG. People
# turn round in steps of ~40° with pauses between; a 2 s window averages over the pauses, and
# 20 °/s (28 °/s measured for a stepped turn-around) still catches a 90° turn done in 4 s.
TURN_WINDOW_S = 2.0
TURN_RATE_DEG = 20.0  # °/s
TURN_DEG = 60.0
# Squat: leg extension dips from upright (above SQUAT_TOP) below SQUAT_DEPTH and comes back within
# SQUAT_MAX_S on the spot; measured one-rep squats go 0.95 -> 0.1-0.35 -> 0.95 in ~1 s. The
# span is padded by SQUAT_PAD_S each side because the descent starts before extension crosses the top.
SQUAT_TOP = 0.9
SQUAT_DEPTH = 0.6
SQUAT_MAX_S = 3.0
SQUAT_PAD_S = 0.2


def motion_captions(joints, pelvis_rot, fps: float = 30.0) -> list[tuple[int, int, str]]:
    """Captioned spans of one clip.

    joints: (T, 24, 3) SMPL joint positions, metres, y-up world. pelvis_rot: (T, 3, 3) pelvis world
    rotations (columns: the pelvis frame's x = body left, y = up, z = facing; see heading() for why
    only x is read). fps: frames per second. numpy arrays or CPU tensors.
    Returns non-overlapping [(start, end, caption)] in frame order, end exclusive, each span at least
    MIN_SPAN_S long and its caption one of CAPTIONS.
    """
    joints = np.asarray(joints, dtype=np.float64)
    pelvis_rot = np.asarray(pelvis_rot, dtype=np.float64)
    min_frames = round(MIN_SPAN_S * fps)
    if len(joints) < min_frames:
        return []
    yaw = heading(pelvis_rot)
    labels = frame_labels(joints, yaw, fps)
    spans = []
    for start, end in runs(labels):
        label = str(labels[start])
        if not label or end - start < min_frames:
            continue
        turned = math.degrees(abs(yaw[end - 1] - yaw[start]))
        if label in (TURN_LEFT, TURN_RIGHT) and turned < TURN_DEG:
            continue
        spans.append((start, end, label))
    return spans


def frame_labels(joints: np.ndarray, yaw: np.ndarray, fps: float) -> np.ndarray:
    """(T,) caption of each frame, "" for none. joints (T, 24, 3) metres; yaw (T,) radians."""
    velocity = smooth(np.gradient(joints[:, PELVIS, [0, 2]], axis=0) * fps, fps)  # (T, 2) m/s in xz
    speed = np.linalg.norm(velocity, axis=1)
    facing_yaw = smooth(yaw, fps)
    forward = np.stack([np.sin(facing_yaw), np.cos(facing_yaw)], axis=1)  # (x, z)
    left = np.stack([np.cos(facing_yaw), -np.sin(facing_yaw)], axis=1)
    travel = np.degrees(np.abs(np.arctan2((velocity * left).sum(1), (velocity * forward).sum(1))))
    extension = leg_extension(joints)
    upright = extension >= UPRIGHT_EXTENSION
    rate = np.degrees(turn_rate(yaw, fps))
    turning = upright & (speed < IN_PLACE_ROOT_SPEED) & (np.abs(rate) > TURN_RATE_DEG)
    bob = bounce(joints, fps)
    walking = upright & (bob < WALK_MAX_BOUNCE) & (speed >= WALK_SPEED[0]) & (speed <= WALK_SPEED[1])
    conditions = [  # first match wins
        squat_frames(extension, speed, fps),
        turning & (rate > 0),
        turning & (rate < 0),
        upright & (speed < STILL_ROOT_SPEED) & (limb_speed(joints, fps) < STILL_LIMB_SPEED),
        walking & (travel <= FORWARD_DEG),
        walking & (travel >= BACKWARD_DEG),
        walking & (travel >= SIDEWAYS_DEG[0]) & (travel <= SIDEWAYS_DEG[1]),
        upright & (bob < RUN_MAX_BOUNCE) & (speed > RUN_SPEED) & (travel <= FORWARD_DEG),
    ]
    choices = [SQUAT, TURN_LEFT, TURN_RIGHT, STAND, WALK_FORWARD, WALK_BACKWARD, WALK_SIDEWAYS,
               RUN_FORWARD]
    return np.select(conditions, choices, default="")


def smooth(x: np.ndarray, fps: float) -> np.ndarray:
    """Centred moving average over SMOOTH_S along axis 0; edges repeat the end values, so a clip
    that starts or ends still stays still up to its first and last frames."""
    return uniform_filter1d(x, size=max(1, round(SMOOTH_S * fps)), axis=0, mode="nearest")


def heading(pelvis_rot: np.ndarray) -> np.ndarray:
    """(T,) unwrapped yaw of the body's facing about +y, radians; 0 = facing +z, positive = turned
    left (counter-clockwise seen from above).

    Facing is taken as left x up from the pelvis's left (+x) column rather than from its +z column:
    the two agree for an upright pelvis, but only the left axis stays horizontal when the pelvis
    pitches (bending over, sitting back, or the ~90° pitched pelvis of the retargeted ACCAD clips),
    where the +z column's horizontal part shrinks to nothing.
    """
    left = pelvis_rot[:, :, 0]
    return np.unwrap(np.arctan2(-left[:, 2], left[:, 0]))  # forward (x, z) = (-left_z, left_x)


def turn_rate(yaw: np.ndarray, fps: float) -> np.ndarray:
    """(T,) heading change across a centred TURN_WINDOW_S window, rad/s; the window shrinks at the
    clip's ends."""
    half = round(TURN_WINDOW_S * fps / 2)
    t = np.arange(len(yaw))
    lo, hi = np.maximum(t - half, 0), np.minimum(t + half, len(yaw) - 1)
    return (yaw[hi] - yaw[lo]) * fps / np.maximum(hi - lo, 1)


def bounce(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T,) range of pelvis height within a centred SMOOTH_S window, metres."""
    size = max(1, round(SMOOTH_S * fps))
    height = joints[:, PELVIS, 1]
    return (maximum_filter1d(height, size, mode="nearest")
            - minimum_filter1d(height, size, mode="nearest"))


def leg_extension(joints: np.ndarray) -> np.ndarray:
    """(T,) mean hip height above the lower ankle over the clip's leg length (hip-knee-ankle, median
    over frames and both legs); scale-free, ~1 for straight vertical legs."""
    hips = joints[:, [LEFT_HIP, RIGHT_HIP]]
    knees = joints[:, [LEFT_KNEE, RIGHT_KNEE]]
    ankles = joints[:, [LEFT_ANKLE, RIGHT_ANKLE]]
    leg = np.median(np.linalg.norm(hips - knees, axis=-1) + np.linalg.norm(knees - ankles, axis=-1))
    return (hips[:, :, 1].mean(1) - ankles[:, :, 1].min(1)) / leg


def limb_speed(joints: np.ndarray, fps: float) -> np.ndarray:
    """(T,) fastest joint's smoothed speed relative to the pelvis, m/s."""
    relative = joints - joints[:, PELVIS:PELVIS + 1]
    return smooth(np.linalg.norm(np.gradient(relative, axis=0) * fps, axis=-1), fps).max(1)


def squat_frames(extension: np.ndarray, speed: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames of squats, i.e. dips of leg extension below SQUAT_TOP that reach SQUAT_DEPTH,
    start and end inside the clip, last at most SQUAT_MAX_S and stay on the spot; padded by
    SQUAT_PAD_S. extension: (T,) leg_extension; speed: (T,) smoothed root speed, m/s."""
    low = extension < SQUAT_TOP
    pad = round(SQUAT_PAD_S * fps)
    out = np.zeros(len(extension), dtype=bool)
    for start, end in runs(low):
        if (low[start] and 0 < start and end < len(low) and extension[start:end].min() < SQUAT_DEPTH
                and end - start <= SQUAT_MAX_S * fps and speed[start:end].max() < IN_PLACE_ROOT_SPEED):
            out[max(start - pad, 0):end + pad] = True
    return out


def runs(values: np.ndarray) -> list[tuple[int, int]]:
    """[(start, end)] of the maximal runs of equal consecutive values in a (T,) array, end exclusive."""
    edges = np.flatnonzero(values[1:] != values[:-1]) + 1
    bounds = [0, *edges.tolist(), len(values)]
    return list(zip(bounds[:-1], bounds[1:]))
