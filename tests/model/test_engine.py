"""The engine's pieces: motion representation round trip, diffusion samplers against an analytic
model, the denoiser's masks (a text only reaches its window, RoPE is relative, the sliding window),
conditions from landmarks, save/load, and a tiny training run that lowers the loss."""
import logging
from dataclasses import replace

import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body
from engine.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rot6d_to_matrix
from engine.data.camera import look_at
from engine.model.conditions import MIN_VISIBLE, assumed_focal, batch_conditions, landmark_conditions
from engine.model.denoiser import Conditions, Denoiser, ModelConfig, apply_rope, rope, window_mask
from engine.model.diffusion import cosine_alpha_bar, ddim, ddim_timesteps, estimate, guided, q_sample
from engine.model.motion import (MOTION_DIM, ROOT_GV, VELOCITY, Normalizer, align_heading, decode, encode,
                                 gv_from_camera, heading, integrate, shift_rows)

torch.manual_seed(0)


def random_motion(T=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    local = axis_angle_to_matrix(torch.randn(T, 24, 3, generator=g, dtype=torch.float64) * 0.5)
    local[:, 22:] = torch.eye(3, dtype=torch.float64)
    root = torch.cumsum(torch.randn(T, 3, generator=g, dtype=torch.float64) * 0.02, 0)
    root += torch.tensor([0.0, 0.95, 0.0], dtype=torch.float64)
    R, t = look_at(np.array([1.0, 1.5, 4.0]), np.array([0.0, 1.0, 0.0]), roll_deg=3.0)
    return local, root, torch.from_numpy(R), torch.from_numpy(t)


# --- motion representation ------------------------------------------------------------------------

def test_encode_decode_round_trip():
    local, root, R, t = random_motion()
    x = encode(local, root, R, t)
    assert x.shape == (40, MOTION_DIM)
    m = decode(x)
    np.testing.assert_allclose(m["local_rot"][:, 1:22], local[:, 1:22], atol=1e-9)
    np.testing.assert_allclose(m["root_cam"], R @ local[:, 0], atol=1e-9)
    world_to_gv = gv_from_camera(R) @ R
    np.testing.assert_allclose(m["root_gv"], world_to_gv @ local[:, 0], atol=1e-9)
    gv_path = root @ world_to_gv.T
    np.testing.assert_allclose(m["root_world"], gv_path - gv_path[0], atol=1e-9)
    np.testing.assert_allclose(m["pelvis_cam"], root @ R.T + t, atol=1e-9)
    np.testing.assert_allclose(m["local_rot"][:, 22:], torch.eye(3).expand(40, 2, 3, 3), atol=0)


def test_gravity_view_frame_is_the_world_turned_about_up():
    _, _, R, _ = random_motion()
    world_to_gv = gv_from_camera(R) @ R
    np.testing.assert_allclose(world_to_gv[1], [0.0, 1.0, 0.0], atol=1e-12)  # gravity kept
    assert torch.det(world_to_gv) == pytest.approx(1.0)


def test_heading_keeps_only_the_yaw():
    yaw = axis_angle_to_matrix(torch.tensor([0.0, 0.7, 0.0], dtype=torch.float64))
    tilt = axis_angle_to_matrix(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    np.testing.assert_allclose(heading(yaw @ tilt), yaw, atol=1e-12)


def test_told_camera_sees_the_pelvis_at_the_true_pixel():
    """Told twice the true focal length: the pelvis twice as deep, its image-plane coordinates
    halved, so it projects to the same pixel; nothing else changes."""
    local, root, R, t = random_motion()
    a, b = encode(local, root, R, t), encode(local, root, R, t, focal_ratio=2.0)
    np.testing.assert_allclose(b[:, :141], a[:, :141], atol=1e-12)
    np.testing.assert_allclose(b[:, 141:143], a[:, 141:143] / 2, atol=1e-12)
    np.testing.assert_allclose(b[:, 143] - a[:, 143], np.log(2.0), atol=1e-12)
    f_true = 500.0
    true_px = f_true * decode(a)["pelvis_cam"][:, :2] / decode(a)["pelvis_cam"][:, 2:]
    told_px = 2 * f_true * decode(b)["pelvis_cam"][:, :2] / decode(b)["pelvis_cam"][:, 2:]
    np.testing.assert_allclose(told_px, true_px, atol=1e-9)


def test_normalizer_round_trip():
    x = torch.randn(500, MOTION_DIM) * 3 + 1
    x[:, 5] = 2.0  # a constant dimension
    n = Normalizer.fit(x)
    assert n(x)[:, 0].std().item() == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_allclose(n.inverse(n(x)), x, atol=1e-4)
    assert n.std[5] == pytest.approx(1e-3)


def turn_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Degrees of rotation from a to b, (..., 3, 3) each."""
    return torch.rad2deg(matrix_to_axis_angle(b @ a.transpose(-1, -2)).norm(dim=-1))


def test_shift_rows_spreads_a_large_turn_evenly_and_lands_on_the_target():
    """160° between two headings, shifted in ten equal weights: ten 16° steps of the root, none of
    them a lurch through the 6D space (a linear 6D blend turns ~49° in each of its middle two steps)."""
    local, root, R, t = random_motion(T=2)
    x = encode(local, root, R, t)
    a, b = x[0], x[1].clone()
    turned = axis_angle_to_matrix(torch.tensor([0.0, np.radians(160), 0.0], dtype=torch.float64))
    b[ROOT_GV] = (turned @ rot6d_to_matrix(a[ROOT_GV]))[:2].reshape(6)
    w = torch.linspace(0, 1, 11, dtype=torch.float64)
    path = shift_rows(a.expand(11, -1), a, b, w)
    roots = rot6d_to_matrix(path[:, ROOT_GV])
    np.testing.assert_allclose(turn_between(roots[:-1], roots[1:]), 16.0, atol=1e-6)
    np.testing.assert_allclose(decode(path[-1:])["local_rot"], decode(b[None])["local_rot"], atol=1e-9)
    np.testing.assert_allclose(path[0], a, atol=1e-12)
    np.testing.assert_allclose(path[5, VELOCITY], (a[VELOCITY] + b[VELOCITY]) / 2, atol=1e-12)
    linear = rot6d_to_matrix(torch.lerp(a[ROOT_GV].expand(11, -1), b[ROOT_GV], w[:, None]))
    assert turn_between(linear[:-1], linear[1:]).max() > 40


def test_align_heading_turns_the_path_and_keeps_the_pose():
    local, root, R, t = random_motion()
    x = encode(local, root, R, t)
    target = x[0].clone()
    target[ROOT_GV] = (axis_angle_to_matrix(torch.tensor([0.0, 2.5, 0.0], dtype=torch.float64))
                       @ rot6d_to_matrix(x[0, ROOT_GV]))[:2].reshape(6)
    out = align_heading(x, x[0], target)
    np.testing.assert_allclose(heading(rot6d_to_matrix(out[0, ROOT_GV])), heading(rot6d_to_matrix(target[ROOT_GV])),
                               atol=1e-9)
    np.testing.assert_allclose(out[:, :126], x[:, :126], atol=0)  # the body pose and velocities are untouched
    np.testing.assert_allclose(out[:, VELOCITY], x[:, VELOCITY], atol=0)
    before = integrate(rot6d_to_matrix(x[:, ROOT_GV]), x[:, VELOCITY])
    after = integrate(rot6d_to_matrix(out[:, ROOT_GV]), out[:, VELOCITY])
    np.testing.assert_allclose(after.norm(dim=-1), before.norm(dim=-1), atol=1e-9)  # the same path, turned
    np.testing.assert_allclose(after[:, 1], before[:, 1], atol=1e-9)


# --- diffusion ------------------------------------------------------------------------------------

def gaussian_denoiser(mu, sigma, alpha_bar):
    """The exact x0 predictor for data ~ N(mu, sigma^2): E[x0 | x_t]."""
    def model(x_t, t):
        a = alpha_bar[t].view(-1, 1, 1)
        gain = a.sqrt() * sigma ** 2 / (a * sigma ** 2 + 1 - a)
        return mu + gain * (x_t - a.sqrt() * mu)

    return model


def test_schedule():
    ab = cosine_alpha_bar()
    assert ab.shape == (1000,) and (ab[1:] < ab[:-1]).all() and ab[0] > 0.999 and ab[-1] < 1e-3
    assert ddim_timesteps(1) == [999] and ddim_timesteps(4) == [999, 749, 500, 250]


def test_ddim_with_the_exact_model_samples_the_data():
    ab = cosine_alpha_bar()
    model = gaussian_denoiser(2.0, 0.5, ab)
    noise = torch.randn(4000, 1, 1, generator=torch.Generator().manual_seed(1))
    x = ddim(model, noise, 50, ab)
    assert x.mean().item() == pytest.approx(2.0, abs=0.03)
    assert x.std().item() == pytest.approx(0.5, rel=0.05)
    # Estimation mode: one call from zeros gives the data's mean.
    assert estimate(model, (3, 1, 1)).flatten().tolist() == pytest.approx([2.0] * 3, abs=1e-3)


def test_q_sample_at_step_zero_is_almost_clean():
    ab = cosine_alpha_bar()
    x0 = torch.ones(2, 3, 4)
    x = q_sample(x0, torch.tensor([0, 999]), torch.zeros_like(x0), ab)
    assert x[0].mean().item() == pytest.approx(1.0, abs=1e-3) and x[1].abs().max() < 0.05


def test_inpainting_holds_the_known_frames():
    ab = cosine_alpha_bar()
    model = gaussian_denoiser(0.0, 1.0, ab)
    known = torch.full((1, 10, 2), 3.0)
    mask = torch.zeros(1, 10, 2)
    mask[:, :4] = 1
    x = ddim(model, torch.randn(1, 10, 2), 5, ab, known=known, known_mask=mask)
    np.testing.assert_array_equal(x[:, :4], known[:, :4])
    assert (x[:, 4:] != 3.0).all()


def test_guidance_extrapolates_from_unconditional():
    cond = lambda x, t: torch.ones_like(x)  # noqa: E731
    uncond = lambda x, t: torch.zeros_like(x)  # noqa: E731
    out = guided(cond, uncond, 2.5)(torch.zeros(1, 2, 3), torch.tensor([5]))
    assert torch.allclose(out, torch.full((1, 2, 3), 2.5))


# --- the denoiser ---------------------------------------------------------------------------------

def test_rope_scores_depend_only_on_the_offset():
    cos, sin = rope(50, 16)
    q, k = torch.randn(16), torch.randn(16)
    score = lambda i, j: (apply_rope(q, cos[i], sin[i]) * apply_rope(k, cos[j], sin[j])).sum()  # noqa: E731
    assert score(3, 7).item() == pytest.approx(score(30, 34).item(), rel=1e-4)
    assert score(3, 7).item() != pytest.approx(score(3, 9).item(), rel=1e-3)
    np.testing.assert_allclose(apply_rope(q, cos[0], sin[0]), q)  # position 0 is the identity


def test_sliding_window_mask():
    assert window_mask(120, 120) is None
    m = window_mask(300, 120)
    assert m.shape == (300, 300) and (m.sum(1) == 120).all()
    assert m[150, 90] and m[150, 209] and not m[150, 89] and not m[150, 210]
    assert m[0, :120].all() and m[299, 180:].all()


def conditions(B=2, L=30, text=False, frames=None):
    g = torch.Generator().manual_seed(3)
    c = Conditions(keypoints=torch.randn(B, L, 33, 2, generator=g), visible=torch.rand(B, L, 33, generator=g) > 0.3,
                   box=torch.randn(B, L, 3, generator=g), has_box=torch.ones(B, L, dtype=torch.bool))
    if text:
        c.text = torch.randn(B, 1, 5, 384, generator=g)
        c.text_mask = torch.ones(B, 1, 5, dtype=torch.bool)
        c.text_frames = frames
    return c


def gated(model):
    """Open the zero-initialised gates, so that every branch shows in the output."""
    for name, p in model.named_parameters():
        if "gate" in name:
            torch.nn.init.normal_(p, 0.0, 0.5)
    return model.eval()


def test_shapes_and_a_text_reaches_only_its_window():
    model = gated(Denoiser(ModelConfig(width=64, layers=2, heads=4, mlp=128, window=16)))
    x, t = torch.randn(2, 30, MOTION_DIM), torch.tensor([10, 999])
    frames = torch.zeros(2, 1, 30, dtype=torch.bool)
    frames[:, :, 10:20] = True
    with torch.no_grad():
        plain, logits = model(x, t, conditions())
        with_text, _ = model(x, t, conditions(text=True, frames=frames))
    assert plain.shape == (2, 30, MOTION_DIM) and logits.shape == (2, 30, 6)
    changed = (with_text - plain).abs().amax(-1) > 1e-6
    assert changed[:, 10:20].all()
    # Self-attention carries the text to other frames; without it (one layer, its attention gate
    # shut) the text touches only its own frames.
    one = gated(Denoiser(ModelConfig(width=64, layers=1, heads=4, mlp=128, window=16)))
    one.blocks[0].gate1.data.zero_()  # no self-attention mixing
    with torch.no_grad():
        a, _ = one(x, t, conditions())
        b, _ = one(x, t, conditions(text=True, frames=frames))
    diff = (b - a).abs().amax(-1) > 1e-6
    assert diff[:, 10:20].all() and not diff[:, :10].any() and not diff[:, 20:].any()


def test_a_missing_landmark_is_its_learned_token_not_its_coordinates():
    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64)).eval()
    c = conditions(B=1, L=4)
    c.visible[:] = False
    f1 = model.embed_conditions(c)
    c.keypoints = c.keypoints + 5.0  # coordinates of missing landmarks must not matter
    assert torch.allclose(model.embed_conditions(c), f1)


# --- conditions from landmarks ------------------------------------------------------------------------

def test_landmark_conditions_box_and_missing():
    kp = np.tile(np.array([[300.0, 200.0]]), (2, 33, 1))
    kp[:, 0] = [100.0, 100.0]
    kp[:, 1] = [200.0, 300.0]
    vis = np.ones((2, 33))
    vis[1, :30] = 0.1  # frame 1: only 3 landmarks visible -> no box
    d = landmark_conditions(kp, vis, 640, 480, 500.0)
    assert d["has_box"].tolist() == [True, False] and not d["visible"][1].any()
    # Frame 0: box from (100, 100) to (300, 300), centre (200, 200), size 200 * 1.2.
    np.testing.assert_allclose(d["box"][0], [(200 - 320) / 500, (200 - 240) / 500, 240 / 500], rtol=1e-6)
    np.testing.assert_allclose(d["keypoints"][0, 0], [2 * (100 - 200) / 240, 2 * (100 - 200) / 240], rtol=1e-6)
    c = batch_conditions([d, d])
    assert c.keypoints.shape == (2, 2, 33, 2) and c.visible.dtype == torch.bool
    assert MIN_VISIBLE == 4 and assumed_focal(640) == pytest.approx(320 / np.tan(np.radians(30)))


def test_nan_and_out_of_image_landmarks_are_missing():
    kp = np.full((1, 33, 2), 100.0)
    kp[0, 3] = np.nan
    kp[0, 4] = [700.0, 100.0]
    d = landmark_conditions(kp, np.ones((1, 33)), 640, 480, 500.0)
    assert not d["visible"][0, 3] and not d["visible"][0, 4] and d["visible"][0, 5]
    assert np.isfinite(d["keypoints"]).all()


def test_landmark_conditions_of_frames_of_many_image_sizes_in_one_call():
    """The live engine conditions every stream's new frames in one call (engine.live.engine.condition_slots),
    each image its own size and focal length: the same as each frame alone."""
    rng = np.random.default_rng(3)
    sizes = [(640, 480), (1280, 720), (480, 640)]
    kp = np.stack([rng.uniform(-50, w + 50, (33, 2)) * [1, h / w] for w, h in sizes])
    vis = rng.uniform(0, 1, (3, 33))
    width, height = (np.array(v, np.float64) for v in zip(*sizes))
    together = landmark_conditions(kp, vis, width, height, assumed_focal(width))
    for i, (w, h) in enumerate(sizes):
        alone = landmark_conditions(kp[i:i + 1], vis[i:i + 1], w, h, assumed_focal(w))
        for key, value in alone.items():
            np.testing.assert_array_equal(together[key][i], value[0], err_msg=key)
    assert not together["visible"].all() and together["visible"].any()


# --- training ---------------------------------------------------------------------------------------

def toy_clips(n=4, T=90):
    from engine.data.dataset import Clip

    t = np.arange(T) / 30.0
    clips = []
    for k in range(n):
        pose = np.zeros((T, 24, 3), np.float32)
        pose[:, 1, 0] = 0.5 * np.sin(2 * np.pi * (t + k / n))
        pose[:, 2, 0] = -pose[:, 1, 0]
        root = np.stack([np.zeros(T), np.full(T, 0.95), 1.0 * t], -1).astype(np.float32)
        clips.append(Clip(clip=f"walk/{k}", subject="t:1", split="train", caption=None, pose=pose, root=root,
                          contacts=np.zeros((T, 6), bool)))
    return clips


def toy_batch(windows: int, length: int):
    """(body, normaliser, a batch of sample_windows of the toy clips with x normalised, its truth)."""
    from engine.data.observations import NoiseModel
    from engine.train import fit_normalizer, prepare, sample_windows, truth

    body = load_default_body()
    rng = np.random.default_rng(0)
    prepared = [prepare(c, body, NoiseModel.load(), 0, rng) for c in toy_clips()]
    norm = fit_normalizer(prepared)
    x, c, contacts, valid, focal, size = sample_windows(prepared, windows, length, rng, "cpu")
    x = norm(x)
    return body, norm, (x, c, contacts, valid, focal, size), truth(x, norm, body.rest_joints)


def test_the_acceleration_loss_counts_a_wobble_only_where_its_three_frames_are_in_the_window():
    """The truth scores 0; one frame moved scores on the three frames whose second difference
    holds it, and nothing once that frame is out of the window (not valid)."""
    from engine.train import losses

    body, norm, (x, _, contacts, valid, focal, size), gt = toy_batch(2, 30)

    def accel(pred, w):
        return losses(pred, torch.zeros_like(contacts), gt, contacts, w, focal, size, norm, body.rest_joints)["accel"]

    w = valid.float()
    assert accel(x, w) < 1e-12
    wobbled = x.clone()
    wobbled[:, 10] += 0.5
    assert accel(wobbled, w) > 1e-4
    w[:, 10] = 0
    assert accel(wobbled, w) < 1e-12


@pytest.mark.parametrize("bf16", [False, True], ids=["fp32", "bf16"])
@pytest.mark.parametrize("arch", ["denoiser", "per-frame"])
def test_training_steps_lower_the_loss(arch, bf16):
    """The training losses on one batch of windows (synthetic observations of toy walks) fall by
    more than 5x in 150 optimiser steps, for the denoiser and the per-frame lifter baseline, in
    float32 and in bfloat16 mixed precision: every term is wired to the model's output. The
    denoiser's acceleration term falls too, by less (the lifter is not trained on it)."""
    from engine.model.lifter import LifterConfig, PerFrameLifter
    from engine.train import TrainConfig, loss_weights, losses, run_model

    torch.manual_seed(0)
    body, norm, (x, c, contacts, valid, focal, size), gt = toy_batch(8, 60)
    model = (Denoiser(ModelConfig(width=64, layers=2, heads=4, mlp=128, dropout=0.0)) if arch == "denoiser"
             else PerFrameLifter(LifterConfig(width=128, layers=2, dropout=0.0)))
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    weights = loss_weights(model, TrainConfig())
    totals, accels = [], []
    for _ in range(150):
        pred, logits = run_model(model, torch.zeros_like(x), torch.full((8,), 999), c, bf16)
        assert pred.dtype == logits.dtype == torch.float32
        parts = losses(pred, logits, gt, contacts, valid.float(), focal, size, norm, body.rest_joints)
        total = sum(weights[k] * parts[k] for k in parts)
        opt.zero_grad()
        total.backward()
        opt.step()
        totals.append(total.item() - weights["accel"] * parts["accel"].item())
        accels.append(parts["accel"].item())
    assert totals[-1] < totals[0] / 5
    if arch == "denoiser":
        assert accels[-1] < accels[0] / 2
    assert all(np.isfinite(totals))


@pytest.mark.slow
def test_a_time_budget_stops_training_with_a_checkpoint(tmp_path, caplog):
    """train --minutes: a run told far more steps than its minutes allow stops when they are spent
    (the schedule ending there) and leaves its last step in the checkpoint."""
    from engine.model.checkpoint import load_model
    from engine.train import TrainConfig, train

    cfg = TrainConfig(steps=10**6, batch=2, window=30, refresh=3, warmup=2, log_every=3, save_every=10**6,
                      minutes=0.01)
    with caplog.at_level(logging.INFO, logger="engine.train"):
        path = train(toy_clips(2), load_default_body(), tmp_path, cfg, ModelConfig(width=32, layers=1, heads=2, mlp=64))
    step = load_model(path)[2]["step"]
    assert 1 <= step < 10**6
    assert f"stopped at step {step}: the 0.01 minutes of training are spent" in caplog.text


@pytest.mark.slow
def test_train_writes_a_checkpoint_that_loads_and_resumes(tmp_path):
    from engine.model.checkpoint import load_model
    from engine.train import TrainConfig, train

    body = load_default_body()
    cfg = TrainConfig(steps=6, batch=2, window=30, refresh=3, warmup=2, log_every=3)
    mcfg = ModelConfig(width=32, layers=1, heads=2, mlp=64)
    path = train(toy_clips(2), body, tmp_path, cfg, mcfg)
    model, norm, meta = load_model(path)
    assert meta["step"] == 6 and model.cfg.width == 32 and meta["meta"]["clips"] == 2
    cfg.steps = 9
    train(toy_clips(2), body, tmp_path, cfg, mcfg, resume=True)
    assert load_model(path)[2]["step"] == 9
    again = Denoiser(model.cfg)
    again.load_state_dict(torch.load(path, weights_only=False)["model"])
    x = torch.zeros(1, 10, MOTION_DIM)
    c = conditions(B=1, L=10)
    with torch.no_grad():
        assert torch.equal(again.eval()(x, torch.tensor([999]), c)[0], load_model(path)[0](x, torch.tensor([999]), c)[0])


@pytest.mark.slow
def test_train_fine_tunes_from_exported_weights_and_restarts_with_resume(tmp_path):
    from engine.model.checkpoint import CheckpointError, export_weights, load_model
    from engine.model.lifter import LifterConfig
    from engine.train import TrainConfig, train

    body = load_default_body()
    cfg = TrainConfig(steps=4, batch=2, window=30, refresh=3, warmup=2, log_every=2, save_every=2)
    mcfg = ModelConfig(width=32, layers=1, heads=2, mlp=64)
    # Another seed for the base, so that its normaliser (fitted on its cameras) tells it apart.
    base = train(toy_clips(2), body, tmp_path / "base", replace(cfg, seed=1), mcfg)
    weights = export_weights(base, tmp_path / "w.pt")
    assert torch.load(weights, weights_only=False)["optimizer"] is None
    with pytest.raises(CheckpointError, match="per-frame|denoiser"):
        train(toy_clips(2), body, tmp_path / "lifter", cfg, LifterConfig(width=32, layers=1), start_from=weights)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        train(toy_clips(2), body, tmp_path / "none", cfg, mcfg, start_from=tmp_path / "missing.pt")

    cfg.steps = 6
    tuned = train(toy_clips(2), body, tmp_path / "tuned", cfg, mcfg, resume=True, start_from=weights)
    ck = torch.load(tuned, weights_only=False)
    assert ck["step"] == 6 and ck["optimizer"] is not None and ck["train_config"]["schedule_start"] == 4
    # Its own schedule: the last step (5) is step 1 of 2 after the warm-up, cos(pi / 2) -> half the lr.
    assert ck["optimizer"]["param_groups"][0]["lr"] == pytest.approx(cfg.lr * 0.5)
    exported = torch.load(weights, weights_only=False)["normalizer"]
    assert all(torch.equal(v, exported[k]) for k, v in ck["normalizer"].items())
    start = load_model(weights)[0].state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in load_model(tuned)[0].state_dict().items())
    cfg.steps = 8  # the same command again: last.pt wins over the export
    train(toy_clips(2), body, tmp_path / "tuned", cfg, mcfg, resume=True, start_from=weights)
    assert load_model(tuned)[2]["step"] == 8


def test_deepen_keeps_the_function_and_the_old_blocks_in_order():
    from engine.model.denoiser import deepen
    from engine.model.lifter import LifterConfig, PerFrameLifter

    torch.manual_seed(0)
    model = gated(Denoiser(ModelConfig(width=32, layers=4, heads=2, mlp=64))).eval()
    deeper = deepen(model, 6).eval()
    assert deeper.cfg.layers == 6 and len(deeper.blocks) == len(deeper.text_blocks) == 6
    for old, new in zip(range(4), (0, 1, 3, 4)):
        assert torch.equal(model.blocks[old].qkv.weight, deeper.blocks[new].qkv.weight)
        assert torch.equal(model.text_blocks[old].gate1, deeper.text_blocks[new].gate1)
    assert not deeper.blocks[2].gate1.any() and not deeper.blocks[5].gate2.any()
    x, c = torch.randn(2, 10, MOTION_DIM), conditions(B=2, L=10, text=True, frames=torch.ones(2, 1, 10, dtype=torch.bool))
    with torch.no_grad():
        assert torch.allclose(model(x, torch.tensor([999, 10]), c)[0], deeper(x, torch.tensor([999, 10]), c)[0],
                              atol=1e-5)
    with pytest.raises(ValueError, match="deepen"):
        deepen(model, 3)
    with pytest.raises(ValueError, match="only a denoiser can be deepened"):
        deepen(PerFrameLifter(LifterConfig(width=32, layers=2)), 3)


@pytest.mark.slow
def test_train_from_weights_deepens_them_and_resumes_at_the_new_depth(tmp_path):
    from engine.model.checkpoint import CheckpointError, export_weights, load_model
    from engine.train import TrainConfig, train

    body = load_default_body()
    cfg = TrainConfig(steps=2, batch=2, window=30, refresh=3, warmup=1, log_every=1, save_every=1)
    mcfg = ModelConfig(width=32, layers=1, heads=2, mlp=64)
    weights = export_weights(train(toy_clips(2), body, tmp_path / "base", cfg, mcfg), tmp_path / "w.pt")
    cfg.steps = 3
    with pytest.raises(CheckpointError, match="cannot deepen a 1-layer model to 0 layers"):
        train(toy_clips(2), body, tmp_path / "shallow", cfg, mcfg, start_from=weights, deepen_to=0)
    deep = train(toy_clips(2), body, tmp_path / "deep", cfg, mcfg, resume=True, start_from=weights, deepen_to=3)
    model, _, meta = load_model(deep)
    assert model.cfg.layers == 3 and meta["step"] == 3
    cfg.steps = 4  # the same command again resumes the deepened checkpoint, its optimiser and all
    train(toy_clips(2), body, tmp_path / "deep", cfg, mcfg, resume=True, start_from=weights, deepen_to=3)
    model, _, meta = load_model(deep)
    assert model.cfg.layers == 3 and meta["step"] == 4


def test_exported_weights_are_half_the_size_and_predict_the_same(tmp_path):
    from engine.model.checkpoint import export_weights, load_model, save_checkpoint
    from engine.train import TrainConfig

    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=64, layers=2, heads=2, mlp=128))
    for p in model.parameters():  # open the zero-initialised gates, so every block counts
        if not p.any():
            torch.nn.init.normal_(p, std=0.3)
    norm = Normalizer(torch.zeros(MOTION_DIM), torch.ones(MOTION_DIM))
    ckpt = tmp_path / "last.pt"
    save_checkpoint(ckpt, model, norm, torch.optim.AdamW(model.parameters()), 7, TrainConfig(), {"clips": 1})
    out = export_weights(ckpt, tmp_path / "weights.pt")
    assert out.stat().st_size < 0.6 * ckpt.stat().st_size  # float16 (and no optimiser state)
    slim, _, meta = load_model(out)
    assert meta["step"] == 7 and next(slim.parameters()).dtype == torch.float32
    x, c = torch.zeros(1, 10, MOTION_DIM), conditions(B=1, L=10)
    with torch.no_grad():
        full, half = model.eval()(x, torch.tensor([999]), c)[0], slim(x, torch.tensor([999]), c)[0]
    assert torch.allclose(full, half, atol=0.02 * full.abs().max().item())


