"""Rotation conversions, batched over any leading dimensions, for torch tensors and numpy arrays.

Conventions (used everywhere in genmo-live):
- axis-angle: (..., 3) radians, direction = axis, norm = angle (SMPL's pose vector form).
- quaternion: (..., 4) scalar-first (w, x, y, z). Inputs need not be unit: they are normalised.
  Outputs are unit with w >= 0.
- rotation matrix: (..., 3, 3), acting on column vectors (v' = R @ v).
- 6D: (..., 6) the first two ROWS of the matrix, [R00 R01 R02 R10 R11 R12]; back to a matrix by
  Gram–Schmidt (Zhou et al. 2019), so any 6-vector with independent halves maps to a rotation.

Every public function accepts either a torch tensor or a numpy array and returns the same kind
(numpy in, numpy out, same float dtype). The math is written once, in torch.
"""
from __future__ import annotations

import functools

import numpy as np
import torch

# Below this angle (radians) the closed forms divide by ~0; their Taylor series are exact to float64.
_SMALL_ANGLE = 1e-4

FORMS = ("axis_angle", "quat", "rot6d", "matrix")


def numpy_compatible(fn):
    """Let a torch implementation take and return numpy arrays too."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not any(isinstance(a, np.ndarray) for a in args):
            return fn(*args, **kwargs)
        tensors = [torch.from_numpy(np.asarray(a, dtype=np.float64)) if isinstance(a, np.ndarray) else a
                   for a in args]
        dtype = next(a.dtype for a in args if isinstance(a, np.ndarray))
        out_dtype = dtype if np.issubdtype(dtype, np.floating) else np.float64
        return fn(*tensors, **kwargs).numpy().astype(out_dtype, copy=False)

    return wrapper


def _safe_norm(sq: torch.Tensor):
    """(small mask, norm) from a squared norm, where small norms read as 1 so that neither the
    value nor the gradient of the closed forms divides by zero (callers use a series there)."""
    small = sq < _SMALL_ANGLE ** 2
    return small, torch.where(small, torch.ones_like(sq), sq).sqrt()


def _skew(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) -> (..., 3, 3) cross-product matrix [v]x."""
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(v.shape[:-1] + (3, 3))


@numpy_compatible
def axis_angle_to_matrix(aa):
    """Rodrigues: (..., 3) radians -> (..., 3, 3)."""
    theta2 = (aa * aa).sum(-1, keepdim=True)[..., None]
    small, safe_t = _safe_norm(theta2)
    a = torch.where(small, 1 - theta2 / 6, torch.sin(safe_t) / safe_t)
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(safe_t)) / (safe_t * safe_t))
    k = _skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(k)
    return eye + a * k + b * (k @ k)


@numpy_compatible
def quat_normalize(q):
    """(..., 4) -> unit quaternion with w >= 0 (q and -q are the same rotation)."""
    q = q / q.norm(dim=-1, keepdim=True)
    return torch.where(q[..., :1] < 0, -q, q)


@numpy_compatible
def quat_to_matrix(q):
    """(..., 4) (w, x, y, z), any non-zero norm -> (..., 3, 3)."""
    w, x, y, z = quat_normalize(q).unbind(-1)
    m = [
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ]
    return torch.stack(m, dim=-1).reshape(q.shape[:-1] + (3, 3))


# matrix_to_quat's tables (integers, so they take the matrix's float type). _DIAGONAL_SIGNS: the
# signs of m00, m11, m22 in 4w^2, 4x^2, 4y^2, 4z^2 (each 1 + those). _CANDIDATES[i]: the formula
# whose divisor is 4 * component i gives 4 * component i * (w, x, y, z) = m[first] + sign * m[second]
# (flattened indices), its i-th entry replaced by that divisor.
_DIAGONAL_SIGNS = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]])
_CANDIDATES = torch.tensor([  # (4 formulas, first / second / sign, 4 components)
    [[0, 7, 2, 3], [0, 5, 6, 1], [0, -1, -1, -1]],
    [[7, 0, 3, 2], [5, 0, 1, 6], [-1, 0, 1, 1]],
    [[2, 3, 0, 5], [6, 1, 0, 7], [-1, 1, 0, 1]],
    [[3, 6, 7, 0], [1, 2, 5, 0], [-1, 1, 1, 0]],
])


@numpy_compatible
def matrix_to_quat(m):
    """(..., 3, 3) -> (..., 4) unit (w, x, y, z), w >= 0.

    Shepperd's method: of the four candidate formulas, use the one whose divisor is largest, so
    180° rotations (where w -> 0) stay exact. Only that candidate is made, from tables: a few
    batched ops, not one per entry (the live engine converts every pose it sends).
    """
    flat = m.flatten(-2)
    terms = m.diagonal(dim1=-2, dim2=-1)[..., None, :] * _DIAGONAL_SIGNS.to(m.device)
    sq = 1 + terms[..., 0] + terms[..., 1] + terms[..., 2]  # 4*w^2, 4*x^2, 4*y^2, 4*z^2
    best = sq.argmax(-1, keepdim=True)  # (..., 1)
    r = sq.gather(-1, best).clamp_min(1e-12).sqrt()  # 2*|component|
    first, second, sign = _CANDIDATES.to(m.device)[best[..., 0]].unbind(-2)
    pairs = flat.gather(-1, first) + sign * flat.gather(-1, second)
    q = torch.where(torch.arange(4, device=m.device) == best, r ** 2, pairs) / (2 * r)
    return quat_normalize(q)


