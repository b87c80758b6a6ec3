"""VMC protocol output (OSC over UDP): VSeeFace, Warudo, VNyan, VMagicMirror, EVMC4U (Unity),
VRM4U / VMC4UE / VMCLiveLink (Unreal). genmo-live is the *Performer*, the receiver the *Marionette*;
the default port is 39539. Spec: https://protocol.vmc.info (english.markdown); our notes are in
../shared/design/PEERS_AND_PROTOCOLS.md §2.1 and §3.

    sender = VmcSender("127.0.0.1", 39539, body, rate_hz=0)   # body: engine.body.body_model.Body
    sender.publish(frame)                                     # engine.live.pose_frame.PoseFrame
    sender.close()

Messages of one frame, in this order (OSC types in brackets; f = float32):
    /VMC/Ext/Root/Pos  [s f f f f f f f]  "root", p.x p.y p.z, q.x q.y q.z q.w
    /VMC/Ext/Bone/Pos  [s f f f f f f f]  HumanBodyBones name, local p.x p.y p.z, local q.x q.y q.z q.w,
                                          for 22 bones (BONES_SENT, SMPL joint order): Hips,
                                          LeftUpperLeg, RightUpperLeg, Spine, LeftLowerLeg,
                                          RightLowerLeg, Chest, LeftFoot, RightFoot, UpperChest,
                                          LeftToes, RightToes, Neck, LeftShoulder, RightShoulder,
                                          Head, LeftUpperArm, RightUpperArm, LeftLowerArm,
                                          RightLowerArm, LeftHand, RightHand
    /VMC/Ext/OK        [i i i]            loaded = 1, calibration state = 3 (Calibrated),
                                          calibration mode = 0 (Normal)   (spec v2.5)
    /VMC/Ext/T         [f]                seconds since the first frame sent (from the frames' t_emit)
They travel in OSC bundles (time tag "immediately") of at most 1500 bytes each, one UDP datagram
per bundle; a frame takes two. OK and T come last because some receivers (VRM4U) apply a frame
when they arrive.

Frames and values:
- Unity's frame: left-handed, metres, +y up, +z forward, +x right; quaternions (x, y, z, w).
- The engine's world (PoseFrame) has the person who faces the camera facing −z. VTuber apps look at
  an avatar that faces +z, so the world is first given a half turn about +y (x, z -> −x, −z; the
  "viewer turn"): facing the camera, the avatar faces the app's camera, and its right hand is on the
  same side of the picture as in the webcam image. Then engine.body.conventions converts SMPL -> Unity.
- Bone rotations are LOCAL rotations relative to the T-pose, in a rig whose bone frames are all
  world-aligned in the T-pose (VRM 0.x "normalised"): the Unity rotation of an SMPL local rotation
  (engine.body.conventions.smpl_pose_to_unity). Hips holds the body's global orientation (identity when
  the person faces the camera in T-pose).
- Bone positions are the rest offsets of the body (engine.body.body_model.Body) from each bone's parent, in
  Unity axes; Hips' is the rest pelvis relative to the root, which stands on the floor.
- Root: rotation identity, position = the pelvis' world position minus the rest pelvis offset, so
  Root + Hips position = the pelvis. All translation is in the root, so receivers that keep their
  own avatar's bone positions (EVMC4U "Bone Position Synchronize" off, which keeps the avatar's
  proportions) still move with the person.
- SMPL's hand joints (22, 23) have no humanoid bone and are not sent. UpperChest is always sent
  (SMPL spine3); an avatar without one ignores it and loses that share of the spine's bend.

rate_hz: 0 sends every pose; otherwise at most rate_hz a second, chosen on the frames' t_emit.
publish() only queues the frame (tens of µs); encoding (about 2 ms) and sending run on the
sender's thread. A pose still unsent when one emitted more than BACKLOG_S after it arrives is
skipped: counted (`skipped`, the status line, the run's report) and logged once. A receiver that
is not running costs nothing (UDP does not notice) and a send that fails is counted and logged,
never raised into the engine. smpl_from_vmc inverts what is sent.
"""
from __future__ import annotations

import logging
import math
import socket
import threading
from collections import deque
from collections.abc import Mapping

import numpy as np
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder

