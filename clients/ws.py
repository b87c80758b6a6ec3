"""The WebSocket pose stream and engine control (`genmo-live run --ws HOST:PORT`).

    server = WebSocketServer("127.0.0.1", 8765, control, body, fps)   # serving once constructed
    server.publish(frame)                                             # from the engine thread; never blocks
    server.close()

Every pose frame goes to every connected client; clients also steer the engine (prompt, steps, lag,
recenter, pause). The server runs on its own asyncio loop in a daemon thread
(streamer/server_thread.py).

Connecting
----------
    ws://HOST:PORT/[?format=json|binary][&token=SECRET]

With a token set (any server beyond loopback has one), the client presents it either in the URL
(`?token=`) or as its first message, `{"type": "auth", "token": "SECRET"}`, within 10 s. Nothing is
sent before that check; a missing or wrong token closes the connection with code 1008 (policy
violation). Wrong tokens from one address are answered one at a time, each later than the last
(streamer.access.GuessThrottle). An unknown `format` in the URL is refused at the handshake (HTTP
400), and so is a connection past MAX_CONNECTIONS (HTTP 503). Without a
token, a client must ask for this machine by name (Host: an IP literal in 127.0.0.0/8, ::1 or
localhost) and a browser page may connect only if it comes from this machine (its Origin the same):
other pages get HTTP 403, so a web site open in the user's browser cannot steer the engine
(streamer.access).

The server's first message is the hello, which says all a client needs to place the body:

    {"type": "hello", "schema": 1, "formats": ["json", "binary"], "format": "json",
     "binary_layout": 1, "fps": 30.0,
     "axes": {"up": "+y", "units": "metres", "handedness": "right", "camera_forward": "+z",
              "rest_facing": "+z", "rest_left": "+x", "quaternion": "wxyz"},
     "skeleton": {"joints": ["pelvis", "left_hip", ...], "parents": [-1, 0, 0, 0, 1, ...],
                  "offsets": [[x, y, z] * 24], "rest_pelvis_height": 0.9495, "stature": 1.7}}

`schema` is engine.live.pose_frame.SCHEMA_VERSION, which both pose formats follow;
`binary_layout` the version byte of the binary layout below. `fps`: the source's frame rate as
the stream began, one pose per source frame (a camera's real rate may differ: t_capture times
every pose). `axes`: the world frame of every position and rotation: y up, metres,
right-handed; `camera_forward` is the camera's viewing direction flattened onto the floor (a
person facing the camera faces -z); the rest pose (every rotation identity) is a T-pose facing
`rest_facing` with its left side towards `rest_left`; quaternions are (w, x, y, z). `skeleton`:
the body the engine poses (engine.body.body_model.Body): joint names in pose order, each joint's
parent (-1 for the root), and `offsets`, each joint's rest position minus its parent's, metres
(the root's: the rest pelvis from the body's origin, the point of the floor below it, so its y
is `rest_pelvis_height`). A pose frame places the body by forward kinematics, parents first
(R(q): the rotation matrix of quaternion q):

    world_rot[0] = R(pose_quat[0]);  joints[0] = root
    world_rot[j] = world_rot[parent[j]] @ R(pose_quat[j])
    joints[j]    = joints[parent[j]] + world_rot[parent[j]] @ offsets[j]

which gives the frame's `joints`.

Pose frames
-----------
JSON (the default): one text message per pose, PoseFrame.to_dict() plus "type": "pose":

    {"type": "pose", "v": 1, "frame_id": 812, "t_capture": 1718000000.123, "t_emit": 1718000000.171,
     "source": "estimated", "confidence": 0.94, "root": [x, y, z],
     "pose_aa": [[x, y, z] * 24], "pose_quat": [[w, x, y, z] * 24], "joints": [[x, y, z] * 24],
     "contacts": [6 floats], "stature": 1.7, "betas": [], "seen": [24 ints, 0 or 1]}

Units and frames as in engine.live.pose_frame: metres, y up, seconds of time.time() on the server's
clock (t_emit - t_capture is the capture-to-pose latency; comparing either with a client's clock
is meaningless across machines). Joint order: engine.body.skeleton.SMPL_JOINT_NAMES. Contacts: ankles, feet,
wrists (engine.body.skeleton.CONTACT_JOINTS). seen: the joints MediaPipe saw in this frame
(engine.live.pose_frame.seen_joints; JSON only: the binary layout below does not carry it yet).
About 3 kB a frame.

Binary (`?format=binary` or `{"type": "subscribe", "format": "binary"}`): one binary message per
pose, little-endian, 748 bytes plus 4 per beta; `decode_binary` reads it.

    offset  size  type        field
         0     4  bytes       magic b"GMLV"
         4     1  uint8       layout version (= schema, 1)
         5     1  uint8       source: 0 estimated, 1 generated, 2 blended
         6     1  uint8       n_betas
         7     1  -           zero padding
         8     8  uint64      frame_id
        16     8  float64     t_capture, seconds (time.time())
        24     8  float64     t_emit, seconds (time.time())
        32     4  float32     confidence, 0..1
        36     4  float32     stature, metres
        40    12  float32[3]  root: pelvis world position, metres
        52   384  float32[24][4]  pose_quat: (w, x, y, z) per joint; joint 0 world, others local
       436   288  float32[24][3]  joints: world positions, metres
       724    24  float32[6]  contacts, 0..1
       748  4*nb  float32[nb] betas

pose_aa is left out (pose_quat holds the same rotations). The floats start at offset 40, so a
Float32Array (on a little-endian host, which browsers are) can view them in place.

Control messages (client -> server, JSON text)
----------------------------------------------
    {"type": "set_prompt", "text": "a person waves"}   the text that drives generated motion
    {"type": "clear_prompt"}                           back to the configured prompt
    {"type": "set_legs", "text": "a person sits on a chair"}  the text that steers the legs while
                                                       they are not seen (a desk hides them)
    {"type": "clear_legs"}                             back to the configured legs prompt
    {"type": "set_steps", "steps": 4}                  denoising steps per window (1..50; more than
                                                       configured only while the engine keeps real
                                                       time, unless engine.slow_steps)
    {"type": "set_lag", "frames": 10}                  output lag (0..half the window)
    {"type": "recenter"}                               the world origin under the person
    {"type": "pause"} / {"type": "resume"}             stop / restart publishing poses
    {"type": "state"}                                  just report the state
    {"type": "subscribe", "format": "json"|"binary"}   switch this connection's pose format
    {"type": "auth", "token": "..."}                   first message, on a token server

Any message may carry an "id" (any JSON value), echoed in its reply. An engine command is applied
by the engine loop between two frames and acknowledged with the state after it:

    {"type": "ack", "command": "set_steps", "state": {"prompt": "...", "legs": "", "steps": 4,
     "lag": 10, "paused": false}, "id": 7}

subscribe is acknowledged with {"type": "ack", "command": "subscribe", "format": "binary"}, a
repeated auth with {"type": "ack", "command": "auth"}. A message that is not JSON, not an object,
of an unknown type, or with a missing or mistyped field, and a command the engine refuses (steps
out of range) or does not answer within 5 s, get

    {"type": "error", "message": "...", "command": "set_steps", "id": 7}

("command" when the type was recognised) and the connection carries on. Control messages are at
most 64 KiB; a bigger one closes the connection (code 1009).

Slow clients
------------
Each client has its own queue of 8 frames (about a quarter of a second). A client that reads more
slowly than frames arrive (or not at all) has its oldest queued frames skipped, counted per client
(the status line, the run's report) and logged once; the engine and the other clients are not
slowed.

A client that takes nothing at all for 30 s (STALLED_S) while a message waits for it (a hung
program, a machine gone from the network) is disconnected: its TCP connection is cut, since it could
not read a close frame behind what it has not read; one line is logged and the server's `stalled`
count goes up. A slow client keeps its place: TCP hands a lagging reader's bytes over in bursts, so
one reading 3 frames a second may take nothing for up to 20 s, well inside the limit; one reading
fewer than 2 a second may be taken for stalled. The server sends no keepalive pings: a ping waits
behind the frames a client has not read, so it never reached a client that had stopped reading,
and reached a slow one only after its backlog, when its 20 s pong timeout had cut it.

A connection must complete its handshake within 10 s of opening, however slowly its bytes trickle
in, or it is closed (REQUEST_TIMEOUT_S, which the viewer and the WebRTC page apply to requests).
"""
from __future__ import annotations

