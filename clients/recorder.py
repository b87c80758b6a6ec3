"""The recorder: `genmo-live run --record take.npz --record take.bvh` writes the take while it streams.

Formats, chosen by the path's suffix:
- .npz (uncompressed numpy archive), everything the pose frames carry, T frames:
  pose_aa (T, 24, 3) radians, pose_quat (T, 24, 4) (w, x, y, z), root (T, 3) metres, joints
  (T, 24, 3) metres, contacts (T, 6), frame_id (T,) int64, t_capture / t_emit (T,) time.time()
  seconds, source (T,) str, confidence (T,), all as published (float64); and the take's fps,
  stature (metres), joint_names (24,), parents (24,), rest_joints (24, 3) metres,
  timed_by_capture (bool: fps is the rate the camera's frames came at).
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
  their bone by its own length (only for drawing the bone; it has no channels), but never below
  the floor in the rest pose: the toes' bone points down, and its tip sat 2.2 cm under the floor.
  Frame Time = 1 / fps, the source's frame rate; for a camera (`timed_by_capture`), the median
  interval between the recorded frames' capture times, since a webcam's driver reports 30 fps
  while a dim room has it deliver 15.

Writing while streaming: `publish` only appends the frame to a list. A writer thread wakes once a
second of frames (ceil(fps) frames, by count, not by the clock) has arrived, and on close, and
appends them to the file: memory and disk work are O(new frames), however long the take.
- .bvh: the rows go at the end of the file, then the MOTION header's frame count (fixed width) is
  rewritten in place, so the file is a complete take of the frames so far at every moment.
- .npz: a zip archive cannot grow in place, so the frames go to a journal beside it,
  PATH.partial.npy (a .npy of one record per frame, its header's count rewritten in place: np.load
  reads the take so far at any moment); on close the npz is written from it in one pass and the
  journal removed. Until then PATH.npz holds the take's metadata and no frames: after a killed run,
  `genmo-live export PATH.npz` finishes it from the journal.
A killed process loses at most the last second (a power cut may lose more: nothing is fsynced).
A write that fails (a full disk) is cut off again and tried every RETRY_S with the frames held in
memory; after HOLD_S seconds of that the take ends at what is on disk, and the later frames are
counted as lost. `summary()` says so, and so do the run's report and exit code (clients.live).
Frames with missing, misshapen or non-finite values are skipped and counted (`skipped`), with one
warning.
"""
from __future__ import annotations

import logging
import math
import os
import struct
import threading
import zipfile
from pathlib import Path

import numpy as np

from clients.live import Output
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import CONTACT_JOINTS
from engine.live.pose_frame import SOURCES, PoseFrame
from streamer.frame_rate import FrameRate

log = logging.getLogger("genmo-live.recorder")

FORMATS = (".npz", ".bvh")
TIMING_FRAMES = 300     # a camera take's rate is the median capture interval over its last frames
HOLD_S = 60             # seconds of frames held in memory while the disk takes nothing, before the take ends
RETRY_S = 1.0           # how often a failed write is tried again
EXPORT_CHUNK = 1024     # frames converted at a time
META_KEYS = ("fps", "stature", "joint_names", "parents", "rest_joints", "timed_by_capture")
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
            tip = bone.copy()
            tip[1] = max(tip[1], -rest[j, 1])  # its end at the floor (y = 0) at the lowest
            lines.extend([f"{pad}\tEnd Site", f"{pad}\t{{", f"{pad}\t\t{offset(tip)}", f"{pad}\t}}"])
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
# Takes appended to disk
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


