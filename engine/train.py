"""Training the denoiser: one script, nanoGPT style.

    genmo-live train [--steps N] [--batch B] [--out runs/NAME] [--resume] [--from CHECKPOINT]

Data: the train split of the dataset cache, posed on the default body. Every `refresh` steps each
clip is seen anew: a `mix_share` of them with the upper body (spine up) of another clip over their
own legs and root, mirrored or not, played 0.8-1.25x as fast, through a new synthetic webcam with
new detector noise and occlusion events (engine.data.observations), so the model never sees the same
observation twice. The webcam stands at a random azimuth about the person (engine.data.observations
.sample_camera), which is the random heading: the motion is encoded relative to the camera and the
person's own heading. A `desk_share` of the clips are seen by a webcam on a desk instead
(engine.data.observations.sample_desk_view: the head to the waist, the legs hidden the whole clip),
so the model learns to fill in legs it is not shown. Windows of `window` frames are cut from those.

Text (GEM_NOTES §2.6, §5.2): every clip, as augmented, is captioned from its own motion
(engine.data.captions: spans like "a person walks forward") and keeps its dataset caption (with left and
right swapped when mirrored). A `text_share` of the windows carry text, each span over its own
frames in the window (multi-text), or now and then the clip's caption over the whole window; the
other windows are the unconditional branch of classifier-free guidance. Every caption is encoded
once at start (engine.model.text, all-MiniLM-L6-v2), or read from `caption_cache` where an earlier run
wrote it (genmo-live data captions); without either, training goes on without text.

Each step is dual-mode (GEM_NOTES §3, §5): an estimation pass (zeros at the last step) and a
generation pass (a random step, with the observations of some windows dropped entirely, and those
of the text's frames in more windows with text, so the model learns to generate, from text where
there is one), both predicting clean motion and both told the text; losses on the motion vector,
root-relative joints in the camera frame (forward kinematics), their 2D reprojection in the person's
box, the world trajectory (velocities integrated along the true heading) and the contacts.
The per-frame lifter (engine.model.lifter, `train --model per-frame`), the baseline, trains in this same
loop on the same data and losses, the estimation pass only: it has no generation mode and reads no text.
Checkpoints (model and its architecture, optimiser, normaliser, step) are written atomically to
<out>/last.pt.
"""
from __future__ import annotations

import logging
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.body.body_model import Body
from engine.body.rotations import axis_angle_to_matrix
from engine.body.skeleton import SMPL_JOINT_NAMES, SMPL_PARENTS
from engine.data.captions import CAPTIONS, motion_captions
from engine.data.dataset import Clip
from engine.data.observations import NoiseModel, observe_clip
from engine.data.retarget import change_speed, contact_labels
from engine.model.checkpoint import ARCHS, CheckpointError, read_checkpoint, save_checkpoint
from engine.model.conditions import assumed_focal, landmark_conditions
from engine.model.denoiser import Conditions, Denoiser, ModelConfig, deepen
from engine.model.device import resolve_precision
from engine.model.diffusion import NUM_STEPS, cosine_alpha_bar, q_sample
from engine.model.lifter import LifterConfig, PerFrameLifter
from engine.model.mirror import MIRROR_CONTACTS, MIRROR_JOINTS
from engine.model.motion import VELOCITY, Normalizer, camera_joints, decode, encode, integrate
from engine.model.text import TextEncoder, TextEncoderUnavailable

log = logging.getLogger(__name__)


def _descends_from(joint: int, ancestor: int) -> bool:
    while joint > ancestor:
        joint = SMPL_PARENTS[joint]
    return joint == ancestor


