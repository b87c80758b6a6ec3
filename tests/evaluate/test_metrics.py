"""engine.evaluate.metrics: hand-computed values on synthetic sequences (deterministic, numpy only)."""
import math

import numpy as np
import pytest

from engine.evaluate import metrics as M

J = 24
FPS = 30.0


def make_seq(T=40, seed=0):
    """A non-degenerate (T, 24, 3) 'gt' sequence: random body-sized pose, moving and deforming."""
    rng = np.random.default_rng(seed)
    base = rng.normal(scale=0.3, size=(J, 3))
    wobble = rng.normal(scale=0.05, size=(T, J, 3))
    walk = np.zeros((T, 1, 3))
    walk[:, 0, 2] = np.arange(T) * 0.04
    return base[None] + wobble + walk


def rot(axis, angle):
    axis = np.asarray(axis, dtype=float)
    axis = axis / np.linalg.norm(axis)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * K @ K


def transform(x, R, t=(0, 0, 0), s=1.0):
    return s * np.einsum("ij,...j->...i", R, x) + np.asarray(t, dtype=float)


R1 = rot([0.3, 1.0, -0.2], 0.7)


# --------------------------------------------------------------------------------------- MPJPE

def test_mpjpe_constant_offset_is_removed_by_root_alignment():
    gt = make_seq()
    assert M.mpjpe_mm(gt + np.array([0.1, -0.2, 0.3]), gt) == pytest.approx(0.0, abs=1e-9)


def test_mpjpe_single_joint_offset_is_joint_averaged():
    gt = make_seq()
    pred = gt.copy()
    pred[:, 5] += [0.03, 0.04, 0.0]  # 50 mm on one non-root joint
    assert M.mpjpe_mm(pred, gt) == pytest.approx(50.0 / J, abs=1e-9)


def test_mpjpe_root_only_offset_moves_all_other_joints():
    gt = make_seq()
    pred = gt.copy()
    pred[:, 0] += [0.0, 0.0, 0.02]  # 20 mm root error: after root alignment 23 joints are off by 20
    assert M.mpjpe_mm(pred, gt) == pytest.approx(20.0 * (J - 1) / J, abs=1e-9)


def test_mpjpe_root_choice_mid_hips():
    gt = make_seq()
    pred = gt.copy()
    pred[:, 0] += [0.0, 0.024, 0.0]  # with mid-hip (1, 2) root only joint 0 is off
    assert M.mpjpe_mm(pred, gt, root=(1, 2)) == pytest.approx(24.0 / J, abs=1e-9)


def test_mpjpe_nonzero_when_rotated():
    gt = make_seq()
    assert M.mpjpe_mm(transform(gt, R1), gt) > 10.0


# ------------------------------------------------------------------------------------ PA-MPJPE

def test_pa_mpjpe_zero_under_similarity_transform():
    gt = make_seq()
    pred = transform(gt, R1, t=[1.0, -2.0, 0.5], s=1.3)
    assert M.pa_mpjpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-6)
    assert M.mpjpe_mm(pred, gt) > 10.0


def test_pa_mpjpe_per_frame_alignment_and_no_reflection():
    gt = make_seq(T=6)
    pred = np.stack([transform(gt[t], rot([t + 1, 1, 0], 0.3 * t), t=[t, 0, 0], s=1 + 0.1 * t)
                     for t in range(6)])
    assert M.pa_mpjpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-6)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a reflection is not allowed to fit away
    assert M.pa_mpjpe_mm(mirrored, gt) > 10.0


def test_pa_mpjpe_known_value_centred_scale_error():
    # A planar cross; pred's x-arm is 20% longer. By symmetry R = I, t = 0 and the isotropic scale
    # minimises 2(1.2s − 1)² + 2(s − 1)², i.e. s = 2.2 / 2.44.
    gt = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])  # a cross
    pred = gt.copy()
    pred[0, :2, 0] *= 1.2  # x-arm 20% longer, y-arm unchanged
    # best isotropic scale s: minimises 2(1.2s-1)^2 + 2(s-1)^2 -> s = 2.2/2.44; rotation stays I.
    s = 2.2 / 2.44
    expected = (2 * abs(1.2 * s - 1) + 2 * abs(s - 1)) / 4 * 1000
    assert M.pa_mpjpe_mm(pred, gt) == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------ W-/WA-MPJPE

