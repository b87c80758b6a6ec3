"""Sources, landmark packets and the ingest queue (streamer/)."""
import multiprocessing as mp
import time

import numpy as np
import pytest

from streamer.frames import SourceError
from streamer.ingest import _put_latest
from streamer.packets import PACKET_BYTES, LandmarkPacket
from streamer.sources import SAMPLE_CLIP, VideoFileSource, WebcamSource, open_source


def test_packet_round_trip_is_exact_and_compact():
    rng = np.random.default_rng(0)
    p = LandmarkPacket(123456789, 1796150000.123456, 1280, 720, rng.uniform(0, 700, (33, 2)).astype(np.float32),
                       rng.uniform(0, 1, 33).astype(np.float32), 12.5)
    q = LandmarkPacket.from_bytes(p.to_bytes())
    assert len(p.to_bytes()) == PACKET_BYTES == 420
    assert (q.frame_id, q.t_capture, q.width, q.height, q.keypoint_ms) == (p.frame_id, p.t_capture, 1280, 720, 12.5)
    assert np.array_equal(q.keypoints, p.keypoints) and np.array_equal(q.visibility, p.visibility)
    assert q.detected
    empty = LandmarkPacket.from_bytes(LandmarkPacket.empty(1, 0.0, 640, 480).to_bytes())
    assert not empty.detected and np.isnan(empty.keypoints).all()
    with pytest.raises(ValueError, match="420 bytes"):
        LandmarkPacket.from_bytes(b"short")


def test_a_paced_file_delivers_frames_no_earlier_than_their_time():
    with VideoFileSource(SAMPLE_CLIP, realtime=True) as src:
        assert src.fps == pytest.approx(20.0)
        start = time.time()
        frames = [f for _, f in zip(range(6), src)]
    assert [f.index for f in frames] == list(range(6))
    assert frames[0].rgb.shape == (720, 720, 3) and frames[0].rgb.flags["C_CONTIGUOUS"]
    for f in frames:
        assert f.t_capture - frames[0].t_capture >= f.index / 20.0 - 1e-3
    assert time.time() - start >= 5 / 20.0 - 1e-3


def test_a_paced_file_goes_on_from_now_after_a_stall_not_at_double_speed():
    """A camera that stalls misses what happened meanwhile; on main a paced file instead played the
    missed seconds at once (the frames after a 1 s stall came back to back)."""
    with VideoFileSource(SAMPLE_CLIP, realtime=True) as src:
        frames = iter(src)
        before = [next(frames) for _ in range(3)]
        time.sleep(1.0)  # the consumer stops reading for 20 frames' time
        after = [next(frames) for _ in range(10)]
    assert [f.index for f in before + after] == list(range(13))  # no frame of the file is skipped
    times = np.array([f.t_capture for f in after])
    # Paced at the file's 20 fps again at once: never back to back, and 9 frame times in all. Each
    # frame is due on the file's own clock, so a thread woken 3 ms late on a busy machine makes one
    # gap 53 ms and the next 47 (a bound of 49 ms on every gap failed there), not a slower pace.
    assert np.diff(times).min() > 0.5 / 20.0, np.diff(times)
    assert times[-1] - times[0] == pytest.approx(9 / 20.0, abs=0.02)


def test_an_unpaced_file_ends_and_a_looped_one_starts_again():
    with VideoFileSource(SAMPLE_CLIP, realtime=False) as src:
        assert sum(1 for _ in src) == 187
    with VideoFileSource(SAMPLE_CLIP, realtime=False, loop=True) as src:
        frames = [f for _, f in zip(range(200), src)]
    assert frames[-1].index == 199 and np.array_equal(frames[187].rgb, frames[0].rgb)


def test_source_errors_say_what_is_wrong(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nothing.mp4"))
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x01garbage" * 500)
    with pytest.raises(SourceError, match="not a video"):
        open_source(str(tmp_path / "broken.mp4"))
    (tmp_path / "empty.mp4").write_bytes(b"")
    with pytest.raises(SourceError, match="not a video"):
        VideoFileSource(tmp_path / "empty.mp4")
    # No camera 63 on any machine here (a real webcam cannot be tested on these machines).
    with pytest.raises(SourceError, match="no webcam at index 63"):
        WebcamSource(63)


def test_auto_falls_back_to_the_looping_sample_without_a_webcam(monkeypatch):
    monkeypatch.setattr("streamer.sources.webcam_present", lambda index=0: False)
    with open_source("auto") as src:
        assert isinstance(src, VideoFileSource) and src.path == SAMPLE_CLIP and src.loop and src.realtime


def test_a_packet_of_a_detection_or_of_none():
    from streamer.pose import Detection

    rng = np.random.default_rng(0)
    det = Detection(rng.uniform(0, 640, (33, 2)), rng.uniform(0, 1, 33), rng.normal(size=(33, 3)))
    p = LandmarkPacket.of_detection(7, 1.5, 640, 480, det, 12.0)
    assert p.keypoints.dtype == p.visibility.dtype == np.float32 and p.detected
    np.testing.assert_allclose(p.keypoints, det.keypoints, rtol=1e-6)
    assert (p.frame_id, p.t_capture, p.width, p.height, p.keypoint_ms) == (7, 1.5, 640, 480, 12.0)
    none = LandmarkPacket.of_detection(8, 2.0, 640, 480, None, 3.0)
    assert not none.detected and none.keypoint_ms == 3.0


def test_a_full_queue_drops_the_oldest_packet():
    q = mp.get_context("spawn").Queue(maxsize=2)
    assert not _put_latest(q, b"a") and not _put_latest(q, b"b")
    time.sleep(0.1)  # the queue's feeder thread
    assert _put_latest(q, b"c")
    got = [q.get(timeout=2), q.get(timeout=2)]
    assert got == [b"b", b"c"]


@pytest.mark.slow
def test_the_ingest_process_ends_when_the_engine_is_killed():
    """A killed engine cannot tell its ingest process to stop: the process notices by itself."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = ("import time\nfrom streamer.ingest import Ingest, IngestOptions\n"
              "if __name__ == '__main__':\n"
              "    ingest = Ingest(IngestOptions(source='sample', loop=True))\n    ingest.start()\n"
              "    ingest.packets.get(timeout=120)\n    print(ingest._process.pid, flush=True)\n    time.sleep(600)\n")
    engine = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    child = int(engine.stdout.readline())
    engine.send_signal(signal.SIGKILL)
    engine.wait()
    deadline = time.time() + 60  # a hang guard, not a speed check
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("the ingest process outlived its engine")


def test_a_frame_rate_is_the_median_interval_and_ignores_late_frames_and_pauses():
    from streamer.frame_rate import FrameRate

    rate = FrameRate(window=30)
    times = list(np.arange(10) / 15.0) + [10.0 + i / 15.0 for i in range(10)]  # a 9 s pause
    times[5] += 0.03
    for t in times[:10]:
        rate.add(t)
    assert rate.fps is None  # 9 intervals: not yet
    for t in times[10:]:
        rate.add(t)
    assert rate.fps == pytest.approx(15.0)
