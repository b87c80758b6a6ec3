"""Mirror images (engine.model.mirror): of the motion vector against the mirrored clip in the mirrored
camera, of the conditions against the mirrored image's landmarks, and mirror averaging."""
import numpy as np
import torch

from engine.body.rotations import axis_angle_to_matrix
from engine.data.camera import look_at
from engine.model.conditions import assumed_focal, batch_conditions, landmark_conditions
from engine.model.denoiser import Conditions, Denoiser, ModelConfig
from engine.model.mirror import mirror_averaged, mirror_conditions, mirror_contacts, mirror_motion
from engine.model.motion import MOTION_DIM, Normalizer, encode
from engine.train import mirror
from streamer.landmarks import MIRROR as MIRROR_LANDMARKS

S = np.diag([-1.0, 1.0, 1.0])
W, H = 640, 480


def test_mirror_motion_is_the_mirrored_clip_in_the_mirrored_camera():
    rng = np.random.default_rng(0)
    pose = rng.normal(size=(30, 24, 3)) * 0.5
    root = np.cumsum(rng.normal(size=(30, 3)) * 0.03, 0) + [0.3, 0.95, 0.2]
    R, t = look_at(np.array([1.0, 1.5, 4.0]), np.array([0.0, 1.0, 0.0]), roll_deg=3.0)
    x = encode(axis_angle_to_matrix(torch.tensor(pose)), torch.tensor(root), torch.tensor(R), torch.tensor(t))
    pose_m, root_m, _ = mirror(pose, root, np.zeros((30, 6)))
    x_m = encode(axis_angle_to_matrix(torch.tensor(pose_m, dtype=torch.float64)), torch.tensor(root_m, dtype=torch.float64),
                 torch.tensor(S @ R @ S), torch.tensor(S @ t))
    torch.testing.assert_close(mirror_motion(x), x_m, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirror_motion(mirror_motion(x)), x, atol=0, rtol=0)
    assert not torch.allclose(mirror_motion(x), x, atol=1e-2)


def random_landmarks(rng, T=12):
    """(T, 33, 2) pixels around a person right of centre, (T, 33) visibility, some landmarks gone."""
    kp = rng.normal([420.0, 250.0], [60.0, 90.0], size=(T, 33, 2))
    vis = rng.uniform(0.3, 1.0, size=(T, 33))
    vis[3] = 0.0                     # a frame with nobody
    kp[5, 7] = np.nan                # a NaN landmark
    return kp, vis


def test_mirror_conditions_are_those_of_the_mirrored_image():
    kp, vis = random_landmarks(np.random.default_rng(1))
    f = assumed_focal(W)
    c = batch_conditions([landmark_conditions(kp, vis, W, H, f)])
    kp_m = kp[:, MIRROR_LANDMARKS] * [-1.0, 1.0] + [W, 0.0]
    c_m = batch_conditions([landmark_conditions(kp_m, vis[:, MIRROR_LANDMARKS], W, H, f)])
    got = mirror_conditions(c)
    assert torch.equal(got.visible, c_m.visible) and torch.equal(got.has_box, c_m.has_box)
    seen = c_m.visible  # the model reads a missing landmark's token, not its coordinates
    torch.testing.assert_close(got.keypoints[seen], c_m.keypoints[seen], atol=1e-5, rtol=0)
    torch.testing.assert_close(got.box, c_m.box, atol=1e-6, rtol=0)
    assert got.box[0, 0, 0] < 0 < c.box[0, 0, 0]


def test_mirror_averaged_model_answers_the_mirror_image_with_the_mirrored_answer():
    torch.manual_seed(0)
    rng = np.random.default_rng(2)
    model = Denoiser(ModelConfig(width=32, layers=2, heads=2, mlp=64, window=8, text_blocks=False)).eval()
    for name, p in model.named_parameters():
        if "gate" in name:  # zero at init: open them, so that attention across frames shows
            torch.nn.init.normal_(p, 0.0, 0.5)
    norm = Normalizer(torch.randn(MOTION_DIM) * 0.3, torch.rand(MOTION_DIM) + 0.5)
    f = assumed_focal(W)
    c = batch_conditions([landmark_conditions(*random_landmarks(rng), W, H, f) for _ in range(2)])
    x_t, t = torch.randn(2, 12, MOTION_DIM), torch.tensor([999, 400])

    def mirrored(x):
        return norm(mirror_motion(norm.inverse(x)))

    averaged = mirror_averaged(model, norm)
    with torch.no_grad():
        x0, logits = averaged(x_t, t, c)
        x0_m, logits_m = averaged(mirrored(x_t), t, mirror_conditions(c))
        plain, _ = model(x_t, t, c)
        first, _ = averaged(x_t[:1], t[:1], Conditions(c.keypoints[:1], c.visible[:1], c.box[:1], c.has_box[:1]))
    torch.testing.assert_close(x0_m, mirrored(x0), atol=1e-4, rtol=0)
    torch.testing.assert_close(logits_m, mirror_contacts(logits), atol=1e-5, rtol=0)
    torch.testing.assert_close(first, x0[:1], atol=1e-5, rtol=0)  # each window on its own
    assert (x0 - plain).abs().max() > 1e-3                          # and not the plain pass