class AppendFile:
    """A file that grows at its end, with a header rewritten in place: on disk there are always the
    header and whole appended pieces, since an append that fails (a full disk) is cut off again.
    Unbuffered, so a failed write leaves no bytes in a buffer to be written twice later."""

    def __init__(self, path: Path, head: bytes):
        self._file = open(path, "wb+", buffering=0)
        self.size = 0
        self.append(head)

    def append(self, data: bytes) -> None:
        """Write `data` at the end, whole or not at all (OSError)."""
        view = memoryview(data)
        try:
            self._file.seek(self.size)
            while view:
                view = view[self._file.write(view):]
        except BaseException:
            self._file.truncate(self.size)
            raise
        self.size += len(data)

    def patch(self, offset: int, data: bytes) -> None:
        """Overwrite bytes already written (needs no new space on disk)."""
        self._file.seek(offset)
        self._file.write(data)

    def close(self) -> None:
        self._file.close()


class BvhTake:
    """A BVH take appended to `path` a batch of frames at a time. The MOTION header's frame count and
    frame time have fixed widths and are rewritten after each append, so the file always reads as
    the take so far (a run killed between an append and that rewrite leaves rows past the count:
    readers go by the count). timed_by_capture: the frame time follows the frames' capture times
    (streamer.frame_rate, over the last TIMING_FRAMES), not the told fps."""

    def __init__(self, path: Path, names, parents, rest_joints: np.ndarray, fps: float,
                 timed_by_capture: bool = False):
        self._order = depth_first(parents)
        self.fps = fps
        self.frames = 0
        self._last: np.ndarray | None = None
        self._measured = FrameRate(TIMING_FRAMES) if timed_by_capture else None
        head = bvh_hierarchy(names, parents, rest_joints).encode() + b"MOTION\n"
        self._counts_at = len(head)
        self._file = AppendFile(path, head + self._counts())

    def _counts(self) -> bytes:
        return f"Frames: {self.frames:>10d}\nFrame Time: {1.0 / self.fps:12.8f}\n".encode()

    def encode(self, batch: dict) -> bytes:
        """The MOTION rows of a batch ("pose_aa" (n, J, 3), "root" (n, 3), "t_capture" (n,), as in the
        npz), continuing the angles of the batch encoded before it."""
        values = bvh_channels(batch["pose_aa"], batch["root"], self._order, self._last)
        self._last = values[-1]
        if self._measured:
            for t in batch["t_capture"]:
                self._measured.add(float(t))
            self.fps = self._measured.fps or self.fps
        return format_rows(values)

    def append(self, data: bytes, frames: int) -> None:
        """Put encoded rows of `frames` frames on disk (OSError: the file is as it was)."""
        self._file.append(data)
        self.frames += frames
        self._file.patch(self._counts_at, self._counts())

    def close(self) -> None:
        self._file.close()


def _columns(num_joints: int) -> dict[str, tuple[tuple, type]]:
    """The npz's per-frame columns: name -> (shape of one frame's value, dtype)."""
    return {"pose_aa": ((num_joints, 3), np.float64), "pose_quat": ((num_joints, 4), np.float64),
            "root": ((3,), np.float64), "joints": ((num_joints, 3), np.float64),
            "contacts": ((len(CONTACT_JOINTS),), np.float64), "frame_id": ((), np.int64),
            "t_capture": ((), np.float64), "t_emit": ((), np.float64), "confidence": ((), np.float64),
            "source": ((), f"<U{max(map(len, SOURCES))}")}


