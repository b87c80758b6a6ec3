"""engine.train's body mixing: one clip's legs and root under another clip's upper body, hand
contacts read off the mixed pose, and no text told for a mixed clip."""
import numpy as np

from engine.body.body_model import load_default_body
from engine.body.skeleton import SMPL_JOINT_NAMES
from engine.data.dataset import Clip
from engine.data.observations import NoiseModel
from engine.model.denoiser import ModelConfig
from engine.train import UPPER_BODY, TrainConfig, mix_bodies, prepare, train
from streamer.landmarks import L

BODY = load_default_body()
LEGS = [L[f"{s}_{n}"] for s in ("left", "right") for n in ("knee", "ankle", "heel", "foot_index")]
LOWER = ["pelvis", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
         "left_foot", "right_foot"]


def clip(name: str, frames: int, seed: int) -> Clip:
    """A clip of random small joint rotations gliding forward at 1 m/s, with random contact labels."""
    rng = np.random.default_rng(seed)
    pose = (rng.normal(0.0, 0.2, (frames, 24, 3))).astype(np.float32)
    root = np.stack([np.zeros(frames), np.full(frames, 0.95), np.arange(frames) / 30.0], -1).astype(np.float32)
    contacts = rng.random((frames, 6)) < 0.5
    return Clip(clip=name, subject="t:1", split="train", caption=f"caption of {name}", pose=pose, root=root,
                contacts=contacts)


def test_upper_body_is_the_spine_and_all_that_hangs_on_it():
    assert sorted(SMPL_JOINT_NAMES[j] for j in UPPER_BODY) == sorted(set(SMPL_JOINT_NAMES) - set(LOWER))


def test_mixing_keeps_the_legs_and_root_of_one_clip_and_the_arms_of_the_other():
    lower, upper = clip("legs", 90, 0), clip("arms", 60, 1)
    pose, root, contacts = mix_bodies(lower, upper, BODY, np.random.default_rng(3))
    assert pose.shape == (60, 24, 3) and root.shape == (60, 3) and contacts.shape == (60, 6)
    # The shorter clip is taken whole, the longer one at some start.
    a = next(a for a in range(31) if np.array_equal(root, lower.root[a:a + 60]))
    legs = [SMPL_JOINT_NAMES.index(n) for n in LOWER]
    np.testing.assert_array_equal(pose[:, legs], lower.pose[a:a + 60][:, legs])
    np.testing.assert_array_equal(pose[:, UPPER_BODY], upper.pose[:, UPPER_BODY])
    np.testing.assert_array_equal(contacts[:, :4], lower.contacts[a:a + 60, :4])  # ankles, toes


def test_hand_contacts_follow_the_mixed_arms():
    """Random labels in, labels read off the mixed pose out: a body at pelvis height 0.95 m with
    small rotations never has a hand on the floor."""
    lower, upper = clip("legs", 60, 0), clip("arms", 60, 1)
    assert upper.contacts[:, 4:].any() and lower.contacts[:, 4:].any()
    _, _, contacts = mix_bodies(lower, upper, BODY, np.random.default_rng(0))
    assert not contacts[:, 4:].any()


def test_a_mixed_clip_is_told_no_text():
    lower, upper = clip("legs", 90, 0), clip("arms", 90, 1)
    noise = NoiseModel.load()
    whole = prepare(lower, BODY, noise, 0, np.random.default_rng(0))
    mixed = prepare(lower, BODY, noise, 0, np.random.default_rng(0), upper=upper)
    assert whole.caption is not None and whole.spans  # a walk: a motion caption
    assert mixed.caption is None and mixed.spans == []


def test_training_mixes_the_asked_share_of_clips(tmp_path, monkeypatch):
    """Each round of observations pairs about mix_share of the clips with another clip's upper body."""
    import engine.train

    uppers = []
    real = engine.train.prepare

    def spy(c, *args, upper=None, **kwargs):
        uppers.append(upper)
        return real(c, *args, upper=upper, **kwargs)

    monkeypatch.setattr(engine.train, "prepare", spy)
    clips = [clip(f"c{i}", 40, i) for i in range(40)]
    train(clips, BODY, tmp_path, TrainConfig(steps=1, batch=2, window=30, mix_share=0.5, text_share=0.0),
          ModelConfig(width=32, layers=1, heads=2, mlp=64))
    first = uppers[:40]  # round 0; the normaliser's extra rounds follow
    assert 12 <= sum(u is not None for u in first) <= 28
    uppers.clear()
    train(clips, BODY, tmp_path / "none", TrainConfig(steps=1, batch=2, window=30, mix_share=0.0, text_share=0.0),
          ModelConfig(width=32, layers=1, heads=2, mlp=64))
    assert all(u is None for u in uppers)


def test_training_sees_the_asked_share_of_clips_from_a_desk_with_the_legs_hidden(tmp_path, monkeypatch):
    """Each round about desk_share of the clips are observed by eval --scenario desk's webcam, the
    knees, ankles, heels and toes hidden behind the desk (seen only where the noise model's
    detector guesses a hidden landmark with visibility over 0.5); the other clips by the default one."""
    import engine.train

    seen = []
    real = engine.train.prepare

    def spy(c, *args, scenario="default", **kwargs):
        p = real(c, *args, scenario=scenario, **kwargs)
        seen.append((scenario, p.cond["visible"][:, LEGS].mean()))
        return p

    monkeypatch.setattr(engine.train, "prepare", spy)
    clips = [clip(f"c{i}", 40, i) for i in range(40)]
    train(clips, BODY, tmp_path, TrainConfig(steps=1, batch=2, window=30, desk_share=0.5, text_share=0.0),
          ModelConfig(width=32, layers=1, heads=2, mlp=64))
    first = seen[:40]
    assert 12 <= sum(s == "desk" for s, _ in first) <= 28
    assert max(legs for s, legs in first if s == "desk") < 0.05 < 0.4 < np.mean([legs for s, legs in first if s == "default"])