# The joints whose rotations body mixing takes from the other clip: spine1 and all that hangs on it
# (spine, neck, head, arms, hands).
UPPER_BODY = [j for j in range(len(SMPL_PARENTS)) if _descends_from(j, SMPL_JOINT_NAMES.index("spine1"))]


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 24
    window: int = 120
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup: int = 200
    # The step the warm-up and the cosine schedule start from: 0, or where a fine-tune (train
    # --from) took over its checkpoint, so it gets a schedule of its own down to `steps`.
    schedule_start: int = 0
    refresh: int = 300             # steps between new observations of every clip
    drop_observations: float = 0.25  # generation pass: share of windows with no observation at all
    # Text: the share of windows told a caption; the rest (and windows no caption reaches) are the
    # unconditional branch of classifier-free guidance, so this is 1 - the condition dropout.
    text_share: float = 0.6
    clip_caption_share: float = 0.2  # of those, told the clip's own caption instead of its motion spans
    # Generation pass: share of the windows with text whose observations are dropped on the text's
    # frames (the live case: the person is occluded and a prompt fills in; GENMO drops 2D with p 0.5
    # for samples with text). On top of drop_observations.
    text_drop_observations: float = 0.5
    rendered: str = ""             # a rendered set of the train clips (genmo-live data render --split train)
    rendered_share: float = 0.3    # share of windows taken from it, when given
    # Share of the clips seen, each round, with the upper body of another clip (mix_bodies): new
    # pairings of arms and legs for a small dataset (the test split holds motions the train split lacks).
    mix_share: float = 0.25
    # Share of the clips seen, each round, as the desk scenario sees them (engine.data.observations.
    # sample_desk_view: a webcam at desk height, the legs hidden for the whole clip): most users sit
    # at a desk, and the legs must come from the prior there, not from landmarks.
    desk_share: float = 0.2
    # The live engine reads its answer off the newest frame of its window, the one with no future in
    # view; a training window weighs that case only at its last frames. Their loss counts
    # 1 + tail_weight times (the last tail_frames valid frames of each window; 0 = all frames alike).
    tail_frames: int = 8
    tail_weight: float = 0.0
    # Mixed precision: the model's forward passes in bfloat16 (weights, losses and optimiser in
    # float32). auto: where bfloat16 is native (engine.model.device.native_bf16): on this project's AMX
    # CPU a step takes 1/1.36 (denoiser) and 1/1.75 (lifter) of the float32 time (bench train).
    precision: str = "auto"
    # A time budget for this run's training steps, in minutes (0: none), for a lent GPU's lease:
    # the warm-up and cosine schedule run to whichever of `steps` and the minutes comes first, and
    # the run stops there with a checkpoint. Setup (observations, captions) comes on top; a resumed
    # run counts its own minutes.
    minutes: float = 0.0
    # The training captions encoded once and kept (engine.train.encode_captions), so training needs
    # the text model only where that file was written: "" keeps none.
    caption_cache: str = ""
    seed: int = 0
    log_every: int = 25
    save_every: int = 50           # steps between checkpoints: a killed run loses fewer
    # accel: a causal model sees no future frame to smooth against, so its frame-to-frame
    # wobble is trained away directly (its error is millimetres a frame², hence the weight).
    loss_weights: dict = field(default_factory=lambda: {"x0": 1.0, "joints": 300.0, "reproj": 30.0,
                                                        "trajectory": 1.0, "contact": 0.3, "accel": 3e3})


def mirror(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray):
    """Left-right mirror image (through the x = 0 plane) of a clip: (T, 24, 3) axis-angle,
    (T, 3) root, (T, 6) contacts."""
    p = pose[:, MIRROR_JOINTS] * np.array([1.0, -1.0, -1.0])
    return p.astype(np.float32), (root * np.array([-1.0, 1.0, 1.0])).astype(np.float32), contacts[:, MIRROR_CONTACTS]


def mirror_caption(caption: str | None) -> str | None:
    """A clip caption for the clip's mirror image: "left" and "right" swapped (case kept)."""
    if caption is None:
        return None

    def swap(m: re.Match) -> str:
        word = "right" if m.group(0).lower() == "left" else "left"
        return word.capitalize() if m.group(0)[0].isupper() else word

    return re.sub(r"\b(left|right)\b", swap, caption, flags=re.IGNORECASE)


