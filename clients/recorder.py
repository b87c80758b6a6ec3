"""The recorder: `genmo-live run --record take.npz --record take.bvh` writes the take while it streams.

Formats, chosen by the path's suffix:
- .npz (uncompressed numpy archive), everything the pose frames carry, T frames:
  pose_aa (T, 24, 3) radians, pose_quat (T, 24, 4) (w, x, y, z), root (T, 3) metres, joints
  (T, 24, 3) metres, contacts (T, 6), frame_id (T,) int64, t_capture / t_emit (T,) time.time()
  seconds, source (T,) str, confidence (T,), all as published (float64); and the take's fps,
  stature (metres), joint_names (24,), parents (24,), rest_joints (24, 3) metres.
  `export` turns one into a BVH.
- .bvh: the body's 24-joint SMPL skeleton, joints named as in engine.body.skeleton.SMPL_JOINT_NAMES and
  written depth-first (so the channel columns are not in SMPL joint order). Y up, in METRES, the
  pose frame's world (engine.live.pose_frame): Blender's importer reads units as they are (scale 1.0 by
  default), so the body opens 1.7 m tall there; tools that assume centimetres (MotionBuilder)
  need a scale of 100 on import. OFFSETs are the rest T-pose's bones, the root's its rest
  position; the root has "Xposition Yposition Zposition Zrotation Xrotation Yrotation", every
  other joint "Zrotation Xrotation Yrotation": intrinsic Z, then X, then Y, i.e. the local
  rotation is Rz @ Rx @ Ry (column vectors), the common CMU order. Angles are degrees, each moved by
  whole turns to within 180° of its previous frame so that players never interpolate the long
  way round. The root's position channels are the pelvis's world position (they replace its
  OFFSET, as in most BVH). Leaf joints (head, feet, hands) end in an End Site that continues
  their bone by its own length (only for drawing the bone; it has no channels).
  Frame Time = 1 / fps, the source's frame rate; for a camera (`timed_by_capture`), the median
  interval between the recorded frames' capture times, since a webcam's driver reports 30 fps
  while a dim room has it deliver 15.

Writing while streaming: `publish` only appends the frame to a list. A writer thread wakes once a
second of frames (ceil(fps) frames, by count, not by the clock) has arrived, and on close, adds
them to the take in memory and rewrites the whole file: into a temporary file beside it, then
os.replace, so the file on disk is always a complete take and a killed process loses at most the
last second (a power cut may lose more: nothing is fsynced). A rewrite costs O(take length), but
only in that thread and mostly in system calls, outside the GIL: measured on a busy 2-core
machine, a 10-minute take at 30 fps (18k frames, 14 MB of BVH, 37 MB of npz) rewrites in ~35 ms
(BVH) and ~57 ms (npz) each second, while publish() stays at ~0.3 µs (p99 ~20 µs). Much longer
takes make the writer busier (about 6x that for an hour) but never block publish(). Frames with
missing, misshapen or non-finite values are skipped and counted (`skipped`), with one warning.
"""
from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

import numpy as np

from clients.live import Output
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import CONTACT_JOINTS
from engine.live.pose_frame import PoseFrame
from streamer.frame_rate import FrameRate

log = logging.getLogger("genmo-live.recorder")

FORMATS = (".npz", ".bvh")
TIMING_FRAMES = 300     # a camera take's rate is the median capture interval over its last frames
ROTATION_CHANNELS = ("Zrotation", "Xrotation", "Yrotation")
# Below this cosine of the middle (X) angle the first and last axes all but coincide (gimbal
# lock): the usual formulas would take atan2 of two rounding errors, so all of the turn goes to Z.
# 1e-8 balances the two errors (that of the formulas ~1e-16 / cos, of the fallback ~cos).
_GIMBAL_LOCK_COS = 1e-8


# ---------------------------------------------------------------------------------------------
# BVH maths and text (pure)
# ---------------------------------------------------------------------------------------------

