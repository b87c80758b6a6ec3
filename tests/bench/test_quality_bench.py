"""The quality benchmark: its no-ground-truth measures, and one real clip through the whole run."""
import json
import math

import numpy as np
import pytest

from bench import quality, video_metrics as vm
from engine.body.body_model import load_default_body
from streamer.landmarks import BODY_LANDMARKS


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def test_still_frames_come_from_the_2d_landmarks():
    rng = np.random.default_rng(0)
    T, fps = 60, 30.0
    base = rng.uniform(200, 400, (33, 2))
    kp = np.repeat(base[None], T, 0) + rng.normal(0, 0.3, (T, 33, 2))     # a person standing
    kp[30:] += np.linspace(0, 300, 30)[:, None, None]                    # then walking off (300 px/s)
    vis = np.ones((T, 33))
    still = vm.still_frames(kp, vis, fps)
    assert still[3:25].all() and not still[33:].any()
    vis[:, list(BODY_LANDMARKS)] = 0.0                                  # nobody seen: nothing is still
    assert not vm.still_frames(kp, vis, fps).any()


def test_swaps_count_trades_not_crossings():
    T = 40
    pts = np.zeros((T, 24, 3))
    a, b = vm.SWAP_PAIRS[1]  # wrists
    pts[:, a] = [0.3, 0.0, 0.0]
    pts[:, b] = [-0.3, 0.0, 0.0]
    pts[20:, [a, b]] = pts[20:, [b, a]]                                  # labels exchanged at frame 20
    assert vm.swap_events(pts, vm.SWAP_PAIRS) == 1
    walk = np.zeros((T, 24, 3))
    walk[:, a, 2] = 0.3 * np.sin(np.linspace(0, 2 * math.pi, T))           # legs passing each other
    walk[:, b, 2] = -walk[:, a, 2]
    assert vm.swap_events(walk, vm.SWAP_PAIRS) == 0


def test_penetration_and_bone_variation(body):
    rest = body.rest_joints.double().numpy()
    joints = np.repeat(rest[None], 10, 0)
    assert vm.penetration_mm(joints, rest) == 0.0
    assert vm.penetration_mm(joints - [0, 0.02, 0], rest) == pytest.approx(20.0)
    assert vm.bone_length_cv_pct(joints, vm.SMPL_BONES) == pytest.approx(0.0, abs=1e-9)
    stretched = joints.copy()
    stretched[::2] *= 1.1
    assert vm.bone_length_cv_pct(stretched, vm.SMPL_BONES) == pytest.approx(100 * 0.05 / 1.05)


def test_readme_section_is_replaced(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Results\n{quality.README_START}\nold\n{quality.README_END}\n\n## Next\n")
    quality.put_in_readme(readme, "new table\n")
    assert readme.read_text() == f"# x\n\n## Results\n{quality.README_START}\nnew table\n{quality.README_END}\n\n## Next\n"
    (tmp_path / "other.md").write_text("no markers")
    with pytest.raises(ValueError, match="bench:start"):
        quality.put_in_readme(tmp_path / "other.md", "x")


@pytest.mark.slow
def test_summary_values_are_strict_json():
    summary = {"jitter_still": float("nan"), "rows": [np.float32(1.5), np.inf, np.int64(3)], "ok": np.bool_(True)}
    assert quality.json_safe(summary) == {"jitter_still": None, "rows": [1.5, None, 3], "ok": True}
    json.dumps(quality.json_safe(summary), allow_nan=False)


def test_one_real_clip_and_ground_truth_through_the_benchmark(body, tmp_path, dataset_cache):
    """Real MediaPipe on the real webcam clip, the bundled weights live and the baseline, plus two
    synthetic test sequences: the summary has every headline figure, the pictures are written."""
    from configs.config import EngineConfig
    from engine.data.dataset import load_clips
    from test_mediapipe_ik import rendered_like_item
    from bench.mediapipe_ik import predictor
    from engine.evaluate.protocol import build_test_set, live_predictor, model_predictor
    from engine.live.engine import LiveEngine
    from engine.model.checkpoint import load_model
    from engine.paths import WEIGHTS_PATH
    from streamer.pose import PoseDetector

    model, norm, _ = load_model(WEIGHTS_PATH)
    clip = quality.VIDEO_ROOT / "temugeb_webcam" / "cam0_test.mp4"
    synthetic = build_test_set(load_clips(dataset_cache, "test")[:2], body, 0)
    rendered = [rendered_like_item(body)]
    models = {"genmo-live": live_predictor(WEIGHTS_PATH, body), "genmo-live-offline": model_predictor(WEIGHTS_PATH, body)}
    summary = quality.run(body, lambda fps: LiveEngine(model, norm, body, EngineConfig(), fps=fps),
                          {"rendered": {**models, "mediapipe-ik": predictor(body)}, "synthetic": models},
                          rendered, synthetic, tmp_path, [clip], PoseDetector, "genmo-live bench quality (test)")
    saved = json.loads((tmp_path / "summary.json").read_text(), parse_constant=pytest.fail)  # strict JSON
    name = "temugeb_webcam/cam0_test"
    assert set(saved["clips"]) == {name} and saved["clips"][name]["frames"] == 187
    for system in quality.SYSTEMS:
        for source in (saved["overall"], saved["clips"][name]):
            r = source[system]
            assert {"jitter_still", "foot_skate_mm", "latency_ms_p95", "swaps"} <= set(r)
            assert np.isfinite(r["jitter_still"]) and r["latency_ms_p95"] > 0 and r["bone_cv_pct"] < 1e-3
    assert set(saved["rendered"]) == {"genmo-live", "genmo-live-offline", "mediapipe-ik"}
    assert set(saved["synthetic"]) == {"genmo-live", "genmo-live-offline"}
    assert saved["rendered"]["mediapipe-ik"]["mpjpe_mm"] < 40  # a perfect detector: the IK's own error
    for suffix in ("_strip.jpg", "_trajectories.png"):
        assert (tmp_path / f"temugeb_webcam__cam0_test{suffix}").stat().st_size > 10_000
    md = (tmp_path / "summary.md").read_text()
    assert "jitter on still segments" in md and "temugeb_webcam__cam0_test_strip.jpg" in md
    assert summary["seconds"] > 0