def drift_after_two(gt, step=np.array([0.001, 0.0, 0.0])):
    """pred[t] = gt[t] + step·(t−1) for t ≥ 2 (frames 0 and 1 exact)."""
    T = gt.shape[0]
    k = np.clip(np.arange(T) - 1, 0, None).astype(float)
    return gt + k[:, None, None] * step


def test_w_and_wa_mpjpe_zero_under_global_rigid_and_similarity():
    gt = make_seq(T=230)
    for pred in (transform(gt, R1, t=[3, 0, -1]), transform(gt, R1, t=[3, 0, -1], s=0.8)):
        assert M.w_mpjpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-6)
        assert M.wa_mpjpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-6)
    pred = transform(gt, R1, t=[3, 0, -1])
    assert M.w_mpjpe_mm(pred, gt, scale=False) == pytest.approx(0.0, abs=1e-6)
    assert M.wa_mpjpe_mm(pred, gt, scale=False) == pytest.approx(0.0, abs=1e-6)


def test_w_mpjpe_drift_after_first_two_frames():
    gt = make_seq(T=100)
    pred = drift_after_two(gt)  # 1 mm/frame from frame 2: errors 0,0,1,2,...,98 mm
    expected = sum(range(1, 99)) / 100  # 48.51
    assert M.w_mpjpe_mm(pred, gt) == pytest.approx(expected, abs=1e-6)
    assert M.w_mpjpe_mm(pred, gt, scale=False) == pytest.approx(expected, abs=1e-6)


def test_w_mpjpe_chunks_are_independent_and_short_last_chunk():
    for T in (200, 130):
        gt = make_seq(T=T, seed=3)
        pred = gt.copy()
        pred[:100] = drift_after_two(gt[:100])
        pred[100:] = transform(gt[100:], R1, t=[0.5, 0.1, 2.0])  # chunk 2 (full or short): rigid
        expected = sum(range(1, 99)) / T  # every frame weighs the same
        assert M.w_mpjpe_mm(pred, gt) == pytest.approx(expected, abs=1e-6)


def test_w_mpjpe_one_frame_last_chunk():
    gt = make_seq(T=101, seed=4)
    pred = gt.copy()
    pred[100] = transform(gt[100], R1, t=[1, 2, 3])
    assert M.w_mpjpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-6)


def test_wa_mpjpe_alternating_offset():
    # Static pose; pred alternately shifted ±d along x. The cross terms cancel, so the best rotation
    # is I and the translation 0; rigid: every joint is off by d exactly.
    T, d = 100, 0.01
    rng = np.random.default_rng(7)
    g0 = rng.normal(scale=0.3, size=(J, 3))
    gt = np.repeat(g0[None], T, axis=0)
    sign = np.where(np.arange(T) % 2 == 0, 1.0, -1.0)
    pred = gt + sign[:, None, None] * np.array([d, 0, 0])
    assert M.wa_mpjpe_mm(pred, gt, scale=False) == pytest.approx(d * 1000, abs=1e-6)
    # Similarity: s = Σ|g0c|² / (Σ|g0c|² + J d²) (R = I, t = c(1 − s)); error |(1−s) g0c − s e|.
    g0c = g0 - g0.mean(axis=0)
    s = (g0c ** 2).sum() / ((g0c ** 2).sum() + J * d * d)
    e = np.array([d, 0, 0])
    expected = 0.5 * (np.linalg.norm((1 - s) * g0c - s * e, axis=1).mean()
                      + np.linalg.norm((1 - s) * g0c + s * e, axis=1).mean()) * 1000
    assert M.wa_mpjpe_mm(pred, gt) == pytest.approx(expected, rel=1e-9)
    assert M.wa_mpjpe_mm(pred, gt) < d * 1000


# ----------------------------------------------------------------------------------------- RTE

