"""The run's measurements (clients.live.RunStats): the same size however long a run lasts (on main a
list of every pose grew 13 MB an hour and the status line scanned all of it), exact while a run
fits its samples, and a fair sample after."""
import time
from types import SimpleNamespace

import numpy as np
import pytest

from clients.live import RECENT_POSES, SAMPLE_SIZE, STATUS_EVERY_S, RunStats, Sample, percentiles


def feed(stats: RunStats, n: int, fps: float = 30.0, seed: int = 0) -> np.ndarray:
    """n poses at `fps`, latencies 20-60 ms, every tenth generated; their latencies, ms."""
    latency = np.random.default_rng(seed).uniform(20, 60, n)
    for i in range(n):
        t = 1000.0 + i / fps
        stats.add(SimpleNamespace(t_capture=t - latency[i] / 1000, t_emit=t,
                                  source="generated" if i % 10 == 0 else "estimated"))
    return latency


def test_a_short_run_reports_exactly_what_it_measured():
    stats = RunStats(first_frame_t=999.9)
    latency = feed(stats, 1000)
    report = stats.report()
    assert report["poses_out"] == 1000 and report["fps_out"] == 30.0 and report["first_pose_s"] == 0.1
    assert report["latency_ms"] == percentiles(latency)
    assert report["sources"] == {"estimated": 900, "generated": 100, "blended": 0}


def test_a_run_of_hours_keeps_the_same_memory_and_a_fair_sample():
    stats = RunStats()
    n = SAMPLE_SIZE + 200_000  # three hours at 30 fps
    latency = feed(stats, n)
    assert len(stats.latency_ms.values) == SAMPLE_SIZE and len(stats.recent) == RECENT_POSES
    report = stats.report()
    assert report["poses_out"] == n and report["fps_out"] == 30.0
    truth = percentiles(latency)
    for key in ("p50", "p95", "p99"):
        assert report["latency_ms"][key] == pytest.approx(truth[key], abs=0.3)
    # the status line sees the last few seconds, not the whole run
    line = stats.status(1000.0 + (n - STATUS_EVERY_S * 30) / 30)  # the last 150 poses' emit times
    assert line.startswith("30.0 poses/s") and f"{n} poses so far" in line


def test_the_sample_keeps_every_value_until_full_then_each_with_equal_chance():
    sample = Sample(size=100)
    sample.extend(range(100))
    assert sample.values.tolist() == list(range(100))
    sample.extend(range(100, 10_000))
    assert sample.count == 10_000 and len(sample.values) == 100
    assert 3500 < np.mean(sample.values) < 6500  # drawn from the whole series, not its start or end


def test_cpu_per_frame_counts_the_ingest_processes_and_this_one():
    """"Cores at 30 fps": MediaPipe's process (each restarted one's own count) plus the engine's,
    from the first frame on, per frame read."""
    stats = RunStats()
    assert stats.report()["cpu_ms_per_frame"] is None
    stats.note("end", {"frames_in": 60, "dropped": 0, "previews": 0, "previews_dropped": 0, "cpu_s": 0.9})
    stats.note("end", {"frames_in": 40, "dropped": 1, "previews": 3, "previews_dropped": 1, "cpu_s": 0.6})
    report = stats.report()  # no frame reached the engine: the ingest's CPU alone
    assert report["cpu_ms_per_frame"] == 15.0 and report["cores_at_30_fps"] == 0.45
    assert (stats.previews, stats.previews_dropped) == (3, 1)  # each process's previews, summed
    stats.engine_cpu_from = time.process_time()
    end = time.process_time() + 0.05
    while time.process_time() < end:  # 50 ms of this process's CPU
        pass
    report = stats.report()
    assert 15.5 <= report["cpu_ms_per_frame"] < 17.0