import asyncio
import functools
import itertools
import json
import logging
import socket
import struct
from collections import deque
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import numpy as np
from websockets.asyncio.server import Request, Response, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import CloseCode

from clients.live import Control, Output
from configs.config import ConfigError
from engine.body.body_model import Body
from engine.body.kinematics import bone_offsets
from engine.live.pose_frame import SCHEMA_VERSION, SOURCES, PoseFrame
from streamer.access import GuessThrottle, request_refusal
from streamer.server_thread import REQUEST_TIMEOUT_S, ServerThread, http_url

log = logging.getLogger(__name__)

FORMATS = ("json", "binary")
MAGIC = b"GMLV"
# magic, version, source, n_betas, padding, frame_id, t_capture, t_emit, confidence, stature
HEADER = struct.Struct("<4sBBBxQddff")
_FLOAT_FIELDS = (("root", (3,)), ("pose_quat", (24, 4)), ("joints", (24, 3)), ("contacts", (6,)))
_NUM_FLOATS = sum(int(np.prod(shape)) for _, shape in _FLOAT_FIELDS)
BINARY_SIZE = HEADER.size + 4 * _NUM_FLOATS  # without betas: 748 bytes

QUEUE_FRAMES = 8
AUTH_TIMEOUT_S = 10.0
COMMAND_TIMEOUT_S = 5.0
MAX_MESSAGE_BYTES = 2 ** 16
MAX_CONNECTIONS = 256  # more are refused at the handshake (HTTP 503)
REPORTED_CLIENTS = 256  # the last clients to leave whose counts the run's report lists (all are totalled)
SEND_BUFFER_BYTES = 2 ** 16
# Long enough for a client that still reads, however slowly, and for a laptop that stalls for a
# few seconds: TCP hands a lagging reader's bytes over in bursts of tens to hundreds of kilobytes
# (its receive window, our send buffers), so on loopback a client reading 3-5 frames a second took
# nothing for 8-18 s at a time, and 10 s cut such clients; with 30 s every client reading 3 frames
# a second or more kept its place (measured, twelve slow readers for 150 s). Short enough that a
# client gone for good frees its place and its buffers within half a minute.
STALLED_S = 30.0
_CLOSE_TIMEOUT_S = 2.0
_STOP_TIMEOUT_S = 15.0  # the closing handshakes (2 s) and a command in flight (5 s), with room

