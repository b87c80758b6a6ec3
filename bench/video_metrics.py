"""Quality measures for motion without ground truth (real video): small pure-numpy functions.

Joint sequences are (T, 24, 3) metres in a y-up world with the floor at y = 0 (SMPL joint order,
engine.body.body_model); 2D landmarks are MediaPipe's (T, 33, 2) pixels. Every function returns plain floats
or arrays, in the unit its name says.
"""
from __future__ import annotations

import warnings

import numpy as np

from engine.body.skeleton import SMPL_PARENTS
from engine.data.retarget import J, sole_height
from engine.evaluate import metrics
from streamer.landmarks import BODY_LANDMARKS, L

STILL_SPEED = 0.15      # body heights per second below which the person is still
STILL_MIN_S = 0.4       # shortest still segment, seconds
SWAP_PAIRS = tuple((J[f"left_{n}"], J[f"right_{n}"]) for n in ("elbow", "wrist", "knee", "ankle"))
LANDMARK_SWAP_PAIRS = tuple((L[f"left_{n}"], L[f"right_{n}"]) for n in ("elbow", "wrist", "knee", "ankle"))
SWAP_MIN_MOVE_M = 0.1   # a swap moves the pair at least this much between two frames
# MediaPipe bones whose length a body keeps: upper and lower arms and legs, shoulder and hip widths.
LANDMARK_BONES = tuple((L[f"{s}_{a}"], L[f"{s}_{b}"]) for s in ("left", "right")
                       for a, b in (("shoulder", "elbow"), ("elbow", "wrist"), ("hip", "knee"), ("knee", "ankle"))) + \
    ((L["left_shoulder"], L["right_shoulder"]), (L["left_hip"], L["right_hip"]))
SMPL_BONES = tuple((SMPL_PARENTS[j], j) for j in range(1, len(SMPL_PARENTS)))


def true_runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) of each run of True in a (T,) bool array, end exclusive."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def still_frames(keypoints: np.ndarray, visibility: np.ndarray, fps: float) -> np.ndarray:
    """(T,) bool: frames inside a still segment of the person, judged from the 2D landmarks alone
    (so neither system's output decides where it is measured): the median speed of the body's
    visible landmarks, over a centred 5-frame difference, below STILL_SPEED body heights per second
    (the landmarks' box height) for at least STILL_MIN_S."""
    kp = keypoints[:, list(BODY_LANDMARKS)]
    vis = (np.nan_to_num(visibility[:, list(BODY_LANDMARKS)]) >= 0.5) & np.isfinite(kp).all(-1)
    T = len(kp)
    speed = np.full(T, np.inf)
    y = np.where(vis, kp[..., 1], np.nan)
    with warnings.catch_warnings():  # frames with nothing visible: NaN height, not counted below
        warnings.simplefilter("ignore", RuntimeWarning)
        height = np.nanmax(y, 1) - np.nanmin(y, 1)
    for t in range(2, T - 2):
        both = vis[t - 2] & vis[t + 2] & vis[t]
        if both.sum() >= 6 and np.isfinite(height[t]) and height[t] > 1:
            step = np.linalg.norm(kp[t + 2, both] - kp[t - 2, both], axis=-1) / 4 * fps
            speed[t] = np.median(step) / height[t]
    still = speed < STILL_SPEED
    out = np.zeros(T, bool)
    for a, b in true_runs(still):
        if b - a >= STILL_MIN_S * fps:
            out[a:b] = True
    return out


def penetration_mm(joints: np.ndarray, rest_joints: np.ndarray) -> float:
    """Mean depth of the lowest sole (engine.data.retarget.sole_height) below the floor (0 on frames
    where it is above), mm."""
    return float(np.maximum(-sole_height(joints, rest_joints), 0.0).mean() * 1000)


def swap_events(points: np.ndarray, pairs, min_move: float = SWAP_MIN_MOVE_M) -> int:
    """How many times a left/right pair trades places between consecutive frames: the crossed
    assignment explains the motion at least twice as well as the straight one, and the straight
    one moved at least `min_move` metres. points: (T, N, 3), root-relative so a jumping root
    does not count."""
    count = 0
    for a, b in pairs:
        la, lb = points[1:, a], points[1:, b]
        pa, pb = points[:-1, a], points[:-1, b]
        straight = np.linalg.norm(la - pa, axis=-1) + np.linalg.norm(lb - pb, axis=-1)
        crossed = np.linalg.norm(la - pb, axis=-1) + np.linalg.norm(lb - pa, axis=-1)
        count += int(((crossed < 0.5 * straight) & (straight > min_move)).sum())
    return count


def bone_length_cv_pct(points: np.ndarray, bones) -> float:
    """Mean over bones of each bone's length std / mean over frames, % (0 for a rigid skeleton).
    Frames with any non-finite point are left out."""
    ok = np.isfinite(points).all((1, 2))
    if ok.sum() < 2:
        return float("nan")
    p = points[ok]
    lengths = np.stack([np.linalg.norm(p[:, a] - p[:, b], axis=-1) for a, b in bones], 1)
    return float((lengths.std(0) / np.maximum(lengths.mean(0), 1e-9)).mean() * 100)


def motion_report(joints: np.ndarray, rest_joints: np.ndarray, still: np.ndarray, fps: float) -> dict:
    """The no-ground-truth measures of one system on one clip: jitter on still frames (mm/s³, world
    joints), foot skate (mm per 1/30 s, height-based contacts), ground penetration (mm), left/right
    swaps, bone-length variation (%)."""
    rel = joints - joints[:, :1]
    jitter = metrics.jitter_mm_s3(joints, fps, mask=still) if still.sum() >= 4 else float("nan")
    return {"jitter_still": jitter, "foot_skate_mm": metrics.foot_skate_mm(joints, None, fps),
            "penetration_mm": penetration_mm(joints, rest_joints), "swaps": swap_events(rel, SWAP_PAIRS),
            "bone_cv_pct": bone_length_cv_pct(joints, SMPL_BONES)}
