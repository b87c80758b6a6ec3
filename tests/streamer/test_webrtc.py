"""The WebRTC source: a real headless Chromium sends the sample clip as its camera through the
capture page, and the frames that come out are whole 720x720 RGB frames in which the real MediaPipe
finds the person. Also: bad offers are refused without harm, the token guards a non-loopback
server, ICE stays on loopback, and close() ends a blocked consumer.

Needs Debian's chromium for the browser test (.ci/run installs it): without it that test skips on a
developer's machine and fails in CI."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request

import aioice.ice
import numpy as np
import pytest
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription, VideoStreamTrack

from browser import launch, write_y4m
from streamer.frames import SourceError
from streamer.pose import PoseDetector
from streamer.sources import SAMPLE_CLIP
from streamer.webrtc import WebRTCSource

pytestmark = pytest.mark.slow

FIRST_FRAME_TIMEOUT_S = 60.0  # a slow, busy 2-core machine: Chromium's start dominates
COLLECT_S = 4.0  # after the first frame
MAX_COLLECT_S = 20.0  # two loops of the clip: the person must have been found by then


@pytest.fixture(scope="module")
def sample_y4m(tmp_path_factory):
    path = tmp_path_factory.mktemp("camera") / "webcam_sample.y4m"  # ≈140 MB
    assert write_y4m(SAMPLE_CLIP, path)[:2] == (720, 720)
    return path


def http(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    """(status, body) of a GET, or of a POST when `body` is given, with `headers` added (a Host
    among them replaces urllib's); HTTP errors are returned too."""
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def offer_url(src: WebRTCSource) -> str:
    return f"http://127.0.0.1:{src.port}/offer"


def aiortc_offer() -> str:
    """A real SDP offer with one video track, from aiortc on its default (non-loopback) candidates."""

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.addTransceiver("video", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    return asyncio.run(make())


class AiortcCamera:
    """A peer like a browser that gathers no loopback candidate (every browser but a test
    Chromium): aiortc on its default addresses, sending aiortc's 640x480 test video, on its own
    loop in a thread."""

    def __init__(self, offer_url: str):
        self._stop = threading.Event()
        self._failed: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(offer_url,), daemon=True)
        self._thread.start()

    def _run(self, url: str) -> None:
        try:
            asyncio.run(self._send(url))
        except BaseException as e:  # noqa: BLE001 - reported by close()
            self._failed.append(e)

    async def _send(self, url: str) -> None:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        try:
            pc.addTrack(VideoStreamTrack())
            await pc.setLocalDescription(await pc.createOffer())
            body = json.dumps({"sdp": pc.localDescription.sdp, "type": "offer"}).encode()
            status, reply = await asyncio.to_thread(http, url, body)
            assert status == 200, reply
            await pc.setRemoteDescription(RTCSessionDescription(**json.loads(reply)))
            while not self._stop.is_set():
                await asyncio.sleep(0.05)
        finally:
            await pc.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self._failed:
            raise self._failed.pop()

    def __enter__(self) -> "AiortcCamera":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def candidate_addresses(sdp: str) -> list[str]:
    return [line.split()[4] for line in sdp.splitlines() if line.startswith("a=candidate:")]


def test_a_browser_camera_arrives_as_frames_with_the_person_in_them(chromium, sample_y4m, tmp_path):
    detector = PoseDetector()  # loaded before the clock starts
    shapes, times, indices = [], [], []
    person = None
    with WebRTCSource(port=0) as src, open(tmp_path / "chromium.log", "wb") as chromium_log:
        # ends the iteration (through close()) if the browser never connects or stops sending
        watchdog = threading.Timer(FIRST_FRAME_TIMEOUT_S + MAX_COLLECT_S, src.close)
        watchdog.start()
        t_launch = time.time()
        try:
            with launch(src.url, fake_video=sample_y4m, stderr=chromium_log):
                for frame in src:
                    assert frame.rgb.dtype == np.uint8 and frame.rgb.flags.c_contiguous
                    shapes.append(frame.rgb.shape)
                    times.append(frame.t_capture)
                    indices.append(frame.index)
                    if person is None and frame.rgb.shape == (720, 720, 3) and frame.index % 3 == 0:
                        person = detector.detect(frame.rgb)
                    collected = frame.t_capture - times[0]
                    if collected > MAX_COLLECT_S or (collected > COLLECT_S and person is not None):
                        break
        finally:
            watchdog.cancel()
            detector.close()
        dropped = src.dropped
    log_tail = (tmp_path / "chromium.log").read_text(errors="replace")[-3000:]

    assert times, f"no frame within {FIRST_FRAME_TIMEOUT_S:.0f} s; Chromium's log ends:\n{log_tail}"
    assert indices == list(range(len(indices)))
    assert np.all(np.diff(times) > 0)
    assert all(len(s) == 3 and s[2] == 3 for s in shapes)
    assert shapes[-1] == (720, 720, 3), f"the browser never reached the clip's size: {shapes[-1]}"
    assert person is not None, "MediaPipe found nobody in the received frames"
    span = times[-1] - times[0]
    print(f"\nfirst frame {times[0] - t_launch:.1f} s after launching Chromium; {len(times)} frames in "
          f"{span:.1f} s ({(len(times) - 1) / max(span, 1e-9):.1f} fps received, {dropped} dropped "
          f"by the consumer); sizes {sorted(set(shapes))}")


def test_malformed_offers_get_400_and_the_server_keeps_serving():
    with WebRTCSource(port=0) as src:
        for body in (b"not json", b"\xff\xfe", b"[1, 2]", b"{}", json.dumps({"type": "offer"}).encode(),
                     json.dumps({"sdp": 42, "type": "offer"}).encode(),
                     json.dumps({"sdp": "v=0", "type": "answer"}).encode(),
                     json.dumps({"sdp": "m=video is not an SDP offer", "type": "offer"}).encode()):
            status, reply = http(offer_url(src), body)
            assert status == 400, body
            assert json.loads(reply)["error"]
        status, page = http(src.url)
        assert status == 200 and b"RTCPeerConnection" in page


def test_other_sites_cannot_post_offers_or_read_the_page_without_a_token():
    """A web page open in the user's browser (or one that points its own name at 127.0.0.1) could
    POST /offer as text/plain without asking, and hang up the user's camera; on main it could."""
    with WebRTCSource(port=0) as src:
        offer = json.dumps({"sdp": aiortc_offer(), "type": "offer"}).encode()
        for headers in ({"Origin": "https://evil.example", "Content-Type": "text/plain"},
                        {"Origin": "http://127.0.0.1.evil.example"},
                        {"Host": f"rebind.evil.example:{src.port}", "Origin": f"http://rebind.evil.example:{src.port}"}):
            status, reply = http(offer_url(src), offer, headers)
            assert status == 403 and b"token" in reply, headers
            assert http(src.url, headers=headers)[0] == 403
        assert http(offer_url(src), offer, {"Origin": f"http://127.0.0.1:{src.port}"})[0] == 200
        assert http(offer_url(src), offer, {"Origin": f"http://localhost:{src.port}"})[0] == 200


def test_an_offer_nested_thousands_deep_or_a_token_no_encoder_can_hold_is_refused_cleanly():
    with WebRTCSource(host="0.0.0.0", port=0, token="s3cret") as src:
        assert http(offer_url(src), b"[" * 100_000 + b"]" * 100_000)[0] == 400  # was a RecursionError, 500
        body = '{"sdp": "m=video", "type": "offer", "token": "s3cret\\udc80"}'.encode()
        assert http(offer_url(src), body)[0] == 403  # was a UnicodeEncodeError, 500


def test_an_offer_that_cannot_be_answered_leaves_the_connected_camera_streaming(caplog):
    if not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False):
        pytest.skip("no non-loopback IPv4 address here to stand for a browser's")
    unusable = {"sdp": "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n", "type": "offer"}  # no ICE, no DTLS
    with caplog.at_level(logging.INFO, logger="streamer.webrtc"), WebRTCSource(port=0) as src, \
            AiortcCamera(offer_url(src)):
        watchdog = threading.Timer(3 * FIRST_FRAME_TIMEOUT_S, src.close)
        watchdog.start()
        try:
            frames = iter(src)
            assert all(next(frames, None) is not None for _ in range(5))
            status, reply = http(offer_url(src), json.dumps(unusable).encode())
            assert status == 400 and json.loads(reply)["error"].startswith("unusable offer")
            assert all(next(frames, None) is not None for _ in range(20)), "the camera was hung up"
        finally:
            watchdog.cancel()
    assert "closing the previous one" not in caplog.text