def straight_walk(T=101, length=10.0):
    root = np.zeros((T, 3))
    root[:, 0] = np.linspace(0.0, length, T)
    root[:, 1] = 0.9
    return root


def test_rte_identical_and_rigidly_moved_is_zero():
    gt = make_seq(T=60)[:, 0]
    assert M.rte_pct(gt, gt) == pytest.approx(0.0, abs=1e-9)
    assert M.rte_pct(transform(gt, R1, t=[5, -1, 2]), gt) == pytest.approx(0.0, abs=1e-6)


def test_rte_scale_drift_on_straight_10m_walk():
    gt = straight_walk()  # x_t = 0.1 t, t = 0..100, 10 m travelled
    pred = gt.copy()
    pred[:, 0] *= 1.1  # 10% overshoot, no scale in the alignment
    # best rigid fit: R = I, t = mean(gt) − mean(pred) -> error_t = 0.1 |x_t − 5| m
    err = 0.1 * np.abs(0.1 * np.arange(101) - 5.0)  # mean = 0.1 · 2550 / 1010 = 0.25247...
    assert err.mean() == pytest.approx(0.1 * 0.1 * 2 * 1275 / 101)
    assert M.rte_pct(pred, gt) == pytest.approx(err.mean() / 10.0 * 100, rel=1e-9)  # 2.5247 %


def test_rte_no_travel_is_nan():
    gt = np.zeros((20, 3))
    assert math.isnan(M.rte_pct(gt + 0.1, gt))
    assert math.isnan(M.rte_pct(gt[:1], gt[:1]))


def test_rte_mask_selects_frames():
    gt = straight_walk()
    pred = gt.copy()
    pred[:, 0] *= 1.1
    err = 0.1 * np.abs(0.1 * np.arange(101) - 5.0) / 10.0 * 100
    mask = np.arange(101) < 30
    assert M.rte_pct(pred, gt, mask=mask) == pytest.approx(err[:30].mean(), rel=1e-9)


# --------------------------------------------------------------------------------------- accel

def test_accel_constant_velocity_drift_is_zero():
    gt = make_seq(T=50)
    drift = np.arange(50)[:, None, None] * np.array([0.01, 0.0, 0.005])  # drift per frame, all joints
    assert M.accel_err_mm_s2(gt + drift, gt) == pytest.approx(0.0, abs=1e-6)
    joint_drift = gt.copy()
    joint_drift[:, 4] += np.arange(50)[:, None] * np.array([0.0, 0.002, 0.0])  # one joint, linear
    assert M.accel_err_mm_s2(joint_drift, gt) == pytest.approx(0.0, abs=1e-6)


def test_accel_single_frame_spike():
    T, k, d = 20, 7, 0.01
    gt = make_seq(T=T)
    pred = gt.copy()
    pred[k, 3] += [0.0, 0.0, d]
    # second differences centred at k−1, k, k+1 see +d, −2d, +d on one joint of J: (d + 2d + d)/J
    # summed over the T−2 windows, × fps² and m→mm.
    expected = 4 * d / J / (T - 2) * FPS ** 2 * 1000
    assert M.accel_err_mm_s2(pred, gt, fps=FPS) == pytest.approx(expected, rel=1e-9)
    # a spike of every joint (root included) is a pure root motion: removed by root alignment
    spiked = gt.copy()
    spiked[k] += [0.0, d, 0.0]
    assert M.accel_err_mm_s2(spiked, gt) == pytest.approx(0.0, abs=1e-6)


def test_edge_jump_is_the_step_at_a_span_edge_beyond_the_persons_own():
    gt = np.repeat(make_seq(T=1), 30, axis=0)  # standing still
    span = np.zeros(30, dtype=bool)
    span[10:20] = True
    pred = gt.copy()
    pred[10:20] += [0.2, 0.0, 0.0]  # the span drawn 20 cm to the side: a jump in and a jump out
    assert M.edge_jump_mm(pred, gt, span) == pytest.approx(200.0)
    assert M.edge_jump_mm(gt, gt, span) == pytest.approx(0.0)
    moving = make_seq(T=30)  # the person's own steps at the edges do not count
    assert M.edge_jump_mm(moving, moving, span) == pytest.approx(0.0)
    assert math.isnan(M.edge_jump_mm(pred, gt)) and math.isnan(M.edge_jump_mm(pred, gt, np.zeros(30, bool)))


