"""The evaluation harness: fixed test set, predictions scored against hand-computed cases, subsets,
the identity baseline, and `genmo-live eval` end to end."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clients.cli.main import main
from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.dataset import Clip
from engine.data.observations import NoiseModel
from engine.evaluate.protocol import (METRICS, SUBSETS, Prediction, build_test_set, evaluate, format_report,
                                      ground_truth, identity_baseline)
from streamer.landmarks import LANDMARK_NAMES

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
MOCAP = Path(__file__).resolve().parents[3] / "shared" / "data" / "mocap"


@pytest.fixture(scope="module")
def body():
    return load_default_body()


def walking_clip(name: str, T: int, tpose: bool = False) -> Clip:
    t = np.arange(T) / 30.0
    pose = np.zeros((T, 24, 3), np.float32)
    if not tpose:
        pose[:, J["left_hip"], 0] = 0.4 * np.sin(2 * np.pi * t)
        pose[:, J["right_hip"], 0] = -0.4 * np.sin(2 * np.pi * t)
        pose[:, J["left_elbow"], 1] = -0.8
    root = np.stack([np.zeros(T), np.full(T, 0.95), 1.2 * t], -1).astype(np.float32)
    contacts = np.zeros((T, 6), bool)
    return Clip(clip=name, subject="test:1", split="test", caption="walk", pose=pose, root=root,
                contacts=contacts)


@pytest.fixture(scope="module")
def items(body):
    return build_test_set([walking_clip("a/walk", 150), walking_clip("b/walk", 90)], body, seed=0,
                          noise=NoiseModel.load())


def test_ground_truth_scores_zero(items):
    report = evaluate(ground_truth(load_default_body()), items)
    for name in ("mpjpe_mm", "pa_mpjpe_mm", "w_mpjpe100_mm", "wa_mpjpe100_mm", "rte_pct", "accel_err_mm_s2",
                 "upper_mpjpe_mm", "upper_pa_mpjpe_mm", "pelvis_height_err_mm", "pelvis_height_bias_mm",
                 "knee_angle_err_deg"):
        assert report[name] == pytest.approx(0.0, abs=1e-3), name
    assert report["n_frames"] == 240 and report["n_clips"] == 2
    assert set(report) >= set(METRICS) | set(SUBSETS) | {"per_clip"}
    json.dumps(report)  # JSON-ready


def test_a_known_offset_gives_the_known_mpjpe(items):
    """The left wrist 10 cm off in every frame: 100 mm / 24 joints, in camera and world alike."""
    def predict(it):
        world = it.joints.copy()
        world[:, J["left_wrist"]] += [0.0, 0.1, 0.0]
        return Prediction(it.obs.camera.to_camera(world), world)

    report = evaluate(predict, items)
    assert report["mpjpe_mm"] == pytest.approx(100 / 24, abs=1e-3)  # reports keep 3 decimals
    assert report["pa_mpjpe_mm"] > 0  # a least-squares fit spreads one joint's error over all
    assert report["rte_pct"] == pytest.approx(0.0, abs=1e-6)


def test_the_report_splits_the_error_by_dataset(items):
    """Only clip a/walk is off (by 10 cm at the left wrist): its set carries all of the error."""
    def predict(it):
        world = it.joints.copy()
        if it.clip.startswith("a/"):
            world[:, J["left_wrist"]] += [0.0, 0.1, 0.0]
        return Prediction(it.obs.camera.to_camera(world), world)

    report = evaluate(predict, items)
    a, b = report["by_dataset"]["a"], report["by_dataset"]["b"]
    assert (a["n_clips"], a["n_frames"], b["n_clips"], b["n_frames"]) == (1, 150, 1, 90)
    assert a["mpjpe_mm"] == pytest.approx(100 / 24, abs=1e-3) and b["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert report["mpjpe_mm"] == pytest.approx(100 / 24 * 150 / 240, abs=1e-3)
    assert "by dataset" in format_report(report)


def test_the_report_splits_the_error_by_what_the_clips_show(items):
    """The seated clip carries all of the error of a shin turned 30° at the knee: the seated kind
    reports that clip's knee angle error, the other kind none."""
    seated = [dataclasses.replace(items[0], kind="seated"), items[1]]

    def predict(it):
        world = it.joints.copy()
        if it.kind == "seated":  # the left shin turned 30° about the knee, sideways
            knee, ankle, foot = J["left_knee"], J["left_ankle"], J["left_foot"]
            c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
            turn = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
            world[:, [ankle, foot]] = (world[:, [ankle, foot]] - world[:, [knee]]) @ turn.T + world[:, [knee]]
        return Prediction(it.obs.camera.to_camera(world), world)

    report = evaluate(predict, seated)
    kinds = report["by_kind"]
    assert (kinds["seated"]["n_clips"], kinds["seated"]["n_frames"], kinds["other"]["n_frames"]) == (1, 150, 90)
    assert kinds["other"]["knee_angle_err_deg"] == pytest.approx(0.0, abs=1e-3)
    # 30° more on one knee of two, less where the walking knee bends
    assert kinds["seated"]["knee_angle_err_deg"] == pytest.approx(report["per_clip"][0]["knee_angle_err_deg"], abs=1e-3)
    assert 8.0 < kinds["seated"]["knee_angle_err_deg"] <= 15.0
    assert "by kind" in format_report(report)
    json.dumps(report)


