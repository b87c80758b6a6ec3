"""Headless Chromium for the tests that need a real browser (the WebRTC capture page, the viewer).

    with launch(url, fake_video=y4m_path) as proc:   # proc: the Chromium Popen
        ...

Debian's `chromium` package (.ci/run installs it). The fake camera plays a Y4M file in a loop;
write_y4m makes one from any clip OpenCV reads (no ffmpeg needed).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

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
