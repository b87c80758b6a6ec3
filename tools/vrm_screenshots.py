#!/usr/bin/env python3
"""Screenshots of the viewer driving the test VRM avatar from the sample clip (dev tool).

    .venv/bin/python tools/vrm_screenshots.py [--out bench/results]

Runs the real pipeline (`genmo-live run --source sample --loop --viewer ... --avatar test.vrm`, the
avatar built by tests/vrm_avatar.py) with headless Chromium on the viewer, and saves the page as
JPEG when the avatar shows the clip's frames where the person walks in, sits and holds the arms
out (the frames in MOMENTS, picked by looking at the clip). All three come from one pass of the clip
after the page is up, so the engine has been running for a while, as it would live. About a minute
on a 2-core machine; Chromium draws with SwiftShader (no GPU needed).
"""
from __future__ import annotations

import argparse
import base64
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

from engine.body.body_model import load_default_body

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the test helpers: Chromium and the test avatar

from browser import free_port, viewer_page  # noqa: E402
from vrm_avatar import vrm_file  # noqa: E402

BODY_NAMES = load_default_body().names
CLIP_FRAMES = 187  # assets/sample/webcam_sample.mp4 at 20 fps; frame ids count on through the loops
# name: the clip's frame (walking in mid-stride, seated on the chair, arms out to the sides)
MOMENTS = {"vrm_walk_in": 8, "vrm_seated": 75, "vrm_arms_raised": 120}
HEIGHTS = ("pelvis", "left_knee", "right_knee", "head", "left_wrist", "right_wrist")
WIDTH, HEIGHT = 960, 540
JPEG_QUALITY = 80


def wait_for_viewer(url: str, run: subprocess.Popen, timeout: float = 180.0) -> None:
    deadline = time.time() + timeout  # the engine and its text model load before the outputs start
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            if run.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the viewer did not come up at {url}")
            time.sleep(0.3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        avatar = Path(tmp) / "test_avatar.vrm"
        avatar.write_bytes(vrm_file("1.0"))
        ws_port, viewer_port = free_port(), free_port()
        url = f"http://127.0.0.1:{viewer_port}/"
        run = subprocess.Popen([sys.executable, "-m", "clients.cli", "run", "--source", "sample", "--loop",
                                "--ws", f"127.0.0.1:{ws_port}", "--viewer", f"127.0.0.1:{viewer_port}",
                                "--avatar", str(avatar)], cwd=REPO)
        try:
            wait_for_viewer(url, run)
            with viewer_page(url, WIDTH, HEIGHT) as page:
                page.wait_for("window.viewer && viewer.avatar && viewer.shownFrameId !== null", 120,
                              "the avatar was not shown")
                start = (page.evaluate("viewer.shownFrameId") // CLIP_FRAMES + 1) * CLIP_FRAMES
                for name, frame in MOMENTS.items():
                    # resolved on the page as soon as that frame is drawn, so the screenshot follows at once
                    page.call("Runtime.evaluate", awaitPromise=True, expression=(
                        "new Promise(done => { const check = () => viewer.shownFrameId >= "
                        f"{start + frame} ? done() : requestAnimationFrame(check); check(); }})"))
                    png = base64.b64decode(page.call("Page.captureScreenshot", format="png")["data"])
                    shown = page.evaluate("({...viewer.avatarPose(), source: viewer.source})")
                    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
                    path = args.out / f"{name}.jpg"
                    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
                    # the stream's heights, to tell a seated or arms-up pose from the numbers too
                    height = {j: shown["joints"][BODY_NAMES.index(j)][1] / shown["scale"] for j in HEIGHTS}
                    print(f"{path}: clip frame {shown['frameId'] % CLIP_FRAMES} (wanted {frame}), {shown['source']}; "
                          + ", ".join(f"{j} {y:.2f} m" for j, y in height.items())
                          + f" up; {path.stat().st_size // 1000} kB")
        finally:
            run.terminate()  # the run's own SIGTERM handling: it ends as on Ctrl-C
            run.wait(60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