def test_subsets_follow_the_observation(items):
    report = evaluate(identity_baseline(load_default_body()), items)
    assert report["occluded"]["n_frames"] == sum(int(it.obs.partly_occluded().sum()) for it in items)
    assert report["missing"]["n_frames"] == sum(int(it.obs.body_missing().sum()) for it in items)
    rows = {r["clip"]: r for r in report["per_clip"]}
    assert rows["a/walk"]["frames"] == 150 and rows["b/walk"]["occluded_frames"] >= 0


def test_identity_baseline_is_exact_on_a_tpose(body):
    items = build_test_set([walking_clip("still/tpose", 60, tpose=True)], body, seed=3)
    report = evaluate(identity_baseline(body), items)
    assert report["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert report["w_mpjpe100_mm"] == pytest.approx(0.0, abs=1e-3)


def test_the_test_set_is_fixed_by_the_seed(body):
    clip = walking_clip("c/walk", 60)
    a, b = (build_test_set([clip], body, seed=7)[0].obs for _ in range(2))
    c = build_test_set([clip], body, seed=8)[0].obs
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert not np.array_equal(np.nan_to_num(a.keypoints), np.nan_to_num(c.keypoints))


def test_wrong_prediction_shape_is_a_clear_error(items):
    with pytest.raises(ValueError, match="prediction joints_cam has shape"):
        evaluate(lambda it: Prediction(it.joints[:, :22], it.joints), items)


def test_unknown_model_is_a_clear_error(capsys):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "no-such-baseline"])
    assert e.value.code == 2
    assert "no such file and no such baseline; baselines: identity-baseline, ground-truth" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_identity_baseline_end_to_end(tmp_path, capsys):
    """`genmo-live eval --model identity-baseline` on the real test split, building the dataset
    cache first (as on a fresh clone; of ../shared/data/mocap alone, 20 s: with mocap_new it takes
    20 minutes), on the torch threads asked for, and the JSON report it writes."""
    if not MOCAP.is_dir():
        pytest.skip("no ../shared/data/mocap here")
    out = tmp_path / "report.json"
    threads = torch.get_num_threads()
    try:
        code = main(["eval", "--model", "identity-baseline", "--split", "test", "--seed", "0", "--threads", "1",
                     "--report", str(out), "--data.cache_dir", str(tmp_path / "cache"), "--data.extra_mocap_dirs", "[]"])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    printed = capsys.readouterr().out
    assert "mpjpe_mm" in printed and "occluded" in printed
    report = json.loads(out.read_text())
    assert report["model"] == "identity-baseline" and report["n_clips"] > 50
    assert report["rte_pct"] == pytest.approx(0.0, abs=1e-3)  # the baseline knows the true root
    assert 150 < report["mpjpe_mm"] < 500 and report["pa_mpjpe_mm"] < report["mpjpe_mm"]
    for subset in SUBSETS:
        assert 0 < report[subset]["n_frames"] < report["n_frames"]
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert {r["split"] for r in index["clips"]} == {"train", "val", "test"}