def mix_bodies(lower: Clip, upper: Clip, body: Body, rng: np.random.Generator):
    """The legs and root of `lower` under the upper body (UPPER_BODY, local rotations) of `upper`:
    (pose (T, 24, 3) axis-angle, root (T, 3), contacts (T, 6)), T the shorter clip's length, each
    clip cut at a random start. The feet keep `lower`'s contacts; the hands' are read off the mixed
    pose (engine.data.retarget.contact_labels), since they now move with the other clip's arms."""
    T = min(len(lower.pose), len(upper.pose))
    a = int(rng.integers(0, len(lower.pose) - T + 1))
    b = int(rng.integers(0, len(upper.pose) - T + 1))
    pose = lower.pose[a:a + T].copy()
    pose[:, UPPER_BODY] = upper.pose[b:b + T, UPPER_BODY]
    root = lower.root[a:a + T]
    joints, _ = body.pose_arrays(pose, root)
    contacts = lower.contacts[a:a + T].copy()
    contacts[:, 4:] = contact_labels(joints, body.rest_joints.numpy())[:, 4:]
    return pose, root, contacts


@dataclass
class Prepared:
    """One clip as the model sees it: targets x (T, 144) raw, conditions (numpy, T frames),
    contacts (T, 6), the told camera (focal, width, height) for the 2D loss, and its texts: the
    motion-caption spans [(start, end, caption)] (engine.data.captions, frames [start, end)) and the
    clip's own caption or None."""

    x: np.ndarray
    cond: dict
    contacts: np.ndarray
    focal: float
    size: tuple
    spans: list
    caption: str | None


def as_prepared(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray, obs, spans: list,
                caption: str | None) -> Prepared:
    """A clip's motion (pose (T, 24, 3) axis-angle, root (T, 3)), what a camera saw of it
    (engine.data.observations.Observation, synthetic or rendered) and its texts as training targets and
    conditions."""
    cam = obs.camera
    focal = assumed_focal(cam.width)
    local = axis_angle_to_matrix(torch.from_numpy(pose.astype(np.float64)))
    x = encode(local, torch.from_numpy(root.astype(np.float64)), torch.from_numpy(cam.R), torch.from_numpy(cam.t),
               focal / cam.focal)
    cond = landmark_conditions(obs.keypoints, obs.visibility, cam.width, cam.height, focal)
    return Prepared(x=x.float().numpy(), cond=cond, contacts=contacts.astype(np.float32), focal=focal,
                    size=(cam.width, cam.height), spans=spans, caption=caption)


def prepare(clip: Clip, body: Body, noise: NoiseModel, seed: int, rng: np.random.Generator,
            augment: bool = True, upper: Clip | None = None, scenario: str = "default") -> Prepared:
    """A clip, augmented (mirror, speed; with `upper`, that clip's upper body over its legs:
    mix_bodies), seen through a new synthetic webcam placed as the `scenario` places it
    (engine.data.observations.SCENARIOS). Its motion is captioned after augmentation, so mirrored
    turns and sped-up walks get their own words and frames. A mixed clip gets no text at all: its
    arms and legs were not moved together, and generation from text should learn only whole
    motions."""
    pose, root, contacts, caption = clip.pose, clip.root, clip.contacts, clip.caption
    if upper is not None:
        pose, root, contacts = mix_bodies(clip, upper, body, rng)
        caption = None
    if augment:
        if rng.random() < 0.5:
            pose, root, contacts = mirror(pose, root, contacts)
            caption = mirror_caption(caption)
        pose, root, contacts = change_speed(pose, root, contacts, float(rng.uniform(0.8, 1.25)))
    joints, world_rot = body.pose_arrays(pose, root)
    return as_prepared(pose, root, contacts, observe_clip(clip.clip, joints, world_rot, seed, noise, body.stature,
                                                          scenario=scenario),
                       [] if upper is not None else motion_captions(joints, world_rot[:, 0]), caption)


def prepare_rendered(rendered: list, clips: list[Clip], body: Body) -> list[Prepared]:
    """The jobs of a rendered set (engine.data.rendered.RenderedItem): the real MediaPipe's output on
    rendered frames of the clips, with their true motion (unaugmented) as targets."""
    by_name = {c.clip: c for c in clips}
    spans = {}  # per clip: a clip has several jobs (cameras)
    for name in {r.clip for r in rendered} & by_name.keys():
        joints, world_rot = body.pose_arrays(by_name[name].pose, by_name[name].root)
        spans[name] = motion_captions(joints, world_rot[:, 0])
    return [as_prepared(by_name[r.clip].pose, by_name[r.clip].root, by_name[r.clip].contacts, r.obs,
                        spans[r.clip], by_name[r.clip].caption)
            for r in rendered if r.clip in by_name]