def test_the_answer_stays_on_loopback():
    offer = aiortc_offer()
    assert any(a != "127.0.0.1" for a in candidate_addresses(offer)), "aioice's default must be untouched"
    with WebRTCSource(port=0) as src:
        status, reply = http(offer_url(src), json.dumps({"sdp": offer, "type": "offer"}).encode())
        assert status == 200, reply
        answer = json.loads(reply)
        assert answer["type"] == "answer"
        assert set(candidate_addresses(answer["sdp"])) == {"127.0.0.1"}


def test_peers_without_loopback_candidates_connect_one_at_a_time(caplog):
    if not aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False):
        pytest.skip("no non-loopback IPv4 address here to stand for a browser's")
    received = []
    with caplog.at_level(logging.INFO, logger="streamer.webrtc"), WebRTCSource(port=0) as src, \
            contextlib.ExitStack() as cameras:
        # ends the iteration (through close()) if frames stop coming
        watchdog = threading.Timer(3 * FIRST_FRAME_TIMEOUT_S, src.close)
        watchdog.start()
        cameras.callback(watchdog.cancel)
        frames = iter(src)

        def take(n: int) -> None:
            for _ in range(n):
                frame = next(frames, None)
                assert frame is not None, f"frames stopped after {len(received)}"
                received.append(frame)

        first = AiortcCamera(offer_url(src))
        cameras.callback(first.close)
        take(10)
        second = AiortcCamera(offer_url(src))  # while the first is connected
        cameras.callback(second.close)
        deadline = time.time() + FIRST_FRAME_TIMEOUT_S
        while "closing the previous one" not in caplog.text:
            assert time.time() < deadline, "the second peer did not replace the first"
            time.sleep(0.1)
        take(10)
        cameras.close()  # both hang up; the source waits for the next peer
        with AiortcCamera(offer_url(src)):
            take(10)
    assert [f.index for f in received] == list(range(30)), "the index counts on across peers"
    assert all(f.rgb.shape == (480, 640, 3) for f in received)


