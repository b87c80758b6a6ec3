"""Evaluation metrics for SMPL-topology joint sequences: small pure-numpy functions.

Inputs are joint positions in metres, shape (T, J, 3) (24 SMPL joints, y-up world, 30 fps unless
an ``fps`` is given); ``pred`` and ``gt`` must have the same shape. Every metric returns one Python
float in the unit its name says (mm, %, mm/s², mm/s³).

Definitions follow the world-grounded HMR community code (WHAM / GVHMR / GENMO evaluation, which in
turn borrows SLAHMR's ``align_pcl`` and VIBE's accel error); where a choice had to be made it is
stated in the function's docstring. Alignments are Umeyama least-squares fits ``s R x + t`` of the
prediction onto the ground truth, always with a proper rotation (det R = +1, no reflection).

Frame masks
    Every metric takes an optional boolean ``mask`` of shape (T,) that selects the frames averaged
    over, so a harness can report subsets (``occluded.*``, ``missing.*``). Alignments (root,
    Procrustes, chunk, trajectory) are always computed exactly as for the unmasked metric, on all
    frames; the mask only chooses which per-frame errors enter the mean. A quantity built from
    finite differences (accel, jitter, foot displacement) counts only when every frame it spans is
    in the mask. A selection with nothing in it gives NaN (no exception, no warning).
    Frames whose ground truth is invalid are not a "subset": drop them before calling (as WHAM and
    GVHMR do), since W-/WA-MPJPE chunks and RTE use all frames they are given.

Bad inputs
    Non-finite values (NaN, inf) raise ValueError naming the argument; so do wrong shapes.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from engine.body.skeleton import FOOT_JOINTS

M_TO_MM = 1000.0

_FOOT_SIDE = np.array([0, 1, 0, 1])  # 0 = left, 1 = right, per FOOT_JOINTS entry
_IS_ANKLE = np.array([True, True, False, False])

__all__ = [
    "FOOT_JOINTS",
    "mpjpe_mm",
    "pa_mpjpe_mm",
    "w_mpjpe_mm",
    "wa_mpjpe_mm",
    "rte_pct",
    "accel_err_mm_s2",
    "jitter_mm_s3",
    "edge_jump_mm",
    "foot_skate_mm",
    "foot_skate_ratio",
    "knee_angle_err_deg",
    "pelvis_height_err_mm",
    "foot_contact_from_velocity",
    "similarity_align",
    "robust_std",
]


# ----------------------------------------------------------------------------------------------
# Validation helpers
# ----------------------------------------------------------------------------------------------

def _points(x, name: str, ndim: int = 3) -> np.ndarray:
    """float64 array of shape (..., 3) with ``ndim`` dims, all finite, else ValueError naming it."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{name}: cannot convert to a float array ({e})") from None
    if a.ndim != ndim or a.shape[-1] != 3:
        want = "(T, J, 3)" if ndim == 3 else "(T, 3)"
        raise ValueError(f"{name}: expected shape {want}, got {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name}: contains {bad} NaN/inf value(s)")
    return a


def _pair(pred, gt, pred_name: str = "pred", gt_name: str = "gt", ndim: int = 3):
    p = _points(pred, pred_name, ndim)
    g = _points(gt, gt_name, ndim)
    if p.shape != g.shape:
        raise ValueError(f"{pred_name} shape {p.shape} != {gt_name} shape {g.shape}")
    return p, g


