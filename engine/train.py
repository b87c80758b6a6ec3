"""Training the denoiser: one script, nanoGPT style.

    genmo-live train [--steps N] [--batch B] [--out runs/NAME] [--resume]

Data: the train split of the dataset cache, posed on the default body. Every `refresh` steps each
clip is seen anew: mirrored or not, played 0.8-1.25x as fast, through a new synthetic webcam with
new detector noise and occlusion events (engine.observations), so the model never sees the same
observation twice. Windows of `window` frames are cut from those.

Each step is dual-mode (GEM_NOTES §3, §5): an estimation pass (zeros at the last step) and a
generation pass (a random step, with the observations of some windows dropped entirely so the
model learns to generate), both predicting clean motion; losses on the motion vector, root-relative
joints in the camera frame (forward kinematics), their 2D reprojection in the person's box, the
world trajectory (velocities integrated along the true heading) and the contacts.
Checkpoints (model, optimiser, normaliser, step) are written atomically to <out>/last.pt.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from engine.body import SMPL_JOINT_NAMES, SMPL_PARENTS, Body
from engine.conditions import assumed_focal, landmark_conditions
from engine.dataset import Clip
from engine.diffusion import NUM_STEPS, cosine_alpha_bar, q_sample
from engine.kinematics import forward_kinematics
from engine.model import Conditions, Denoiser, ModelConfig
from engine.motion import VELOCITY, Normalizer, decode, encode, integrate
from engine.observations import NoiseModel, observe_clip
from engine.retarget import CONTACT_JOINTS, resample
from engine.rotations import axis_angle_to_matrix, matrix_to_axis_angle

log = logging.getLogger(__name__)

MIRROR_JOINTS = [SMPL_JOINT_NAMES.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
                 for n in SMPL_JOINT_NAMES]
MIRROR_CONTACTS = [CONTACT_JOINTS.index(n.replace("left", "#").replace("right", "left").replace("#", "right"))
                   for n in CONTACT_JOINTS]


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 24
    window: int = 120
    lr: float = 4e-4
    weight_decay: float = 0.01
    warmup: int = 200
    refresh: int = 300             # steps between new observations of every clip
    drop_observations: float = 0.25  # generation pass: share of windows with no observation at all
    rendered: str = ""             # a rendered set of the train clips (genmo-live data render --split train)
    rendered_share: float = 0.3    # share of windows taken from it, when given
    seed: int = 0
    log_every: int = 25
    loss_weights: dict = field(default_factory=lambda: {"x0": 1.0, "joints": 300.0, "reproj": 30.0,
                                                        "trajectory": 1.0, "contact": 0.3})


def mirror(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray):
    """Left-right mirror image (through the x = 0 plane) of a clip: (T, 24, 3) axis-angle,
    (T, 3) root, (T, 6) contacts."""
    p = pose[:, MIRROR_JOINTS] * np.array([1.0, -1.0, -1.0])
    return p.astype(np.float32), (root * np.array([-1.0, 1.0, 1.0])).astype(np.float32), contacts[:, MIRROR_CONTACTS]


def change_speed(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray, factor: float):
    """The clip played `factor` times as fast (slerp / linear resampling, 30 fps kept)."""
    if abs(factor - 1.0) < 1e-3 or len(pose) < 2:
        return pose, root, contacts
    positions, rot = resample(root[:, None].astype(np.float64), axis_angle_to_matrix(pose.astype(np.float64)),
                              30.0 * factor, 30.0)
    index = np.minimum(np.round(np.arange(len(rot)) * factor).astype(int), len(contacts) - 1)
    return (matrix_to_axis_angle(rot).astype(np.float32), positions[:, 0].astype(np.float32), contacts[index])


@dataclass
class Prepared:
    """One clip as the model sees it: targets x (T, 144) raw, conditions (numpy, T frames),
    contacts (T, 6), and the told camera (focal, width, height) for the 2D loss."""

    x: np.ndarray
    cond: dict
    contacts: np.ndarray
    focal: float
    size: tuple


def as_prepared(pose: np.ndarray, root: np.ndarray, contacts: np.ndarray, obs) -> Prepared:
    """A clip's motion (pose (T, 24, 3) axis-angle, root (T, 3)) and what a camera saw of it
    (engine.observations.Observation, synthetic or rendered) as training targets and conditions."""
    cam = obs.camera
    focal = assumed_focal(cam.width)
    local = axis_angle_to_matrix(torch.from_numpy(pose.astype(np.float64)))
    x = encode(local, torch.from_numpy(root.astype(np.float64)), torch.from_numpy(cam.R), torch.from_numpy(cam.t),
               focal / cam.focal)
    cond = landmark_conditions(obs.keypoints, obs.visibility, cam.width, cam.height, focal)
    return Prepared(x=x.float().numpy(), cond=cond, contacts=contacts.astype(np.float32), focal=focal,
                    size=(cam.width, cam.height))


def prepare(clip: Clip, body: Body, noise: NoiseModel, seed: int, rng: np.random.Generator,
            augment: bool = True) -> Prepared:
    """A clip, augmented (mirror, speed), seen through a new synthetic webcam."""
    pose, root, contacts = clip.pose, clip.root, clip.contacts
    if augment:
        if rng.random() < 0.5:
            pose, root, contacts = mirror(pose, root, contacts)
        pose, root, contacts = change_speed(pose, root, contacts, float(rng.uniform(0.8, 1.25)))
    joints, world_rot = body.pose_arrays(pose, root)
    return as_prepared(pose, root, contacts, observe_clip(clip.clip, joints, world_rot, seed, noise, body.stature))


def prepare_rendered(rendered: list, clips: list[Clip]) -> list[Prepared]:
    """The jobs of a rendered set (engine.rendered.RenderedItem): the real MediaPipe's output on
    rendered frames of the clips, with their true motion as targets."""
    by_name = {c.clip: c for c in clips}
    return [as_prepared(by_name[r.clip].pose, by_name[r.clip].root, by_name[r.clip].contacts, r.obs)
            for r in rendered if r.clip in by_name]


def sample_windows(prepared: list[Prepared], batch: int, window: int, rng: np.random.Generator, device,
                   rendered: list[Prepared] = (), rendered_share: float = 0.0):
    """A batch of windows: (x (B, L, 144), Conditions, contacts (B, L, 6), valid (B, L), focal (B,),
    size (B, 2)); clips shorter than the window are padded with their last frame (valid False).
    A `rendered_share` of the windows, on average, come from `rendered` (real detector output)."""
    share = rendered_share if len(rendered) else 0.0
    pool = list(prepared) + list(rendered)
    lengths = np.array([len(p.x) for p in pool], float)
    synthetic = np.arange(len(pool)) < len(prepared)
    weight = np.where(synthetic, lengths / lengths[synthetic].sum() * (1 - share),
                      lengths / max(lengths[~synthetic].sum(), 1.0) * share)
    picks = rng.choice(len(pool), batch, p=weight / weight.sum())
    xs, conds, contacts, valid = [], {k: [] for k in ("keypoints", "visible", "box", "has_box")}, [], []
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

    def t(a, dtype=torch.float32):
        return torch.as_tensor(np.stack(a), dtype=dtype, device=device)

    c = Conditions(keypoints=t(conds["keypoints"]), visible=t(conds["visible"], torch.bool), box=t(conds["box"]),
                   has_box=t(conds["has_box"], torch.bool))
    focal = torch.tensor([pool[i].focal for i in picks], device=device)
    size = torch.tensor([pool[i].size for i in picks], dtype=torch.float32, device=device)
    return t(xs), c, t(contacts), t(valid, torch.bool), focal, size


def camera_joints(motion: dict, rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoded motion -> (root-relative joints (..., L, 24, 3) in the camera frame, absolute
    joints in the told camera)."""
    local = motion["local_rot"].clone()
    local[..., 0, :, :] = motion["root_cam"]
    rel, _ = forward_kinematics(local, rest, SMPL_PARENTS, torch.zeros_like(motion["pelvis_cam"]))
    return rel, rel + motion["pelvis_cam"][..., None, :]


