"""VRChat OSC trackers: drive VRChat's calibrated full-body IK from the live pose
(https://docs.vrchat.com/docs/osc-trackers; notes in ../shared/design/PEERS_AND_PROTOCOLS.md §2.2).
VRChat listens on UDP 9000 (127.0.0.1:9000 on the same PC); enable OSC in its Action Menu
(Options -> OSC -> Enabled), then calibrate full-body tracking as with any trackers.

    trackers = VrchatTrackers("127.0.0.1", 9000, ["hip", "left_foot", "right_foot"], body)
    trackers.publish(frame)                                   # engine.live.pose_frame.PoseFrame
    trackers.close()

Per frame, one OSC bundle (time tag "immediately", under 1500 bytes) holding, for each configured
tracker and then the head:
    /tracking/trackers/N/position     [f f f]  x, y, z: world position, metres
    /tracking/trackers/N/rotation     [f f f]  x, y, z: world rotation, Euler angles, degrees
    /tracking/trackers/head/position  [f f f]  the head, for VRChat to align our tracking space
    /tracking/trackers/head/rotation  [f f f]  with its own (always sent)
N is fixed per tracker, whichever set is configured (the numbering SlimeVR uses, so a calibration
carries over):
    N  name        position: SMPL joint   rotation: world rotation of SMPL joint (the segment it is on)
    1  hip         pelvis                 pelvis
    2  left_foot   left_ankle             left_ankle (the foot)
    3  right_foot  right_ankle            right_ankle
    4  left_knee   left_knee              left_hip (the thigh)
    5  right_knee  right_knee             right_hip
    6  chest       spine3                 spine3
    7  left_elbow  left_elbow             left_shoulder (the upper arm, as VRChat's elbows are)
    8  right_elbow right_elbow            right_shoulder
       head        head                   head

Frames: Unity's (left-handed, +y up, metres), after the same half turn as the VMC output
(clients/vmc.py: facing the camera is facing +z). Rotations are in the T-pose-normalised sense (a
tracker on a body in T-pose facing +z reads (0, 0, 0)); VRChat's calibration measures each
tracker's offset to its bone, so only their consistency matters. Euler angles follow Unity:
rotate about Z, then X, then Y, all about the fixed axes (engine.body.conventions.unity_euler_degrees);
x in [-90, 90], y and z in (-180, 180]. Positions are the pose's metres, for a person of the body's
stature: set body.stature to the user's real height.

VRChat's advice: fewer trackers (hip and feet, the default) let its IK hide estimation errors better.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from clients.vmc import OscSender, osc_message, pack_bundles, world_position_to_unity, world_rotation_to_unity
from configs.config import ConfigError
from engine.body.body_model import Body
from engine.body.conventions import bone_for_smpl, unity_euler_degrees
from engine.body.rotations import matrix_to_quat
from engine.live.pose_frame import PoseFrame

DEFAULT_PORT = 9000


@dataclass(frozen=True)
class Tracker:
    """A VRChat tracker: its OSC address segment (1..8 or "head") and the SMPL joints it follows."""

    name: str
    slot: str
    position_joint: str
    rotation_joint: str

    @property
    def addresses(self) -> tuple[str, str]:
        return f"/tracking/trackers/{self.slot}/position", f"/tracking/trackers/{self.slot}/rotation"


TRACKERS = (
    Tracker("hip", "1", "pelvis", "pelvis"),
    Tracker("left_foot", "2", "left_ankle", "left_ankle"),
    Tracker("right_foot", "3", "right_ankle", "right_ankle"),
    Tracker("left_knee", "4", "left_knee", "left_hip"),
    Tracker("right_knee", "5", "right_knee", "right_hip"),
    Tracker("chest", "6", "spine3", "spine3"),
    Tracker("left_elbow", "7", "left_elbow", "left_shoulder"),
    Tracker("right_elbow", "8", "right_elbow", "right_shoulder"),
)
HEAD = Tracker("head", "head", "head", "head")
_BY_NAME = {t.name: t for t in TRACKERS}


def trackers_for(names) -> tuple[Tracker, ...]:
    """Tracker names (any order, repeats allowed) -> their Trackers in slot order; ConfigError on an
    unknown name."""
    unknown = [n for n in names if n not in _BY_NAME]
    if unknown:
        raise ConfigError(f"outputs.vrchat_trackers: unknown tracker {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(_BY_NAME)}")
    return tuple(t for t in TRACKERS if t.name in set(names))


def tracker_transforms(joints: np.ndarray, world_quat: np.ndarray, trackers) -> tuple[np.ndarray, np.ndarray]:
    """joints: (24, 3) world positions, metres; world_quat: (24, 4) world rotations (w, x, y, z), both
    in the PoseFrame world frame -> positions (T, 3) in Unity metres and rotations (T, 3) Unity Euler
    degrees, one row per tracker."""
    positions = [bone_for_smpl(t.position_joint).smpl_index for t in trackers]
    rotations = [bone_for_smpl(t.rotation_joint).smpl_index for t in trackers]
    return (world_position_to_unity(joints[positions]),
            unity_euler_degrees(world_rotation_to_unity(world_quat[rotations])))


class VrchatTrackers(OscSender):
    """Streams every pose to VRChat as OSC trackers `trackers` (names, see the module docstring)
    plus the head. body: the engine's body, whose kinematic tree gives the world rotations."""

    name = "vrchat"

    def __init__(self, host: str, port: int, trackers: list[str], body: Body):
        self.trackers = trackers_for(trackers) + (HEAD,)
        self._body = body
        super().__init__(host, port)

    def datagrams(self, frame: PoseFrame) -> list[bytes]:
        world_rot = self._body.pose(frame.pose_quat, form="quat")["world_rot"].double().numpy()
        positions, eulers = tracker_transforms(frame.joints, matrix_to_quat(world_rot), self.trackers)
        messages = []
        for tracker, p, e in zip(self.trackers, positions.tolist(), eulers.tolist()):
            position_address, rotation_address = tracker.addresses
            messages += [osc_message(position_address, *p), osc_message(rotation_address, *e)]
        return pack_bundles(messages)
