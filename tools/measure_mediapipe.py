#!/usr/bin/env python3
"""Measure how real MediaPipe Pose behaves on the shared videos (dev tool).

Runs MediaPipe Pose exactly as the live pipeline does (``streamer.pose.PoseDetector``: the legacy
solution API with ``POSE_SETTINGS``, C-contiguous RGB frames in order, one instance per clip) on ../shared/data/video and writes
``assets/mediapipe_stats.json`` for the synthetic-observation generator to imitate: per-landmark
2D jitter (robust std of the second-difference residual ``(x_t - (x_{t-1} + x_{t+1}) / 2) *
sqrt(2/3)``, in person-box heights), its outliers and growth with speed; visibility behaviour;
detection dropouts; sudden left/right swaps; body proportions from ``pose_world_landmarks``
(made y-up: (x, -y, -z)) and the mean landmark layout in a body frame, in torso lengths.
A clip is pooled only if the tracked person never jumps (the box centre moving > half a box
height between detections); the two-person Sports2D demo fails that and is listed as unused.

Deterministic, ~15 s on 2 CPU cores:
    .venv/bin/python tools/measure_mediapipe.py [--out assets/mediapipe_stats.json]
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import cv2
import mediapipe as mp
import numpy as np
from tqdm import tqdm

from engine.evaluate.metrics import robust_std
from streamer.pose import POSE_SETTINGS, PoseDetector

VIDEO_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
ALL_VIDEOS = [
    "temugeb_webcam/cam0_test.mp4",
    *(f"pose2sim_singleperson/videos/cam0{i}.mp4" for i in range(1, 5)),
    "sports2d_two_people/demo.mp4",
]
NAMES = [lm.name.lower() for lm in mp.solutions.pose.PoseLandmark]
VIS = 0.5            # "visible" threshold
OUTLIER_K = 5.0      # outlier = residual norm > K robust std
SWAP_SEP = 0.05      # a swap needs the pair this far apart in x (box heights), before and after
JUMP = 0.5           # identity switch = box centre moves > JUMP box heights between detections
UPRIGHT_COS = np.cos(np.radians(30))
KNEE_STRAIGHT_COS = np.cos(np.radians(25))
SPEED_BINS = [0.0, 0.1, 0.3, 1.0, np.inf]   # landmark speed, box heights per second
SLOW = 0.3           # slow landmark (box heights/s): its outliers are mostly glitches, not motion
LR_PAIRS = {"shoulders": (11, 12), "hips": (23, 24), "knees": (25, 26), "ankles": (27, 28),
            "wrists": (15, 16)}
MID_SH, MID_HIP, MID_EAR, MOUTH = (11, 12), (23, 24), (7, 8), (9, 10)
# name: (kind, [(point a, point b), ...]); a point is a landmark or a tuple averaged; left
# and right samples are pooled. "dy" = height of a above b (y-up world), "dist" = |a - b|.
GEOMETRY = {
    "shoulder_width": ("dist", [(11, 12)]), "hip_width": ("dist", [(23, 24)]),
    "torso_length": ("dist", [(MID_SH, MID_HIP)]),
    "upper_arm": ("dist", [(11, 13), (12, 14)]), "forearm": ("dist", [(13, 15), (14, 16)]),
    "thigh": ("dist", [(23, 25), (24, 26)]), "shin": ("dist", [(25, 27), (26, 28)]),
    "ankle_heel": ("dist", [(27, 29), (28, 30)]),
    "ankle_foot_index": ("dist", [(27, 31), (28, 32)]),
    "heel_foot_index": ("dist", [(29, 31), (30, 32)]),
    "wrist_index": ("dist", [(15, 19), (16, 20)]), "wrist_pinky": ("dist", [(15, 17), (16, 18)]),
    "wrist_thumb": ("dist", [(15, 21), (16, 22)]),
    "nose_above_mid_shoulders_vertical": ("dy", [(0, MID_SH)]),
    "nose_mid_shoulders_distance": ("dist", [(0, MID_SH)]),
    "mid_ears_above_mid_shoulders_vertical": ("dy", [(MID_EAR, MID_SH)]),
    "mid_ears_mid_shoulders_distance": ("dist", [(MID_EAR, MID_SH)]),
    "ear_width": ("dist", [(7, 8)]), "eye_width": ("dist", [(2, 5)]),
    "nose_mid_ears_distance": ("dist", [(0, MID_EAR)]),
    "mouth_nose_distance": ("dist", [(MOUTH, 0)]),
}


def run_pose(path: Path):
    """(image (N,33,3): x px, y px, visibility; world (N,33,3) y-up metres; fps, width, height).
    Frames without a detection are NaN."""
    cap = cv2.VideoCapture(str(path))
    fps, n = cap.get(cv2.CAP_PROP_FPS), int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    img, world = [], []
    with PoseDetector() as pose:
        for _ in tqdm(range(n), desc=path.name):
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            found = pose.detect(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            if found is None:
                img.append(np.full((33, 3), np.nan))
                world.append(np.full((33, 3), np.nan))
                continue
            img.append(np.concatenate([found.keypoints, found.visibility[:, None]], -1))
            world.append(found.world)
    cap.release()
    return np.asarray(img, float), np.asarray(world, float), fps, w, h


def visible(img):
    return np.nan_to_num(img[..., 2], nan=0.0) > VIS


def box_height(img):
    """Height in px of the box of the visible landmarks; NaN with fewer than two."""
    g = visible(img)
    y = np.nan_to_num(img[..., 1])
    h = np.where(g, y, -np.inf).max(1) - np.where(g, y, np.inf).min(1)
    return np.where(g.sum(1) >= 2, h, np.nan)


def identity_switches(img) -> int:
    g = visible(img)
    cx = np.where(g, img[..., 0], 0).sum(1) / np.maximum(g.sum(1), 1)
    idx = np.flatnonzero(g.sum(1) >= 5)
    return int((np.abs(np.diff(cx[idx])) > JUMP * box_height(img)[idx[1:]]).sum())


def run_lengths(mask):
    """Lengths of the runs of True in a 1-D boolean array."""
    edges = np.diff(np.concatenate([[0], mask.astype(int), [0]]))
    return np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)


def residuals(img, fps):
    """Second-difference residual (N-2,33,2) and speed (N-2,33), in box heights
    (per second for the speed); NaN unless the landmark is visible at t-1, t, t+1."""
    p, g, h = img[..., :2], visible(img), box_height(img)[1:-1, None]
    r = (p[1:-1] - 0.5 * (p[:-2] + p[2:])) * np.sqrt(2 / 3) / h[..., None]
    speed = np.linalg.norm(p[2:] - p[:-2], axis=-1) * fps / 2 / h
    usable = g[1:-1] & g[:-2] & g[2:]
    r[~usable], speed[~usable] = np.nan, np.nan
    return r, speed


def jitter(rs):
    r = np.concatenate(rs)
    return np.array([robust_std(r[:, j]) for j in range(33)])


def jitter_stats(clips):
    rs, speeds = zip(*(residuals(c["img"], c["fps"]) for c in clips))
    sigma = jitter(rs)
    z = np.concatenate(rs) / sigma[:, None]
    norm, speed = np.linalg.norm(z, axis=-1), np.concatenate(speeds)
    out, bins = norm > OUTLIER_K, list(zip(SPEED_BINS[:-1], SPEED_BINS[1:]))
    in_bin = {f"{lo:g}-{hi:g}": (speed >= lo) & (speed < hi) for lo, hi in bins}
    fps_set = sorted({c["fps"] for c in clips})
    return {
        "jitter_px_per_height": sigma,
        "jitter_px_per_height_by_video": {c["video"]: jitter([r]) for r, c in zip(rs, clips)},
        "jitter_px_per_height_by_fps": {
            f"{f:g}": jitter([r for r, c in zip(rs, clips) if c["fps"] == f]) for f in fps_set},
        "jitter_stride3_over_stride1_by_video": {
            c["video"]: np.nanmedian(jitter([residuals(c["img"][::3], c["fps"] / 3)[0]])
                                     / jitter([r])) for r, c in zip(rs, clips)},
        "jitter_speed_factor": {k: robust_std(z[m]) for k, m in in_bin.items()},
        "speed_bin_frac": {k: m.sum() / np.isfinite(speed).sum() for k, m in in_bin.items()},
        "outlier_rate": out.sum(0) / np.isfinite(norm).sum(0),
        "outlier_rate_by_speed": {k: out[m].mean() for k, m in in_bin.items()},
        "outlier_rate_slow": (out & (speed < SLOW)).sum(0) / (speed < SLOW).sum(0),
        "outlier_size_per_height": [np.median(norm[out[:, j], j]) * sigma[j] if out[:, j].any()
                                    else None for j in range(33)],
    }


def visibility_stats(clips):
    vis = [c["img"][..., 2] for c in clips]
    v = np.concatenate([x[np.isfinite(x[:, 0])] for x in vis])
    low = v < VIS
    a, b, spans, cross, steps = [], [], [[] for _ in range(33)], [], []
    for x in vis:
        both = np.isfinite(x[:-1, 0]) & np.isfinite(x[1:, 0])
        c = x - np.nanmean(x, 0)
        a.append(c[:-1][both]), b.append(c[1:][both])
        dv = np.abs(np.diff(x, axis=0))[both]
        cross.append(dv[((x[:-1] < VIS) != (x[1:] < VIS))[both]]), steps.append(dv.ravel())
        for j in range(33):
            spans[j].extend(run_lengths(np.nan_to_num(x[:, j], nan=1.0) < VIS))
    a, b = np.concatenate(a), np.concatenate(b)
    with np.errstate(all="ignore"):
        autocorr = (a * b).sum(0) / np.sqrt((a * a).sum(0) * (b * b).sum(0))
        mean_low = np.where(low, v, 0).sum(0) / low.sum(0)
        mean_high = np.where(low, 0, v).sum(0) / (~low).sum(0)
    low_by_video = {}
    for c, x in zip(clips, vis):
        frac = np.mean(x < VIS, 0)
        low_by_video[c["video"]] = {NAMES[j]: frac[j] for j in np.flatnonzero(frac > 0.02)}
    stats = {"mean": v.mean(0), "frac_below_0.5": low.mean(0), "mean_when_below_0.5": mean_low,
             "mean_when_visible": mean_high,
             "frac_below_0.5_by_video": low_by_video,
             "median_abs_step_per_frame": np.median(np.concatenate(steps)),
             "median_abs_step_at_0.5_crossing": np.median(np.concatenate(cross))}
    return stats, autocorr, [np.median(s) if s else None for s in spans]


def detection_stats(c):
    miss = np.isnan(c["img"][:, 0, 0])
    runs = run_lengths(miss)
    return {"video": c["video"], "no_detection_frac": float(miss.mean()),
            "no_detection_runs": len(runs),
            "median_no_detection_run_frames": float(np.median(runs)) if len(runs) else None}


def lr_swaps(c):
    img, h = c["img"], box_height(c["img"])
    by_pair, n_swaps = {}, np.zeros(len(img) - 1, int)
    for name, (l, r) in LR_PAIRS.items():
        dx = (img[:, l, 0] - img[:, r, 0]) / h
        apart = np.abs(dx) > SWAP_SEP       # False where NaN
        swap = apart[:-1] & apart[1:] & (np.sign(dx[:-1]) != np.sign(dx[1:]))
        by_pair[name], n_swaps = int(swap.sum()), n_swaps + swap
    compared = int((np.isfinite(img[:-1, 0, 0]) & np.isfinite(img[1:, 0, 0])).sum())
    return {"video": c["video"], "swap_frames": int((n_swaps > 0).sum()),
            "whole_body_flip_frames": int((n_swaps >= 3).sum()),
            "frames_compared": compared, "by_pair": by_pair}


def ids(p):
    return list(p) if isinstance(p, tuple) else [p]


def point(w, p):
    """A landmark, or the mean of a tuple of landmarks, of (N,33,3) -> (N,3)."""
    return w[:, ids(p)].mean(1)


def world_geometry(world, g):
    out, counts = {}, {}
    for name, (kind, pairs) in GEOMETRY.items():
        vals = []
        for a, b in pairs:
            ok = g[:, ids(a) + ids(b)].all(1)
            d = point(world, a)[ok] - point(world, b)[ok]
            vals.append(d[:, 1] if kind == "dy" else np.linalg.norm(d, axis=1))
        vals = np.concatenate(vals)
        out[name], counts[name] = float(np.median(vals)), len(vals)
    return out, counts


def body_frame(world):
    """World landmarks in the body frame (origin mid-hips, y up the torso, x towards the
    person's left hip, z = x cross y = forward), in torso lengths; and the torso axis."""
    o, up = point(world, MID_HIP), point(world, MID_SH) - point(world, MID_HIP)
    torso = np.linalg.norm(up, axis=1, keepdims=True)
    y = up / torso
    x = world[:, 23] - world[:, 24]
    x -= (x * y).sum(1, keepdims=True) * y
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    axes = np.stack([x, y, np.cross(x, y)], 1)               # (N, 3 axes, 3)
    return np.einsum("njc,nkc->njk", world - o[:, None], axes) / torso[..., None], y


def body_stats(world, g):
    core = g[:, [11, 12, 23, 24]].all(1)
    body, y = body_frame(world[core])
    g = g[core]
    upright = y[:, 1] > UPRIGHT_COS
    mean = np.array([body[upright & g[:, j], j].mean(0) for j in range(33)])
    knee_cos = [((body[:, k] - body[:, hp]) * (body[:, a] - body[:, k])).sum(1)
                / np.linalg.norm(body[:, k] - body[:, hp], axis=1)
                / np.linalg.norm(body[:, a] - body[:, k], axis=1)
                for hp, k, a in ((23, 25, 27), (24, 26, 28))]
    standing = upright & g[:, 23:29].all(1) & (np.min(knee_cos, 0) > KNEE_STRAIGHT_COS)
    ankle_y = body[standing][:, [27, 28], 1].mean(1)
    ratio = float(np.median(-ankle_y / (1 - ankle_y)))
    return mean, int(upright.sum()), ratio, int(standing.sum())


def rnd(obj, sig=4):
    if isinstance(obj, dict):
        return {k: rnd(v, sig) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, np.ndarray)):
        return [rnd(v, sig) for v in obj]
    if isinstance(obj, (float, np.floating)):
        if not np.isfinite(obj):
            return None
        return float(f"{obj:.{sig}g}") if abs(obj) > 1e-9 else 0.0
    return obj.item() if isinstance(obj, np.generic) else obj