def test_accel_mask_drops_windows_touching_unselected_frames():
    T, k, d = 20, 7, 0.01
    gt = make_seq(T=T)
    pred = gt.copy()
    pred[k, 3] += [0.0, 0.0, d]
    mask = np.ones(T, dtype=bool)
    mask[k] = False  # removes the windows centred at k−1, k, k+1: all that saw the spike
    assert M.accel_err_mm_s2(pred, gt, mask=mask) == pytest.approx(0.0, abs=1e-6)
    only = np.zeros(T, dtype=bool)
    only[k - 1:k + 2] = True  # exactly one window (centred at k): 2d/J
    assert M.accel_err_mm_s2(pred, gt, mask=only) == pytest.approx(2 * d / J * FPS ** 2 * 1000, rel=1e-9)


# -------------------------------------------------------------------------------------- jitter

def poly_motion(coeffs, T=60):
    t = np.arange(T) / FPS
    x = sum(c * t ** i for i, c in enumerate(coeffs))
    seq = np.zeros((T, J, 3))
    seq[..., 0] = x[:, None]
    seq += np.linspace(0, 1, J)[None, :, None]  # some static body shape
    return seq


def test_jitter_zero_for_linear_and_quadratic():
    assert M.jitter_mm_s3(poly_motion([0.2, 1.5])) == pytest.approx(0.0, abs=1e-3)
    assert M.jitter_mm_s3(poly_motion([0.2, 1.5, -4.9])) == pytest.approx(0.0, abs=1e-3)


def test_jitter_cubic():
    # x = t³ m: third derivative 6 m/s³ everywhere (exact for the finite difference too)
    assert M.jitter_mm_s3(poly_motion([0, 0, 0, 1.0]), fps=FPS) == pytest.approx(6000.0, rel=1e-6)


def test_jitter_mask_windows():
    seq = poly_motion([0.0, 1.0], T=30)
    seq[10, 2, 1] += 0.001  # one-joint blip: windows starting 7..10 see it
    assert M.jitter_mm_s3(seq) > 0
    mask = np.ones(30, dtype=bool)
    mask[10] = False
    assert M.jitter_mm_s3(seq, mask=mask) == pytest.approx(0.0, abs=1e-3)
    # a single window (frames 7..10) sees coefficient −1 on the blip: |0.001|/J per window
    only = np.zeros(30, dtype=bool)
    only[7:11] = True
    assert M.jitter_mm_s3(seq, mask=only) == pytest.approx(0.001 / J * FPS ** 3 * 1000, rel=1e-6)


# ---------------------------------------------------------------------------------- foot skate

def feet_seq(T=30, slide_left=0.0):
    """Body with the left foot planted (ankle 0.08 m, toe 0.02 m high) sliding ``slide_left`` m
    per frame along x, and the right foot lifted 0.3 m (no height contact)."""
    seq = np.zeros((T, J, 3))
    seq[:, :, 1] = 1.0
    t = np.arange(T)
    for j, (x, y, z) in {7: (0.1, 0.08, 0.0), 10: (0.1, 0.02, 0.12),
                         8: (-0.1, 0.38, 0.0), 11: (-0.1, 0.32, 0.12)}.items():
        seq[:, j] = [x, y, z]
    seq[:, [7, 10], 0] += slide_left * t[:, None]
    return seq


def test_foot_skate_planted_is_zero():
    assert M.foot_skate_mm(feet_seq()) == pytest.approx(0.0, abs=1e-12)


def test_foot_skate_sliding_1cm_per_frame():
    seq = feet_seq(slide_left=0.01)
    assert M.foot_skate_mm(seq) == pytest.approx(10.0, rel=1e-9)  # only the left foot counts
    # vertical motion is not skating
    bob = feet_seq()
    bob[:, 10, 1] += 0.01 * (np.arange(30) % 2)
    assert M.foot_skate_mm(bob) == pytest.approx(0.0, abs=1e-12)