# message type -> (the Control command it runs, or None for the connection's own; required fields)
MESSAGES = {
    "set_prompt": ("set_prompt", {"text": str}),
    "clear_prompt": ("set_prompt", {}),
    "set_legs": ("set_legs", {"text": str}),
    "clear_legs": ("set_legs", {}),
    "set_steps": ("set_steps", {"steps": int}),
    "set_lag": ("set_lag", {"frames": int}),
    "recenter": ("recenter", {}),
    "pause": ("pause", {}),
    "resume": ("resume", {}),
    "state": ("state", {}),
    "subscribe": (None, {"format": str}),
    "auth": (None, {"token": str}),
}


# The world frame of engine.live.pose_frame and the rest pose of engine.body.kinematics, for the hello.
WORLD_AXES = {"up": "+y", "units": "metres", "handedness": "right", "camera_forward": "+z",
              "rest_facing": "+z", "rest_left": "+x", "quaternion": "wxyz"}


def stream_description(body: Body, fps: float) -> dict:
    """What the hello says of the poses to come (the module docstring): the frame rate, the binary
    layout's version, the world's axes and the skeleton that the rotations pose."""
    rest = body.rest_joints.double()
    offsets = bone_offsets(rest, body.parents).numpy()
    return {"binary_layout": SCHEMA_VERSION, "fps": round(float(fps), 3), "axes": WORLD_AXES,
            "skeleton": {"joints": list(body.names), "parents": list(body.parents),
                         "offsets": np.round(offsets, 6).tolist(), "rest_pelvis_height": round(float(rest[0, 1]), 6),
                         "stature": body.stature}}


