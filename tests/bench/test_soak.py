"""The soak benchmark: its maths on made-up runs with known answers, the client's gap count, the
/proc readers, and one short real soak end to end."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import soak
from clients.ws import encode_binary
from engine.live.pose_frame import PoseFrame

REPO = Path(__file__).resolve().parents[2]


def test_the_warm_up_is_a_minute_or_a_fifth_of_a_short_run():
    assert soak.warmup_s(900) == 60
    assert soak.warmup_s(300) == 60
    assert soak.warmup_s(120) == pytest.approx(24)


def test_the_latency_windows_are_3_minutes_or_thirds_below_9_minutes():
    assert soak.window_s(900) == 180
    assert soak.window_s(540) == 180
    assert soak.window_s(120) == pytest.approx(40)


def test_the_rss_slope_is_the_least_squares_line_in_mb_per_minute():
    t = np.arange(0, 900, 5.0)                               # 15 min, a sample every 5 s
    assert soak.rss_slope(t, 800 + 0.3 * t / 60) == pytest.approx(0.3)
    noisy = 800 + 0.3 * t / 60 + np.random.default_rng(0).normal(0, 0.5, len(t))
    assert soak.rss_slope(t, noisy) == pytest.approx(0.3, abs=0.03)  # its standard error: 0.009
    assert soak.rss_slope(t[:1], noisy[:1]) is None
    assert soak.rss_slope(np.full(3, 10.0), np.arange(3.0)) is None


def test_drift_is_percent_of_the_first():
    assert soak.drift_pct(100.0, 110.0) == pytest.approx(10.0)
    assert soak.drift_pct(80.0, 60.0) == pytest.approx(-25.0)
    assert soak.drift_pct(None, 60.0) is None and soak.drift_pct(0.0, 60.0) is None


def fake_run(minutes: float, leak_mb_min: float, last_latency_scale: float, seed: int = 0):
    """A run at 20 poses/s from t = 1000 s with latency N(50, 5) ms (scaled in the last 3 minutes
    or third), and RSS samples every 5 s from 20 s before the first pose: the model load at 300
    MB, then a 100 MB jump in the first 10 s, then a steady leak of leak_mb_min in the run process;
    the children flat at 370 MB, the bench at 250 MB. Returns (poses (N, 3), memory (M, 4))."""
    rng = np.random.default_rng(seed)
    run_s = minutes * 60
    t = 1000 + np.arange(0, run_s + 1e-9, 0.05)
    latency = rng.normal(50, 5, len(t))
    latency[t - 1000 >= run_s - soak.window_s(run_s)] *= last_latency_scale
    poses = np.stack([t, np.arange(len(t)), latency], 1)
    ts = np.arange(980, 1000 + run_s + 10, 5.0)
    run_mb = np.where(ts < 1000, 300, 600 + np.where(ts >= 1010, 100, 0) + leak_mb_min * (ts - 1000) / 60)
    memory = np.stack([ts, run_mb * 1024, np.full(len(ts), 370 * 1024), np.full(len(ts), 250 * 1024)], 1)
    return poses, memory


def test_a_long_steady_run_passes_each_target():
    poses, memory = fake_run(minutes=10, leak_mb_min=0.0, last_latency_scale=1.0)
    report = {"dropped": 0, "poses_out": len(poses), "ingest_restarts": 0, "engine_failures": 0, "errors": [],
              "outputs": [{"output": "recorder", "path": "take.npz", "frames_written": len(poses), "frames_lost": 0, "skipped": 0,
                              "error": None}]}
    r = soak.summarize(poses, memory, 0, report, take_frames=len(poses))
    assert r["run_s"] == 600 and r["poses_per_s"] == pytest.approx(20)
    assert r["rss"]["warmup_s"] == 60 and r["latency_ms"]["window_s"] == 180 and not r["latency_ms"]["thirds"]
    # the load before the first pose and the jump in the warm-up are not in the slope
    assert r["rss"]["run"]["slope_mb_min"] == pytest.approx(0.0, abs=1e-6)
    assert r["rss"]["run"]["start_mb"] == 600 and r["rss"]["run"]["end_mb"] == 700
    assert r["rss"]["total"]["end_mb"] == 1070 and r["rss"]["bench"]["end_mb"] == 250
    assert r["rss"]["samples"] == len(np.arange(1060, 1601, 5))
    assert r["latency_ms"]["first"]["p50"] == pytest.approx(50, abs=1)
    assert r["latency_ms"]["p95_drift_pct"] == pytest.approx(0, abs=3)
    assert r["drops"] == {"client_gaps": 0, "ingest_dropped": 0, "recorder_lost": 0, "take_frames": len(poses),
                          "poses_out": len(poses), "take_short": 0}
    assert r["targets"] == {"rss_slope": True, "latency_drift": True, "dropped": True}
    assert json.loads(json.dumps(r)) == r  # plain Python values, for --json


def test_a_leak_slower_poses_and_any_loss_fail_their_targets():
    poses, memory = fake_run(minutes=10, leak_mb_min=2.0, last_latency_scale=1.3)
    r = soak.summarize(poses, memory, 0, {"dropped": 0, "poses_out": len(poses)}, take_frames=len(poses) - 3)
    assert r["rss"]["run"]["slope_mb_min"] == pytest.approx(2.0)
    assert r["rss"]["total"]["slope_mb_min"] == pytest.approx(2.0)
    assert r["latency_ms"]["p95_drift_pct"] == pytest.approx(30, abs=4)
    assert r["drops"]["recorder_lost"] == 0 and r["drops"]["take_short"] == 3
    assert r["targets"] == {"rss_slope": False, "latency_drift": False, "dropped": False}
    # the client's gaps alone fail it, and so does a recording's lost frame
    clean = {"dropped": 0, "poses_out": len(poses)}
    assert not soak.summarize(poses, memory, 2, clean, len(poses))["targets"]["dropped"]
    lost = {**clean, "outputs": [{"output": "recorder", "frames_lost": 1, "skipped": 0, "error": "disk full"}]}
    r = soak.summarize(poses, memory, 0, lost, len(poses))
    assert r["drops"]["recorder_lost"] == 1 and r["recording_errors"] == ["disk full"]
    assert not r["targets"]["dropped"]


def test_a_short_run_compares_thirds_and_without_a_report_judges_what_it_has():
    poses, memory = fake_run(minutes=1.5, leak_mb_min=0.0, last_latency_scale=1.0)
    r = soak.summarize(poses, memory, 0, None, take_frames=None)
    assert r["latency_ms"]["thirds"] and r["latency_ms"]["window_s"] == 30 and r["rss"]["warmup_s"] == 18
    assert r["drops"]["ingest_dropped"] is None and r["drops"]["take_short"] is None
    assert r["targets"]["dropped"]
    text = soak.format_result({"minutes": 1.5, "source": "clip.mp4", "stopped_early": False, "run_exit_code": 0,
                               "connects": 1, **r})
    assert "| latency p95 drift, last vs first |" in text and "a third: the run is under 9 min" in text
    assert "targets are set for a 15-minute run" in text


def pose(frame_id: int, latency_s: float) -> bytes:
    return encode_binary(PoseFrame(frame_id=frame_id, t_capture=100.0, t_emit=100.0 + latency_s,
                                   pose_aa=np.zeros((24, 3)), pose_quat=np.tile([1.0, 0, 0, 0], (24, 1)),
                                   root=np.zeros(3), joints=np.zeros((24, 3)), contacts=np.zeros(6),
                                   source="estimated", confidence=1.0, stature=1.7))


def test_the_client_counts_the_frame_ids_it_never_saw():
    client = soak.PoseClient("ws://127.0.0.1:1/", capacity=3)
    for i, frame_id in enumerate([5, 6, 9, 10]):
        client.take(pose(frame_id, 0.04), 200.0 + i)
    assert client.gaps == 2
    # the arrays were sized for 3 poses: the 4th is counted, not kept
    assert client.poses.count == 4
    np.testing.assert_allclose(client.poses.rows, [[200, 5, 40], [201, 6, 40], [202, 9, 40]])


def test_proc_readers_find_a_child_and_its_memory():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in soak.descendants(os.getpid())
        assert soak.rss_kb(os.getpid()) > 0
    finally:
        child.kill()
        child.wait()
    assert soak.rss_kb(child.pid) == 0  # gone


@pytest.mark.slow
def test_a_short_soak_of_the_real_pipeline():
    done = subprocess.run([sys.executable, "-m", "clients.cli", "bench", "soak", "--minutes", "0.75", "--json"],
                          cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    r = json.loads(done.stdout[done.stdout.index("{"):])
    assert r["run_exit_code"] == 0 and not r["stopped_early"] and r["connects"] == 1
    assert r["poses_received"] > 0 and r["drops"]["poses_out"] > 0
    assert r["drops"]["client_gaps"] == 0, r["drops"]
    for process in ("run", "children", "bench"):
        assert r["rss"][process]["start_mb"] > 0 and r["rss"][process]["end_mb"] > 0
    assert r["latency_ms"]["first"]["p95"] > 0 and r["latency_ms"]["last"]["p95"] > 0
    assert set(r["targets"]) == {"rss_slope", "latency_drift", "dropped"}