def test_foot_skate_contact_labels_and_fps():
    seq = feet_seq(slide_left=0.01)
    seq[:, [8, 11], 1] -= 0.3  # right foot also on the floor, not moving
    assert M.foot_skate_mm(seq) == pytest.approx(5.0, rel=1e-9)  # 4 joints, 2 sliding
    left_only = np.zeros((30, 2), dtype=bool)
    left_only[:, 0] = True
    assert M.foot_skate_mm(seq, contact=left_only) == pytest.approx(10.0, rel=1e-9)
    per_joint = np.zeros((30, 4))
    per_joint[:, 2] = 1.0  # left toe only, given as floats
    assert M.foot_skate_mm(seq, contact=per_joint) == pytest.approx(10.0, rel=1e-9)
    # 60 fps data sliding 1 cm/frame is twice as fast: 20 mm per 1/30 s
    assert M.foot_skate_mm(seq, contact=left_only, fps=60) == pytest.approx(20.0, rel=1e-9)
    # no contact anywhere -> NaN
    assert math.isnan(M.foot_skate_mm(seq, contact=np.zeros(30, dtype=bool)))


def test_foot_skate_pairs_need_contact_on_both_frames_and_mask():
    seq = feet_seq(slide_left=0.01)
    seq[15:, [7, 10], 1] += 0.5  # left foot lifts at frame 15: pairs (0,1)..(13,14) count
    seq[14:, 10, 0] += 0.05  # a 5 cm jump between frames 13 and 14 on the toe, still in contact
    expected = (14 * 10 + 13 * 10 + 60) / 28
    assert M.foot_skate_mm(seq) == pytest.approx(expected, rel=1e-9)
    mask = np.ones(30, dtype=bool)
    mask[14] = False  # drops pair (13,14) for both joints
    assert M.foot_skate_mm(seq, mask=mask) == pytest.approx(10.0, rel=1e-9)


def test_foot_skate_ratio_and_velocity_contacts():
    seq = feet_seq(slide_left=0.02)  # 0.6 m/s > 0.3 m/s on the left foot
    seq[:, [8, 11], 1] -= 0.3  # right foot planted still
    assert M.foot_skate_ratio(seq) == pytest.approx(0.5)
    c = M.foot_contact_from_velocity(seq)
    assert c.shape == (30, 4)
    assert c[:, [1, 3]].all() and not c[:, [0, 2]].any()
    assert M.foot_skate_mm(seq, contact=c) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------ masks, errors

def test_mask_subset_averaging():
    T = 10
    gt = make_seq(T=T)
    pred = gt.copy()
    pred[:, 5, 0] += 0.001 * np.arange(T)  # frame t: t mm on one joint -> t/J mm
    mask = np.array([1, 0, 1, 0, 0, 0, 1, 0, 0, 1], dtype=bool)
    assert M.mpjpe_mm(pred, gt, mask=mask) == pytest.approx((0 + 2 + 6 + 9) / 4 / J, rel=1e-9)
    assert M.mpjpe_mm(pred, gt, mask=mask.astype(int)) == pytest.approx((0 + 2 + 6 + 9) / 4 / J, rel=1e-9)
    # world metrics: the alignment uses all frames, the mask only picks the errors averaged
    wpred = drift_after_two(make_seq(T=100))
    wgt = make_seq(T=100)
    m = np.zeros(100, dtype=bool)
    m[50:] = True
    assert M.w_mpjpe_mm(wpred, wgt, mask=m) == pytest.approx(np.arange(49, 99).mean(), abs=1e-6)