def encode_json(frame: PoseFrame) -> str:
    """A pose frame as the JSON text message (PoseFrame.to_dict() plus "type": "pose")."""
    return json.dumps({"type": "pose", **frame.to_dict()})


def encode_binary(frame: PoseFrame) -> bytes:
    """A pose frame in the binary layout of the module docstring."""
    header = HEADER.pack(MAGIC, SCHEMA_VERSION, SOURCES.index(frame.source), len(frame.betas), frame.frame_id,
                         frame.t_capture, frame.t_emit, frame.confidence, frame.stature)
    floats = np.concatenate([np.asarray(getattr(frame, name), np.float32).reshape(-1) for name, _ in _FLOAT_FIELDS]
                            + [np.asarray(frame.betas, np.float32).reshape(-1)])
    return header + floats.astype("<f4").tobytes()


def decode_binary(data: bytes) -> dict:
    """A binary pose message -> dict with to_dict()'s keys but pose_aa: root (3,), pose_quat (24, 4),
    joints (24, 3), contacts (6,) as float32 numpy arrays, betas a tuple of floats, the rest Python
    scalars. Raises ValueError for anything that is not such a message."""
    if len(data) < BINARY_SIZE or data[:4] != MAGIC:
        raise ValueError(f"not a genmo-live binary pose ({len(data)} bytes)")
    _, version, source, n_betas, frame_id, t_capture, t_emit, confidence, stature = HEADER.unpack_from(data)
    if version != SCHEMA_VERSION or source >= len(SOURCES) or len(data) != BINARY_SIZE + 4 * n_betas:
        raise ValueError(f"binary pose version {version}, source {source}, {n_betas} betas in {len(data)} bytes "
                         f"does not match layout version {SCHEMA_VERSION}")
    floats = np.frombuffer(data, "<f4", offset=HEADER.size).astype(np.float32)
    out = {"v": version, "frame_id": frame_id, "t_capture": t_capture, "t_emit": t_emit,
           "source": SOURCES[source], "confidence": confidence, "stature": stature}
    start = 0
    for name, shape in _FLOAT_FIELDS:
        size = int(np.prod(shape))
        out[name] = floats[start:start + size].reshape(shape)
        start += size
    out["betas"] = tuple(float(b) for b in floats[start:])
    return out


class MessageError(ValueError):
    """A control message the server answers with an error reply."""

    def __init__(self, message: str, command: str | None = None):
        super().__init__(message)
        self.command = command


def parse_message(message: str | bytes) -> dict:
    """A client's message -> the JSON object, checked against MESSAGES; MessageError otherwise."""
    if not isinstance(message, str):
        raise MessageError("control messages are JSON text, not binary")
    try:
        msg = json.loads(message)
    except (ValueError, RecursionError):  # RecursionError: deeply nested arrays
        raise MessageError("not JSON") from None
    if not isinstance(msg, dict):
        raise MessageError('a message is a JSON object {"type": ...}')
    kind = msg.get("type")
    if not isinstance(kind, str) or kind not in MESSAGES:
        raise MessageError(f"unknown message type {kind!r}; known: {', '.join(MESSAGES)}")
    for name, expected in MESSAGES[kind][1].items():
        value = msg.get(name)
        # bool is an int to Python, not a step count to anyone
        if not isinstance(value, expected) or isinstance(value, bool):
            raise MessageError(f'{kind} needs "{name}" ({expected.__name__}), got {value!r}', kind)
    return msg