@dataclass
class CaptionBank:
    """Every text training can tell, encoded once and kept on the training device: row
    index[caption] of tokens (N, Lt, 384) and mask (N, Lt) (engine.model.text.TextEncoder.tokens)."""

    index: dict[str, int]
    tokens: torch.Tensor
    mask: torch.Tensor


def encode_captions(clips: list[Clip], device, cache: Path | str = "") -> CaptionBank | None:
    """engine.data.captions.CAPTIONS and the clips' own captions, mirrored ones included, through the
    text encoder in one go (a few hundred strings; the text model is not kept). With `cache`, a
    file written by an earlier call for the same captions stands in for the text model (a machine
    without it), and a fresh encoding is written there. None, with a warning, when there is neither
    such a file nor the text extra."""
    own = {c.caption for c in clips if c.caption}
    prompts = sorted(set(CAPTIONS) | own | {mirror_caption(c) for c in own})
    index = {p: i for i, p in enumerate(prompts)}
    cache = Path(cache) if cache else None
    if cache is not None and cache.is_file():
        saved = torch.load(cache, map_location=device, weights_only=True)
        if saved["prompts"] == prompts:
            log.info("text: %d captions from %s", len(prompts), cache)
            return CaptionBank(index, saved["tokens"], saved["mask"])
        log.info("%s holds other captions than these clips': encoding them anew", cache)
    try:
        tokens, mask = TextEncoder(device).tokens(prompts)
    except TextEncoderUnavailable as e:
        log.warning("training without text conditioning: %s", e)
        return None
    if cache is not None:
        tmp = cache.with_suffix(".tmp")
        torch.save({"prompts": prompts, "tokens": tokens.cpu(), "mask": mask.cpu()}, tmp)
        tmp.replace(cache)
    return CaptionBank(index, tokens, mask)


def window_texts(p: Prepared, start: int, window: int, rng: np.random.Generator,
                 clip_caption_share: float) -> list[tuple[str, np.ndarray]]:
    """The texts of the window [start, start + window) of a clip: [(caption, frames (window,) bool)].

    Every motion-caption span the window overlaps, each over its own frames there (multi-text; the
    spans are disjoint, so no frame has two); or, a `clip_caption_share` of the time or when no span
    overlaps, the clip's own caption over all of its frames in the window; [] when it has neither.
    """
    frame = np.arange(start, start + window)
    spans = [(text, (frame >= s) & (frame < e)) for s, e, text in p.spans if s < start + window and e > start]
    if p.caption and (not spans or rng.random() < clip_caption_share):
        return [(p.caption, frame < len(p.x))]
    return spans