def test_windows_mix_rendered_observations_at_the_asked_share():
    """Training windows come from the rendered set (real detector output) at `rendered_share`."""
    from engine.data.observations import NoiseModel, observe_clip
    from engine.data.rendered import RenderedItem
    from engine.train import prepare, prepare_rendered, sample_windows

    body = load_default_body()
    rng = np.random.default_rng(0)
    clips = toy_clips(2)
    synthetic = [prepare(c, body, NoiseModel.load(), 0, rng) for c in clips]
    out = body.pose(torch.from_numpy(clips[0].pose), torch.from_numpy(clips[0].root))
    obs = observe_clip(clips[0].clip, out["joints"].numpy().astype(float), out["world_rot"].numpy().astype(float),
                       0, NoiseModel.load())
    # A "rendered" job whose detector put every landmark at one pixel: a 1-pixel box, recognisable.
    obs.keypoints[:] = 7.0
    obs.visibility[:] = 1.0
    obs.detected[:] = True
    item = RenderedItem(clips[0].clip, 0, obs, out["joints"].numpy(), {})
    rendered = prepare_rendered([item], clips, body)
    assert len(rendered) == 1 and rendered[0].x.shape == (90, 144)  # the clip as rendered, unaugmented
    _, c, *_ = sample_windows(synthetic, 400, 30, rng, "cpu", rendered, rendered_share=0.25)
    from_rendered = (c.box[..., 2] < 0.01).all(-1)
    assert 0.18 < from_rendered.float().mean().item() < 0.32
    _, c, *_ = sample_windows(synthetic, 100, 30, rng, "cpu")
    assert not (c.box[..., 2] < 0.01).all(-1).any()