def test_empty_mask_gives_nan():
    gt = make_seq(T=12)
    pred = gt + 0.01
    empty = np.zeros(12, dtype=bool)
    for value in (M.mpjpe_mm(pred, gt, mask=empty), M.pa_mpjpe_mm(pred, gt, mask=empty),
                  M.w_mpjpe_mm(pred, gt, mask=empty), M.wa_mpjpe_mm(pred, gt, mask=empty),
                  M.rte_pct(pred[:, 0], gt[:, 0], mask=empty),
                  M.accel_err_mm_s2(pred, gt, mask=empty), M.jitter_mm_s3(pred, mask=empty),
                  M.foot_skate_mm(pred, contact=np.ones(12, dtype=bool), mask=empty)):
        assert math.isnan(value)
    # masks whose frames never form a complete window: NaN too
    sparse = np.zeros(12, dtype=bool)
    sparse[::2] = True
    assert math.isnan(M.accel_err_mm_s2(pred, gt, mask=sparse))
    assert math.isnan(M.jitter_mm_s3(pred, mask=sparse))


def test_nan_inputs_raise_naming_the_argument():
    gt = make_seq(T=8)
    bad = gt.copy()
    bad[3, 2, 1] = np.nan
    with pytest.raises(ValueError, match="pred"):
        M.mpjpe_mm(bad, gt)
    with pytest.raises(ValueError, match="gt"):
        M.pa_mpjpe_mm(gt, bad)
    with pytest.raises(ValueError, match="gt_root"):
        M.rte_pct(gt[:, 0], bad[:, 2])
    with pytest.raises(ValueError, match="pred"):
        M.jitter_mm_s3(bad)
    with pytest.raises(ValueError, match="pred"):
        M.foot_skate_mm(bad)
    with pytest.raises(ValueError, match="shape"):
        M.mpjpe_mm(gt, gt[:5])
    with pytest.raises(ValueError, match="mask"):
        M.mpjpe_mm(gt, gt, mask=np.ones(3, dtype=bool))


def test_similarity_align_recovers_transform():
    x = make_seq(T=1)[0]
    y = transform(x, R1, t=[1, 2, 3], s=2.5)
    s, R, t = M.similarity_align(x, y)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(R, R1, atol=1e-9)
    np.testing.assert_allclose(t, [1, 2, 3], atol=1e-9)
    s, R, t = M.similarity_align(x, y, scale=False)
    assert s == 1.0 and np.linalg.det(R) == pytest.approx(1.0)


# ------------------------------------------------------------------- legs a desk camera does not see

def test_knee_angle_error_is_the_difference_of_the_angles_at_the_knees():
    """Straight legs against one knee bent to a right angle (seated): 90° on that knee, 45 on
    average; any rotation or shift of the whole body changes nothing."""
    gt = np.zeros((3, J, 3))
    for hip, knee, ankle in M.KNEE_CHAINS:
        gt[:, hip], gt[:, knee], gt[:, ankle] = [0, 0.9, 0], [0, 0.5, 0], [0, 0.1, 0]
    pred = gt.copy()
    pred[:, 7] = [0, 0.5, 0.4]  # the left shin forward: 90° at the left knee
    assert M.knee_angle_err_deg(pred, gt) == pytest.approx(45.0)
    assert M.knee_angle_err_deg(transform(pred, R1, (1, 2, 3)), gt) == pytest.approx(45.0)
    assert M.knee_angle_err_deg(gt, gt) == pytest.approx(0.0, abs=1e-6)


def test_pelvis_height_error_is_the_height_above_the_floor_in_the_world():
    gt = make_seq()
    pred = gt + [0.3, 0.1, -0.2]  # 10 cm higher (and moved across the floor, which does not count)
    assert M.pelvis_height_err_mm(pred, gt) == pytest.approx(100.0)
    mask = np.zeros(len(gt), bool)
    mask[:5] = True
    pred[5:, 0, 1] += 1.0
    assert M.pelvis_height_err_mm(pred, gt, mask) == pytest.approx(100.0)


def test_pelvis_height_bias_is_signed():
    gt = make_seq()
    lower = gt - [0.0, 0.05, 0.0]
    assert M.pelvis_height_bias_mm(lower, gt) == pytest.approx(-50.0)
    assert M.pelvis_height_err_mm(lower, gt) == pytest.approx(50.0)
    half = gt.copy()
    half[::2, 0, 1] += 0.02
    half[1::2, 0, 1] -= 0.02
    assert M.pelvis_height_bias_mm(half, gt) == pytest.approx(0.0, abs=1e-6)
