"""How our synthetic landmarks differ from the real MediaPipe's, on the same rendered frames.

    genmo-live data compare-obs [--split test] [--cameras 3] [--report out.json]

For every rendered frame we know exactly where each of our landmarks is (engine.data.observations
rig on the true pose, projected through the true camera) and where MediaPipe put it. Per landmark:
- bias: the mean of MediaPipe minus ours, in the image (x right, y down), as a fraction of the
  person's box height, and its size in pixels at the median box height;
- spread: the robust std of what is left around that bias (the detector's pose-dependent error),
  and how slowly it changes (lag-1 autocorrelation over consecutive frames);
- visibility: MediaPipe's mean visibility where our model calls the landmark visible and where it
  calls it hidden (self-occlusion, occluder, outside the image), and how often the two agree on
  "missing";
- a rig correction: the offset (metres, in the landmark's joint frame) that best moves our landmark
  onto MediaPipe's, by robust least squares over all frames (Gauss-Newton on the reprojection).
Only frames where MediaPipe detects the person, the landmark is in the image, in front of any
occluder, and MediaPipe's visibility is at least 0.5 count for bias and spread.
"""
from __future__ import annotations

import numpy as np

from engine.body.body_model import Body
from engine.data.dataset import Clip
from engine.data.observations import (LANDMARK_JOINT, LANDMARK_OFFSET, RIG_STATURE, box_height, hidden_landmarks,
                                      landmarks_3d)
from engine.evaluate.metrics import robust_std
from streamer.landmarks import LANDMARK_NAMES, MIRROR, NUM_LANDMARKS, VISIBLE


def _frames(rendered, clips: list[Clip], body: Body):
    """Per rendered item: (camera, true landmarks (T, 33, 3), joints' world rotations, MediaPipe
    pixels, visibility, usable mask (T, 33), our hidden mask (T, 33), detected (T,))."""
    by_name = {c.clip: c for c in clips}
    for r in rendered:
        clip = by_name[r.clip]
        joints, rot = body.pose_arrays(clip.pose, clip.root)
        cam = r.obs.camera
        pts = landmarks_3d(joints, rot, body.stature)
        uv, depth = cam.project(pts)
        occluded, hidden = hidden_landmarks(uv, depth, cam, r.obs.events)
        det = r.obs.detected
        usable = det[:, None] & ~occluded & cam.in_image(uv) & (r.obs.visibility >= VISIBLE)
        yield cam, pts, rot, uv, r.obs.keypoints.astype(np.float64), r.obs.visibility, usable, hidden, det


def _fit_offsets(samples, scale: float, iterations: int = 4, ridge: float = 1e-4) -> np.ndarray:
    """(33, 3) corrections to LANDMARK_OFFSET (metres at RIG_STATURE, joint frame) minimising the
    Huber-weighted reprojection error onto MediaPipe, Gauss-Newton with an analytic pinhole
    Jacobian. samples: per item (camera, points (T, 33, 3), rot (T, 24, 3, 3), mp (T, 33, 2),
    usable (T, 33)). A small ridge keeps the depth direction, poorly seen from the front, near 0."""
    delta = np.zeros((NUM_LANDMARKS, 3))
    for _ in range(iterations):
        A = np.zeros((NUM_LANDMARKS, 3, 3))
        b = np.zeros((NUM_LANDMARKS, 3))
        for cam, pts, rot, mp, usable in samples:
            R = rot[:, LANDMARK_JOINT]                                   # (T, 33, 3, 3)
            p = pts + np.einsum("tlij,lj->tli", R, delta * scale)
            x = cam.to_camera(p)
            z = np.where(x[..., 2] > 1e-3, x[..., 2], np.nan)
            f = cam.K[0, 0]
            uv = x[..., :2] / z[..., None] * f + cam.K[[0, 1], 2]
            r = mp - uv                                                  # (T, 33, 2)
            # d uv / d x_cam, then d x_cam / d delta = cam.R @ R_joint * scale
            jx = np.zeros(x.shape[:2] + (2, 3))
            jx[..., 0, 0] = f / z
            jx[..., 1, 1] = f / z
            jx[..., :, 2] = -(uv - cam.K[[0, 1], 2]) / z[..., None]
            jac = jx @ (cam.R @ R) * scale                               # (T, 33, 2, 3)
            ok = usable & np.isfinite(r).all(-1) & np.isfinite(jac).all((-1, -2))
            norm = np.linalg.norm(np.where(ok[..., None], r, 0.0), axis=-1)
            h = 0.02 * box_height(np.where(ok[..., None], mp, np.nan))[:, None]
            w = np.where(ok, np.minimum(1.0, np.nan_to_num(h, nan=1.0) / np.maximum(norm, 1e-9)), 0.0)
            jac = np.where(ok[..., None, None], jac, 0.0)
            r = np.where(ok[..., None], r, 0.0)
            A += np.einsum("tl,tlki,tlkj->lij", w, jac, jac)
            b += np.einsum("tl,tlki,tlk->li", w, jac, r)
        for lm in range(NUM_LANDMARKS):
            n = max(np.trace(A[lm]), 1e-12)
            delta[lm] += np.linalg.solve(A[lm] + ridge * n * np.eye(3), b[lm])
    return delta