@numpy_compatible
def axis_angle_to_quat(aa):
    """(..., 3) radians -> (..., 4) unit (w, x, y, z), w >= 0."""
    theta2 = (aa * aa).sum(-1, keepdim=True)
    small, safe_t = _safe_norm(theta2)
    half_sinc = torch.where(small, 0.5 - theta2 / 48, torch.sin(safe_t / 2) / safe_t)
    half_cos = torch.where(small, 1 - theta2 / 8, torch.cos(safe_t / 2))
    return quat_normalize(torch.cat([half_cos, aa * half_sinc], dim=-1))


@numpy_compatible
def quat_to_axis_angle(q):
    """(..., 4) any non-zero norm -> (..., 3) with angle in [0, pi]."""
    q = quat_normalize(q)
    w, v = q[..., :1], q[..., 1:]
    s2 = (v * v).sum(-1, keepdim=True)  # sin(angle / 2) ** 2
    small, safe_s = _safe_norm(s2)
    # angle / sin(angle/2) -> 2 / w (1 + s^2 / 6 ...) as s -> 0 with w ~ 1
    scale = torch.where(small, 2 / w * (1 + s2 / 6), 2 * torch.atan2(safe_s, w) / safe_s)
    return v * scale


@numpy_compatible
def matrix_to_axis_angle(m):
    """(..., 3, 3) -> (..., 3), through the quaternion so 180° rotations are exact."""
    return quat_to_axis_angle(matrix_to_quat(m))


@numpy_compatible
def matrix_to_rot6d(m):
    """(..., 3, 3) -> (..., 6): the first two rows."""
    return m[..., :2, :].reshape(m.shape[:-2] + (6,))


@numpy_compatible
def rot6d_to_matrix(d6):
    """(..., 6) -> (..., 3, 3) by Gram–Schmidt on the two rows; non-orthonormal inputs are fine."""
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / a1.norm(dim=-1, keepdim=True)
    a2 = a2 - (b1 * a2).sum(-1, keepdim=True) * b1
    b2 = a2 / a2.norm(dim=-1, keepdim=True)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-2)


@numpy_compatible
def quat_multiply(a, b):
    """Hamilton product (..., 4) x (..., 4): the rotation b followed by a."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


_TO_MATRIX = {
    "axis_angle": (axis_angle_to_matrix, 1),
    "quat": (quat_to_matrix, 1),
    "rot6d": (rot6d_to_matrix, 1),
    "matrix": (lambda m: m, 2),
}


def to_matrix(rot, form: str):
    """Any rotation form (see FORMS) -> (..., 3, 3). `form` is explicit: shapes alone are ambiguous."""
    if form not in _TO_MATRIX:
        raise ValueError(f"unknown rotation form {form!r}; expected one of {FORMS}")
    fn, _ = _TO_MATRIX[form]
    return fn(rot)


def form_trailing_dims(form: str) -> int:
    """How many trailing dimensions one rotation of `form` takes: 1 for vectors, 2 for matrices."""
    if form not in _TO_MATRIX:
        raise ValueError(f"unknown rotation form {form!r}; expected one of {FORMS}")
    return _TO_MATRIX[form][1]


@numpy_compatible
def rotation_between(a, b):
    """(..., 3), (..., 3) -> (..., 3, 3): the smallest rotation turning direction a onto direction b.

    Neither needs unit length. Opposite directions get a 180° turn about an axis perpendicular to a.
    """
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    w = 1 + (a * b).sum(-1, keepdim=True)
    # Any perpendicular of a serves for a half turn: cross with whichever axis a is least along.
    helper = torch.eye(3, dtype=a.dtype, device=a.device)[a.abs().argmin(-1)]
    half_turn = torch.cat([torch.zeros_like(w), torch.linalg.cross(a, helper, dim=-1)], dim=-1)
    q = torch.where(w < 1e-7, half_turn, torch.cat([w, torch.linalg.cross(a, b, dim=-1)], dim=-1))
    return quat_to_matrix(q)


@numpy_compatible
def quat_slerp(q0, q1, t):
    """Spherical interpolation (..., 4) x (..., 4) at fraction t (...,) in [0, 1], shortest path."""
    q0, q1 = quat_normalize(q0), quat_normalize(q1)
    dot = (q0 * q1).sum(-1, keepdim=True)
    q1 = torch.where(dot < 0, -q1, q1)
    dot = dot.abs().clamp(max=1.0)
    t = t[..., None]
    theta = torch.acos(dot)
    sin = torch.sin(theta)
    close = sin < 1e-6  # nearly equal: linear interpolation is exact enough and avoids 0/0
    safe_sin = torch.where(close, torch.ones_like(sin), sin)
    w0 = torch.where(close, 1 - t, torch.sin((1 - t) * theta) / safe_sin)
    w1 = torch.where(close, t, torch.sin(t * theta) / safe_sin)
    return quat_normalize(w0 * q0 + w1 * q1)
