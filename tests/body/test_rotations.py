"""Rotation conversions: round trips, edge cases (identity, 180°, non-unit inputs), numpy == torch."""
import math

import numpy as np
import pytest
import torch

from engine.body import rotations as R


def random_axis_angle(n, seed=0, max_angle=math.pi):
    g = torch.Generator().manual_seed(seed)
    axis = torch.nn.functional.normalize(torch.randn(n, 3, generator=g, dtype=torch.float64), dim=-1)
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * max_angle
    return axis * angle


def assert_rotation(m, atol=1e-9):
    eye = torch.eye(3, dtype=m.dtype).expand_as(m)
    torch.testing.assert_close(m @ m.transpose(-1, -2), eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(m), torch.ones(m.shape[:-2], dtype=m.dtype), atol=atol, rtol=0)


def test_axis_angle_matrix_known_case():
    # 90° about +z takes +x to +y (right-handed, column vectors).
    m = R.axis_angle_to_matrix(torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64))
    torch.testing.assert_close(m @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("batch_shape", [(), (7,), (4, 5)])
def test_round_trips_batched(batch_shape):
    aa = random_axis_angle(int(np.prod(batch_shape)) or 1, seed=1, max_angle=3.1).reshape(batch_shape + (3,))
    m = R.axis_angle_to_matrix(aa)
    assert m.shape == batch_shape + (3, 3)
    assert_rotation(m)
    torch.testing.assert_close(R.matrix_to_axis_angle(m), aa, atol=1e-9, rtol=0)
    q = R.matrix_to_quat(m)
    torch.testing.assert_close(R.quat_to_matrix(q), m, atol=1e-12, rtol=0)
    torch.testing.assert_close(R.axis_angle_to_quat(aa), q, atol=1e-12, rtol=0)
    torch.testing.assert_close(R.quat_to_axis_angle(q), aa, atol=1e-9, rtol=0)
    torch.testing.assert_close(R.rot6d_to_matrix(R.matrix_to_rot6d(m)), m, atol=1e-12, rtol=0)


def test_identity_everywhere():
    zero = torch.zeros(3, dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    torch.testing.assert_close(R.axis_angle_to_matrix(zero), eye)
    torch.testing.assert_close(R.matrix_to_axis_angle(eye), zero)
    torch.testing.assert_close(R.matrix_to_quat(eye), torch.tensor([1.0, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(R.quat_to_axis_angle(torch.tensor([1.0, 0, 0, 0], dtype=torch.float64)), zero)
    torch.testing.assert_close(R.rot6d_to_matrix(R.matrix_to_rot6d(eye)), eye)


@pytest.mark.parametrize("axis", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, -2, 3)])
def test_180_degrees(axis):
    a = torch.nn.functional.normalize(torch.tensor(axis, dtype=torch.float64), dim=0)
    m = R.axis_angle_to_matrix(a * math.pi)
    torch.testing.assert_close(m @ a, a, atol=1e-12, rtol=0)  # axis fixed
    back = R.matrix_to_axis_angle(m)
    assert abs(back.norm().item() - math.pi) < 1e-9
    # The axis is recovered up to sign (a and -a give the same 180° rotation).
    assert abs(abs(torch.dot(back / math.pi, a).item()) - 1) < 1e-9
    torch.testing.assert_close(R.axis_angle_to_matrix(back), m, atol=1e-12, rtol=0)
    q = R.matrix_to_quat(m)
    assert abs(q[0].item()) < 1e-9 and abs(q.norm().item() - 1) < 1e-12


def test_small_angles_are_accurate():
    aa = torch.tensor([[1e-7, -2e-7, 3e-8], [1e-5, 0, 0]], dtype=torch.float64)
    m = R.axis_angle_to_matrix(aa)
    assert_rotation(m, atol=1e-14)
    torch.testing.assert_close(R.matrix_to_axis_angle(m), aa, atol=1e-15, rtol=1e-6)


def test_non_unit_quaternion_and_sign():
    q = torch.tensor([0.5, 0.5, 0.5, 0.5], dtype=torch.float64)
    torch.testing.assert_close(R.quat_to_matrix(q * 3.7), R.quat_to_matrix(q))
    torch.testing.assert_close(R.quat_to_matrix(-q), R.quat_to_matrix(q))
    # 120° about (1,1,1) cycles the axes: x -> y.
    torch.testing.assert_close(R.quat_to_matrix(q) @ torch.tensor([1.0, 0, 0], dtype=torch.float64),
                               torch.tensor([0.0, 1, 0], dtype=torch.float64), atol=1e-12, rtol=0)
    assert R.quat_normalize(-q * 2)[0] > 0


def test_rot6d_gram_schmidt_of_non_orthonormal_input():
    d6 = torch.tensor([2.0, 0.0, 0.0, 0.3, 5.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(R.rot6d_to_matrix(d6), torch.eye(3, dtype=torch.float64))
    g = torch.Generator().manual_seed(3)
    noisy = torch.randn(100, 6, generator=g, dtype=torch.float64)
    assert_rotation(R.rot6d_to_matrix(noisy))
    # The 6D vector is the first two rows.
    m = R.axis_angle_to_matrix(random_axis_angle(1, seed=4))[0]
    torch.testing.assert_close(R.matrix_to_rot6d(m), torch.cat([m[0], m[1]]))


def test_quat_multiply_composes_like_matrices():
    a, b = random_axis_angle(2, seed=5)
    qa, qb = R.axis_angle_to_quat(a), R.axis_angle_to_quat(b)
    torch.testing.assert_close(R.quat_to_matrix(R.quat_multiply(qa, qb)),
                               R.axis_angle_to_matrix(a) @ R.axis_angle_to_matrix(b), atol=1e-12, rtol=0)


def test_numpy_in_numpy_out_matches_torch():
    aa = random_axis_angle(10, seed=6).numpy().astype(np.float32)
    m = R.axis_angle_to_matrix(aa)
    assert isinstance(m, np.ndarray) and m.dtype == np.float32 and m.shape == (10, 3, 3)
    np.testing.assert_allclose(m, R.axis_angle_to_matrix(torch.from_numpy(aa)).numpy(), atol=1e-6)
    for fn in (R.matrix_to_quat, R.matrix_to_rot6d, R.matrix_to_axis_angle):
        out = fn(m)
        assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_allclose(R.matrix_to_axis_angle(m.astype(np.float64)), aa, atol=1e-5)


def test_gradients_are_finite_at_identity():
    aa = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    R.axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()
    d6 = torch.tensor([1.0, 0, 0, 0, 1, 0], dtype=torch.float64, requires_grad=True)
    R.rot6d_to_matrix(d6).sum().backward()
    assert torch.isfinite(d6.grad).all()


def test_to_matrix_dispatch_and_errors():
    aa = random_axis_angle(3, seed=7)
    m = R.axis_angle_to_matrix(aa)
    for form, rot in [("axis_angle", aa), ("quat", R.matrix_to_quat(m)), ("rot6d", R.matrix_to_rot6d(m)),
                      ("matrix", m)]:
        torch.testing.assert_close(R.to_matrix(rot, form), m, atol=1e-12, rtol=0)
    with pytest.raises(ValueError, match="unknown rotation form 'euler'"):
        R.to_matrix(aa, "euler")


def test_rotation_between_including_opposite_directions():
    g = torch.Generator().manual_seed(8)
    a, b = torch.randn(2, 50, 3, generator=g, dtype=torch.float64)
    m = R.rotation_between(a, b * 3.0)
    assert_rotation(m)
    torch.testing.assert_close(m @ (a / a.norm(dim=-1, keepdim=True))[..., None],
                               (b / b.norm(dim=-1, keepdim=True))[..., None], atol=1e-9, rtol=0)
    # Smallest rotation: its axis is perpendicular to both directions.
    axis = R.matrix_to_axis_angle(m)
    assert (axis * a).sum(-1).abs().max() < 1e-9
    for v in ([1.0, 0, 0], [0, 0, -2.0], [0.3, -0.5, 0.8]):
        v = torch.tensor(v, dtype=torch.float64)
        flip = R.rotation_between(v, -v)
        assert_rotation(flip)
        torch.testing.assert_close(flip @ v, -v, atol=1e-9, rtol=0)
    torch.testing.assert_close(R.rotation_between(a, a), torch.eye(3, dtype=torch.float64).expand(50, 3, 3))


def test_quat_slerp():
    q0 = R.axis_angle_to_quat(torch.tensor([0.0, 0, 0], dtype=torch.float64))
    q1 = R.axis_angle_to_quat(torch.tensor([0.0, 0, 2.0], dtype=torch.float64))
    mid = R.quat_slerp(q0, q1, torch.tensor(0.25, dtype=torch.float64))
    torch.testing.assert_close(R.quat_to_axis_angle(mid), torch.tensor([0.0, 0, 0.5], dtype=torch.float64))
    # Shortest path even when the inputs sit on opposite hemispheres.
    torch.testing.assert_close(R.quat_slerp(q0, -q1, torch.tensor(1.0, dtype=torch.float64)), R.quat_normalize(q1))
    torch.testing.assert_close(R.quat_slerp(q1, q1, torch.tensor(0.7, dtype=torch.float64)), q1)