def test_precision_auto_is_bf16_only_where_it_is_native(monkeypatch):
    import engine.model.device
    from configs.config import ConfigError
    from engine.model.device import resolve_precision

    cpu = torch.device("cpu")
    for native, expected in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(engine.model.device, "native_bf16", lambda device, native=native: native)
        assert resolve_precision("auto", cpu) == expected
        assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ConfigError, match="precision 'fp16'"):
        resolve_precision("fp16", cpu)


def test_bf16_passes_compute_in_bfloat16_and_stay_close_to_float32():
    from engine.train import run_model

    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=64, layers=2, heads=4, mlp=128, dropout=0.0)).eval()
    for p in model.parameters():  # the zero-initialised gates would hide the blocks
        torch.nn.init.normal_(p, std=0.1)
    L = 40
    c = Conditions(keypoints=torch.randn(2, L, 33, 2), visible=torch.ones(2, L, 33, dtype=torch.bool),
                   box=torch.randn(2, L, 3), has_box=torch.ones(2, L, dtype=torch.bool))
    x, t = torch.randn(2, L, 144), torch.full((2,), 999)
    full, _ = run_model(model, x, t, c, bf16=False)
    half, _ = run_model(model, x, t, c, bf16=True)
    assert half.dtype == torch.float32
    diff = (half - full).abs().max() / full.abs().max()
    assert 0 < diff < 0.05