def sample_windows(prepared: list[Prepared], batch: int, window: int, rng: np.random.Generator, device,
                   rendered: list[Prepared] = (), rendered_share: float = 0.0, bank: CaptionBank | None = None,
                   text_share: float = 0.0, clip_caption_share: float = 0.0):
    """A batch of windows: (x (B, L, 144), Conditions, contacts (B, L, 6), valid (B, L), focal (B,),
    size (B, 2)); clips shorter than the window are padded with their last frame (valid False).
    A `rendered_share` of the windows, on average, come from `rendered` (real detector output).

    With a `bank`, a `text_share` of the windows are told their window_texts: Conditions.text
    (B, K, Lt, 384), text_mask (B, K, Lt), text_frames (B, K, L), K the most texts of any window;
    the rows a window does not use drive no frame. No window with text: text None."""
    share = rendered_share if len(rendered) else 0.0
    pool = list(prepared) + list(rendered)
    lengths = np.array([len(p.x) for p in pool], float)
    synthetic = np.arange(len(pool)) < len(prepared)
    weight = np.where(synthetic, lengths / lengths[synthetic].sum() * (1 - share),
                      lengths / max(lengths[~synthetic].sum(), 1.0) * share)
    picks = rng.choice(len(pool), batch, p=weight / weight.sum())
    xs, conds, contacts, valid, texts = [], {k: [] for k in ("keypoints", "visible", "box", "has_box")}, [], [], []
    for i in picks:
        p = pool[i]
        T = len(p.x)
        start = int(rng.integers(0, max(T - window, 0) + 1))
        idx = np.minimum(np.arange(start, start + window), T - 1)
        xs.append(p.x[idx])
        for k in conds:
            conds[k].append(p.cond[k][idx])
        contacts.append(p.contacts[idx])
        valid.append(np.arange(start, start + window) < T)
        told = bank is not None and rng.random() < text_share
        texts.append(window_texts(p, start, window, rng, clip_caption_share) if told else [])

    def t(a, dtype=torch.float32):
        return torch.as_tensor(np.stack(a), dtype=dtype, device=device)

    c = Conditions(keypoints=t(conds["keypoints"]), visible=t(conds["visible"], torch.bool), box=t(conds["box"]),
                   has_box=t(conds["has_box"], torch.bool))
    K = max(len(w) for w in texts)
    if K:
        # Unused rows point at text 0: a real text, so its attention has a key (an all-padding
        # row would give NaN), and driving no frame, so the text blocks zero it out.
        ids = np.zeros((batch, K), np.int64)
        frames = np.zeros((batch, K, window), bool)
        for b, w in enumerate(texts):
            for k, (caption, f) in enumerate(w):
                ids[b, k], frames[b, k] = bank.index[caption], f
        ids = torch.from_numpy(ids).to(device)
        c = replace(c, text=bank.tokens[ids], text_mask=bank.mask[ids],
                    text_frames=torch.from_numpy(frames).to(device))
    focal = torch.tensor([pool[i].focal for i in picks], device=device)
    size = torch.tensor([pool[i].size for i in picks], dtype=torch.float32, device=device)
    return t(xs), c, t(contacts), t(valid, torch.bool), focal, size


def generation_conditions(c: Conditions, cfg: TrainConfig) -> Conditions:
    """The generation pass's conditions: a `drop_observations` share of the windows lose every
    observation, and a `text_drop_observations` share of the windows with text lose those of the
    text's frames, so that the model learns to generate, from the text where there is one."""
    B = c.visible.shape[0]
    seen = torch.rand(B, 1, device=c.visible.device) >= cfg.drop_observations  # (B, 1), then (B, L)
    if c.text is not None:
        hide = torch.rand(B, 1, device=c.visible.device) < cfg.text_drop_observations
        seen = seen & ~(c.text_frames.any(1) & hide)
    return replace(c, visible=c.visible & seen[..., None], has_box=c.has_box & seen)


def frame_weights(valid: torch.Tensor, tail_frames: int, tail_weight: float) -> torch.Tensor:
    """Each frame's weight in the loss, (B, L) float: 0 where not valid, 1 + `tail_weight` on the
    last `tail_frames` valid frames of each window, 1 elsewhere."""
    w = valid.float()
    if tail_weight <= 0 or tail_frames <= 0:
        return w
    from_end = valid.sum(1, keepdim=True) - 1 - torch.arange(valid.shape[1], device=valid.device)
    return w * (1 + tail_weight * ((from_end >= 0) & (from_end < tail_frames)).float())


def truth(x: torch.Tensor, norm: Normalizer, rest: torch.Tensor) -> dict[str, torch.Tensor]:
    """What both passes of a step are scored against, from the normalised true motion x
    (B, L, 144): x itself, its GV root orientations, root-relative and absolute camera-frame
    joints, and its integrated trajectory."""
    raw = norm.inverse(x)
    g = decode(raw)
    rel, absolute = camera_joints(g, rest)
    return {"x": x, "root_gv": g["root_gv"], "rel": rel, "abs": absolute,
            "trajectory": integrate(g["root_gv"], raw[..., VELOCITY])}


REPROJ_MIN_DEPTH_M = 0.3  # a joint nearer the camera than this has no 2D error
REPROJ_REACH = 1.0        # nor one farther than this many image widths from the image's centre
REPROJ_CAP = 1.0          # a joint's squared 2D error counts at most this (image widths squared)


