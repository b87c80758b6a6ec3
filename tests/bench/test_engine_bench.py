"""bench engine: the search for the most streams on made-up timings with known answers, and each
new table's rows on a tiny model (that they exist and are positive; never how fast)."""
import pytest
import torch

from bench import engine
from engine.body.body_model import load_default_body
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.motion import Normalizer

TINY = ModelConfig(width=32, layers=1, heads=2, mlp=64, window=16, dropout=0.0)


def counting(ms_of):
    """fits(n) = ms_of(n) <= a 30 fps frame, and the list of the n it was asked about."""
    asked = []

    def fits(n):
        asked.append(n)
        return ms_of(n) <= engine.FRAME_MS
    return fits, asked


@pytest.mark.parametrize("fixed_ms, per_stream_ms, expected", [
    (2.0, 0.1, 313),     # 2 + 0.1 n <= 33.33 up to n = 313
    (1.0, 1.0, 32),      # a power of two: doubling lands on it
    (33.0, 0.2, 1),      # only one stream fits
    (10.0, 0.0, 4096),   # everything fits: the ceiling
    (40.0, 0.1, 0),      # not even one
])
def test_the_most_streams_is_found_by_doubling_then_bisecting(fixed_ms, per_stream_ms, expected):
    fits, asked = counting(lambda n: fixed_ms + per_stream_ms * n)
    assert engine.largest_fitting(fits, cap=4096) == expected
    assert len(asked) <= 2 * 12 + 1  # log2(4096) doublings and as many halvings, not a scan


def test_the_search_doubles_then_halves():
    fits, asked = counting(lambda n: 2.0 + 0.1 * n)
    engine.largest_fitting(fits, cap=4096)
    assert asked == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 384, 320, 288, 304, 312, 316, 314, 313]


def test_a_ceiling_that_is_not_a_power_of_two_is_probed_itself():
    fits, asked = counting(lambda n: 0.0)
    assert engine.largest_fitting(fits, cap=100) == 100
    assert asked == [1, 2, 4, 8, 16, 32, 64, 100]
    assert engine.largest_fitting(lambda n: n <= 99, cap=100) == 99


def test_the_packets_sway_at_30_fps_with_every_landmark_seen():
    packets = [engine.swaying_packet(i) for i in range(45)]
    assert [p.frame_id for p in packets] == list(range(45))
    assert packets[30].t_capture == pytest.approx(1.0)
    assert all(p.detected and (p.visibility > 0.5).all() for p in packets)
    sway = [p.keypoints[0, 0] - packets[0].keypoints[0, 0] for p in packets]
    assert max(sway) == pytest.approx(10, abs=0.1) and min(sway) == pytest.approx(-10, abs=0.1)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return Denoiser(TINY).eval(), Normalizer(torch.zeros(144), torch.full((144,), 0.05)), load_default_body()


def test_the_masked_copies_have_the_same_weights(tiny):
    model, _, _ = tiny
    causal = engine.masked_copy(model, causal=True)
    window = engine.masked_copy(causal, causal=False)
    assert causal.cfg.causal and not model.cfg.causal and not window.cfg.causal
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in
               zip(model.state_dict().values(), causal.state_dict().values(), window.state_dict().values()))


def test_a_causal_checkpoint_still_times_a_window_pass(tiny, monkeypatch):
    """The bundled weights are causal: the window row ran the cached path too, and timed it twice."""
    masks = []
    monkeypatch.setattr(engine, "push_ms", lambda m, *args, **kw: masks.append(m.cfg.causal) or [1.0])
    engine.per_frame_rows(engine.masked_copy(tiny[0], causal=True), *tiny[1:], repeats=1, frames=1, threads=(1,))
    assert masks == [False, True]


def test_per_frame_rows_time_both_paths_at_each_thread_count(tiny):
    before = torch.get_num_threads()
    rows = engine.per_frame_rows(*tiny, repeats=2, frames=4, warmup=20)
    assert [(r["path"], r["threads"]) for r in rows] == [(p, n) for n in (1, 2) for p in
                                                         ("window pass", "cached causal step")]
    assert all(0 < r["engine_p50_ms"] <= r["engine_p95_ms"] and r["model_ms"] > 0 for r in rows)
    assert torch.get_num_threads() == before


def test_stream_rows_time_each_count_model_only_and_whole_engine(tiny):
    model, norm, body = tiny
    rows, largest = engine.stream_rows(engine.masked_copy(model, causal=True), norm, body, repeats=2, streams=(1, 2), cap=4,
                                       warmup=20)
    ticks = ["model only: embed_rows + streaming.step", "whole engine: StreamBatch.tick"]
    assert [(r["tick"], r["streams"]) for r in rows] == [(t, n) for t in ticks for n in (1, 2)]
    assert all(r["tick_ms"] > 0 and r["stream_frames_per_s"] > 0 for r in rows)
    assert [r["tick"] for r in largest] == ticks and all(0 <= r["streams"] <= 4 for r in largest)


def test_a_batch_tick_gives_every_stream_a_pose(tiny, monkeypatch):
    seen = []
    tick = engine.StreamBatch.tick
    monkeypatch.setattr(engine.StreamBatch, "tick", lambda self, packets: seen.append(tick(self, packets)))
    engine.batch_tick(engine.masked_copy(tiny[0], causal=True), *tiny[1:], streams=3, warmup=20)()
    assert len(seen) == 21 and all(sorted(poses) == [0, 1, 2] and all(len(p) == 1 for p in poses.values())
                                   for poses in seen)


def test_the_tables_are_markdown():
    tables = {"windows": [{"case": "192 wide, 4 layers", "params_m": 4.4, "steps": 1, "ms": 9.5}],
              "per_frame": [{"path": "cached causal step", "threads": 1, "engine_p50_ms": 5.0, "engine_p95_ms": 6.0,
                             "model_ms": 1.5}],
              "rare_paths": [{"case": "out of view: generating", "engine_p50_ms": 2.0, "engine_p95_ms": 30.0,
                              "engine_max_ms": 41.0}],
              "streams": [{"tick": "model only", "streams": 8, "tick_ms": 4.0, "stream_frames_per_s": 2000.0}],
              "streams_at_30fps": [{"tick": "model only", "streams": 60, "tick_ms": 33.0},
                                   {"tick": "slow", "streams": 0, "tick_ms": None}]}
    text = engine.format_tables(tables)
    assert [line.startswith("|---") for line in text.splitlines()].count(True) == 4
    assert "| cached causal step | 1 | 5.00 | 6.00 | 1.50 |" in text
    assert "| out of view: generating | 2.00 | 30.00 | 41.00 |" in text
    assert "| model only | 8 | 4.00 | 2000.0 |" in text
    assert "**60**" in text and "1818.2" in text and "| slow | **0**" in text


def test_rare_path_rows_time_each_path_the_cached_engine_leaves(tiny):
    rows = engine.rare_path_rows(engine.masked_copy(tiny[0], causal=True), *tiny[1:], frames=70, warmup=20)
    assert [r["case"].split(":")[0].split(" (")[0] for r in rows] == [
        "estimating", "out of view", "back after 2 s out of view", "2 DDIM steps", "mirror-averaged"]
    assert all(0 < r["engine_p50_ms"] <= r["engine_p95_ms"] <= r["engine_max_ms"] for r in rows)