def truth(x: torch.Tensor, norm: Normalizer, rest: torch.Tensor) -> dict[str, torch.Tensor]:
    """What both passes of a step are scored against, from the normalised true motion x
    (B, L, 144): x itself, its GV root orientations, root-relative and absolute camera-frame
    joints, and its integrated trajectory."""
    raw = norm.inverse(x)
    g = decode(raw)
    rel, absolute = camera_joints(g, rest)
    return {"x": x, "root_gv": g["root_gv"], "rel": rel, "abs": absolute,
            "trajectory": integrate(g["root_gv"], raw[..., VELOCITY])}


def losses(pred: torch.Tensor, logits: torch.Tensor, gt: dict, contacts: torch.Tensor, valid: torch.Tensor,
           focal: torch.Tensor, size: torch.Tensor, norm: Normalizer, rest: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every loss term of one pass. pred: (B, L, 144) normalised; gt: `truth` of the batch;
    logits, contacts: (B, L, 6)."""
    w = valid.float()
    n = w.sum().clamp_min(1)

    def masked(per_frame):
        return (per_frame * w).sum() / n

    raw = norm.inverse(pred)
    p_rel, p_abs = camera_joints(decode(raw), rest)

    def project(j):
        uv = j[..., :2] / j[..., 2:].clamp_min(0.3) * focal[:, None, None, None]
        return uv / size[:, None, None, :1]  # in image widths, so every camera weighs alike

    # The predicted velocities integrated along the true heading (GEM's transl_w).
    trajectory = integrate(gt["root_gv"], raw[..., VELOCITY])
    return {
        "x0": masked(((pred - gt["x"]) ** 2).mean(-1)),
        "joints": masked(((p_rel - gt["rel"]) ** 2).sum(-1).mean(-1)),
        "reproj": masked(((project(p_abs) - project(gt["abs"])) ** 2).sum(-1).mean(-1)),
        "trajectory": masked((trajectory - gt["trajectory"]).abs().sum(-1)),
        "contact": masked(F.binary_cross_entropy_with_logits(logits, contacts, reduction="none").mean(-1)),
    }


def fit_normalizer(prepared: list[Prepared]) -> Normalizer:
    return Normalizer.fit(torch.from_numpy(np.concatenate([p.x for p in prepared])))


def save_checkpoint(path: Path, model: Denoiser, norm: Normalizer, opt, step: int, cfg: TrainConfig, meta: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"model": model.state_dict(), "model_config": model.config_dict(), "normalizer": norm.state_dict(),
                "optimizer": opt.state_dict() if opt is not None else None, "step": step,
                "train_config": asdict(cfg), "meta": meta}, tmp)
    tmp.replace(path)


def _read_checkpoint(path: Path | str, device) -> tuple[Denoiser, Normalizer, dict]:
    ck = torch.load(path, map_location=device, weights_only=False)
    model = Denoiser(ModelConfig(**ck["model_config"])).to(device)
    model.load_state_dict(ck["model"])
    norm = Normalizer().to(device)
    norm.load_state_dict(ck["normalizer"])
    return model, norm, ck


def load_model(path: Path | str, device="cpu") -> tuple[Denoiser, Normalizer, dict]:
    """A trained denoiser, its normaliser and the checkpoint's metadata."""
    model, norm, ck = _read_checkpoint(path, device)
    return model.eval(), norm, {k: ck[k] for k in ("step", "train_config", "meta") if k in ck}


def train(clips: list[Clip], body: Body, out_dir: Path, cfg: TrainConfig, model_cfg: ModelConfig,
          device: str = "cpu", resume: bool = False) -> Path:
    """Train (or resume) and return the checkpoint path."""
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
        return [prepare(c, body, noise, cfg.seed * 1000 + round_, r) for c in tqdm(clips, desc="observe", leave=False)]

    if resume and ckpt.exists():
        model, norm, ck = _read_checkpoint(ckpt, device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        opt.load_state_dict(ck["optimizer"])
        step = ck["step"]
        log.info("resumed from %s at step %d", ckpt, step)
        prepared = observe(step // cfg.refresh)
    else:
        model = Denoiser(model_cfg).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        step = 0
        prepared = observe(0)
        # Camera-dependent dimensions (root orientation and translation in the camera) vary with
        # the camera: take their statistics over a few rounds of cameras, not one per clip.
        norm = fit_normalizer(prepared + [p for r in (10**6, 10**6 + 1) for p in observe(r)]).to(device)
    rendered = []
    if cfg.rendered:
        from engine.rendered import load_job

        rendered = prepare_rendered([load_job(p) for p in sorted(Path(cfg.rendered).glob("*.npz"))], clips)
        log.info("mixing %d rendered jobs (real MediaPipe output) into %.0f %% of the windows",
                 len(rendered), 100 * cfg.rendered_share)
    started = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step")
    model.train()
    while step < cfg.steps:
        if step and step % cfg.refresh == 0:
            prepared = observe(step // cfg.refresh)
        lr = cfg.lr * min(1.0, (step + 1) / cfg.warmup) * 0.5 * (1 + math.cos(math.pi * step / cfg.steps))
        for group in opt.param_groups:
            group["lr"] = lr
        x, c, contacts, valid, focal, size = sample_windows(prepared, cfg.batch, cfg.window, rng, device,
                                                            rendered, cfg.rendered_share)
        x = norm(x)
        gt = truth(x, norm, rest)
        B = x.shape[0]
        # Estimation pass: zeros at the last step.
        t_est = torch.full((B,), NUM_STEPS - 1, device=device)
        pred, logits = model(torch.zeros_like(x), t_est, c)
        parts = losses(pred, logits, gt, contacts, valid, focal, size, norm, rest)
        # Generation pass: a random step, some windows without any observation.
        t_gen = torch.randint(0, NUM_STEPS, (B,), device=device)
        x_t = q_sample(x, t_gen, torch.randn_like(x), alpha_bar)
        keep = torch.rand(B, device=device) >= cfg.drop_observations
        c_gen = Conditions(c.keypoints, c.visible & keep[:, None, None], c.box, c.has_box & keep[:, None])
        pred_g, logits_g = model(x_t, t_gen, c_gen)
        gen = losses(pred_g, logits_g, gt, contacts, valid, focal, size, norm, rest)
        total = sum(cfg.loss_weights[k] * (parts[k] + gen[k]) for k in parts)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0 or step == cfg.steps:
            bar.set_postfix(loss=f"{total.item():.3f}", joints_mm=f"{parts['joints'].sqrt().item() * 1000:.0f}",
                            lr=f"{lr:.1e}")
            log.info("step %d loss %.4f (estimation: joints %.1f mm rms, x0 %.3f; generation: joints %.1f mm)",
                     step, total.item(), parts["joints"].sqrt().item() * 1000, parts["x0"].item(),
                     gen["joints"].sqrt().item() * 1000)
        if step % cfg.refresh == 0 or step == cfg.steps:
            save_checkpoint(ckpt, model, norm, opt, step, cfg,
                            {"clips": len(clips), "frames": int(sum(len(c.pose) for c in clips)),
                             "seconds": round(time.time() - started, 1), "device": device})
    bar.close()
    return ckpt
