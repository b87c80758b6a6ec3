"""clients.vmc (VMC protocol) and clients.vrchat (VRChat OSC trackers), checked with a real
python-osc server on 127.0.0.1 receiving the real UDP datagrams.

Hand-derived facts used below (Unity: left-handed, +y up, the character faces +z, its right at +x;
the engine's world: the person facing the camera faces -z, its x = y × z is the camera's left):
- The outputs give the world a half turn about +y, then mirror x into Unity (engine.body.conventions), so
  a world point (x, y, z) is at Unity (x, y, -z), and a person in T-pose facing the camera (root
  yaw 180° in the world) has identity rotations in Unity.
- Unity Euler angles (x, y, z) mean R = Ry(y) Rx(x) Rz(z). A hip turned 30° about Y and then 20°
  about X (fixed axes) is R = Rx(20°) Ry(30°) =
      [[cos30, 0, sin30], [sin20 sin30, cos20, -sin20 cos30], [-cos20 sin30, sin20, cos20 cos30]],
  so x = asin(-R[1,2]) = asin(sin20 cos30) = 17.230°, y = atan2(R[0,2], R[2,2]) =
  atan2(sin30, cos20 cos30) = 31.567°, z = atan2(R[1,0], R[1,1]) = atan2(sin20 sin30, cos20) = 10.314°.
"""
import contextlib
import json
import math
import socket
import threading
import time

import numpy as np
import pytest
import torch
from pythonosc.dispatcher import Dispatcher
from pythonosc.osc_packet import OscPacket
from pythonosc.osc_server import ThreadingOSCUDPServer
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from clients.live import delivery_lines, skip_status
from clients.vmc import BACKLOG_FRAMES, BONES_SENT, MAX_DATAGRAM, VmcSender, face_viewer_rotation, smpl_from_vmc
from clients.vrchat import VrchatTrackers
from clients.ws import decode_binary
from engine.body.body_model import load_default_body
from engine.body.conventions import quat_from_unity
from engine.body.rotations import axis_angle_to_quat, quat_multiply, quat_to_matrix
from engine.live.pose_frame import PoseFrame
from test_ws_viewer import check_hello_skeleton, free_port, place_body

WORLD_TO_UNITY = np.array([1.0, 1.0, -1.0])
# Unity's humanoid hierarchy (Animator bone parents), written out independently of engine.body.conventions.
UNITY_PARENT = {
    "LeftUpperLeg": "Hips", "RightUpperLeg": "Hips", "Spine": "Hips", "LeftLowerLeg": "LeftUpperLeg",
    "RightLowerLeg": "RightUpperLeg", "Chest": "Spine", "LeftFoot": "LeftLowerLeg",
    "RightFoot": "RightLowerLeg", "UpperChest": "Chest", "LeftToes": "LeftFoot", "RightToes": "RightFoot",
    "Neck": "UpperChest", "LeftShoulder": "UpperChest", "RightShoulder": "UpperChest", "Head": "Neck",
    "LeftUpperArm": "LeftShoulder", "RightUpperArm": "RightShoulder", "LeftLowerArm": "LeftUpperArm",
    "RightLowerArm": "RightUpperArm", "LeftHand": "LeftLowerArm", "RightHand": "RightLowerArm",
}
UNITY_JOINT = {"Hips": 0, "LeftUpperLeg": 1, "RightUpperLeg": 2, "Spine": 3, "LeftLowerLeg": 4,
               "RightLowerLeg": 5, "Chest": 6, "LeftFoot": 7, "RightFoot": 8, "UpperChest": 9,
               "LeftToes": 10, "RightToes": 11, "Neck": 12, "LeftShoulder": 13, "RightShoulder": 14,
               "Head": 15, "LeftUpperArm": 16, "RightUpperArm": 17, "LeftLowerArm": 18,
               "RightLowerArm": 19, "LeftHand": 20, "RightHand": 21}
ALL_TRACKERS = ["hip", "chest", "left_foot", "right_foot", "left_knee", "right_knee", "left_elbow", "right_elbow"]


