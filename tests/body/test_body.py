"""The default body asset, the procedural fallback and the stature setting."""
import numpy as np
import pytest
import torch

from engine.body.body_model import load_default_body, procedural_body
from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.paths import DEFAULT_BODY_PATH

J = {n: i for i, n in enumerate(SMPL_JOINT_NAMES)}
LEFT = [i for i, n in enumerate(SMPL_JOINT_NAMES) if n.startswith("left_")]
RIGHT = [J["right_" + SMPL_JOINT_NAMES[i][5:]] for i in LEFT]


@pytest.mark.parametrize("mesh", ["lowres", "full"])
def test_default_body_asset(mesh):
    body = load_default_body(mesh=mesh)
    assert body.kind == "default" and body.rest_joints.shape == (24, 3)
    assert abs(body.stature - 1.70) < 0.01
    assert abs(body.lowest_rest_point()) < 0.005
    v = body.vertices
    assert abs(float(v[:, 1].max()) - 1.70) < 0.01
    assert body.weights.shape == (v.shape[0], 24)
    torch.testing.assert_close(body.weights.sum(-1), torch.ones(v.shape[0]), atol=1e-4, rtol=0)
    assert int(body.faces.min()) >= 0 and int(body.faces.max()) < v.shape[0]
    if mesh == "lowres":
        assert 1000 <= v.shape[0] <= 1500
    else:
        assert v.shape[0] > 10000


def test_default_body_asset_is_small_and_well_formed():
    assert DEFAULT_BODY_PATH.stat().st_size < 1_000_000
    with np.load(DEFAULT_BODY_PATH) as d:
        assert tuple(d["names"]) == SMPL_JOINT_NAMES
        assert tuple(int(p) for p in d["parents"]) == SMPL_PARENTS


@pytest.fixture(params=["default", "procedural"])
def body(request):
    return load_default_body() if request.param == "default" else procedural_body()


def test_orientation_conventions(body):
    """y-up, facing +z, the body's left at +x, T-pose arms along ±x, symmetric."""
    j = body.rest_joints
    assert j[J["head"], 1] > j[J["pelvis"], 1] > j[J["left_knee"], 1] > j[J["left_ankle"], 1]
    assert j[J["left_foot"], 2] > j[J["left_ankle"], 2] + 0.05  # toes point forward (+z)
    assert (j[LEFT, 0] > 0).all() and (j[RIGHT, 0] < 0).all()
    torch.testing.assert_close(j[RIGHT], j[LEFT] * torch.tensor([-1.0, 1, 1]), atol=2e-3, rtol=0)
    arm = j[[J["left_shoulder"], J["left_elbow"], J["left_wrist"], J["left_hand"]]]
    assert (arm[1:, 0] > arm[:-1, 0]).all()  # outward along +x
    assert float((arm[:, 1:] - arm[0, 1:]).abs().max()) < 1e-3  # horizontal and straight
    assert abs(float(j[J["pelvis"], 0])) < 1e-3 and abs(float(j[J["pelvis"], 2])) < 0.02


def test_stature_scales_the_body(body):
    tall = body.scaled(1.87)
    assert abs(tall.stature - 1.87) < 1e-6
    torch.testing.assert_close(tall.rest_joints, body.rest_joints * (1.87 / body.stature))
    # Scaling is about the origin, so soles on y = 0 stay on the floor.
    assert abs(tall.lowest_rest_point() - body.lowest_rest_point() * 1.87 / body.stature) < 1e-5
    with pytest.raises(ValueError, match="stature must be positive"):
        body.scaled(0)


def test_procedural_body_is_anthropometric():
    body = procedural_body(1.80)
    j = body.rest_joints
    assert abs(float(j[J["left_hip"], 1]) / 1.80 - 0.530) < 0.01
    assert abs(float(j[J["left_knee"], 1]) / 1.80 - 0.285) < 0.01
    thigh = float((j[J["left_hip"]] - j[J["left_knee"]]).norm()) / 1.80
    assert abs(thigh - 0.245) < 0.01  # Winter: thigh 0.245 H


def test_procedural_and_default_bodies_have_similar_proportions():
    a, b = load_default_body().rest_joints, procedural_body().rest_joints
    # Same skeleton up to small anthropometric differences: within 6 cm everywhere.
    assert float((a - b).norm(dim=-1).max()) < 0.06


def test_missing_asset_falls_back_to_procedural(tmp_path, caplog):
    body = load_default_body(tmp_path / "nope.npz", stature=1.6)
    assert body.kind == "procedural" and abs(body.stature - 1.6) < 1e-6
    assert "missing" in caplog.text
