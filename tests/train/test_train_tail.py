"""engine.train's tail weight: the last frames of each training window (the live engine's case: the
newest frame has no future in view) count more in the loss."""
import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.observations import NoiseModel
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.diffusion import NUM_STEPS, cosine_alpha_bar
from engine.train import (TrainConfig, fit_normalizer, frame_weights, losses, prepare, run_model, sample_windows,
                          train_step, truth)
from test_train_augment import clip

BODY = load_default_body()


def test_frame_weights_lift_the_last_valid_frames_of_each_window():
    valid = torch.zeros(2, 12, dtype=torch.bool)
    valid[0], valid[1, :7] = True, True  # the second window: a clip 7 frames long, padded
    w = frame_weights(valid, tail_frames=3, tail_weight=4.0)
    np.testing.assert_array_equal(w[0].numpy(), [1] * 9 + [5] * 3)
    np.testing.assert_array_equal(w[1].numpy(), [1] * 4 + [5] * 3 + [0] * 5)
    torch.testing.assert_close(frame_weights(valid, 3, 0.0), valid.float())


def batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    prepared = [prepare(clip(f"c{i}", 50, i), BODY, NoiseModel.load(), 0, rng) for i in range(3)]
    norm = fit_normalizer(prepared)
    x, c, contacts, valid, focal, size = sample_windows(prepared, 4, 40, rng, "cpu")
    return norm(x), c, contacts, valid, focal, size, norm


def test_an_error_on_the_newest_frame_costs_one_plus_the_tail_weight_times_as_much():
    x, c, contacts, valid, focal, size, norm = batch()
    gt = truth(x, norm, BODY.rest_joints)
    pred = x.clone()
    pred[:, -1] += 0.5  # every window here is whole: its last frame is its newest
    logits = torch.zeros_like(contacts)

    def x0(w):
        return losses(pred, logits, gt, contacts, w, focal, size, norm, BODY.rest_joints)["x0"].item()

    even, tail = x0(frame_weights(valid, 8, 0.0)), x0(frame_weights(valid, 8, 3.0))
    L = x.shape[1]
    assert even > 0
    np.testing.assert_allclose(tail / even, (1 + 3.0) / (L + 3.0 * 8) * L, rtol=1e-5)


def test_train_step_scores_with_the_configured_tail_weight():
    x, c, contacts, valid, focal, size, norm = batch(1)
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64, dropout=0.0))
    t = torch.full((x.shape[0],), NUM_STEPS - 1)
    with torch.no_grad():
        pred, logits = run_model(model, torch.zeros_like(x), t, c, False)
    gt = truth(x, norm, BODY.rest_joints)
    cfg = TrainConfig(tail_frames=5, tail_weight=2.0)
    want = losses(pred, logits, gt, contacts, frame_weights(valid, 5, 2.0), focal, size, norm, BODY.rest_joints)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    _, parts, _ = train_step(model, opt, x, c, contacts, valid, focal, size, norm, BODY.rest_joints,
                             cosine_alpha_bar(), cfg, False)
    for k in want:
        torch.testing.assert_close(parts[k], want[k])
    even = losses(pred, logits, gt, contacts, valid.float(), focal, size, norm, BODY.rest_joints)
    assert not torch.isclose(parts["x0"], even["x0"])


def test_the_2d_error_leaves_out_joints_beside_or_behind_the_camera():
    """A desk webcam 0.6 m away has a seated person's knees beside or under it: with the left knee
    of the truth 5 cm in front of the lens, its projection is meaningless and is left out, so the
    2D error stays what the other joints make of it (it was thousands of times that before)."""
    x, c, contacts, valid, focal, size, norm = batch()
    gt = truth(x, norm, BODY.rest_joints)
    pred, logits, w = x + 0.05, torch.zeros_like(contacts), frame_weights(valid, 8, 0.0)
    reproj = losses(pred, logits, gt, contacts, w, focal, size, norm, BODY.rest_joints)["reproj"].item()
    knee = SMPL_JOINT_NAMES.index("left_knee")
    gt["abs"][..., knee, :] = torch.tensor([0.4, -0.3, 0.05])
    near = losses(pred, logits, gt, contacts, w, focal, size, norm, BODY.rest_joints)["reproj"].item()
    assert 0 < reproj and abs(near - reproj) < 0.2 * reproj


def test_a_predicted_joint_at_the_camera_s_plane_costs_at_most_the_cap(monkeypatch):
    """The prediction's left knee 1 m aside at the camera's plane (a desk view's hidden legs) is
    many image widths off in 2D: it counts as REPROJ_CAP, not its square (losses of hundreds)."""
    from engine.train import REPROJ_CAP

    x, c, contacts, valid, focal, size, norm = batch()
    gt = truth(x, norm, BODY.rest_joints)
    logits, w = torch.zeros_like(contacts), frame_weights(valid, 8, 0.0)
    base = losses(x, logits, gt, contacts, w, focal, size, norm, BODY.rest_joints)["reproj"].item()
    assert base == pytest.approx(0.0, abs=1e-6)
    import engine.train

    real = engine.train.camera_joints
    knee = SMPL_JOINT_NAMES.index("left_knee")

    def knee_aside(*args):
        rel, absolute = real(*args)
        absolute = absolute.clone()
        absolute[..., knee, :] = torch.tensor([1.0, 0.0, 0.01])
        return rel, absolute

    monkeypatch.setattr(engine.train, "camera_joints", knee_aside)
    off = losses(x, logits, gt, contacts, w, focal, size, norm, BODY.rest_joints)["reproj"].item()
    assert off == pytest.approx(REPROJ_CAP / 24, rel=0.05)