def compare(rendered, clips: list[Clip], body: Body) -> dict:
    """The report (JSON-ready): per-landmark bias, spread, visibility agreement and rig correction."""
    err, box, vis_ours_visible, vis_ours_hidden, agree, samples = [], [], [], [], [], []
    err_lag = []
    scale = body.stature / RIG_STATURE
    for cam, pts, rot, uv, mp, vis, usable, hidden, det in _frames(rendered, clips, body):
        h = box_height(uv)[:, None, None]
        e = np.where(usable[..., None], (mp - uv) / h, np.nan)
        err.append(e)
        box.append(h[:, 0, 0])
        err_lag.append((e[:-1], e[1:]))
        d = det[:, None] & np.ones_like(hidden)
        vis_ours_visible.append(np.where(d & ~hidden, vis, np.nan))
        vis_ours_hidden.append(np.where(d & hidden, vis, np.nan))
        agree.append(np.where(d, (vis < VISIBLE) == hidden, np.nan))
        samples.append((cam, pts, rot, mp, usable))
    e = np.concatenate(err)
    bias = np.nanmean(e, 0)                                   # (33, 2)
    resid = e - bias
    spread = np.array([robust_std(resid[:, lm].ravel()) for lm in range(NUM_LANDMARKS)])
    a = np.concatenate([x for x, _ in err_lag]) - bias
    b = np.concatenate([y for _, y in err_lag]) - bias
    ok = np.isfinite(a).all(-1) & np.isfinite(b).all(-1)
    lag1 = np.array([np.corrcoef(a[ok[:, lm], lm].ravel(), b[ok[:, lm], lm].ravel())[0, 1]
                     if ok[:, lm].sum() > 10 else np.nan for lm in range(NUM_LANDMARKS)])
    box_px = float(np.nanmedian(np.concatenate(box)))
    correction = _fit_offsets(samples, scale)
    after = []
    for cam, pts, rot, mp, usable in samples:
        p = pts + np.einsum("tlij,lj->tli", rot[:, LANDMARK_JOINT], correction * scale)
        uv, _ = cam.project(p)
        h = box_height(uv)[:, None, None]
        after.append(np.where(usable[..., None], (mp - uv) / h, np.nan))
    after = np.concatenate(after)
    vv, vh, ag = (np.concatenate(x) for x in (vis_ours_visible, vis_ours_hidden, agree))
    rows = []
    for lm, name in enumerate(LANDMARK_NAMES):
        rows.append({
            "landmark": name,
            "frames": int(np.isfinite(e[:, lm, 0]).sum()),
            "bias_per_height": [round(float(v), 5) for v in bias[lm]],
            "bias_px": round(float(np.linalg.norm(bias[lm]) * box_px), 2),
            "spread_per_height": round(float(spread[lm]), 5),
            "spread_px": round(float(spread[lm] * box_px), 2),
            "error_lag1_autocorr": round(float(lag1[lm]), 3),
            "bias_after_correction_px": round(float(np.linalg.norm(np.nanmean(after[:, lm], 0)) * box_px), 2),
            "vis_when_ours_visible": round(float(np.nanmean(vv[:, lm])), 3),
            "vis_when_ours_hidden": round(float(np.nanmean(vh[:, lm])), 3) if np.isfinite(vh[:, lm]).any() else None,
            "missing_agreement": round(float(np.nanmean(ag[:, lm])), 3),
            "rig_correction_m": [round(float(v), 4) for v in correction[lm]],
        })
    symmetric = (correction + correction[list(MIRROR)] * [-1.0, 1.0, 1.0]) / 2
    return {"frames": int(e.shape[0]), "median_box_height_px": round(box_px, 1), "landmarks": rows,
            "rig_offsets_used_m": {name: [round(float(v), 4) for v in LANDMARK_OFFSET[lm]]
                                   for lm, name in enumerate(LANDMARK_NAMES)},
            "rig_offsets_corrected_m": {name: [round(float(v), 4) for v in LANDMARK_OFFSET[lm] + symmetric[lm]]
                                        for lm, name in enumerate(LANDMARK_NAMES)}}


def format_report(report: dict) -> str:
    lines = [f"{report['frames']} rendered frames, median person height {report['median_box_height_px']} px",
             f"{'landmark':18s} {'frames':>7s} {'bias px':>8s} {'after':>6s} {'spread px':>10s} {'lag1':>5s} "
             f"{'vis ours-vis':>12s} {'vis ours-hid':>12s} {'agree':>6s}"]
    for r in report["landmarks"]:
        hid = "—" if r["vis_when_ours_hidden"] is None else f"{r['vis_when_ours_hidden']:.2f}"
        lines.append(f"{r['landmark']:18s} {r['frames']:7d} {r['bias_px']:8.1f} {r['bias_after_correction_px']:6.1f} "
                     f"{r['spread_px']:10.1f} {r['error_lag1_autocorr']:5.2f} {r['vis_when_ours_visible']:12.2f} "
                     f"{hid:>12s} {r['missing_agreement']:6.2f}")
    return "\n".join(lines)