def compact_json(obj) -> str:
    """Indented JSON with lists of numbers kept on one line."""
    text = json.dumps(obj, indent=1)
    return re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]",
                  text)


def measure(clips):
    """All statistics from the per-clip landmark arrays (a list of dicts)."""
    single = [c for c in clips if c["identity_switches"] == 0]
    stats = jitter_stats(single)
    by_fps = stats["jitter_px_per_height_by_fps"]
    ratio3 = stats["jitter_stride3_over_stride1_by_video"].values()
    lo, hi = min(by_fps, key=float), max(by_fps, key=float)
    stats["jitter_note"] = (
        f"The residual also holds real motion (acceleration * dt^2), and MediaPipe smooths "
        f"less at speed: it scales by jitter_speed_factor with landmark speed (box heights/s), "
        f"so most 5-sigma outliers are fast motion (outlier_rate_by_speed; outlier_rate_slow "
        f"counts only landmarks slower than {SLOW} box heights/s, nearer a glitch rate). The "
        f"noise is correlated in time: over every 3rd frame the residual is {min(ratio3):.1f}-"
        f"{max(ratio3):.1f}x larger (white noise 1, smooth motion 9). {lo} fps / {hi} fps = "
        f"{np.nanmedian(by_fps[lo] / by_fps[hi]):.2f} (median over landmarks; one {lo} fps "
        f"clip, other person and motion): see jitter_px_per_height_by_fps. Outlier sizes are "
        f"residual norms (a one-frame spike of size a gives 0.816 a).")
    vis, autocorr, spans = visibility_stats(single)
    vis["summary"] = (
        f"Smoothed, never jumps: lag-1 autocorrelation median {np.nanmedian(autocorr):.3f}, "
        f"median step {vis['median_abs_step_per_frame']:.2g}/frame, "
        f"{vis['median_abs_step_at_0.5_crossing']:.2g}/frame when crossing 0.5. Drops to ~0.3 "
        f"for the far-side/occluded arm, hand and knee in runs of "
        f"~{np.nanmedian(np.array(spans, float)):g} frames (clipped by clip ends); face, "
        f"shoulders, hips ~1. Feet never left the frame in these clips.")
    world = np.concatenate([c["world"] for c in single])
    g = np.concatenate([visible(c["img"]) for c in single])
    geometry, counts = world_geometry(world, g)
    table, n_upright, ratio, n_standing = body_stats(world, g)
    swaps = [lr_swaps(c) for c in single]
    return {
        "source": [{k: c[k] for k in ("video", "frames", "fps", "width", "height",
                                      "detected_frames", "identity_switches")}
                   | {"used": c["identity_switches"] == 0} for c in clips],
        "settings": POSE_SETTINGS,
        "mediapipe_version": mp.__version__,
        "landmark_names": NAMES,
        **stats,
        "visibility": vis,
        "visibility_lag1_autocorr": autocorr,
        "low_vis_span_frames": spans,
        "detection": [detection_stats(c) for c in clips],
        "left_right_swaps": {
            "per_video": swaps,
            "rate_per_frame": sum(s["swap_frames"] for s in swaps)
                              / sum(s["frames_compared"] for s in swaps),
            "note": "whole_body_flip_frames: >= 3 of the 5 pairs swap in the same frame "
                    "(MediaPipe relabels the whole body, typically front/back confusion)."},
        "world_geometry": geometry,
        "world_geometry_frames": counts,
        "world_geometry_per_torso": {k: v / geometry["torso_length"] for k, v in geometry.items()},
        "hip_vs_shoulder_height_ratio": ratio,
        "hip_vs_shoulder_height_ratio_note": (
            f"Hip / shoulder height above the mid-ankles along the torso axis, median over "
            f"{n_standing} standing frames (torso within 30 deg of vertical, knees straight "
            f"within 25 deg)."),
        "world_landmarks_body_frame_per_torso": table,
        "world_landmarks_body_frame_note": (
            f"Mean over the {n_upright} frames with the torso within 30 deg of the camera's "
            f"vertical, each landmark where visible. Origin mid-hips, +y mid-hips -> "
            f"mid-shoulders, +x right hip -> left hip (the person's left) made perpendicular "
            f"to y, +z = x cross y (forward). Arms and legs move (these frames include "
            f"sitting), so only torso, face and ankle->foot offsets are pose-independent; the "
            f"world scale is MediaPipe's own estimate and its 3 eye points per side coincide."),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("assets/mediapipe_stats.json"))
    args = ap.parse_args()
    clips = []
    for video in ALL_VIDEOS:
        img, world, fps, w, h = run_pose(VIDEO_ROOT / video)
        clips.append({"video": video, "img": img, "world": world, "fps": fps, "width": w,
                      "height": h, "frames": len(img),
                      "detected_frames": int(np.isfinite(img[:, 0, 0]).sum()),
                      "identity_switches": identity_switches(img)})
    stats = rnd(measure(clips))
    args.out.write_text(compact_json(stats) + "\n")

    print(f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} kB)")
    for src in stats["source"]:
        print(f"  {src['video']}: {src['detected_frames']}/{src['frames']} detected, "
              f"{src['identity_switches']} identity switches, used={src['used']}")
    for j in (0, 11, 23, 16, 28):
        print(f"  {NAMES[j]:13s} jitter {stats['jitter_px_per_height'][j]:.3g} box heights, "
              f"visibility < 0.5 in {stats['visibility']['frac_below_0.5'][j]:.3g} of frames")
    geo = stats["world_geometry_per_torso"]
    print(f"  swaps/frame {stats['left_right_swaps']['rate_per_frame']}; torso "
          f"{stats['world_geometry']['torso_length']} m; per torso: shoulders "
          f"{geo['shoulder_width']}, hips {geo['hip_width']}, thigh {geo['thigh']}, shin "
          f"{geo['shin']}\n  {stats['jitter_note']}\n  {stats['visibility']['summary']}")


if __name__ == "__main__":
    main()
