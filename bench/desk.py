"""The desk view on real video: a clip cropped to the top of its image, as a webcam at a desk sees a
person (the head to the waist, the legs out of view), against the same clip seen whole.

MediaPipe runs on every frame of the whole image and of the crop; the engine (the given weights,
lag 0, a frame at a time) turns each into poses three ways: the whole image, the crop, and the crop
with a legs prompt (engine.legs). The frames where the whole-image run has the person seated (both
knees bent more than SEATED_KNEE_DEG) are the seated frames. For each run the report gives, over
the seated frames and over the others, the median pelvis height above the floor and knee bend,
and the share of frames whose pose says its knees were seen; and a strip of frames, each the crop
beside the three avatars seen from their side.

    genmo-live bench desk [--clip PATH] [--keep 0.55] [--legs TEXT] [--model PATH] [--out DIR]
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import numpy as np

from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.evaluate.metrics import knee_angles_deg
from engine.live.engine import LiveEngine
from engine.live.pose_frame import PoseFrame
from streamer.packets import LandmarkPacket

SEATED_KNEE_DEG = 60.0   # both knees bent more than this in the whole-image run: a seated frame
STRIP_FRAMES = 6
J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
RUN_COLORS = {"whole image": (80, 80, 80), "crop": (40, 40, 220), "crop + legs prompt": (200, 120, 0)}


def read_frames(path: Path | str) -> tuple[list[np.ndarray], float]:
    """Every frame of a video as RGB (H, W, 3) uint8, and its frame rate."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot read the video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    frames = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    if not frames:
        raise ValueError(f"no frames in {path}")
    return frames, fps


def crop_top(rgb: np.ndarray, keep: float) -> np.ndarray:
    """The top `keep` (0..1] of an image's rows."""
    return np.ascontiguousarray(rgb[:max(1, round(len(rgb) * keep))])


def landmark_packets(frames: list[np.ndarray], fps: float, detector) -> list[LandmarkPacket]:
    """MediaPipe (streamer.pose.PoseDetector, video mode) on every frame, as the ingest makes packets."""
    out = []
    for i, rgb in enumerate(frames):
        h, w = rgb.shape[:2]
        out.append(LandmarkPacket.of_detection(i, i / fps, w, h, detector.detect(rgb)))
    return out


def poses(engine: LiveEngine, packets: list[LandmarkPacket]) -> list[PoseFrame]:
    return [f for p in packets for f in engine.push([p])] + engine.flush()


def knee_bend_deg(joints: np.ndarray) -> np.ndarray:
    """(T, 24, 3) joints -> (T, 2) left and right knee bend, degrees (0 = straight leg): 180° less
    the evaluation's angle between thigh and shin."""
    return 180.0 - knee_angles_deg(joints)


def summary(frames: list[PoseFrame], seated: np.ndarray) -> dict:
    """Median pelvis height (m) and knee bend (degrees, both knees) over the seated frames and the
    others, and the share of frames whose knees were seen."""
    joints = np.stack([f.joints for f in frames])
    pelvis, bend = joints[:, 0, 1], knee_bend_deg(joints)
    knees_seen = np.array([bool(f.seen[J["left_knee"]] or f.seen[J["right_knee"]]) for f in frames])

    def part(mask):
        if not mask.any():
            return {"frames": 0, "pelvis_height_m": None, "knee_bend_deg": None}
        return {"frames": int(mask.sum()), "pelvis_height_m": round(float(np.median(pelvis[mask])), 3),
                "knee_bend_deg": round(float(np.median(bend[mask])), 1)}

    return {"seated": part(seated), "other": part(~seated), "knees_seen_share": round(float(knees_seen.mean()), 3)}


def side_view(runs: dict[str, np.ndarray], height: int) -> np.ndarray:
    """The (24, 3) joints of each run drawn from the person's right side (their forward to the
    left of the picture; 2.2 m of world in the picture's height), the floor a line."""
    img = np.full((height, height, 3), 255, np.uint8)
    scale = height / 2.2
    floor = height - 12
    cv2.line(img, (0, floor), (height, floor), (150, 150, 150), 1, cv2.LINE_AA)
    for name, joints in runs.items():
        facing = joints[J["left_hip"]] - joints[J["right_hip"]]  # the body's left
        forward = np.cross(facing, [0.0, 1.0, 0.0])
        forward /= max(np.linalg.norm(forward[[0, 2]]), 1e-9)
        along = (joints - joints[0]) @ forward  # metres forward of the pelvis
        uv = np.stack([height / 2 - along * scale, floor - joints[:, 1] * scale], -1).astype(int)
        for j, p in enumerate(SMPL_PARENTS):
            if p >= 0:
                cv2.line(img, tuple(uv[p]), tuple(uv[j]), RUN_COLORS[name], 2, cv2.LINE_AA)
    return img