def matrix_to_euler_zxy(m: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) radians (z, x, y) with m = Rz(z) @ Rx(x) @ Ry(y),
    x in [-pi/2, pi/2], z and y in (-pi, pi]; at gimbal lock y = 0. The inverse of
    engine.data.mocap_io.euler_to_matrix(degrees, "ZXY")."""
    cos_x = np.hypot(m[..., 2, 0], m[..., 2, 2])
    x = np.arctan2(m[..., 2, 1], cos_x)
    locked = cos_x < _GIMBAL_LOCK_COS
    z = np.where(locked, np.arctan2(m[..., 1, 0], m[..., 0, 0]), np.arctan2(-m[..., 0, 1], m[..., 1, 1]))
    y = np.where(locked, 0.0, np.arctan2(-m[..., 2, 0], m[..., 2, 2]))
    return np.stack([z, x, y], axis=-1)


def unwrap_degrees(angles: np.ndarray, previous: np.ndarray | None = None) -> np.ndarray:
    """(T, ...) angles in degrees -> the same angles, each moved by whole turns to lie within 180°
    of the one in the frame before; frame 0 is moved to within 180° of `previous` (the last frame
    already written, (...) degrees), or left as it is when there is none."""
    before = np.concatenate([angles[:1] if previous is None else previous[None], angles[:-1]])
    turns = np.cumsum(np.round((before - angles) / 360.0), axis=0)  # whole numbers: exact sums
    return angles + 360.0 * turns


def depth_first(parents) -> list[int]:
    """Joint indices in the order a BVH hierarchy lists them: each joint, then its subtrees in
    index order. parents: (J,) with parents[0] == -1."""
    order, stack = [], [0]
    while stack:
        j = stack.pop()
        order.append(j)
        stack.extend(c for c in range(len(parents) - 1, 0, -1) if parents[c] == j)
    return order


def bvh_hierarchy(names, parents, rest_joints: np.ndarray) -> str:
    """The HIERARCHY section (module docstring) of a skeleton: names (J,), parents (J,),
    rest_joints (J, 3) rest T-pose positions, metres."""
    rest = np.asarray(rest_joints, np.float64)
    children = {j: [c for c in range(len(parents)) if parents[c] == j] for j in range(len(parents))}
    rot = " ".join(ROTATION_CHANNELS)
    lines = ["HIERARCHY"]

    def offset(v) -> str:
        return "OFFSET " + " ".join(f"{x:.6f}" for x in v)

    def joint(j: int, pad: str) -> None:
        if parents[j] < 0:
            lines.append(f"ROOT {names[j]}")
            bone, channels = rest[j], f"6 Xposition Yposition Zposition {rot}"
        else:
            lines.append(f"{pad}JOINT {names[j]}")
            bone, channels = rest[j] - rest[parents[j]], f"3 {rot}"
        lines.extend([pad + "{", f"{pad}\t{offset(bone)}", f"{pad}\tCHANNELS {channels}"])
        for c in children[j]:
            joint(c, pad + "\t")
        if not children[j]:
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\t{offset(bone)}", f"{pad}\t}}"])
        lines.append(pad + "}")

    joint(0, "")
    return "\n".join(lines) + "\n"


def bvh_channels(pose_aa: np.ndarray, root: np.ndarray, order: list[int],
                 previous: np.ndarray | None = None) -> np.ndarray:
    """The MOTION values of T frames: pose_aa (T, J, 3) SMPL axis-angle (joint 0 the world root
    orientation, the others local to their parent, as a BVH's rotation channels are), root (T, 3)
    metres, order: the hierarchy's joint order (depth_first). previous: the last frame written,
    as returned here, for continuous angles across calls. Returns (T, 3 + 3 J): the root position,
    then each joint's Z, X, Y degrees in `order`."""
    local = axis_angle_to_matrix(np.asarray(pose_aa, np.float64))
    degrees = np.rad2deg(matrix_to_euler_zxy(local[:, order]))
    degrees = unwrap_degrees(degrees, None if previous is None else previous[3:].reshape(-1, 3))
    return np.concatenate([np.asarray(root, np.float64), degrees.reshape(len(degrees), -1)], axis=1)


def format_rows(values: np.ndarray) -> bytes:
    """(T, C) -> T lines of C space-separated numbers, 6 decimals (µm, micro-degrees)."""
    line = " ".join(["%.6f"] * values.shape[1]) + "\n"
    return "".join(line % tuple(row) for row in values.tolist()).encode()


# ---------------------------------------------------------------------------------------------
# Takes in memory, rewritten to disk atomically
# ---------------------------------------------------------------------------------------------

def replace_atomically(path: Path, write) -> None:
    """Call write(binary file) on a temporary file beside `path`, then move it over `path` in one
    step: readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class BvhTake:
    """A BVH take being written: the hierarchy once, each added batch of frames formatted once."""

    def __init__(self, names, parents, rest_joints: np.ndarray, fps: float):
        self._hierarchy = bvh_hierarchy(names, parents, rest_joints).encode()
        self._order = depth_first(parents)
        self.fps = fps
        self._chunks: list[bytes] = []
        self._last: np.ndarray | None = None
        self.frames = 0

    def add(self, batch: dict) -> None:
        """batch: "pose_aa" (n, J, 3) and "root" (n, 3), as in the npz."""
        values = bvh_channels(batch["pose_aa"], batch["root"], self._order, self._last)
        self._chunks.append(format_rows(values))
        self._last = values[-1]
        self.frames += len(values)

    def write(self, f) -> None:
        f.write(self._hierarchy)
        f.write(f"MOTION\nFrames: {self.frames}\nFrame Time: {1.0 / self.fps:.8f}\n".encode())
        f.writelines(self._chunks)


def _columns(num_joints: int) -> dict[str, tuple[tuple, type]]:
    """The npz's per-frame columns but "source": name -> (shape of one frame's value, dtype)."""
    return {"pose_aa": ((num_joints, 3), np.float64), "pose_quat": ((num_joints, 4), np.float64),
            "root": ((3,), np.float64), "joints": ((num_joints, 3), np.float64),
            "contacts": ((len(CONTACT_JOINTS),), np.float64), "frame_id": ((), np.int64),
            "t_capture": ((), np.float64), "t_emit": ((), np.float64), "confidence": ((), np.float64)}


class NpzTake:
    """An npz take being written: columns in arrays that double when full (appending stays O(1)
    per frame), saved as views of their filled part."""

    def __init__(self, meta: dict, num_joints: int):
        self._meta = meta
        self._arrays = {k: np.empty((64,) + shape, dtype) for k, (shape, dtype) in _columns(num_joints).items()}
        self._source: list[str] = []
        self.frames = 0

    def add(self, batch: dict) -> None:
        n = len(batch["source"])
        for k, a in self._arrays.items():
            if self.frames + n > len(a):
                grown = np.empty((max(2 * len(a), self.frames + n),) + a.shape[1:], a.dtype)
                grown[:self.frames] = a[:self.frames]
                a = self._arrays[k] = grown
            a[self.frames:self.frames + n] = batch[k]
        self._source += batch["source"]
        self.frames += n

    @property
    def fps(self) -> float:
        return self._meta["fps"]

    @fps.setter
    def fps(self, fps: float) -> None:
        self._meta["fps"] = float(fps)

    def write(self, f) -> None:
        columns = {k: a[:self.frames] for k, a in self._arrays.items()}
        np.savez(f, **columns, source=np.array(self._source, dtype=str), **self._meta)


def check_recording_path(path: Path) -> None:
    """ValueError unless `path` names a format the recorder writes (by its suffix)."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot record to {path}: the suffix must be .npz or .bvh, not {path.suffix or 'none'!r}")


