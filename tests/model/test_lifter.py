"""The per-frame lifter baseline (engine.model.lifter): its shapes and size, that a frame's output depends
on that frame's conditions only, that the shared training losses and loop train it (estimation pass
only), its checkpoints (and old ones without an architecture, still denoisers), and its evaluation."""
from pathlib import Path

import numpy as np
import pytest
import torch

import engine.train
from clients.cli.main import main
from engine.body.body_model import load_default_body
from engine.model.checkpoint import load_model, save_checkpoint
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.lifter import LifterConfig, PerFrameLifter
from engine.model.motion import MOTION_DIM
from engine.train import TrainConfig, train
from test_engine import conditions, toy_clips

TINY = LifterConfig(width=64, layers=2)


def test_shapes_and_the_default_size_is_the_denoisers():
    model = PerFrameLifter(TINY).eval()
    with torch.no_grad():
        x0, logits = model(torch.zeros(2, 30, MOTION_DIM), torch.tensor([999, 999]), conditions(B=2, L=30))
    assert x0.shape == (2, 30, MOTION_DIM) and logits.shape == (2, 30, 6)
    # The default lifter is as big as the 192-wide, 4-layer denoiser it is compared with.
    size = sum(p.numel() for p in PerFrameLifter().parameters())
    denoiser = sum(p.numel() for p in Denoiser(ModelConfig(width=192, layers=4, mlp=768)).parameters())
    assert abs(size / denoiser - 1) < 0.01


def test_a_frame_depends_only_on_its_own_conditions():
    model = PerFrameLifter(TINY).eval()
    c = conditions(B=2, L=12)
    with torch.no_grad():
        x0, logits = model(torch.zeros(2, 12, MOTION_DIM), torch.tensor([999, 999]), c)
        # The noisy motion, the step and any text are not read.
        same, _ = model(torch.randn(2, 12, MOTION_DIM), torch.tensor([0, 500]), conditions(B=2, L=12, text=True))
        assert torch.equal(same, x0)
        c.keypoints[:, 5] += 0.5
        c.visible[:, 5] = ~c.visible[:, 5]
        c.box[:, 5] += 0.1
        c.has_box[1, 5] = False
        y0, y_logits = model(torch.zeros(2, 12, MOTION_DIM), torch.tensor([999, 999]), c)
    changed = (y0 - x0).abs().amax(-1) > 1e-6
    assert changed[:, 5].all() and changed.sum() == 2
    assert torch.equal(torch.cat([y_logits[:, :5], y_logits[:, 6:]], 1), torch.cat([logits[:, :5], logits[:, 6:]], 1))


def test_a_missing_landmark_is_its_learned_token_not_its_coordinates():
    model = PerFrameLifter(TINY).eval()
    c = conditions(B=1, L=4)
    c.visible[..., :10] = False
    with torch.no_grad():
        a, _ = model(None, None, c)
        c.keypoints[..., :10, :] += 5.0
        b, _ = model(None, None, c)
    assert torch.equal(a, b)


def test_train_runs_the_lifter_on_the_estimation_pass_only_and_resumes(tmp_path, monkeypatch):
    def not_for_the_lifter(*args):
        raise AssertionError("the lifter has no generation pass and reads no text")

    monkeypatch.setattr(engine.train, "generation_conditions", not_for_the_lifter)
    monkeypatch.setattr(engine.train, "encode_captions", not_for_the_lifter)
    body = load_default_body()
    cfg = TrainConfig(steps=6, batch=2, window=30, refresh=3, warmup=2, log_every=3)
    path = train(toy_clips(2), body, tmp_path, cfg, TINY)
    assert torch.load(path, weights_only=False)["arch"] == "per-frame"
    model, norm, meta = load_model(path)
    assert isinstance(model, PerFrameLifter) and model.cfg == TINY and meta["step"] == 6
    cfg.steps = 9
    train(toy_clips(2), body, tmp_path, cfg, TINY, resume=True)
    again, _, meta = load_model(path)
    assert isinstance(again, PerFrameLifter) and meta["step"] == 9


def test_checkpoints_without_an_architecture_load_as_denoisers(tmp_path):
    from engine.model.motion import Normalizer

    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64)).eval()
    path = tmp_path / "old.pt"
    save_checkpoint(path, model, Normalizer(), None, 5, TrainConfig(), {})
    ck = torch.load(path, weights_only=False)
    assert ck.pop("arch") == "denoiser"
    torch.save(ck, path)  # as written before the lifter
    loaded, _, meta = load_model(path)
    assert isinstance(loaded, Denoiser) and meta["step"] == 5
    x, c = torch.randn(1, 10, MOTION_DIM), conditions(B=1, L=10)
    with torch.no_grad():
        assert torch.equal(loaded(x, torch.tensor([999]), c)[0], model(x, torch.tensor([999]), c)[0])


def test_eval_runs_a_lifter_checkpoint_in_estimation_mode(tmp_path, caplog):
    from engine.evaluate.protocol import build_test_set, model_predictor
    from engine.model.motion import Normalizer

    body = load_default_body()
    path = tmp_path / "lifter.pt"
    save_checkpoint(path, PerFrameLifter(TINY), Normalizer(), None, 1, TrainConfig(), {})
    item = build_test_set(toy_clips(1, T=40), body, seed=0)[0]
    one = model_predictor(path, body, steps=1)(item)
    assert one.joints_cam.shape == one.joints_world.shape == (40, 24, 3)
    assert np.isfinite(one.joints_cam).all() and np.isfinite(one.joints_world).all()
    # Its first frame stands on the floor, as the live engine's does: heights above it compare
    # (on main the path started with the pelvis at the origin, 0.9 m low).
    feet = [7, 8, 10, 11]
    rest = body.rest_joints.numpy()
    assert np.min(one.joints_world[0, feet, 1] - rest[feet, 1]) == pytest.approx(0.0, abs=1e-5)
    five = model_predictor(path, body, steps=5)(item)
    assert "DDIM steps ignored" in caplog.text
    np.testing.assert_array_equal(five.joints_cam, one.joints_cam)


def test_eval_per_frame_without_a_trained_lifter_says_how_to_train_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        main(["eval", "--model", "per-frame"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "runs/per-frame/last.pt" in err and "genmo-live train --model per-frame" in err


def test_train_per_frame_trains_the_default_lifter_into_runs_per_frame(monkeypatch, capsys):
    import clients.cli.clip_sets
    import engine.data.dataset

    asked = {}
    monkeypatch.setattr(clients.cli.clip_sets, "ensure_cache", lambda *a, **k: None)
    monkeypatch.setattr(engine.data.dataset, "load_clips", lambda cache, split: toy_clips(2))
    monkeypatch.setattr(engine.train, "train",
                        lambda clips, body, out, tc, mc, **kw: asked.update(out=out, tc=tc, mc=mc))
    assert main(["train", "--model", "per-frame", "--steps", "7", "--batch", "3"]) == 0
    assert asked["out"] == Path("runs/per-frame") and asked["mc"] == LifterConfig()
    assert (asked["tc"].steps, asked["tc"].batch) == (7, 3)
    assert main(["train", "--steps", "7"]) == 0  # the denoiser as before
    assert asked["out"] == Path("runs/default") and asked["mc"] == ModelConfig()
    with pytest.raises(SystemExit):
        main(["train", "--model", "per-frame", "--heads", "8"])
    assert "--heads and --mlp size the denoiser" in capsys.readouterr().err