def _frame_mask(mask, T: int, name: str = "mask") -> np.ndarray:
    """Boolean (T,) frame selection; None selects every frame."""
    if mask is None:
        return np.ones(T, dtype=bool)
    m = np.asarray(mask)
    if m.shape != (T,):
        raise ValueError(f"{name}: expected shape ({T},), got {m.shape}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or not np.all(np.isin(m, (0, 1))):
            raise ValueError(f"{name}: must be boolean (or 0/1)")
        m = m.astype(bool)
    return m


def _window_mask(frame_mask: np.ndarray, span: int) -> np.ndarray:
    """valid[t] for t in [0, T-span]: every frame of frames t..t+span-1 is selected. Shape (T-span+1,)."""
    T = frame_mask.shape[0]
    n = T - span + 1
    if n <= 0:
        return np.zeros(0, dtype=bool)
    valid = np.ones(n, dtype=bool)
    for k in range(span):
        valid &= frame_mask[k:k + n]
    return valid


def _masked_mean(values: np.ndarray, valid: np.ndarray) -> float:
    """Mean of values[valid] (valid broadcast along the leading axis); NaN when nothing is selected."""
    sel = values[valid]
    if sel.size == 0:
        return float("nan")
    return float(sel.mean())


def _root_of(x: np.ndarray, root) -> np.ndarray:
    """(T, 1, 3) root position: joint ``root`` or the mean of the joints listed in it."""
    idx = [root] if np.isscalar(root) else list(root)
    return x[:, idx].mean(axis=1, keepdims=True)


# ----------------------------------------------------------------------------------------------
# Alignment
# ----------------------------------------------------------------------------------------------

def similarity_align(src, dst, scale: bool = True):
    """Least-squares ``s R src + t ≈ dst`` (Umeyama 1991), batched over leading dims.

    src, dst: (..., N, 3). Returns s (...), R (..., 3, 3) a proper rotation (no reflection), and
    t (..., 3). With ``scale=False`` s is 1 (rigid fit). When src has (numerically) no spread the
    scale is undetermined and s = 1 is returned; R is then meaningless but harmless (x0 = 0).
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s = src.mean(axis=-2)
    mu_d = dst.mean(axis=-2)
    x0 = src - mu_s[..., None, :]
    y0 = dst - mu_d[..., None, :]
    n = src.shape[-2]
    cov = np.einsum("...ni,...nj->...ij", y0, x0) / n  # Σ y xᵀ / N
    U, D, Vh = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(U) * np.linalg.det(Vh))  # ±1: orthogonal factors
    S = np.ones(D.shape)
    S[..., 2] = d
    R = np.einsum("...ij,...j,...jk->...ik", U, S, Vh)
    if scale:
        var_s = (x0 ** 2).sum(axis=(-1, -2)) / n
        tiny = var_s <= 1e-18
        s = np.where(tiny, 1.0, (D * S).sum(axis=-1) / np.where(tiny, 1.0, var_s))
    else:
        s = np.ones(D.shape[:-1])
    t = mu_d - s[..., None] * np.einsum("...ij,...j->...i", R, mu_s)
    return s, R, t


def _apply(s, R, t, x):
    """s R x + t for x (..., N, 3) with s (...), R (..., 3, 3), t (..., 3)."""
    return s[..., None, None] * np.einsum("...ij,...nj->...ni", R, x) + t[..., None, :]


def _per_joint_err(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(T, J) Euclidean distances."""
    return np.linalg.norm(a - b, axis=-1)


# ----------------------------------------------------------------------------------------------
# Camera/body-frame pose metrics
# ----------------------------------------------------------------------------------------------

def mpjpe_mm(pred, gt, mask=None, root: int | Sequence[int] = 0) -> float:
    """MPJPE (mm): per frame, subtract each sequence's own root (joint ``root``; default 0 = pelvis;
    a sequence of indices uses their mean, e.g. (1, 2) = mid-hips as GVHMR's 3DPW/EMDB eval),
    then mean Euclidean joint error over the J joints; averaged over the selected frames."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    err = _per_joint_err(p - _root_of(p, root), g - _root_of(g, root)).mean(axis=1)
    return _masked_mean(err, m) * M_TO_MM


def pa_mpjpe_mm(pred, gt, mask=None) -> float:
    """PA-MPJPE (mm): per frame, similarity Procrustes (scale, proper rotation, translation; no
    reflection) of pred's J joints onto gt's, then mean joint error; averaged over selected frames.
    (Invariant to root alignment, so none is done first.)"""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    s, R, t = similarity_align(p, g, scale=True)
    err = _per_joint_err(_apply(s, R, t, p), g).mean(axis=1)
    return _masked_mean(err, m) * M_TO_MM


# ----------------------------------------------------------------------------------------------
# World-frame metrics
# ----------------------------------------------------------------------------------------------

def _chunked_world_err(p: np.ndarray, g: np.ndarray, chunk: int, first_two: bool, scale: bool):
    T = p.shape[0]
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    err = np.empty(T)
    for start in range(0, T, chunk):
        end = min(T, start + chunk)
        pc, gc = p[start:end], g[start:end]
        fit_p, fit_g = (pc[:2], gc[:2]) if first_two else (pc, gc)
        s, R, t = similarity_align(fit_p.reshape(-1, 3), fit_g.reshape(-1, 3), scale=scale)
        aligned = _apply(s, R, t, pc.reshape(-1, 3)).reshape(pc.shape)
        err[start:end] = _per_joint_err(aligned, gc).mean(axis=1)
    return err


def w_mpjpe_mm(pred, gt, chunk: int = 100, mask=None, scale: bool = True) -> float:
    """W-MPJPE100 (mm), world joints: the sequence is cut into consecutive chunks of ``chunk``
    frames; each pred chunk is mapped onto gt by the transform fitted on the joints of the chunk's
    FIRST TWO frames only, then mean joint error per frame, averaged over the selected frames.

    The fit is a SIMILARITY (scale + rotation + translation), as in the reference code (WHAM /
    GVHMR ``first_align_joints`` call SLAHMR's ``align_pcl`` with its default, scale free); pass
    ``scale=False`` for a strictly rigid fit. A final shorter chunk (T not a multiple of ``chunk``)
    is evaluated as its own chunk, like the reference (a 1-frame chunk fits on that one frame).
    Every frame weighs the same in the mean, whatever its chunk's length."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    if p.shape[0] == 0:
        return float("nan")
    err = _chunked_world_err(p, g, chunk, first_two=True, scale=scale)
    return _masked_mean(err, m) * M_TO_MM


def wa_mpjpe_mm(pred, gt, chunk: int = 100, mask=None, scale: bool = True) -> float:
    """WA-MPJPE100 (mm), world joints: chunks as in ``w_mpjpe_mm``; each whole pred chunk is mapped
    onto gt by ONE similarity transform (scale + rotation + translation; reference
    ``global_align_joints``) fitted on all its frames and joints together; then mean joint error
    per frame, averaged over the selected frames. ``scale=False`` gives a rigid fit. A final
    shorter chunk is its own chunk."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    if p.shape[0] == 0:
        return float("nan")
    err = _chunked_world_err(p, g, chunk, first_two=False, scale=scale)
    return _masked_mean(err, m) * M_TO_MM


def rte_pct(pred_root, gt_root, mask=None, min_travel: float = 1e-3) -> float:
    """Root translation error (%), on root (pelvis) trajectories of shape (T, 3), e.g. joints[:, 0].

    The whole pred trajectory is RIGIDLY aligned to gt (proper rotation + translation, NO scale:
    the reference GVHMR/WHAM ``compute_rte`` uses ``align_pcl(..., fixed_scale=True)``), using all
    T frames; per frame, the Euclidean distance to gt is divided by the gt trajectory's total
    travelled 3-D path length Σ‖gt[t+1] − gt[t]‖ and ×100; averaged over the selected frames.
    Returns NaN when the gt travelled distance is below ``min_travel`` metres (a subject standing
    still has no meaningful RTE) or when nothing is selected.
    """
    p, g = _pair(pred_root, gt_root, "pred_root", "gt_root", ndim=2)
    m = _frame_mask(mask, p.shape[0])
    travel = float(np.linalg.norm(np.diff(g, axis=0), axis=-1).sum()) if len(g) > 1 else 0.0
    if not travel >= min_travel:
        return float("nan")
    s, R, t = similarity_align(p, g, scale=False)
    err = np.linalg.norm(_apply(s, R, t, p) - g, axis=-1)
    return _masked_mean(err / travel, m) * 100.0


# ----------------------------------------------------------------------------------------------
# Smoothness metrics
# ----------------------------------------------------------------------------------------------

def accel_err_mm_s2(pred, gt, fps: float = 30.0, mask=None, root: int | Sequence[int] = 0) -> float:
    """Acceleration error (mm/s²), as HMR/VIBE/GVHMR: both sequences root-aligned per frame (joint
    ``root``, default 0 = pelvis, as mpjpe_mm); per joint, second finite difference
    a_t = x_{t-1} − 2 x_t + x_{t+1} (× fps²) of pred and of gt; the norm of their difference is
    averaged over joints, then over the centre frames t whose three frames t-1, t, t+1 are all
    selected. NaN with fewer than 3 frames. (VIBE-era tables quote mm/frame²: divide ours by fps².)"""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    if p.shape[0] < 3:
        return float("nan")
    p = p - _root_of(p, root)
    g = g - _root_of(g, root)
    ap = p[:-2] - 2.0 * p[1:-1] + p[2:]
    ag = g[:-2] - 2.0 * g[1:-1] + g[2:]
    err = _per_joint_err(ap, ag).mean(axis=1) * (fps ** 2)
    return _masked_mean(err, _window_mask(m, 3)) * M_TO_MM


def jitter_mm_s3(pred, fps: float = 30.0, mask=None) -> float:
    """Jitter (mm/s³): norm of the third finite difference (jerk)
    x_{t+3} − 3 x_{t+2} + 3 x_{t+1} − x_t, × fps³, of pred's WORLD joints (no alignment), averaged
    over joints, then over windows whose four frames are all selected. NaN with fewer than 4
    frames. GVHMR tables quote jitter in units of 10 m/s³: theirs = ours / 10 000."""
    p = _points(pred, "pred")
    m = _frame_mask(mask, p.shape[0])
    if p.shape[0] < 4:
        return float("nan")
    jerk = p[3:] - 3.0 * p[2:-1] + 3.0 * p[1:-2] - p[:-3]
    err = np.linalg.norm(jerk, axis=-1).mean(axis=1) * (fps ** 3)
    return _masked_mean(err, _window_mask(m, 4)) * M_TO_MM


# SMPL (hip, knee, ankle) of each leg, for knee angles.
KNEE_CHAINS = ((1, 4, 7), (2, 5, 8))


def knee_angles_deg(x: np.ndarray) -> np.ndarray:
    """(T, 24, 3) joints -> (T, 2) the angle at each knee between thigh and shin, degrees
    (180 = straight, 90 = a right angle, as when seated)."""
    out = []
    for hip, knee, ankle in KNEE_CHAINS:
        a, b = x[:, hip] - x[:, knee], x[:, ankle] - x[:, knee]
        cos = (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-12)
        out.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    return np.stack(out, -1)


def knee_angle_err_deg(pred, gt, mask=None) -> float:
    """Knee angle error (degrees): per frame and knee, |pred's angle between thigh and shin - gt's|,
    averaged over both knees and the selected frames. Needs no alignment: an angle is the same in
    any frame of reference. Says whether legs the camera does not see sit, stand or kneel."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    return _masked_mean(np.abs(knee_angles_deg(p) - knee_angles_deg(g)).mean(axis=1), m)


def pelvis_height_err_mm(pred, gt, mask=None) -> float:
    """Pelvis height error (mm): per frame |pred's pelvis height - gt's| above the floor (y = 0 in
    both WORLD frames, y up), averaged over the selected frames: seated, standing or crouched, told
    apart by how high the body is, which no root-relative metric sees."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    return _masked_mean(np.abs(p[:, 0, 1] - g[:, 0, 1]), m) * M_TO_MM


def pelvis_height_bias_mm(pred, gt, mask=None) -> float:
    """Pelvis height bias (mm): per frame pred's pelvis height - gt's above the floor, signed,
    averaged over the selected frames. Negative: the body sits lower than it is (a standing
    person read as a slight crouch); pelvis_height_err_mm says how far, this which way."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    return _masked_mean(p[:, 0, 1] - g[:, 0, 1], m) * M_TO_MM


def edge_jump_mm(pred, gt, mask=None) -> float:
    """How much a span's edges jolt (mm): at every frame t where the mask switches on or off, the
    largest step any joint of pred takes from t-1 to t, less the ground truth's largest step there
    (the person's own motion), averaged over the edges. ~0 is continuous; positive, a jump the
    person did not make. World joints, no alignment (steps do not depend on it). NaN without an
    edge (no mask, or one that selects every frame or none)."""
    p, g = _pair(pred, gt)
    m = _frame_mask(mask, p.shape[0])
    edges = np.flatnonzero(m[1:] != m[:-1]) + 1
    if not len(edges):
        return float("nan")
    steps = [np.linalg.norm(x[edges] - x[edges - 1], axis=-1).max(axis=-1) for x in (p, g)]
    return float((steps[0] - steps[1]).mean()) * M_TO_MM


# ----------------------------------------------------------------------------------------------
# Foot skating
# ----------------------------------------------------------------------------------------------

def _foot_contact(p: np.ndarray, contact, floor_y: float, height_thresh) -> np.ndarray:
    """(T, 4) boolean contact for FOOT_JOINTS, from labels or from predicted heights."""
    T = p.shape[0]
    if contact is None:
        ht = np.broadcast_to(np.asarray(height_thresh, dtype=np.float64), (2,))
        thresh = np.where(_IS_ANKLE, ht[0], ht[1])
        return (p[:, list(FOOT_JOINTS), 1] - floor_y) < thresh
    c = np.asarray(contact)
    if np.issubdtype(c.dtype, np.floating):
        if not np.all(np.isfinite(c)):
            raise ValueError("contact: contains NaN/inf value(s)")
        c = c > 0.5
    elif c.dtype != bool:
        c = c.astype(bool)
    if c.shape == (T,):
        return np.repeat(c[:, None], 4, axis=1)
    if c.shape == (T, 2):
        return c[:, _FOOT_SIDE]
    if c.shape == (T, 4):
        return c
    raise ValueError(f"contact: expected shape ({T},), ({T}, 2) or ({T}, 4), got {c.shape}")


def _foot_disp(pred, contact, floor_y, height_thresh, mask):
    """Horizontal (x, z) per-frame displacement (T-1, 4) of the foot joints and which count."""
    p = _points(pred, "pred")
    if p.shape[1] <= max(FOOT_JOINTS):
        raise ValueError(f"pred: needs SMPL joints {FOOT_JOINTS}, has only {p.shape[1]} joints")
    T = p.shape[0]
    m = _frame_mask(mask, T)
    c = _foot_contact(p, contact, floor_y, height_thresh)
    feet = p[:, list(FOOT_JOINTS)][..., [0, 2]]  # (T, 4, 2) horizontal, y-up world
    disp = np.linalg.norm(np.diff(feet, axis=0), axis=-1)  # (T-1, 4)
    counts = c[:-1] & c[1:] & _window_mask(m, 2)[:, None]
    return disp, counts


def foot_skate_mm(pred, contact=None, fps: float = 30.0, floor_y: float = 0.0,
                  height_thresh: float | tuple[float, float] = (0.10, 0.05), mask=None) -> float:
    """Foot skating (mm per 1/30 s): mean HORIZONTAL (x, z; y-up world) displacement of the foot
    joints (SMPL 7, 8 ankles; 10, 11 feet/toes), each joint separately, over the frame pairs
    (t, t+1) where that joint is in contact at both t and t+1 and both frames are selected.

    Contact: ``contact`` labels when given (ground truth preferred; boolean or 0/1, float values
    are thresholded at 0.5) of shape (T, 4) per FOOT_JOINTS order [L ankle, R ankle, L toe,
    R toe], (T, 2) per foot [left, right] (a foot's ankle and toe share it) or (T,) for all four.
    Without labels: a joint is in contact when its predicted height above ``floor_y`` is below
    ``height_thresh`` = (ankle, toe) metres, default (0.10, 0.05) (SMPL rest heights are about
    0.07-0.09 m for the ankle, 0.02-0.04 m for the foot joint); a scalar applies to both.
    See also foot_contact_from_velocity (GVHMR-style labels from gt foot speed).

    Units: displacement per frame × fps/30, i.e. mm/frame at 30 fps (GVHMR's FS convention) and
    comparable across frame rates. NaN when no pair counts.
    """
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    disp, counts = _foot_disp(pred, contact, floor_y, height_thresh, mask)
    return _masked_mean(disp, counts) * M_TO_MM * (fps / 30.0)


def foot_skate_ratio(pred, contact=None, fps: float = 30.0, floor_y: float = 0.0,
                     height_thresh: float | tuple[float, float] = (0.10, 0.05),
                     speed_thresh: float = 0.3, mask=None) -> float:
    """Fraction in [0, 1] of the (frame pair, foot joint) items counted by foot_skate_mm (same
    contact and mask rules) whose horizontal speed exceeds ``speed_thresh`` m/s (default 0.3 m/s =
    1 cm/frame at 30 fps, the speed GVHMR uses to call a foot static). NaN when none counts."""
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    disp, counts = _foot_disp(pred, contact, floor_y, height_thresh, mask)
    return _masked_mean((disp * fps > speed_thresh).astype(np.float64), counts)


def foot_contact_from_velocity(joints, fps: float = 30.0, speed_thresh: float = 0.3) -> np.ndarray:
    """(T, 4) boolean contact labels for FOOT_JOINTS from (ground-truth) joint speed: joint static
    at frame t when its 3-D speed, by central difference (one-sided at the ends), is below
    ``speed_thresh`` m/s (default 0.3 m/s = GVHMR's 1 cm/frame at 30 fps; GEM's static labels use
    0.15 m/s). Feed the result to foot_skate_mm as ``contact``. All False when T < 2."""
    x = _points(joints, "joints")
    if x.shape[1] <= max(FOOT_JOINTS):
        raise ValueError(f"joints: needs SMPL joints {FOOT_JOINTS}, has only {x.shape[1]} joints")
    f = x[:, list(FOOT_JOINTS)]
    T = f.shape[0]
    if T < 2:
        return np.zeros((T, 4), dtype=bool)
    vel = np.gradient(f, axis=0) * fps  # central inside, one-sided at both ends
    return np.linalg.norm(vel, axis=-1) < speed_thresh


def robust_std(x) -> float:
    """1.4826 × the median absolute deviation of the finite values of x (the std for Gaussian data,
    unmoved by outliers); NaN when there are none."""
    a = np.asarray(x, dtype=np.float64)
    a = a[np.isfinite(a)]
    return 1.4826 * float(np.median(np.abs(a - np.median(a)))) if a.size else float("nan")