class _Client:
    """One connection's pose format, frame queue and counters (the loop thread only)."""

    def __init__(self, ws: ServerConnection, number: int, fmt: str, queue_frames: int):
        self.ws, self.format = ws, fmt
        host, port = ws.remote_address[:2]
        self.name = f"client {number} ({host}:{port})"
        self.queue: asyncio.Queue = asyncio.Queue(queue_frames)
        self.sent = 0
        self.skipped = 0
        self.sending = 0  # sends under way: a frame and a reply may wait at the same time
        self.taken_t = 0.0  # loop time it last took a message, or last had none waiting

    def offer(self, message: str | bytes) -> None:
        """Queue a frame, skipping the oldest when full: a late client gets the newest poses."""
        if self.queue.full():
            self.queue.get_nowait()
            self.skipped += 1
            if self.skipped == 1:
                log.warning("%s is not keeping up (it or its network is slower than the poses): skipping its "
                            "oldest poses (counted in the status line and the run's report)", self.name)
        self.queue.put_nowait(message)

    def stats(self) -> dict:
        return {"name": self.name, "format": self.format, "sent": self.sent, "skipped": self.skipped}


class WebSocketServer(Output):
    """Serves ws://HOST:PORT/ (see the module docstring) from construction until close().

    control: the run's Control (clients' commands go to it). body, fps: the engine's body and the
    source's frame rate, for the hello (stream_description). token: required from clients when set.
    port 0 picks a free port; `port` and `url` say which. queue_frames: frames queued per client
    before its oldest are skipped. stalled_s: seconds a client may take nothing while a message
    waits for it before it is disconnected (`stalled` counts those). request_timeout_s: seconds a
    connection has to complete its handshake. Raises ConfigError when it cannot listen."""

    name = "websocket"

    def __init__(self, host: str, port: int, control: Control, body: Body, fps: float, token: str | None = None,
                 queue_frames: int = QUEUE_FRAMES, stalled_s: float = STALLED_S,
                 request_timeout_s: float = REQUEST_TIMEOUT_S):
        self.host, self.control, self.token = host, control, token or None
        self._description = stream_description(body, fps)
        self.queue_frames, self.stalled_s, self.request_timeout_s = queue_frames, stalled_s, request_timeout_s
        self.stalled = 0  # clients disconnected for taking nothing for stalled_s
        self._clients: set[_Client] = set()
        # Clients that have left: the last REPORTED_CLIENTS one by one, and all of them in total.
        self._left: deque[dict] = deque(maxlen=REPORTED_CLIENTS)
        self._left_sent = self._left_skipped = 0
        self._connections = 0  # open connections, those still authenticating included
        self._throttle = GuessThrottle()
        self._numbers = itertools.count(1)
        self._closed = False
        self._server = ServerThread("ws-server", functools.partial(self._serve, port), what="the WebSocket server",
                                    host=host, port=port, hint="--ws HOST:PORT", error_type=ConfigError,
                                    stop_timeout_s=_STOP_TIMEOUT_S)
        self.port = self._server.port
        self.url = http_url("ws", host, self.port)
        log.info("pose stream and control on %s%s", self.url, " (token required)" if self.token else "")

    # --- the engine's side ---------------------------------------------------------------------

    def publish(self, frame: PoseFrame) -> None:
        """Hand `frame` to the server's loop; encoding and sending happen there. Tens of
        microseconds, up to a GIL switch interval (5 ms) when the loop thread takes the GIL at the
        wake-up. The frame must not be modified afterwards."""
        if not self._closed:
            self._server.call_soon(self._broadcast, frame)  # False: close() is under way

    def client_stats(self) -> list[dict]:
        """Per connected client: name, format, frames sent and skipped."""
        async def collect() -> list[dict]:
            return [c.stats() for c in self._clients]

        return asyncio.run_coroutine_threadsafe(collect(), self._server.loop).result(timeout=5)

    def close(self) -> None:
        """Close every connection (code 1001) and stop the server and its thread."""
        self._closed = True  # publish() stops handing frames over
        self._server.stop()

    def skips(self) -> dict[str, int]:
        # list(): one step under the GIL, so the loop thread cannot change the set while it is read
        counts = {f"websocket {c.name}": c.skipped for c in list(self._clients)}
        if self._left_skipped:
            counts["websocket clients that left"] = self._left_skipped
        return counts

    def summary(self) -> dict:
        """Frames sent and skipped over every client, and per client (after close every client has
        left; the last REPORTED_CLIENTS are listed)."""
        clients = list(self._left) + [c.stats() for c in list(self._clients)]
        return {"output": f"websocket {self.url}",
                "sent": self._left_sent + sum(c["sent"] for c in clients[len(self._left):]),
                "skipped": self._left_skipped + sum(c["skipped"] for c in clients[len(self._left):]),
                "stalled": self.stalled, "clients": clients}

    # --- the server's side (the loop thread) ---------------------------------------------------

    async def _serve(self, port: int, ready, stop: asyncio.Event) -> None:
        # No permessage-deflate: it would compress every frame once per client, the server's
        # main cost by far with many clients on a small CPU, to save little on a LAN.
        # open_timeout: a deadline for the whole handshake, which bytes trickling in do not move.
        # No keepalive pings: a ping waits behind the frames a client has not read, so it never
        # reaches one that has stopped reading, and reaches a slow reader only after its backlog;
        # the 20 s pong timeout cut clients reading 3 JSON or 10-20 binary frames a second
        # (measured). _watch_stalls is the check instead.
        server = await serve(self._handle, self.host, port, compression=None, max_size=MAX_MESSAGE_BYTES,
                             process_request=self._check_request, close_timeout=_CLOSE_TIMEOUT_S,
                             open_timeout=self.request_timeout_s, ping_interval=None)
        ready(server.sockets[0].getsockname()[1])
        watch = asyncio.create_task(self._watch_stalls())
        await stop.wait()
        watch.cancel()
        server.close()  # the closing handshakes, code 1001
        closed = asyncio.ensure_future(server.wait_closed())
        if not (await asyncio.wait({closed}, timeout=_CLOSE_TIMEOUT_S))[0]:
            # A client that stopped reading never takes its close frame (the write waits for room
            # without a deadline): cut its TCP connection.
            for client in self._clients:
                client.ws.transport.abort()
            await closed

    def _broadcast(self, frame: PoseFrame) -> None:
        encoded: dict[str, str | bytes] = {}  # each format encoded once, only if a client wants it
        for client in self._clients:
            if client.format not in encoded:
                encoded[client.format] = encode_binary(frame) if client.format == "binary" else encode_json(frame)
            client.offer(encoded[client.format])

    def _check_request(self, ws: ServerConnection, request: Request) -> Response | None:
        fmt = parse_qs(urlsplit(request.path).query, keep_blank_values=True).get("format", ["json"])[-1]
        if fmt not in FORMATS:
            return ws.respond(HTTPStatus.BAD_REQUEST, f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}\n")
        # Without a token anything that reaches the port may connect: a web page open in the user's
        # browser must not be able to, so pages are only welcome from this machine (streamer.access).
        refusal = request_refusal(request.headers.get_all("Host"), request.headers.get_all("Origin"), self.token)
        if refusal:
            return ws.respond(HTTPStatus.FORBIDDEN, refusal + "\n")
        if self._connections >= MAX_CONNECTIONS:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, f"the server has its {MAX_CONNECTIONS} connections\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        # Linux grows a socket's send buffer to megabytes, a minute of poses for a client that has
        # stopped reading; a fixed one keeps what is in flight to about a second, so such a client
        # reaches its queue's drops soon, and reads fresh poses when it comes back.
        ws.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        query = parse_qs(urlsplit(ws.request.path).query, keep_blank_values=True)
        self._connections += 1
        try:
            if self.token is not None and not await self._authenticate(ws, query.get("token", [None])[-1]):
                await ws.close(CloseCode.POLICY_VIOLATION, "missing or wrong token")
                return
            client = _Client(ws, next(self._numbers), query.get("format", ["json"])[-1], self.queue_frames)
            await ws.send(json.dumps({"type": "hello", "schema": SCHEMA_VERSION, "formats": list(FORMATS),
                                      "format": client.format, **self._description}))
            log.info("%s connected", client.name)
            self._clients.add(client)
            sender = asyncio.create_task(self._send_frames(client))
            try:
                async for message in ws:
                    await self._send(client, json.dumps(await self._reply(client, message)))
            finally:
                self._clients.discard(client)
                sender.cancel()
                self._left.append(client.stats())
                self._left_sent += client.sent
                self._left_skipped += client.skipped
                log.info("%s left: %d frames sent, %d skipped", client.name, client.sent, client.skipped)
        except ConnectionClosed:
            pass
        finally:
            self._connections -= 1

    async def _authenticate(self, ws: ServerConnection, query_token: str | None) -> bool:
        """The token from the URL, or else from an auth first message (within AUTH_TIMEOUT_S)."""
        presented = query_token
        if presented is None:
            try:
                msg = parse_message(await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S))
            except (MessageError, asyncio.TimeoutError):
                return False
            presented = msg["token"] if msg["type"] == "auth" else None
        return await self._throttle.check(ws.remote_address[0], presented, self.token)

    async def _send_frames(self, client: _Client) -> None:
        try:
            while True:
                message = await client.queue.get()
                # waits while the connection's write buffer is full: the queue then fills and drops
                await self._send(client, message)
                client.sent += 1
        except ConnectionClosed:
            pass

    async def _send(self, client: _Client, message: str | bytes) -> None:
        """ws.send, keeping the client's clock for _watch_stalls: two timestamps rather than a
        timeout around the send, whose timer would cost 6 µs for every frame to every client."""
        if not client.sending:
            client.taken_t = asyncio.get_running_loop().time()
        client.sending += 1
        try:
            await client.ws.send(message)
        finally:
            client.sending -= 1
        client.taken_t = asyncio.get_running_loop().time()

    async def _watch_stalls(self) -> None:
        """Disconnect every client that has taken nothing for stalled_s while a message waited
        (checked ten times per stalled_s)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.stalled_s / 10)
            now = loop.time()
            for client in self._clients:
                if client.sending and now - client.taken_t >= self.stalled_s and not client.ws.transport.is_closing():
                    self.stalled += 1
                    log.warning("%s has taken nothing for %.0f s: disconnecting it", client.name,
                                now - client.taken_t)
                    # A close frame would wait behind everything it has not read: cut the TCP
                    # connection, which ends its pending sends and its handler.
                    client.ws.transport.abort()

    async def _reply(self, client: _Client, message: str | bytes) -> dict:
        """The reply to one client message: an ack, or an error (never raises for a bad message)."""
        request_id = None
        try:
            msg = parse_message(message)
            request_id = msg.get("id")
            kind = msg["type"]
            command = MESSAGES[kind][0]
            if kind == "subscribe":
                if msg["format"] not in FORMATS:
                    raise MessageError(f"unknown format {msg['format']!r}; formats: {', '.join(FORMATS)}", kind)
                client.format = msg["format"]
                reply = {"type": "ack", "command": kind, "format": client.format}
            elif kind == "auth":  # already authenticated (or no token needed)
                reply = {"type": "ack", "command": kind}
            else:
                args = (None,) if kind.startswith("clear_") else tuple(msg[name] for name in MESSAGES[kind][1])
                state = await self._engine_command(kind, command, args)
                reply = {"type": "ack", "command": kind, "state": state}
        except MessageError as e:
            reply = {"type": "error", "message": str(e)}
            if e.command:
                reply["command"] = e.command
        if request_id is not None:
            reply["id"] = request_id
        return reply

    async def _engine_command(self, kind: str, command: str, args: tuple) -> dict:
        future = self.control.submit(command, *args)
        # asyncio.wait, not wait_for: neither a timeout nor a cancelled handler may cancel the
        # Control's future, which the engine thread would then fail to resolve (InvalidStateError).
        wrapped = asyncio.wrap_future(future)
        done, _ = await asyncio.wait({wrapped}, timeout=COMMAND_TIMEOUT_S)
        if not done:
            raise MessageError(f"the engine did not answer within {COMMAND_TIMEOUT_S:.0f} s", kind)
        try:
            return wrapped.result()
        except (ValueError, TypeError) as e:  # what Control hands back from the engine
            raise MessageError(str(e), kind) from None