def npy_header(dtype: np.dtype, count: int) -> bytes:
    """The .npy (version 1.0) header of `count` records of `dtype`, of one length for every count
    below 10**12: a journal rewrites it in place as it grows."""
    text = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (np.lib.format.dtype_to_descr(dtype), count)
    size = -(-(10 + len(text) - len(str(count)) + 12 + 1) // 64) * 64  # magic, length, text, "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", size - 10) + (text.ljust(size - 11) + "\n").encode("latin1")


def journal_path(path: Path) -> Path:
    """Where an .npz take's frames are while it is recorded: PATH.partial.npy."""
    return path.with_name(path.name + ".partial.npy")


class NpzTake:
    """An npz take. While recording, its frames are appended to a journal beside it
    (journal_path: a .npy of one record per frame, readable with np.load at any time); `close`
    writes the npz from it and removes it. Until then the npz holds the take's metadata and no
    frames: a run that was killed leaves both, and finish_npz (`genmo-live export`) finishes it."""

    def __init__(self, path: Path, meta: dict, num_joints: int):
        self.path = path
        self.frames = 0
        self._dtype = np.dtype([(k, dtype, shape) for k, (shape, dtype) in _columns(num_joints).items()])
        replace_atomically(path, lambda f: _save_npz(f, np.empty(0, self._dtype), meta))
        self._file = AppendFile(journal_path(path), npy_header(self._dtype, 0))

    def encode(self, batch: dict) -> bytes:
        rows = np.empty(len(batch["source"]), self._dtype)
        for k in self._dtype.names:
            rows[k] = batch[k]
        return rows.tobytes()

    def append(self, data: bytes, frames: int) -> None:
        """Put encoded records of `frames` frames on disk (OSError: the journal is as it was)."""
        self._file.append(data)
        self.frames += frames
        self._file.patch(0, npy_header(self._dtype, self.frames))

    def close(self) -> None:
        """Write the npz from the journal, and remove the journal (OSError: both stay)."""
        self._file.close()
        finish_npz(self.path)


def _save_npz(f, rows: np.ndarray, meta: dict) -> None:
    """np.savez's layout (uncompressed, a NAME.npy per column and per metadata key), closed
    properly even when a write fails (np.savez leaves its zip to a noisy __del__ then)."""
    with zipfile.ZipFile(f, "w", allowZip64=True) as archive:
        for name, value in [*((k, rows[k]) for k in rows.dtype.names), *meta.items()]:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def finish_npz(path: Path) -> int:
    """Write the npz take at `path` from its journal (the recorder's, or one a killed run left) and
    remove the journal; returns the take's frames. A camera's take (timed_by_capture) gets the rate
    its frames came at. Reads the journal in place (np.load's mmap), so memory stays small."""
    journal = journal_path(path)
    with np.load(path) as take:
        meta = {k: take[k] for k in META_KEYS}
    rows = np.load(journal, mmap_mode="r")
    if bool(meta["timed_by_capture"]) and len(rows):
        rate = FrameRate(TIMING_FRAMES)
        for t in rows["t_capture"][-TIMING_FRAMES - 1:]:
            rate.add(float(t))
        meta["fps"] = np.float64(rate.fps or meta["fps"])
    replace_atomically(path, lambda f: _save_npz(f, rows, meta))
    frames = len(rows)
    del rows  # the map closes with its last reference
    journal.unlink()
    return frames


def check_recording_path(path: Path) -> None:
    """ValueError unless `path` names a format the recorder writes (by its suffix)."""
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"cannot record to {path}: the suffix must be .npz or .bvh, not {path.suffix or 'none'!r}")


def frame_values(frame: PoseFrame, num_joints: int) -> dict | None:
    """One frame's npz columns (_columns), or None when a value is missing, misshapen or not
    finite, or the source unknown (such frames are skipped: they would be garbage in any player)."""
    if not isinstance(frame.source, str) or frame.source not in SOURCES:
        return None
    values = {"source": frame.source}
    for key, (shape, dtype) in _columns(num_joints).items():
        if key == "source":
            continue
        try:
            v = np.asarray(getattr(frame, key), dtype)
        except (TypeError, ValueError):
            return None
        if v.shape != shape or not np.isfinite(v).all():
            return None
        values[key] = v
    return values


def stack_frames(rows: list[dict]) -> dict:
    """frame_values dicts -> one batch: each column stacked (n, ...), "source" a list."""
    return {k: (np.stack([r[k] for r in rows]) if k != "source" else [r[k] for r in rows]) for k in rows[0]}


# ---------------------------------------------------------------------------------------------
# The output
# ---------------------------------------------------------------------------------------------