from clients.live import Output
from configs.config import ConfigError
from engine.body.body_model import Body
from engine.body.conventions import (MAPPED_BONES, bone_for_unity, position_to_unity, quat_from_unity, quat_to_unity,
                                     smpl_pose_to_unity)
from engine.body.kinematics import bone_offsets
from engine.body.rotations import quat_multiply, quat_normalize
from engine.body.skeleton import NUM_JOINTS
from engine.live.pose_frame import PoseFrame

log = logging.getLogger(__name__)

DEFAULT_PORT = 39539
MAX_DATAGRAM = 1500  # bytes: an Ethernet MTU, so bundles cross a LAN / Wi-Fi unfragmented
BONES_SENT = tuple(b.unity for b in MAPPED_BONES)
OK_ARGS = (1, 3, 0)  # loaded, calibration state Calibrated, calibration mode Normal
IDENTITY_XYZW = (0.0, 0.0, 0.0, 1.0)

# (w, x, y, z): half a turn about +y, the viewer turn. A half turn is its own inverse.
VIEWER_TURN = np.array([0.0, 0.0, 1.0, 0.0])
_VIEWER_TURN_POINT = np.array([-1.0, 1.0, -1.0])  # what VIEWER_TURN does to a point

_BUNDLE_HEADER = 16  # "#bundle\0" and the 8-byte time tag
_TIME_TOLERANCE = 1e-9  # s: frame times like 3 * (1/30) land a hair before the 0.1 s they mean
# s of poses the sender's thread may fall behind before the oldest are skipped. A queue, not one
# slot: the engine hands over several poses at once after a pass that caught up on several frames,
# and a slot kept only the last of them (of the sample clip's 187 poses on this 2-core machine:
# 1-3 never sent in real time, 9 unpaced, up to 123 when it was busier). A quarter second bounds
# how late a pose arrives.
BACKLOG_S = 0.25
BACKLOG_FRAMES = 64  # and at most this many, whatever the frames' times say (a replay's may not advance)


def face_viewer_position(p: np.ndarray) -> np.ndarray:
    """(..., 3) PoseFrame world position -> (..., 3) the same after the viewer turn, metres."""
    return np.asarray(p, dtype=np.float64) * _VIEWER_TURN_POINT


def face_viewer_rotation(q: np.ndarray) -> np.ndarray:
    """(..., 4) PoseFrame world rotation (w, x, y, z) -> (..., 4) after the viewer turn, unit, w >= 0."""
    q = np.asarray(q, dtype=np.float64)
    return quat_normalize(quat_multiply(VIEWER_TURN, q))


def world_position_to_unity(p: np.ndarray) -> np.ndarray:
    """(..., 3) PoseFrame world position, metres -> (..., 3) Unity world position, metres."""
    return position_to_unity(face_viewer_position(p))


def world_rotation_to_unity(q: np.ndarray) -> np.ndarray:
    """(..., 4) PoseFrame world rotation (w, x, y, z) -> (..., 4) Unity world rotation (x, y, z, w)."""
    return quat_to_unity(face_viewer_rotation(q))


def bone_offsets_unity(body: Body) -> dict[str, np.ndarray]:
    """{HumanBodyBones name: (3,) local position, metres, Unity axes}: each bone's rest (T-pose)
    offset from its parent; Hips' from the root (the body's origin, on the floor)."""
    offsets = position_to_unity(bone_offsets(body.rest_joints.double(), body.parents)).numpy()
    return {b.unity: offsets[b.smpl_index] for b in MAPPED_BONES}