def test_a_non_loopback_server_needs_the_token():
    with pytest.raises(SourceError, match="token"):
        WebRTCSource(host="0.0.0.0", port=0)
    with WebRTCSource(host="0.0.0.0", port=0, token="s3cret") as src:
        assert src.url == f"http://0.0.0.0:{src.port}/?token=s3cret"
        garbage = {"sdp": "m=video is not an SDP offer", "type": "offer"}
        assert http(offer_url(src), json.dumps(garbage).encode())[0] == 403
        assert http(offer_url(src), json.dumps({**garbage, "token": "guess"}).encode())[0] == 403
        assert http(offer_url(src) + "?token=guess", json.dumps(garbage).encode())[0] == 403
        # past the token check, to the offer's own (400)
        assert http(offer_url(src), json.dumps({**garbage, "token": "s3cret"}).encode())[0] == 400
        assert http(offer_url(src) + "?token=s3cret", json.dumps(garbage).encode())[0] == 400


def test_a_taken_port_is_a_source_error():
    with WebRTCSource(port=0) as src:
        with pytest.raises(SourceError, match="cannot listen"):
            WebRTCSource(port=src.port)


def test_close_ends_the_iteration_of_a_blocked_consumer():
    src = WebRTCSource(port=0)
    ended = threading.Event()

    def consume() -> None:
        for _ in src:
            pass
        ended.set()

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    time.sleep(0.5)  # let it block in next()
    assert not ended.is_set()
    src.close()
    assert ended.wait(10), "the consumer is still blocked after close()"
    src.close()  # a second close is harmless
    assert list(src) == []


def test_the_pipeline_turns_a_browser_camera_into_poses(chromium, sample_y4m, tmp_path):
    """`genmo-live run --source webrtc` end to end: Chromium's fake camera -> capture page -> aiortc
    in the ingest process -> MediaPipe -> the engine -> pose frames."""
    import dataclasses
    import socket

    from clients.live import Output, run_live
    from configs.config import load_config

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = load_config()
    cfg = dataclasses.replace(cfg, source=dataclasses.replace(cfg.source, source="webrtc", webrtc_port=port))
    poses = []

    class Collect(Output):
        def publish(self, frame):
            poses.append(frame)

    result = {}
    runner = threading.Thread(target=lambda: result.update(run_live(cfg, outputs=[Collect()], duration=8.0)))
    runner.start()
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + FIRST_FRAME_TIMEOUT_S
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            if http(url)[0] == 200:
                break
        time.sleep(0.2)
    with open(tmp_path / "chromium.log", "wb") as chromium_log, launch(url, fake_video=sample_y4m,
                                                                       stderr=chromium_log):
        runner.join(FIRST_FRAME_TIMEOUT_S + 30)
    assert not runner.is_alive()
    assert result["poses_out"] > 0 and result["poses_out"] == len(poses) and not result["errors"]
    estimated = [p for p in poses if p.source == "estimated" and p.confidence > 0.5]
    assert estimated, "no frame with the person seen"
    assert np.isfinite(np.stack([p.joints for p in poses])).all()
    print(f"\n{result['poses_out']} poses from the browser camera; latency p50 {result['latency_ms']['p50']} ms "
          f"(capture = decoded on the server)")