class Recorder(Output):
    """Record the published poses to `path` (.npz or .bvh, module docstring) while streaming.

    body: engine.body.body_model.Body (names, parents, rest_joints, stature). fps: the source's frame
    rate: the take's (the BVH's frame time), and one second of frames is when the writer next
    appends. timed_by_capture: a camera's take, whose rate is its frames' (streamer.frame_rate,
    over the last TIMING_FRAMES), not the told one. hold_s: seconds of frames held while the disk
    takes nothing (module docstring). Attributes: frames_written (on disk now),
    skipped (frames with bad values), lost (frames that will never be on disk), error (the first
    failure, or None).
    """

    name = "recorder"

    def __init__(self, path: Path, body, fps: float, timed_by_capture: bool = False, hold_s: int = HOLD_S):
        path = Path(path)
        check_recording_path(path)
        if not fps > 0:
            raise ValueError(f"cannot record to {path}: fps must be positive, got {fps}")
        self.path = path
        names, parents = tuple(body.names), tuple(body.parents)
        rest = np.asarray(body.rest_joints, np.float64)
        self._num_joints = len(names)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".bvh":
            self._take = BvhTake(path, names, parents, rest, fps, timed_by_capture)
        else:
            if journal_path(path).exists():
                log.warning("%s holds the frames of an unfinished take (its run was killed); recording over it",
                            journal_path(path))
            self._take = NpzTake(path, {"fps": float(fps), "stature": float(body.stature),
                                        "joint_names": np.array(names), "parents": np.array(parents),
                                        "rest_joints": rest, "timed_by_capture": timed_by_capture},
                                 self._num_joints)
        self._flush_every = max(1, math.ceil(fps))
        self._hold_s = hold_s
        self._hold_limit = self._flush_every * hold_s
        self.frames_written = 0
        self.skipped = 0
        self.lost = 0
        self.error: str | None = None
        self._failing = False   # the last write failed
        self._finished = False  # the take is complete in its file
        self._incoming: list[PoseFrame] = []
        self._unwritten: list[tuple[bytes, int]] = []  # encoded, not yet on disk (the writer thread's)
        self._held = 0      # frames published and not yet on disk or lost
        self._stopped = False
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._written = threading.Condition()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"recorder {path.name}", daemon=True)
        self._thread.start()

    def publish(self, frame: PoseFrame) -> None:
        """Queue the frame for the writer thread, which reads its arrays later: they must not be
        changed after publishing (the engine makes new ones for every pose). While the disk takes
        nothing, up to HOLD_S seconds of frames wait for it; past that the take ends where it is on
        disk, and every later frame counts as lost (a take with a hole in it would be worse)."""
        with self._lock:
            if not self._stopped and self._held >= self._hold_limit:
                self._stopped = True
                log.error("recording to %s stopped: %d s of frames could not be written (%s); the take ends "
                          "at the frames on disk", self.path, self._hold_s, self.error)
            if self._stopped:
                self.lost += 1
                return
            self._incoming.append(frame)
            self._held += 1
            due = len(self._incoming) >= self._flush_every
        if due:
            self._wake.set()

    def close(self) -> None:
        """Write every frame published so far (npz: the take itself, from its journal), then stop
        the writer."""
        self._closing = True
        self._wake.set()
        self._thread.join()
        if self.skipped:
            log.warning("%s: skipped %d frames with missing or non-finite values", self.path, self.skipped)
        if self.lost:
            log.error("recorder %s: %d frames were lost (%s); %d are on disk", self.path, self.lost, self.error,
                      self.frames_written)
        elif self.error is None:
            log.info("recorded %d frames to %s", self.frames_written, self.path)

    def summary(self) -> dict:
        """For the run's report: the frames on disk and lost, and whether the take is complete in its
        file (every good frame published, and an npz finished from its journal)."""
        return {"output": self.name, "path": str(self.path), "frames_written": self.frames_written,
                "frames_lost": self.lost, "skipped": self.skipped, "error": self.error,
                "complete": self._finished and not self.lost}

    def skips(self) -> dict[str, int]:
        return {f"recorder {self.path}": self.skipped + self.lost}

    def wait_written(self, frames: int, timeout: float | None = None) -> bool:
        """Block until at least `frames` frames are on disk (or `timeout` seconds); whether they are."""
        with self._written:
            return self._written.wait_for(lambda: self.frames_written >= frames, timeout)

    # --- the writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            # A second of frames wakes it; while the disk fails it also tries again every RETRY_S.
            woken = self._wake.wait(RETRY_S if self._unwritten else None)
            self._wake.clear()
            closing = self._closing
            try:
                if woken:
                    self._encode_incoming()
                self._write_unwritten()
            except Exception as e:  # a bug in encoding: keep recording (and closing) whatever it did
                self._failed(e)
            if closing:
                self._finish()
                return

    def _encode_incoming(self) -> None:
        with self._lock:
            frames, self._incoming = self._incoming, []
        rows = [frame_values(f, self._num_joints) for f in frames]
        good = [r for r in rows if r is not None]
        if len(good) < len(rows):
            if not self.skipped:
                log.warning("recorder %s: skipping frames with missing or non-finite values "
                            "(first: frame %s)", self.path, frames[rows.index(None)].frame_id)
            self.skipped += len(rows) - len(good)
            with self._lock:
                self._held -= len(rows) - len(good)
        if good:
            self._unwritten.append((self._take.encode(stack_frames(good)), len(good)))

    def _write_unwritten(self) -> None:
        while self._unwritten:
            data, count = self._unwritten[0]
            try:
                self._take.append(data, count)
            except OSError as e:
                self._failed(e)
                return
            self._unwritten.pop(0)
            if self._failing:
                self._failing = False
                log.info("recorder %s: writing again", self.path)
            with self._lock:
                self._held -= count
            with self._written:
                self.frames_written = self._take.frames
                self._written.notify_all()

    def _failed(self, error: Exception) -> None:
        if not self._failing:
            log.error("recorder %s: cannot write (%s); holding the frames and trying again every %.0f s, "
                      "for up to %d s", self.path, describe(error), RETRY_S, self._hold_s)
        self._failing = True
        self.error = self.error or describe(error)  # the first failure: the cause of what follows

    def _finish(self) -> None:
        with self._lock:
            self._stopped = True  # a publish after close is lost, not queued
            self.lost += self._held
            self._held = 0
        try:
            self._take.close()
            self._finished = True
        except OSError as e:
            self.error = self.error or describe(e)
            log.error("recorder %s: cannot finish the take (%s); its %d frames are in %s: `genmo-live export %s` "
                      "finishes it when there is room", self.path, describe(e), self.frames_written,
                      journal_path(self.path), self.path)