def losses(pred: torch.Tensor, logits: torch.Tensor, gt: dict, contacts: torch.Tensor, w: torch.Tensor,
           focal: torch.Tensor, size: torch.Tensor, norm: Normalizer, rest: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every loss term of one pass, each a weighted mean over frames. pred: (B, L, 144) normalised;
    gt: `truth` of the batch; logits, contacts: (B, L, 6); w: (B, L) frame_weights."""
    n = w.sum().clamp_min(1)

    def masked(per_frame):
        return (per_frame * w).sum() / n

    raw = norm.inverse(pred)
    p_rel, p_abs = camera_joints(decode(raw), rest)

    def project(j):
        uv = j[..., :2] / j[..., 2:].clamp_min(REPROJ_MIN_DEPTH_M) * focal[:, None, None, None]
        return uv / size[:, None, None, :1]  # in image widths, so every camera weighs alike

    gt_uv = project(gt["abs"])
    # The 2D error counts where the truth is in front of the camera and near its image: a desk
    # webcam 0.6 m away has a seated person's knees beside or under it, where the projection is
    # meaningless; with the depth clamped it made errors of many image widths, losses of thousands.
    in_view = (gt["abs"][..., 2] > REPROJ_MIN_DEPTH_M) & (gt_uv.abs() < REPROJ_REACH).all(-1)  # (B, L, J)
    # And a predicted joint near the camera's plane (a desk view's hidden legs) projects anywhere:
    # its squared error is capped, and the 3D loss brings it back.
    reproj = ((project(p_abs) - gt_uv) ** 2).sum(-1).clamp_max(REPROJ_CAP) * in_view
    # The predicted velocities integrated along the true heading (GEM's transl_w).
    trajectory = integrate(gt["root_gv"], raw[..., VELOCITY])
    # The root-relative joints' second difference against the truth's, at each frame t whose
    # neighbours t-1 and t+1 are in the window too (as eval's accel_err_mm_s2, per frame²).
    accel = ((second_difference(p_rel) - second_difference(gt["rel"])) ** 2).sum(-1).mean(-1)
    w_accel = w[:, 1:-1] * (w[:, :-2] > 0) * (w[:, 2:] > 0)
    return {
        "x0": masked(((pred - gt["x"]) ** 2).mean(-1)),
        "joints": masked(((p_rel - gt["rel"]) ** 2).sum(-1).mean(-1)),
        "reproj": masked(reproj.sum(-1) / in_view.sum(-1).clamp_min(1)),
        "trajectory": masked((trajectory - gt["trajectory"]).abs().sum(-1)),
        "contact": masked(F.binary_cross_entropy_with_logits(logits, contacts, reduction="none").mean(-1)),
        "accel": (accel * w_accel).sum() / w_accel.sum().clamp_min(1),
    }


def second_difference(x: torch.Tensor) -> torch.Tensor:
    """x_{t-1} - 2 x_t + x_{t+1} along dim 1: (B, L, ...) -> (B, L - 2, ...)."""
    return x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:]


def run_model(model: Denoiser | PerFrameLifter, x_t: torch.Tensor, t: torch.Tensor, c: Conditions,
              bf16: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's (x0, contact logits), both float32, its matrix products in bfloat16 if `bf16`."""
    with torch.autocast(x_t.device.type, dtype=torch.bfloat16, enabled=bf16):
        pred, logits = model(x_t, t, c)
    return pred.float(), logits.float()


def loss_weights(model: Denoiser | PerFrameLifter, cfg: TrainConfig) -> dict[str, float]:
    """cfg.loss_weights, less the acceleration term for the per-frame lifter: a frame at a time,
    it cannot smooth, and the term would only pull it toward the mean pose."""
    return cfg.loss_weights if isinstance(model, Denoiser) else {**cfg.loss_weights, "accel": 0.0}


def train_step(model: Denoiser | PerFrameLifter, opt, x: torch.Tensor, c: Conditions, contacts: torch.Tensor,
               valid: torch.Tensor, focal: torch.Tensor, size: torch.Tensor, norm: Normalizer, rest: torch.Tensor,
               alpha_bar: torch.Tensor, cfg: TrainConfig, bf16: bool) -> tuple[torch.Tensor, dict, dict | None]:
    """One optimiser step on a batch (sample_windows's, x normalised): the estimation pass and, for
    the denoiser, the generation pass. Returns the total loss and each pass's loss terms (None for
    the lifter, which has no generation pass)."""
    gt = truth(x, norm, rest)
    w = frame_weights(valid, cfg.tail_frames, cfg.tail_weight)
    weights = loss_weights(model, cfg)
    B = x.shape[0]
    # Estimation pass: zeros at the last step.
    t_est = torch.full((B,), NUM_STEPS - 1, device=x.device)
    pred, logits = run_model(model, torch.zeros_like(x), t_est, c, bf16)
    parts = losses(pred, logits, gt, contacts, w, focal, size, norm, rest)
    total = sum(weights[k] * parts[k] for k in parts)
    gen = None
    if isinstance(model, Denoiser):
        # Generation pass: a random step, fewer observations.
        t_gen = torch.randint(0, NUM_STEPS, (B,), device=x.device)
        x_t = q_sample(x, t_gen, torch.randn_like(x), alpha_bar)
        pred_g, logits_g = run_model(model, x_t, t_gen, generation_conditions(c, cfg), bf16)
        gen = losses(pred_g, logits_g, gt, contacts, w, focal, size, norm, rest)
        total = total + sum(weights[k] * gen[k] for k in gen)
    opt.zero_grad(set_to_none=True)
    total.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return total, parts, gen


def fit_normalizer(prepared: list[Prepared]) -> Normalizer:
    return Normalizer.fit(torch.from_numpy(np.concatenate([p.x for p in prepared])))


def train(clips: list[Clip], body: Body, out_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig | LifterConfig,
          device: str = "cpu", resume: bool = False, start_from: Path | str | None = None,
          deepen_to: int | None = None, causal: bool = False) -> Path:
    """Train (or resume) the model of `model_cfg`'s kind (its sizes the checkpoint's, on resume) and
    return the checkpoint path.

    `start_from`: a checkpoint or exported weights (assets/genmo_live.pt) to fine-tune: its model,
    normaliser and step, and its optimiser state where it has one (exports have none: a fresh
    AdamW), with a warm-up and cosine schedule of its own from that step to `cfg.steps`. It must
    hold `model_cfg`'s kind of model. `deepen_to`: a denoiser from `start_from` gets this many
    layers (engine.model.denoiser.deepen: the new ones start as the identity) and a fresh AdamW.
    `causal`: a denoiser from `start_from` becomes causal (ModelConfig.causal, the same weights). With
    `resume`, <out>/last.pt wins once it exists, so the same command restarts a fine-tune where it
    stopped."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    noise = NoiseModel.load()
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt = out_dir / "last.pt"
    rest = body.rest_joints.to(device)
    alpha_bar = cosine_alpha_bar().to(device)
    clips = [c for c in clips if len(c.pose) >= 30]

    def observe(round_: int) -> list[Prepared]:
        r = np.random.default_rng([cfg.seed, round_])
        uppers = [clips[int(r.integers(len(clips)))] if r.random() < cfg.mix_share else None for _ in clips]
        scenarios = ["desk" if r.random() < cfg.desk_share else "default" for _ in clips]
        return [prepare(c, body, noise, cfg.seed * 1000 + round_, r, upper=u, scenario=s)
                for c, u, s in tqdm(zip(clips, uppers, scenarios), total=len(clips), desc="observe", leave=False)]

    cls = next(cls for cls, config in ARCHS.values() if isinstance(model_cfg, config))
    resuming = resume and ckpt.exists()
    source = ckpt if resuming else start_from
    grow = False
    if source is not None:
        if not Path(source).is_file():
            raise CheckpointError(f"no checkpoint at {source}")
        model, norm, ck = read_checkpoint(source, device)
        if not isinstance(model, cls):
            raise CheckpointError(f"{source} holds a {ck.get('arch', 'denoiser')} model, not the one asked for")
        grow = deepen_to is not None and not resuming and deepen_to != model.cfg.layers
        if grow:
            try:
                model = deepen(model, deepen_to)
            except ValueError as e:
                raise CheckpointError(str(e)) from None
            log.info("deepened to %d layers; the new ones start as the identity", deepen_to)
        if causal and not resuming and isinstance(model, Denoiser) and not model.cfg.causal:
            # Same weights, each frame now blind to the frames after it: a fine-tune starts close.
            model.cfg = replace(model.cfg, causal=True)
            log.info("made causal: each frame attends only to the frames before it")
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        fresh = grow or not ck.get("optimizer")
        if not fresh:
            opt.load_state_dict(ck["optimizer"])
        step = ck["step"]
        cfg = replace(cfg, schedule_start=ck["train_config"].get("schedule_start", 0) if resuming else step)
        log.info("%s from %s at step %d%s", "resumed" if resuming else "starting", source, step,
                 " with a fresh optimiser" if fresh else "")
        prepared = observe(step // cfg.refresh)
    else:
        model = cls(model_cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step = 0
        prepared = observe(0)
        # Camera-dependent dimensions (root orientation and translation in the camera) vary with
        # the camera: take their statistics over a few rounds of cameras, not one per clip.
        norm = fit_normalizer(prepared + [p for r in (10**6, 10**6 + 1) for p in observe(r)]).to(device)
    denoiser = isinstance(model, Denoiser)  # the lifter reads no text
    log.info("model: %d wide, %d layers, %.1f M parameters%s", model.cfg.width, model.cfg.layers,
             sum(p.numel() for p in model.parameters()) / 1e6, " (the checkpoint's sizes)" if source and not grow else "")
    rendered = []
    if cfg.rendered:
        from engine.data.rendered import load_job

        rendered = prepare_rendered([load_job(p) for p in sorted(Path(cfg.rendered).glob("*.npz"))], clips, body)
        log.info("mixing %d rendered jobs (real MediaPipe output) into %.0f %% of the windows",
                 len(rendered), 100 * cfg.rendered_share)
    bank = encode_captions(clips, device, cfg.caption_cache) if denoiser and cfg.text_share > 0 else None
    if bank is not None:
        captioned = sum(e - s for p in prepared for s, e, _ in p.spans) / sum(len(p.x) for p in prepared)
        log.info("text: %d captions encoded; motion captions cover %.0f %% of the frames; %.0f %% of the "
                 "windows told a text where one reaches them", len(bank.index), 100 * captioned,
                 100 * cfg.text_share)
    precision = resolve_precision(cfg.precision, torch.device(device))
    log.info("training in %s", "bfloat16 mixed precision" if precision == "bf16" else "float32")
    bf16 = precision == "bf16"
    started = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step")
    model.train()
    budget_s = 60 * cfg.minutes
    first_step = step

    def progress() -> float:
        """How far along the schedule this run is, 0..1: by steps, or by time where that is further."""
        by_steps = (step - cfg.schedule_start) / (cfg.steps - cfg.schedule_start)
        return max(by_steps, (time.time() - started) / budget_s) if budget_s else by_steps

    while step < cfg.steps:
        if step % cfg.refresh == 0 and step != first_step:  # the first round is observed above
            prepared = observe(step // cfg.refresh)
        done = step - cfg.schedule_start
        lr = cfg.lr * min(1.0, (done + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * min(progress(), 1.0)))
        for group in opt.param_groups:
            group["lr"] = lr
        x, c, contacts, valid, focal, size = sample_windows(prepared, cfg.batch, cfg.window, rng, device,
                                                            rendered, cfg.rendered_share, bank, cfg.text_share,
                                                            cfg.clip_caption_share)
        total, parts, gen = train_step(model, opt, norm(x), c, contacts, valid, focal, size, norm, rest, alpha_bar,
                                       cfg, bf16)
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            bar.set_postfix(loss=f"{total.item():.3f}", joints_mm=f"{parts['joints'].sqrt().item() * 1000:.0f}",
                            lr=f"{lr:.1e}")
            log.info("step %d loss %.4f (estimation: joints %.1f mm rms, x0 %.3f%s)", step, total.item(),
                     parts["joints"].sqrt().item() * 1000, parts["x0"].item(),
                     f"; generation: joints {gen['joints'].sqrt().item() * 1000:.1f} mm" if gen else "")
        out_of_time = budget_s and progress() >= 1.0
        if step % cfg.save_every == 0 or step == cfg.steps or out_of_time:
            save_checkpoint(ckpt, model, norm, opt, step, cfg,
                            {"clips": len(clips), "frames": int(sum(len(c.pose) for c in clips)),
                             "seconds": round(time.time() - started, 1), "device": device})
        if out_of_time:
            log.info("stopped at step %d: the %g minutes of training are spent", step, cfg.minutes)
            break
    bar.close()
    return ckpt
