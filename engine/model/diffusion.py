"""Diffusion as small pure functions of a model and a schedule (k-diffusion style).

x0-prediction with a cosine schedule over T = 1000 steps (GEM_NOTES §3). A *model* here is any
callable `model(x_t, t) -> x0_hat` on normalised motion (B, L, D) with t (B,) integer steps; the
conditions are bound into it by the caller (functools.partial or a closure).

- estimation mode: x_t = 0 at t = T - 1, one call (`estimate`);
- DDIM with eta = 0 over any number of steps, warm-startable (`ddim`);
- classifier-free guidance for text only (`guided`);
- inpainting: frames with known motion are held to it at every step (`ddim(..., known=...)`).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

NUM_STEPS = 1000
Model = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cosine_alpha_bar(num_steps: int = NUM_STEPS, offset: float = 0.008) -> torch.Tensor:
    """(num_steps,) cumulative signal fraction ᾱ_t of the cosine schedule (Nichol & Dhariwal),
    with each step's β capped at 0.999."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + offset) / (1 + offset) * math.pi / 2) ** 2
    beta = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return torch.cumprod(1 - beta, 0).float()


def q_sample(x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """Noise clean motion x0 (B, L, D) to step t (B,)."""
    a = alpha_bar[t].view(-1, *([1] * (x0.dim() - 1)))
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def estimate(model: Model, shape: tuple, device=None) -> torch.Tensor:
    """Estimation mode: one call on zeros at the last step."""
    x = torch.zeros(shape, device=device)
    return model(x, torch.full((shape[0],), NUM_STEPS - 1, dtype=torch.long, device=device))


def ddim_timesteps(steps: int, start: int = NUM_STEPS - 1) -> list[int]:
    """`steps` evenly spaced steps from `start` down to 0 (start first)."""
    if steps < 1:
        raise ValueError(f"DDIM needs at least one step, got {steps}")
    return [round(start - i * start / steps) for i in range(steps)] if steps > 1 else [start]


def ddim(model: Model, x: torch.Tensor, steps: int, alpha_bar: torch.Tensor, start: int = NUM_STEPS - 1,
         known: torch.Tensor | None = None, known_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from x at step `start` to a clean sample in `steps` calls.

    x: (B, L, D) the starting point: Gaussian noise for generation, zeros for estimation (the
    first call is then exactly `estimate`), or a warm start noised to `start`.
    known / known_mask: (B, L, D) motion and a 0/1 mask of entries held fixed (inpainting): before
    every call they are put back, noised to the current step with the sampler's own current noise
    estimate (so the state stays on its deterministic path), and exactly so at the end.
    """
    ts = ddim_timesteps(steps, start)
    x0 = x
    eps = x / (1 - alpha_bar[start]).sqrt()
    for i, t in enumerate(ts):
        if known is not None:
            noised = q_sample(known, torch.full((x.shape[0],), t, device=x.device), eps, alpha_bar)
            x = torch.where(known_mask.bool(), noised, x)
        tt = torch.full((x.shape[0],), t, dtype=torch.long, device=x.device)
        x0 = model(x, tt)
        if known is not None:
            x0 = torch.where(known_mask.bool(), known, x0)
        if i + 1 == len(ts):
            break
        a_t, a_next = alpha_bar[t], alpha_bar[ts[i + 1]]
        eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt().clamp_min(1e-6)
        x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x0


def guided(conditional: Model, unconditional: Model, scale: float) -> Model:
    """Classifier-free guidance: uncond + scale × (cond − uncond). Used for the text condition
    only; the observations stay in both branches."""
    def model(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        u = unconditional(x, t)
        return u + scale * (conditional(x, t) - u)

    return model