def frame_values(frame: PoseFrame, num_joints: int) -> dict | None:
    """One frame's npz columns (see _columns) plus "source", or None when a value is missing,
    misshapen or not finite (such frames are skipped: they would be garbage in any player)."""
    values = {}
    for key, (shape, dtype) in _columns(num_joints).items():
        try:
            v = np.asarray(getattr(frame, key), dtype)
        except (TypeError, ValueError):
            return None
        if v.shape != shape or not np.isfinite(v).all():
            return None
        values[key] = v
    if not isinstance(frame.source, str):
        return None
    values["source"] = frame.source
    return values


def stack_frames(rows: list[dict]) -> dict:
    """frame_values dicts -> one batch: each column stacked (n, ...), "source" a list."""
    return {k: (np.stack([r[k] for r in rows]) if k != "source" else [r[k] for r in rows]) for k in rows[0]}


# ---------------------------------------------------------------------------------------------
# The output
# ---------------------------------------------------------------------------------------------

class Recorder(Output):
    """Record the published poses to `path` (.npz or .bvh, module docstring) while streaming.

    body: engine.body.body_model.Body (names, parents, rest_joints, stature). fps: the source's frame rate:
    the take's (the BVH's frame time), and one second of frames is when the file is next rewritten.
    timed_by_capture: a camera's take, whose rate is its frames' (streamer.frame_rate, over the last
    TIMING_FRAMES), not the told one. Attributes: frames_written (on disk now),
    skipped (frames with bad values).
    """

    name = "recorder"

    def __init__(self, path: Path, body, fps: float, timed_by_capture: bool = False):
        path = Path(path)
        check_recording_path(path)
        if not fps > 0:
            raise ValueError(f"cannot record to {path}: fps must be positive, got {fps}")
        self.path = path
        names, parents = tuple(body.names), tuple(body.parents)
        rest = np.asarray(body.rest_joints, np.float64)
        self._num_joints = len(names)
        if path.suffix.lower() == ".bvh":
            self._take = BvhTake(names, parents, rest, fps)
        else:
            self._take = NpzTake({"fps": float(fps), "stature": float(body.stature),
                                  "joint_names": np.array(names), "parents": np.array(parents),
                                  "rest_joints": rest}, self._num_joints)
        self._flush_every = max(1, math.ceil(fps))
        self._measured = FrameRate(TIMING_FRAMES) if timed_by_capture else None
        self.frames_written = 0
        self.skipped = 0
        self._incoming: list[PoseFrame] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._written = threading.Condition()
        self._closing = False
        self._failed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        # An empty take now: a path that cannot be written fails here, before the run, not later.
        replace_atomically(path, self._take.write)
        self._thread = threading.Thread(target=self._run, name=f"recorder {path.name}", daemon=True)
        self._thread.start()

    def publish(self, frame: PoseFrame) -> None:
        """Queue the frame for the writer thread, which reads its arrays later: they must not be
        changed after publishing (the engine makes new ones for every pose)."""
        with self._lock:
            self._incoming.append(frame)
            due = len(self._incoming) >= self._flush_every
        if due:
            self._wake.set()

    def close(self) -> None:
        """Write every frame published so far, then stop the writer."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self.frames_written < self._take.frames:
            log.error("recorder %s: only %d of %d frames are on disk", self.path, self.frames_written,
                      self._take.frames)
        if self.skipped:
            log.warning("%s: skipped %d frames with missing or non-finite values", self.path, self.skipped)
        log.info("recorded %d frames to %s", self.frames_written, self.path)

    def wait_written(self, frames: int, timeout: float | None = None) -> bool:
        """Block until at least `frames` frames are on disk (or `timeout` seconds); whether they are."""
        with self._written:
            return self._written.wait_for(lambda: self.frames_written >= frames, timeout)

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            closing = self._closing
            try:
                self._flush()
            except Exception:  # keep recording (and closing) whatever one write did
                if not self._failed:
                    log.exception("recorder %s: writing failed; retrying every second", self.path)
                self._failed = True
            if closing:
                return

    def _flush(self) -> None:
        with self._lock:
            frames, self._incoming = self._incoming, []
        rows = [frame_values(f, self._num_joints) for f in frames]
        good = [r for r in rows if r is not None]
        if len(good) < len(rows):
            if not self.skipped:
                log.warning("recorder %s: skipping frames with missing or non-finite values "
                            "(first: frame %s)", self.path, frames[rows.index(None)].frame_id)
            self.skipped += len(rows) - len(good)
        if good:
            self._take.add(stack_frames(good))
            if self._measured:
                for r in good:
                    self._measured.add(float(r["t_capture"]))
                self._take.fps = self._measured.fps or self._take.fps
        if self._take.frames > self.frames_written:
            replace_atomically(self.path, self._take.write)
            with self._written:
                self.frames_written = self._take.frames
                self._written.notify_all()


def export(npz_path: Path, out_path: Path) -> Path:
    """Convert a recorded .npz take into a .bvh (the recorder's own writer); returns out_path."""
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".bvh":
        raise ValueError(f"cannot export to {out_path}: the suffix must be .bvh")
    with np.load(npz_path) as data:
        take = BvhTake([str(n) for n in data["joint_names"]], tuple(int(p) for p in data["parents"]),
                       data["rest_joints"], float(data["fps"]))
        if len(data["root"]):
            take.add({"pose_aa": data["pose_aa"], "root": data["root"]})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    replace_atomically(out_path, take.write)
    return out_path