def vmc_transforms(pose_quat: np.ndarray, root: np.ndarray, offsets: Mapping[str, np.ndarray]
                   ) -> tuple[np.ndarray, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """One frame in VMC terms.

    pose_quat: (24, 4) PoseFrame pose, (w, x, y, z); root: (3,) pelvis world position, metres;
    offsets: bone_offsets_unity of the body. Returns the Root position (3,) (Unity world, metres;
    its rotation is identity) and {bone: (local position (3,), local rotation (4,) x, y, z, w)}.
    """
    pose = np.array(pose_quat, dtype=np.float64)
    pose[0] = face_viewer_rotation(pose[0])
    unity = smpl_pose_to_unity(pose, form="quat", root_position=face_viewer_position(root))
    root_position = unity.hips_position - offsets["Hips"]
    return root_position, {name: (offsets[name], unity.rotations[name]) for name in BONES_SENT}


def smpl_from_vmc(root_position, bones: Mapping[str, tuple]) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of vmc_transforms, for VMC as received.

    root_position: (3,) Root/Pos position (its rotation taken as identity, as we send it);
    bones: {HumanBodyBones name: (local position (3,), local rotation (4,) x, y, z, w)}.
    Returns pose_quat (24, 4) (w, x, y, z) in the PoseFrame world frame and the pelvis world position
    (3,), metres. Bones SMPL has no joint for are skipped; joints without a bone (the hands, or
    UpperChest when not sent) get identity.
    """
    pose = np.tile([1.0, 0.0, 0.0, 0.0], (NUM_JOINTS, 1))
    for name, (_, rotation) in bones.items():
        try:
            index = bone_for_unity(name).smpl_index
        except KeyError:
            continue
        pose[index] = quat_from_unity(np.asarray(rotation, dtype=np.float64))
    pose[0] = face_viewer_rotation(pose[0])  # the half turn undoes itself
    hips = np.asarray(root_position, dtype=np.float64) + np.asarray(bones["Hips"][0], dtype=np.float64)
    return pose, face_viewer_position(position_to_unity(hips))


def osc_message(address: str, *args) -> OscMessage:
    """An OSC message: str args as s, int as i, anything else as f (float32)."""
    builder = OscMessageBuilder(address)
    for a in args:
        if isinstance(a, str):
            builder.add_arg(a, "s")
        elif isinstance(a, int):
            builder.add_arg(a, "i")
        else:
            builder.add_arg(float(a), "f")
    return builder.build()


def vmc_messages(root_position, bones: Mapping[str, tuple], t: float) -> list[OscMessage]:
    """Root/Pos, one Bone/Pos per bone, OK, T: one frame's messages, in sending order."""
    messages = [osc_message("/VMC/Ext/Root/Pos", "root", *np.asarray(root_position).tolist(), *IDENTITY_XYZW)]
    messages += [osc_message("/VMC/Ext/Bone/Pos", name, *np.asarray(p).tolist(), *np.asarray(q).tolist())
                 for name, (p, q) in bones.items()]
    messages += [osc_message("/VMC/Ext/OK", *OK_ARGS), osc_message("/VMC/Ext/T", t)]
    return messages


def pack_bundles(messages: list[OscMessage], limit: int = MAX_DATAGRAM) -> list[bytes]:
    """Messages -> as few bundle datagrams of at most `limit` bytes as keep their order."""
    groups, size = [[]], _BUNDLE_HEADER
    for m in messages:
        need = 4 + m.size  # each bundle element is prefixed with its int32 size
        if _BUNDLE_HEADER + need > limit:
            raise ValueError(f"OSC message {m.address} of {m.size} bytes does not fit a {limit}-byte bundle")
        if size + need > limit:
            groups.append([])
            size = _BUNDLE_HEADER
        groups[-1].append(m)
        size += need
    datagrams = []
    for group in groups:
        builder = OscBundleBuilder(IMMEDIATELY)
        for m in group:
            builder.add_content(m)
        datagrams.append(builder.build().dgram)
    return datagrams


def udp_destination(host: str, port: int) -> tuple[socket.AddressFamily, tuple]:
    """(address family, socket address) to send UDP to, resolved once. IPv4 first: "localhost" often
    resolves to ::1 first, and VMC apps and VRChat listen on IPv4."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as e:
        raise ConfigError(f"cannot resolve the OSC receiver {host}:{port}: {e}") from None
    family, _, _, _, address = min(infos, key=lambda info: info[0] != socket.AF_INET)
    return family, address


class OscSender(Output):
    """An OSC-over-UDP output that encodes and sends from its own thread (shared by VMC and VRChat).

    publish() decides whether the frame is due (rate_hz, on the frames' t_emit, so that a replay or
    a test is deterministic) and queues it; frames emitted more than BACKLOG_S before the newest
    and still unsent are skipped: a slow sender drops old poses rather than hold up the engine or
    send them late. Subclasses implement datagrams(frame). Counters: accepted (frames due), skipped
    (due and never sent), frames_sent, send_errors (datagrams the OS refused).
    """

    name = "osc"

    def __init__(self, host: str, port: int, rate_hz: float = 0.0):
        if rate_hz < 0:
            raise ConfigError(f"{self.name}: the send rate must be >= 0 Hz (0: every pose), got {rate_hz}")
        self.name = f"{self.name} {host}:{port}"
        family, self._destination = udp_destination(host, port)
        self._sock = socket.socket(family, socket.SOCK_DGRAM)
        # Non-blocking: a full socket buffer drops the datagram (counted) instead of stalling.
        self._sock.setblocking(False)
        self._period = 1.0 / rate_hz if rate_hz > 0 else 0.0
        self._next_due = -math.inf
        self._pending: deque[PoseFrame] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self.accepted = self.skipped = self.frames_sent = self.send_errors = 0
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def datagrams(self, frame: PoseFrame) -> list[bytes]:
        raise NotImplementedError

    def publish(self, frame: PoseFrame) -> None:
        if not self._due(frame.t_emit):
            return
        self.accepted += 1
        skipped = 0
        with self._wake:
            self._pending.append(frame)
            while frame.t_emit - self._pending[0].t_emit > BACKLOG_S or len(self._pending) > BACKLOG_FRAMES:
                self._pending.popleft()
                skipped += 1
            self._wake.notify()
        if skipped:
            self._skip(skipped)

    def close(self) -> None:
        """Send the frames still queued, then stop the thread and close the socket."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout=2.0)
        with self._wake:  # what a thread still stuck after that will never send
            unsent, self._pending = len(self._pending), deque()
        if unsent:
            self._skip(unsent)
        self._sock.close()
        if self.send_errors:
            log.warning("%s: %d datagrams could not be sent", self.name, self.send_errors)

    def skips(self) -> dict[str, int]:
        return {self.name: self.skipped}

    def summary(self) -> dict:
        return {"output": self.name, "sent": self.frames_sent, "skipped": self.skipped,
                "send_errors": self.send_errors}

    def _skip(self, count: int) -> None:
        if not self.skipped:
            # UDP never makes the sender wait for its receiver: only this machine can be too slow.
            log.warning("%s: this machine is too busy to encode and send every pose in time: skipping poses "
                        "more than %.2f s old (counted in the status line and the run's report)",
                        self.name, BACKLOG_S)
        self.skipped += count

    def _due(self, t: float) -> bool:
        """Whether a frame emitted at t (seconds) is sent: at most one per 1/rate_hz slot."""
        if not self._period:
            return True
        early = self._next_due - t
        if _TIME_TOLERANCE < early <= self._period:
            return False
        # On time, or late by less than a slot: keep the cadence, so 30 fps thinned to 20 Hz gives
        # 20 Hz, not 15. Later than that, or a clock that went back: start the cadence afresh.
        on_cadence = -self._period < early <= _TIME_TOLERANCE
        self._next_due = (self._next_due if on_cadence else t) + self._period
        return True

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._closing)
                if not self._pending:
                    return
                frame = self._pending.popleft()
            try:
                datagrams = self.datagrams(frame)
            except Exception:  # a frame that cannot be encoded must not end the output
                log.exception("%s: could not encode frame %d", self.name, frame.frame_id)
                continue
            for datagram in datagrams:
                self._send(datagram)
            self.frames_sent += 1

    def _send(self, datagram: bytes) -> None:
        try:
            self._sock.sendto(datagram, self._destination)
        except OSError as e:  # no route, a firewall, a full buffer: the stream goes on
            self.send_errors += 1
            if self.send_errors == 1:
                log.warning("%s: sending failed (%s); later failures are only counted", self.name, e)


class VmcSender(OscSender):
    """Streams every pose (or at most rate_hz of them, 0 = all) to a VMC receiver; see the module
    docstring for the messages. body: the engine's body, for the bones' rest positions."""

    name = "vmc"

    def __init__(self, host: str, port: int, body: Body, rate_hz: float = 0.0):
        self._offsets = bone_offsets_unity(body)
        self._t0: float | None = None  # t_emit of the first frame sent: T stays small, as float32 needs
        super().__init__(host, port, rate_hz)

    def datagrams(self, frame: PoseFrame) -> list[bytes]:
        if self._t0 is None:
            self._t0 = frame.t_emit
        root_position, bones = vmc_transforms(frame.pose_quat, frame.root, self._offsets)
        return pack_bundles(vmc_messages(root_position, bones, frame.t_emit - self._t0))