def frame_strip(crops: list[np.ndarray], runs: dict[str, list[PoseFrame]], at: list[int], path: Path,
                height: int = 240) -> Path:
    """Each frame `at`: the crop the camera saw beside the runs' avatars from the side; a legend."""
    tiles = []
    for i in at:
        crop = cv2.cvtColor(crops[i], cv2.COLOR_RGB2BGR)
        crop = cv2.resize(crop, (round(crop.shape[1] * height / crop.shape[0]), height))
        side = side_view({name: frames[i].joints for name, frames in runs.items()}, height)
        tile = np.concatenate([crop, side], 1)
        cv2.putText(tile, f"frame {i}", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
        tiles.append(np.pad(tile, ((0, 0), (0, 6), (0, 0)), constant_values=255))
    strip = np.concatenate(tiles, 1)
    legend = np.full((34, strip.shape[1], 3), 255, np.uint8)
    x = 8
    for name, color in RUN_COLORS.items():
        cv2.rectangle(legend, (x, 10), (x + 24, 24), color, -1)
        cv2.putText(legend, name, (x + 32, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        x += 260
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.concatenate([strip, legend], 0), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def run(clip: Path | str, keep: float, legs: str, engine_factory, detector_factory, out_dir: Path) -> dict:
    """The report (summary per run, the seated frames) and the strip, in out_dir."""
    frames, fps = read_frames(clip)
    crops = [crop_top(f, keep) for f in frames]
    with detector_factory() as detector:
        whole = landmark_packets(frames, fps, detector)
    with detector_factory() as detector:
        cropped = landmark_packets(crops, fps, detector)
    runs = {"whole image": poses(engine_factory(fps, ""), whole), "crop": poses(engine_factory(fps, ""), cropped),
            "crop + legs prompt": poses(engine_factory(fps, legs), cropped)}
    bend = knee_bend_deg(np.stack([f.joints for f in runs["whole image"]]))
    seated = (bend > SEATED_KNEE_DEG).all(-1)
    seated_at = np.flatnonzero(seated)
    picks = []
    if len(seated_at):
        picks = seated_at[np.linspace(0, len(seated_at) - 1, STRIP_FRAMES // 2).astype(int)].tolist()
    others = np.flatnonzero(~seated)
    picks += others[np.linspace(0, len(others) - 1, STRIP_FRAMES - len(picks)).astype(int)].tolist()
    strip = frame_strip(crops, runs, sorted(picks), out_dir / "desk_strip.jpg")
    return {"clip": str(clip), "keep": keep, "legs": legs, "fps": fps, "frames": len(frames),
            "seated_frames": seated_at.tolist(), "strip": str(strip), "strip_frames": sorted(picks),
            "runs": {name: summary(f, seated) for name, f in runs.items()}}


def format_report(report: dict) -> str:
    lines = [f"{report['clip']}: top {report['keep']:.0%} of the image; {len(report['seated_frames'])} of "
             f"{report['frames']} frames seated (both knees bent over {SEATED_KNEE_DEG:.0f}° seen whole); "
             f"legs prompt {report['legs']!r}",
             "| run | seated: pelvis height m | seated: knee bend ° | other: pelvis height m | other: knee bend ° "
             "| knees seen |", "|---|---|---|---|---|---|"]
    for name, r in report["runs"].items():
        s, o = r["seated"], r["other"]
        lines.append(f"| {name} | {s['pelvis_height_m']} | {s['knee_bend_deg']} | {o['pelvis_height_m']} | "
                     f"{o['knee_bend_deg']} | {r['knees_seen_share']:.0%} |")
    lines.append(f"strip: {report['strip']} (frames {report['strip_frames']})")
    return "\n".join(lines)


def engine_factory(model, norm, body, cfg, text_encoder):
    """(fps, legs) -> a fresh LiveEngine with lag 0 and that legs prompt."""
    def make(fps: float, legs: str) -> LiveEngine:
        return LiveEngine(model, norm, body, dataclasses.replace(cfg, lag=0, legs=legs), text_encoder, fps)
    return make
