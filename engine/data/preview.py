"""Pictures of a motion on our body's skeleton, so a person can check a retarget by eye.

    genmo-live data preview CLIP --out walk.mp4   (or .png: a contact sheet of a few frames)

Each frame has three orthographic views with a fixed framing over the whole clip, so travel shows:
front (seen from +z: the body's left on the picture's right), side (seen from the body's right, +z
to the right) and top (x to the left as in the front view, +z down, with the pelvis path).
Left joints red, right blue, centre green; the floor is y = 0.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS

PANEL = 360  # pixels, square
_MARGIN_M = 0.25
_COLORS = {"left": (60, 60, 220), "right": (220, 120, 40), "centre": (60, 170, 60)}  # BGR


def _color(joint: int):
    name = SMPL_JOINT_NAMES[joint]
    return _COLORS["left" if name.startswith("left") else "right" if name.startswith("right") else "centre"]


def _view_axes():
    """(name, horizontal axis, horizontal sign, vertical axis, vertical sign) per panel."""
    return [("front", 0, 1.0, 1, 1.0), ("side", 2, 1.0, 1, 1.0), ("top", 0, 1.0, 2, -1.0)]


def _framing(joints: np.ndarray, h: int, hs: float, v: int, vs: float):
    """Centre and metres-per-pixel scale covering every frame of the clip in one view."""
    pts = np.stack([joints[..., h] * hs, joints[..., v] * vs], -1).reshape(-1, 2)
    lo, hi = pts.min(0) - _MARGIN_M, pts.max(0) + _MARGIN_M
    if v == 1:
        lo[1] = min(lo[1], -0.1)  # keep the floor in the picture
    span = max((hi - lo).max(), 2.0)
    return (lo + hi) / 2, span / PANEL


def render_frames(joints: np.ndarray, root_path: np.ndarray | None = None, title: str = ""):
    """(T, 24, 3) metres -> iterator of (PANEL, 3 * PANEL, 3) uint8 BGR images."""
    views = [(name, h, hs, v, vs, *_framing(joints, h, hs, v, vs)) for name, h, hs, v, vs in _view_axes()]
    # The front view looks from +z, so the body's +x (its left) must land on the picture's right;
    # the top view matches it. The side view looks from the body's right (-x), +z to the right.
    for t, frame in enumerate(joints):
        panels = []
        for name, h, hs, v, vs, centre, mpp in views:
            img = np.full((PANEL, PANEL, 3), 245, np.uint8)

            def px(p):
                u = (p[..., h] * hs - centre[0]) / mpp + PANEL / 2
                w = PANEL / 2 - (p[..., v] * vs - centre[1]) / mpp
                return np.stack([u, w], -1).round().astype(int)

            if v == 1:
                floor = px(np.array([0.0, 0.0, 0.0]))[1]
                cv2.line(img, (0, floor), (PANEL, floor), (160, 160, 160), 1)
            elif root_path is not None:
                cv2.polylines(img, [px(root_path)], False, (180, 180, 180), 1)
            uv = px(frame)
            for j in range(1, len(SMPL_PARENTS)):
                cv2.line(img, tuple(uv[SMPL_PARENTS[j]]), tuple(uv[j]), _color(j), 2, cv2.LINE_AA)
            for j in range(len(SMPL_PARENTS)):
                cv2.circle(img, tuple(uv[j]), 3, _color(j), -1, cv2.LINE_AA)
            cv2.putText(img, name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (90, 90, 90), 1, cv2.LINE_AA)
            panels.append(img)
        out = np.concatenate(panels, axis=1)
        cv2.putText(out, f"{title}  frame {t}", (6, PANEL - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (90, 90, 90), 1, cv2.LINE_AA)
        yield out


def write_preview(joints: np.ndarray, out: Path, fps: float = 30.0, title: str = "",
                  sheet_frames: int = 5) -> Path:
    """Write an .mp4 of every frame or a .png contact sheet of `sheet_frames` evenly spaced frames."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    root_path = joints[:, 0]
    suffix = out.suffix.lower()
    if suffix == ".png":
        picks = np.linspace(0, len(joints) - 1, min(sheet_frames, len(joints))).round().astype(int)
        frames = list(render_frames(joints, root_path, title))
        sheet = np.concatenate([frames[i] for i in picks], axis=0)
        if not cv2.imwrite(str(out), sheet):
            raise OSError(f"could not write {out}")
        return out
    if suffix != ".mp4":
        raise ValueError(f"preview output must end in .mp4 or .png, got {out.name}")
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (3 * PANEL, PANEL))
    if not writer.isOpened():
        raise OSError(f"could not open a video writer for {out}")
    try:
        for img in render_frames(joints, root_path, title):
            writer.write(img)
    finally:
        writer.release()
    return out
