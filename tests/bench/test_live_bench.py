"""`genmo-live bench live`'s baseline and table (bench/live.py) on the bundled sample clip."""
import pytest

from bench import live
from streamer.sources import SAMPLE_CLIP

pytestmark = pytest.mark.slow


def test_mediapipe_alone_counts_every_frame_and_its_cpu():
    base = live.mediapipe_alone(str(SAMPLE_CLIP))
    assert base["frames"] == 187 and base["fps"] > 0 and base["keypoint_ms"]["p50"] > 0
    # MediaPipe's own process, all its threads: at least the time its detections took on one core
    assert base["cpu_ms_per_frame"] >= 0.5 * base["keypoint_ms"]["p50"]
    assert base["cores_at_30_fps"] == pytest.approx(base["cpu_ms_per_frame"] * 0.03, abs=0.01)
    row = {"case": "baseline", "frames": 187, "dropped": 0, "fps": base["fps"], "latency_ms": None,
           "first_pose_s": None, "keypoint_ms": base["keypoint_ms"], "engine_ms": None,
           "cpu_ms_per_frame": base["cpu_ms_per_frame"], "cores_at_30_fps": base["cores_at_30_fps"]}
    table = live.format_rows([row]).splitlines()
    assert table[0].endswith("| CPU ms a frame | cores at 30 fps |")
    assert table[2].endswith(f"| {base['cpu_ms_per_frame']:.1f} | {base['cores_at_30_fps']} |")


def test_mediapipe_alone_paced_measures_capture_to_landmarks_latency():
    """The floor under the pipeline's capture->pose: paced like a camera, each packet's age when read."""
    base = live.mediapipe_alone(str(SAMPLE_CLIP), realtime=True)
    assert base["frames"] == 187 and base["fps"] < 35  # the clip's own 30 fps, not as fast as it goes
    assert base["latency_ms"]["p50"] >= base["keypoint_ms"]["p50"]  # the detection is part of the wait
    assert base["latency_ms"]["p95"] < 1000