def describe(error: Exception) -> str:
    """One line for a failed write: the system's words for an OSError ("No space left on device")."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return f"{type(error).__name__}: {error}"


def export(npz_path: Path, out_path: Path) -> Path:
    """Convert a recorded .npz take into a .bvh (the recorder's own writer); returns out_path. A take
    a killed run left unfinished (its journal beside it) is finished first."""
    npz_path, out_path = Path(npz_path), Path(out_path)
    if out_path.suffix.lower() != ".bvh":
        raise ValueError(f"cannot export to {out_path}: the suffix must be .bvh")
    if journal_path(npz_path).exists():
        log.info("finished %s (%d frames) from the journal its run left", npz_path, finish_npz(npz_path))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    with np.load(npz_path) as data:
        take = BvhTake(tmp, [str(n) for n in data["joint_names"]], tuple(int(p) for p in data["parents"]),
                       data["rest_joints"], float(data["fps"]))
        try:
            pose_aa, root = data["pose_aa"], data["root"]
            for i in range(0, len(root), EXPORT_CHUNK):
                chunk = {"pose_aa": pose_aa[i:i + EXPORT_CHUNK], "root": root[i:i + EXPORT_CHUNK]}
                take.append(take.encode(chunk), len(chunk["root"]))
            take.close()
            os.replace(tmp, out_path)
        except BaseException:
            take.close()
            tmp.unlink(missing_ok=True)
            raise
    return out_path
