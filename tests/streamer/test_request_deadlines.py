"""Requests that never finish (slowloris): the viewer and the WebRTC page (their shared
streamer.server_thread.http_site) and the WebSocket server's handshake close a connection whose
request has not arrived whole within their request_timeout_s, however slowly its bytes keep
trickling in, while whole requests, several over one keep-alive connection as a browser sends them,
are served.

Real servers and raw sockets, with a 1 s deadline. On main the viewer and the WebRTC page kept a
trickled request's connection for aiohttp's keep-alive timeout, an hour (still open after 90 s,
measured), and a trickled body for good."""
from __future__ import annotations

import socket
import time
from http.client import HTTPConnection

import pytest

from clients.live import Control
from clients.viewer import STATIC, ViewerServer
from clients.ws import WebSocketServer
from engine.body.body_model import load_default_body
from streamer.webrtc import WebRTCSource

TIMEOUT_S = 1.0  # the servers' request_timeout_s here
TRICKLE_S = 0.2  # a byte this often: never a silence the deadline could be taken for
NEVER_S = 60.0  # a connection still open this long after its deadline is taken to be kept for good


def start(kind: str):
    """A real server of `kind` on 127.0.0.1, a free port, with TIMEOUT_S as its request_timeout_s."""
    if kind == "viewer":
        return ViewerServer("127.0.0.1", 0, "ws://127.0.0.1:8765/", load_default_body(), request_timeout_s=TIMEOUT_S)
    if kind == "webrtc":
        return WebRTCSource(port=0, request_timeout_s=TIMEOUT_S)
    return WebSocketServer("127.0.0.1", 0, Control(), load_default_body(), 30.0, request_timeout_s=TIMEOUT_S)


@pytest.fixture
def server(request):
    """(kind, port) of start(kind), for kind in request.param."""
    srv = start(request.param)
    yield request.param, srv.port
    srv.close()


def trickle(port: int, start_bytes: bytes) -> tuple[float, bytes]:
    """Send `start_bytes`, then one more byte ("a") every TRICKLE_S until the server closes the
    connection: (seconds from connecting to the close, what the server sent before it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        t0 = time.perf_counter()
        s.sendall(start_bytes)
        s.settimeout(TRICKLE_S)
        answer = b""
        while time.perf_counter() - t0 < TIMEOUT_S + NEVER_S:
            try:
                s.sendall(b"a")
                chunk = s.recv(4096)
            except TimeoutError:
                continue
            except (ConnectionResetError, BrokenPipeError):
                break
            if not chunk:
                break
            answer += chunk
        return time.perf_counter() - t0, answer


@pytest.mark.parametrize("server", ["viewer", "webrtc", "websocket"], indirect=True)
def test_a_request_head_that_never_ends_is_closed_unanswered(server):
    kind, port = server
    head = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
    if kind == "websocket":
        head += "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    seconds, answer = trickle(port, (head + "X-Slow: ").encode())
    assert TIMEOUT_S <= seconds < TIMEOUT_S + NEVER_S, f"{kind}: closed after {seconds:.1f} s"
    assert answer == b"", answer


@pytest.mark.parametrize("server", ["viewer", "webrtc"], indirect=True)
def test_a_request_body_that_never_ends_is_closed_unanswered(server):
    """aiohttp's keep-alive timer stops once a head is in: the body has a deadline of its own."""
    kind, port = server
    head = (f"POST /offer HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 100000\r\n\r\n")
    seconds, answer = trickle(port, head.encode())
    assert TIMEOUT_S <= seconds < TIMEOUT_S + NEVER_S, f"{kind}: closed after {seconds:.1f} s"
    assert answer == b"", answer


@pytest.mark.parametrize("server, requests", [
    ("viewer", [("GET", path, None, 200) for path in ("/", "/config.json", "/body.json", *STATIC)]),
    ("webrtc", [("GET", "/", None, 200), ("POST", "/offer", b'{"type": "answer"}', 400), ("GET", "/", None, 200)]),
], indirect=["server"])
def test_whole_requests_over_one_keep_alive_connection_are_served(server, requests):
    """As a browser loads the viewer: the page, its data and its scripts over one connection; the
    WebRTC page, an offer (a bad one: 400) and the page again. Left idle, the connection is closed."""
    kind, port = server
    conn = HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        local_ports = set()
        for method, path, body, status in requests:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            local_ports.add(conn.sock.getsockname()[1])
            response = conn.getresponse()
            assert response.status == status and response.read(), (kind, path)
        assert len(local_ports) == 1 and conn.sock is not None, "the connection was not kept alive"
        conn.sock.settimeout(TIMEOUT_S + NEVER_S)
        assert conn.sock.recv(1) == b""
    finally:
        conn.close()