class Receiver:
    """A python-osc ThreadingOSCUDPServer on 127.0.0.1 (a free port): keeps every datagram in
    arrival order and every message its Dispatcher delivered."""

    def __init__(self):
        self.datagrams: list[bytes] = []
        self.dispatched: list[str] = []
        dispatcher = Dispatcher()
        dispatcher.set_default_handler(lambda address, *args: self.dispatched.append(address))
        datagrams = self.datagrams

        class Server(ThreadingOSCUDPServer):
            def verify_request(self, request, client_address):
                # Runs on the serving thread for one datagram after the other: the arrival order.
                datagrams.append(request[0])
                return super().verify_request(request, client_address)

        self.server = Server(("127.0.0.1", 0), dispatcher)
        # Room for bursts while the machine is busy: a datagram lost here would read as a bug.
        self.server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def messages(self) -> list[tuple[str, list]]:
        """(address, args) of every message received, in order (bundles unpacked by python-osc)."""
        return [(m.message.address, list(m.message.params)) for d in list(self.datagrams)
                for m in OscPacket(d).messages]

    def vmc_frames(self) -> list[list[tuple[str, list]]]:
        """The VMC stream cut into frames: each ends with its /VMC/Ext/T."""
        frames, current = [], []
        for address, args in self.messages():
            current.append((address, args))
            if address == "/VMC/Ext/T":
                frames.append(current)
                current = []
        return frames

    def wait_for(self, predicate, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, "the receiver did not get what was expected in time"
            time.sleep(0.01)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def make_frame(body, pose_aa: np.ndarray, root, t: float = 0.0, frame_id: int = 0) -> PoseFrame:
    """A PoseFrame of an SMPL axis-angle pose (24, 3) with its pelvis at `root`, posed on `body`."""
    pose_aa, root = np.asarray(pose_aa, np.float64), np.asarray(root, np.float64)
    joints = body.pose(torch.from_numpy(pose_aa), torch.from_numpy(root))["joints"].double().numpy()
    return PoseFrame(frame_id=frame_id, t_capture=t, t_emit=t, pose_aa=pose_aa, pose_quat=axis_angle_to_quat(pose_aa),
                     root=root, joints=joints, contacts=np.zeros(6), source="estimated", confidence=1.0,
                     stature=body.stature)


def facing_camera(body, t: float = 0.0, frame_id: int = 0) -> PoseFrame:
    """T-pose, turned 180° about the world's y so that it faces the camera (-z)."""
    pose = np.zeros((24, 3))
    pose[0] = [0.0, math.pi, 0.0]
    return make_frame(body, pose, [0.3, 0.9, 2.0], t, frame_id)


def random_frames(body, n: int, seed: int = 0) -> list[PoseFrame]:
    rng = np.random.default_rng(seed)
    return [make_frame(body, rng.normal(0.0, 0.5, (24, 3)), rng.normal(0.0, 1.0, 3) + [0, 0.9, 0], t=i / 30, frame_id=i)
            for i in range(n)]


def publish_and_wait(sender, frame: PoseFrame) -> None:
    """Publish, then wait until the sender's thread has sent it (so no frame is replaced)."""
    sender.publish(frame)
    deadline = time.monotonic() + 5.0
    while sender.frames_sent < sender.accepted:
        assert time.monotonic() < deadline, "the sender did not send in time"
        time.sleep(0.002)


def unity_to_wxyz(q_xyzw) -> np.ndarray:
    """Unity (x, y, z, w) -> (w, x, y, z), still in Unity's frame."""
    x, y, z, w = q_xyzw
    return np.array([w, x, y, z])


def unity_forward_kinematics(root_position, bones: dict) -> dict[str, np.ndarray]:
    """What a receiver does with the stream: Root, then each bone's local position and rotation
    down Unity's humanoid hierarchy -> {bone: Unity world position}."""
    world_rot, world_pos = {}, {}
    hips_position, hips_rotation = bones["Hips"]
    world_pos["Hips"] = np.asarray(root_position) + hips_position
    world_rot["Hips"] = quat_to_matrix(unity_to_wxyz(hips_rotation))
    for name, parent in UNITY_PARENT.items():  # parents come before their children
        position, rotation = bones[name]
        world_pos[name] = world_pos[parent] + world_rot[parent] @ np.asarray(position)
        world_rot[name] = world_rot[parent] @ quat_to_matrix(unity_to_wxyz(rotation))
    return world_pos


def check_vmc_frame(frame: list[tuple[str, list]]) -> tuple[list, dict]:
    """One received VMC frame is complete and well-formed -> (Root position, {bone: (p, q)})."""
    addresses = [a for a, _ in frame]
    assert addresses[0] == "/VMC/Ext/Root/Pos" and addresses[-2:] == ["/VMC/Ext/OK", "/VMC/Ext/T"]
    root = frame[0][1]
    assert root[0] == "root" and len(root) == 8
    assert frame[-2][1] == [1, 3, 0]
    assert isinstance(frame[-1][1][0], float) and len(frame[-1][1]) == 1
    bones = {args[0]: (np.array(args[1:4]), np.array(args[4:8])) for a, args in frame if a == "/VMC/Ext/Bone/Pos"}
    assert addresses.count("/VMC/Ext/Bone/Pos") == len(bones) == len(BONES_SENT) >= 21
    assert set(bones) == set(UNITY_PARENT) | {"Hips"}
    for q in [np.array(root[4:8])] + [q for _, q in bones.values()]:
        assert np.linalg.norm(q) == pytest.approx(1.0, abs=1e-5)
    return root[1:4], bones


def test_vmc_frames_are_complete_and_reproduce_the_pose(receiver, body):
    frames = random_frames(body, 5)
    sender = VmcSender("127.0.0.1", receiver.port, body, 0.0)
    try:
        for frame in frames:
            publish_and_wait(sender, frame)
        receiver.wait_for(lambda: len(receiver.vmc_frames()) == len(frames))
    finally:
        sender.close()
    assert max(len(d) for d in receiver.datagrams) <= MAX_DATAGRAM
    assert len(receiver.datagrams) == 2 * len(frames)  # 22 bones need two bundles
    receiver.wait_for(lambda: len(receiver.dispatched) == len(receiver.messages()))
    times = []
    for sent, got in zip(frames, receiver.vmc_frames()):
        root_position, bones = check_vmc_frame(got)
        times.append(got[-1][1][0])
        pose, pelvis = smpl_from_vmc(root_position, bones)
        np.testing.assert_allclose(quat_to_matrix(pose[:22]), quat_to_matrix(sent.pose_quat[:22]), atol=1e-4)
        np.testing.assert_allclose(pelvis, sent.root, atol=1e-4)
        # Independently of smpl_from_vmc: the avatar a receiver builds has the engine's joints.
        world = unity_forward_kinematics(root_position, bones)
        for name, joint in UNITY_JOINT.items():
            np.testing.assert_allclose(world[name], sent.joints[joint] * WORLD_TO_UNITY, atol=1e-4)
    np.testing.assert_allclose(times, np.arange(len(frames)) / 30, atol=1e-5)  # T: from the first frame


def test_vmc_person_facing_the_camera_has_identity_rotations(receiver, body):
    frame = facing_camera(body)
    sender = VmcSender("127.0.0.1", receiver.port, body, 0.0)
    try:
        publish_and_wait(sender, frame)
        receiver.wait_for(lambda: len(receiver.vmc_frames()) == 1)
    finally:
        sender.close()
    root_position, bones = check_vmc_frame(receiver.vmc_frames()[0])
    for _, q in bones.values():
        np.testing.assert_allclose(np.abs(q), [0, 0, 0, 1], atol=1e-6)
    hips = np.asarray(root_position) + bones["Hips"][0]
    np.testing.assert_allclose(hips, frame.root * WORLD_TO_UNITY, atol=1e-6)


def test_vmc_rate_limit_uses_the_frames_times(receiver, body):
    sender = VmcSender("127.0.0.1", receiver.port, body, rate_hz=10)
    try:
        for frame in random_frames(body, 30):  # 1 s at 30 fps
            publish_and_wait(sender, frame)
        receiver.wait_for(lambda: len(receiver.vmc_frames()) == 10)
    finally:
        sender.close()
    assert sender.accepted == sender.frames_sent == 10
    times = [f[-1][1][0] for f in receiver.vmc_frames()]  # /VMC/Ext/T: frames 0, 3, 6, ... 27
    np.testing.assert_allclose(times, np.arange(10) / 10, atol=1e-5)


def test_vmc_rate_limit_keeps_the_cadence_of_incommensurate_rates(body):
    """30 fps thinned to 20 Hz gives 20 frames a second (every other one would give 15)."""
    port = closed_port()
    sender = VmcSender("127.0.0.1", port, body, rate_hz=20)
    frame = facing_camera(body)
    try:
        for i in range(60):
            frame.t_emit = 1000.0 + i / 30
            sender.publish(frame)
    finally:
        sender.close()
    assert sender.accepted == 40


class HeldVmc(VmcSender):
    """A VmcSender whose thread, at its first frame, waits until released: a sender that has fallen
    behind (a slow encode), at exactly the moment a test chooses."""

    def __init__(self, *args):
        self.taken, self.release = threading.Event(), threading.Event()
        super().__init__(*args)

    def datagrams(self, frame):
        self.taken.set()
        assert self.release.wait(30), "the test did not release the sender"
        return super().datagrams(frame)


def held_sender(receiver, body, batches: list[list[float]]) -> HeldVmc:
    """A HeldVmc that got a frame at t = 0 and, while it was held with that one, `batches` of frames
    (their t_emit, each batch handed over at once as the engine does), then was released and closed."""
    sender = HeldVmc("127.0.0.1", receiver.port, body, 0.0)
    try:
        sender.publish(facing_camera(body, 0.0, 0))
        assert sender.taken.wait(30), "the sender's thread did not take the first frame"
        for batch in batches:
            for t in batch:
                sender.publish(facing_camera(body, t, round(t * 30)))
        sender.release.set()
    finally:
        sender.close()
    return sender


def test_vmc_sends_every_pose_of_a_batch_handed_over_at_once(receiver, body):
    """The engine emits several poses at once after a pass that caught up on several frames. On
    main a one-pose slot kept only the last of them: 1-3 of the sample clip's 187 poses never
    left on an idle machine, most of them on a busy one, counted nowhere."""
    sender = held_sender(receiver, body, [[1 / 30, 2 / 30, 3 / 30], [4 / 30, 5 / 30]])
    receiver.wait_for(lambda: len(receiver.vmc_frames()) == 6)
    assert [round(f[-1][1][0] * 30) for f in receiver.vmc_frames()] == [0, 1, 2, 3, 4, 5]
    assert sender.summary() == {"output": sender.name, "sent": 6, "skipped": 0, "send_errors": 0}


def test_vmc_skips_what_it_cannot_send_in_time_and_counts_it(receiver, body, caplog):
    """Held while a second of poses (30 at 30 fps) arrives, the sender keeps the last BACKLOG_S of
    them (t 23/30 .. 30/30), skips the 22 before, counts them for the status line and the report,
    and says so once."""
    sender = held_sender(receiver, body, [[i / 30] for i in range(1, 31)])
    receiver.wait_for(lambda: len(receiver.vmc_frames()) == 9)
    assert [round(f[-1][1][0] * 30) for f in receiver.vmc_frames()] == [0] + list(range(23, 31))
    assert sender.accepted == 31 and sender.skipped == 22 and sender.frames_sent == 9
    assert skip_status([sender]) == f"; {sender.name}: 22 poses skipped"
    report = {"outputs": [sender.summary()]}
    assert delivery_lines(report) == [f"{sender.name}: 9 poses sent, 22 skipped"]
    assert caplog.text.count("too busy to encode and send every pose") == 1


def test_the_senders_backlog_is_bounded_when_the_frames_times_do_not_advance(receiver, body):
    """A replay whose frames all carry one t_emit: the queue still keeps at most BACKLOG_FRAMES."""
    sender = held_sender(receiver, body, [[1.0] * 100])
    receiver.wait_for(lambda: len(receiver.vmc_frames()) == 1 + BACKLOG_FRAMES)
    assert sender.skipped == 100 - BACKLOG_FRAMES and sender.frames_sent == 1 + BACKLOG_FRAMES


def closed_port() -> int:
    """A UDP port on 127.0.0.1 that nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["127.0.0.1", "255.255.255.255"])  # no receiver; a send the OS refuses
def test_publishing_without_a_receiver_never_raises(body, host):
    port = closed_port()
    outputs = [VmcSender(host, port, body, 0.0), VrchatTrackers(host, port, ALL_TRACKERS, body)]
    try:
        for frame in random_frames(body, 5):
            for out in outputs:
                publish_and_wait(out, frame)
    finally:
        for out in outputs:
            out.close()
    for out in outputs:
        assert out.frames_sent == 5
        if host == "255.255.255.255":
            assert out.send_errors > 0  # broadcast without SO_BROADCAST: the OS says no


def test_publish_returns_in_microseconds(body):
    """publish() only rate-checks and fills the slot; encoding and sending are the thread's."""
    frames = random_frames(body, 200)
    outputs = [VmcSender("127.0.0.1", closed_port(), body, 0.0),
               VrchatTrackers("127.0.0.1", closed_port(), ALL_TRACKERS, body)]
    try:
        for out in outputs:
            costs = []
            for frame in frames:
                t0 = time.perf_counter()
                out.publish(frame)
                costs.append(time.perf_counter() - t0)
                time.sleep(0.0005)
            assert float(np.median(costs)) < 200e-6, f"{out.name}: median publish {np.median(costs) * 1e6:.0f} µs"
    finally:
        for out in outputs:
            out.close()


def vrchat_bundles(receiver) -> list[list[tuple[str, list]]]:
    """Each VRChat datagram is one frame's bundle."""
    return [[(m.message.address, list(m.message.params)) for m in OscPacket(d).messages]
            for d in list(receiver.datagrams)]


def send_vrchat(receiver, body, trackers, frames) -> list[dict[str, list]]:
    """Send `frames` with these trackers -> per frame {address: args} as received."""
    sender = VrchatTrackers("127.0.0.1", receiver.port, trackers, body)
    try:
        for frame in frames:
            publish_and_wait(sender, frame)
        receiver.wait_for(lambda: len(receiver.datagrams) == len(frames))
    finally:
        sender.close()
    assert max(len(d) for d in receiver.datagrams) <= MAX_DATAGRAM
    return [dict(bundle) for bundle in vrchat_bundles(receiver)]


def test_vrchat_euler_order_matches_a_rotation_built_by_hand(receiver, body):
    # The hip's Unity rotation: 30° about Y, then 20° about X (fixed axes) = qX(20°) qY(30°).
    q_unity = quat_multiply(np.array([math.cos(math.radians(10)), math.sin(math.radians(10)), 0, 0]),
                            np.array([math.cos(math.radians(15)), 0, math.sin(math.radians(15)), 0]))
    x, y, z, w = q_unity[1], q_unity[2], q_unity[3], q_unity[0]
    root_world = face_viewer_rotation(quat_from_unity(np.array([x, y, z, w])))  # back to the engine's world
    frame = make_frame(body, np.zeros((24, 3)), [0.0, 0.9, 0.0])
    frame.pose_quat[0] = root_world
    [got] = send_vrchat(receiver, body, ["hip"], [frame])
    s20, c20, s30, c30 = math.sin(math.radians(20)), math.cos(math.radians(20)), 0.5, math.cos(math.radians(30))
    expected = [math.degrees(math.asin(s20 * c30)), math.degrees(math.atan2(s30, c20 * c30)),
                math.degrees(math.atan2(s20 * s30, c20))]
    np.testing.assert_allclose(expected, [17.230, 31.567, 10.314], atol=1e-3)
    np.testing.assert_allclose(got["/tracking/trackers/1/rotation"], expected, atol=1e-3)


def test_vrchat_trackers_positions_and_numbering(receiver, body):
    frames = [facing_camera(body, 0.0, 0)] + random_frames(body, 3, seed=1)
    got = send_vrchat(receiver, body, ALL_TRACKERS, frames)
    joints = {"1": 0, "2": 7, "3": 8, "4": 4, "5": 5, "6": 9, "7": 18, "8": 19, "head": 15}
    for frame, received in zip(frames, got):
        assert list(received) == [f"/tracking/trackers/{n}/{kind}" for n in joints for kind in ("position", "rotation")]
        for n, joint in joints.items():
            np.testing.assert_allclose(received[f"/tracking/trackers/{n}/position"],
                                       frame.joints[joint] * WORLD_TO_UNITY, atol=1e-5)
    for n in joints:  # T-pose facing the camera: every tracker reads (0, 0, 0)
        np.testing.assert_allclose(got[0][f"/tracking/trackers/{n}/rotation"], [0, 0, 0], atol=1e-3)


def test_vrchat_numbering_is_fixed_whatever_the_set(receiver, body):
    got = send_vrchat(receiver, body, ["right_foot", "hip", "hip"], [facing_camera(body, i / 30, i) for i in range(3)])
    for received in got:
        assert list(received) == ["/tracking/trackers/1/position", "/tracking/trackers/1/rotation",
                                  "/tracking/trackers/3/position", "/tracking/trackers/3/rotation",
                                  "/tracking/trackers/head/position", "/tracking/trackers/head/rotation"]


def test_vrchat_knee_tracker_follows_the_thigh(receiver, body):
    frame = facing_camera(body)
    frame.pose_quat[4] = axis_angle_to_quat(np.array([1.0, 0.0, 0.0]))  # bend the left knee only
    [got] = send_vrchat(receiver, body, ["left_knee", "left_foot"], [frame])
    np.testing.assert_allclose(got["/tracking/trackers/4/rotation"], [0, 0, 0], atol=1e-3)
    assert np.abs(got["/tracking/trackers/2/rotation"]).max() > 10


def test_vrchat_unknown_tracker_is_a_clear_error(body):
    with pytest.raises(ValueError, match=r"unknown tracker 'left_hand'.*known: hip, left_foot"):
        VrchatTrackers("127.0.0.1", 9000, ["hip", "left_hand"], body)


class StreamReader:
    """A websockets client in a thread: connects (binary) as soon as the run's server is up, then
    keeps the hello and every pose frame until the server closes."""

    def __init__(self, url: str):
        self.hello, self.frames = None, []
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        while True:
            try:
                ws = connect(url)
                break
            except OSError:  # refused: the run has not started its server yet
                time.sleep(0.05)
        with ws:
            self.hello = json.loads(ws.recv())
            with contextlib.suppress(ConnectionClosed):
                for message in ws:
                    self.frames.append(decode_binary(message))

    def join(self) -> None:
        self._thread.join(30)


@pytest.mark.slow
def test_a_run_on_the_sample_clip_sends_every_pose_to_every_output(tmp_path):
    """`genmo-live run` on the sample clip, in real time as `make run` plays it, with VMC, VRChat and
    the WebSocket: every output sends every pose it gets (the report says 0 skipped, and the
    receivers got them all), and the WebSocket client places the body from the hello alone."""
    from clients.cli.main import main

    vmc, vrchat = Receiver(), Receiver()
    ws_port = free_port()
    reader = StreamReader(f"ws://127.0.0.1:{ws_port}/?format=binary")
    report_path = tmp_path / "report.json"
    try:
        assert main(["run", "--source", "sample", "--headless", "--report", str(report_path),
                     "--vmc", f"127.0.0.1:{vmc.port}", "--vrchat", f"127.0.0.1:{vrchat.port}",
                     "--ws", f"127.0.0.1:{ws_port}"]) == 0
        report = json.loads(report_path.read_text())
        poses = report["poses_out"]
        vmc.wait_for(lambda: len(vmc.datagrams) >= 2 * poses)  # the last may still be on the loopback
        vrchat.wait_for(lambda: len(vrchat.datagrams) >= poses)
        reader.join()
    finally:
        vmc.close()
        vrchat.close()
    outputs = {o["output"].split()[0]: o for o in report["outputs"]}
    assert outputs.keys() == {"vmc", "vrchat", "websocket"}
    assert all(o["skipped"] == 0 for o in outputs.values()), report["outputs"]
    assert outputs["vmc"]["sent"] == outputs["vrchat"]["sent"] == poses == 187
    frames = vmc.vmc_frames()
    assert len(frames) == poses
    assert max(len(d) for d in vmc.datagrams + vrchat.datagrams) <= MAX_DATAGRAM
    for frame in frames:
        check_vmc_frame(frame)
    assert [f[-1][1][0] for f in frames] == sorted(f[-1][1][0] for f in frames)
    bundles = [dict(b) for b in vrchat_bundles(vrchat)]
    assert len(bundles) == poses
    for received in bundles:  # the default set: hip, left foot, right foot, and the head
        assert list(received) == [f"/tracking/trackers/{n}/{kind}" for n in ("1", "2", "3", "head")
                                  for kind in ("position", "rotation")]
        assert all(np.isfinite(v).all() and len(v) == 3 for v in received.values())
    # The client connected once the server was up, after the first frames: it got the rest.
    [client] = outputs["websocket"]["clients"]
    assert client["skipped"] == 0 and len(reader.frames) == client["sent"] > poses / 2
    check_hello_skeleton(reader.hello)
    assert reader.hello["fps"] == 20.0  # the sample clip's
    for got in reader.frames:
        placed = place_body(reader.hello, got["pose_quat"].astype(np.float64), got["root"].astype(np.float64))
        np.testing.assert_allclose(placed, got["joints"], atol=1e-3)
