"""Headless Chromium for the tests that need a real browser (the WebRTC capture page, the viewer).

    with launch(url, fake_video=y4m_path) as proc:   # proc: the Chromium Popen
        ...
    with launch(url, extra_args=(f"--remote-debugging-port={port}",)), devtools(port) as page:
        page.evaluate("window.viewer")             # the page, over the DevTools protocol

Debian's `chromium` package (.ci/run installs it). The fake camera plays a Y4M file in a loop;
write_y4m makes one from any clip OpenCV reads (no ffmpeg needed).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from websockets.sync.client import connect

# The binary itself first: the /usr/bin/chromium wrapper script prints a shell warning.
EXECUTABLES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")

FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    # Chromium leaves loopback out of its ICE candidates otherwise; the servers here are loopback-only.
    "--allow-loopback-in-peer-connection",
    # the page's console.log on stderr, for debugging a failing test
    "--enable-logging=stderr", "--v=0",
)


def find_chromium() -> str | None:
    """The Chromium executable, or None when it is not installed."""
    return next((p for p in EXECUTABLES if os.access(p, os.X_OK)), None)


@contextlib.contextmanager
def launch(url: str, fake_video: Path | str | None = None, extra_args=(), stderr=None) -> Iterator[subprocess.Popen]:
    """Chromium, headless, on `url` with a fresh profile; the fake camera plays `fake_video` (Y4M)
    if given (else Chromium's own test pattern). Killed, profile removed, on exit. `stderr`: where
    its log goes (a file object; default: discarded)."""
    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("Chromium is not installed (Debian: apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    args = [exe, *FLAGS, f"--user-data-dir={profile}", *extra_args]
    if fake_video is not None:
        args.append(f"--use-file-for-fake-video-capture={fake_video}")
    # its own process group, so that its renderer and GPU helpers go with it
    proc = subprocess.Popen([*args, url], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=stderr if stderr is not None else subprocess.DEVNULL, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevTools:
    """The few Chrome DevTools protocol calls the viewer's tests need, over `ws` (the page target's)."""

    def __init__(self, ws):
        self._ws = ws
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events until our reply
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return reply["result"]

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float, what: str):
        deadline = time.time() + timeout
        while not (value := self.evaluate(expression)):
            if time.time() > deadline:
                page = self.evaluate("JSON.stringify([window.viewer, document.getElementById('status').textContent])")
                raise AssertionError(f"{what}; the page's state and status line: {page}")
            time.sleep(0.25)
        return value


@contextlib.contextmanager
def devtools(port: int, timeout: float = 60.0) -> Iterator[DevTools]:
    """DevTools on the first page of the Chromium listening on `port` (--remote-debugging-port)."""
    deadline = time.time() + timeout
    while True:
        with contextlib.suppress(OSError, ValueError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as r:
                pages = [t for t in json.loads(r.read()) if t["type"] == "page"]
            if pages:
                break
        assert time.time() < deadline, "Chromium's DevTools did not come up"
        time.sleep(0.3)
    with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as ws:
        yield DevTools(ws)


@contextlib.contextmanager
def viewer_page(url: str, width: int = 1280, height: int = 720, log: Path | None = None) -> Iterator[DevTools]:
    """DevTools on headless Chromium showing the viewer at `url`, its viewport width x height, WebGL
    on the CPU (headless Chromium has no GPU here); Chromium's stderr to `log` when given."""
    port = free_port()
    with contextlib.ExitStack() as stack:
        stderr = stack.enter_context(open(log, "wb")) if log else None
        stack.enter_context(launch(url, extra_args=(f"--remote-debugging-port={port}", f"--window-size={width},{height}",
                                                    "--enable-unsafe-swiftshader"), stderr=stderr))
        page = stack.enter_context(devtools(port))
        # the viewport itself (--window-size sets the window, toolbars' room included)
        page.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        yield page


def write_y4m(clip: Path | str, out: Path | str, max_frames: int | None = None) -> tuple[int, int, int]:
    """Convert `clip` to a Y4M file Chromium's fake camera can play (4:2:0, the clip's frame rate).
    Returns (width, height, frames). Y4M is raw: about 0.75 MB per 720x720 frame."""
    import cv2

    cap = cv2.VideoCapture(str(clip))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot read {clip}")
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    num, den = round(fps * 1000), 1000
    width = height = frames = 0
    try:
        with open(out, "wb") as f:
            while max_frames is None or frames < max_frames:
                ok, bgr = cap.read()
                if not ok:
                    break
                if frames == 0:
                    height, width = bgr.shape[:2]
                    if width % 2 or height % 2:
                        raise ValueError(f"{clip} is {width}x{height}: 4:2:0 needs even sizes")
                    f.write(f"YUV4MPEG2 W{width} H{height} F{num}:{den} Ip A1:1 C420jpeg\n".encode())
                f.write(b"FRAME\n")
                f.write(cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420).tobytes())
                frames += 1
    finally:
        cap.release()
    if frames == 0:
        raise ValueError(f"{clip} has no frames")
    return width, height, frames