def test_the_live_engine_with_a_lag_answers_every_frame(items, body):
    """eval --live --engine.lag N: the last N frames come out when the clip ends (LiveEngine.flush),
    and each pose saw N newer frames: the first one differs from the unlagged engine's."""
    from configs.config import EngineConfig
    from engine.evaluate.protocol import live_predictor
    from engine.paths import WEIGHTS_PATH

    lagged, now = live_predictor(WEIGHTS_PATH, body, EngineConfig(lag=4)), live_predictor(WEIGHTS_PATH, body)
    item = items[1]
    p, q = lagged(item), now(item)
    assert p.joints_cam.shape == q.joints_cam.shape == item.joints.shape
    assert np.isfinite(p.joints_world).all()
    assert np.abs(p.joints_cam[0] - q.joints_cam[0]).max() > 1e-3
    assert evaluate(lagged, items)["n_frames"] == 240


def test_a_slower_camera_sees_the_clip_resampled_and_the_metrics_use_its_rate(body):
    """build_test_set(fps=15): every other frame of a 30 fps clip (slerp at whole frames is the frame
    itself); accelerations are per second at 15 fps, so a constant-velocity error scores zero."""
    clip = walking_clip("a/walk", 150)
    fast, = build_test_set([clip], body, seed=0)
    slow, = build_test_set([clip], body, seed=0, fps=15.0)
    assert slow.fps == 15.0 and len(slow.joints) == 75
    assert np.allclose(slow.joints, fast.joints[::2], atol=1e-5)
    assert np.array_equal(slow.foot_contact, fast.foot_contact[::2])
    drift = np.arange(75)[:, None, None] * np.array([0.01, 0.0, 0.0])
    gt_cam = slow.obs.camera.to_camera(slow.joints)
    pred = Prediction(joints_cam=gt_cam + drift, joints_world=slow.joints + drift)
    report = evaluate(lambda item: pred, [slow])
    assert report["accel_err_mm_s2"] == pytest.approx(0.0, abs=1e-6)
    assert report["jitter_mm_s3"] == pytest.approx(evaluate(ground_truth(body), [slow])["jitter_mm_s3"], rel=1e-6)


@pytest.mark.parametrize("args, message", [(["--obs", "rendered", "--fps", "20"], "the rendered set is at 30 fps"),
                                           (["--fps", "0.5"], "give a camera's frame rate, 1 to 240")])
def test_eval_fps_is_for_synthetic_observations(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "identity-baseline", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_the_desk_scenario_sees_the_upper_body_and_scores_the_legs_it_hides(body):
    """`--scenario desk`: the clips a person plays at a desk (here, stepping in place) through a
    desk webcam with the legs behind a desk; a walk across the room is left out. The truth
    scores zero on every metric; a T-pose at the true pelvis misses the bent elbow."""
    walk = walking_clip("a/walk", 90)
    in_place = dataclasses.replace(walking_clip("b/in-place", 90), root=np.tile(walk.root[:1], (90, 1)))
    items = build_test_set([walk, in_place], body, seed=0, noise=NoiseModel.load(), scenario="desk")
    assert [it.clip for it in items] == ["b/in-place"]
    report = evaluate(ground_truth(body), items)
    assert report["knee_angle_err_deg"] == pytest.approx(0.0, abs=1e-6)
    assert report["pelvis_height_err_mm"] == pytest.approx(0.0, abs=1e-6)
    legs = [i for i, n in enumerate(LANDMARK_NAMES) if n.endswith(("knee", "ankle", "heel", "foot_index"))]
    obs = items[0].obs
    assert (obs.visibility[:, legs] >= 0.5).mean() < 0.1  # now and then a guessed leg, as MediaPipe's
    assert (obs.visibility[obs.detected][:, [11, 12]] >= 0.5).mean() > 0.9  # the shoulders, where detected
    tpose = evaluate(identity_baseline(body), items)
    assert tpose["upper_mpjpe_mm"] > 10 and tpose["pelvis_height_err_mm"] == pytest.approx(0.0, abs=1e-6)
