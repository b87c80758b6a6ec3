"""Denoiser speed: one 120-frame window, batch 1, the live case, for 1, 2 and 5 DDIM steps (1 =
estimation mode), for the design size (256 wide, 6 layers) and a smaller one (192 wide, 4 layers)
side by side in the same run; with a checkpoint, its own size too. Random weights time the same as
trained ones. Text blocks are not run: a window with no text skips them.

    genmo-live bench engine [--threads 2] [--repeats 50] [--model PATH]
"""
from __future__ import annotations

import torch

from bench.timing import median_ms
from engine.diffusion import cosine_alpha_bar, ddim
from engine.model import Conditions, Denoiser, ModelConfig
from engine.motion import MOTION_DIM

WINDOW = 120
STEPS = (1, 2, 5)
SIZES = {"256 wide, 6 layers (design)": ModelConfig(), "192 wide, 4 layers": ModelConfig(width=192, layers=4, mlp=768)}


def _conditions(g: torch.Generator) -> Conditions:
    return Conditions(keypoints=torch.randn(1, WINDOW, 33, 2, generator=g),
                      visible=torch.rand(1, WINDOW, 33, generator=g) > 0.2,
                      box=torch.randn(1, WINDOW, 3, generator=g), has_box=torch.ones(1, WINDOW, dtype=torch.bool))


def run(repeats: int = 50, model_path: str | None = None) -> list[dict]:
    """Rows of {case, params_m, steps, ms} (median per window)."""
    sizes = dict(SIZES)
    models = {name: Denoiser(cfg).eval() for name, cfg in sizes.items()}
    if model_path:
        from engine.train import load_model

        models[f"checkpoint {model_path}"] = load_model(model_path)[0]
    g = torch.Generator().manual_seed(0)
    cond = _conditions(g)
    alpha_bar = cosine_alpha_bar()
    rows = []
    for name, model in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        for steps in STEPS:
            x = torch.zeros(1, WINDOW, MOTION_DIM)

            def window():
                with torch.inference_mode():
                    ddim(lambda x_t, t: model(x_t, t, cond)[0], x, steps, alpha_bar)

            rows.append({"case": name, "params_m": round(params, 2), "steps": steps,
                         "ms": round(median_ms(window, repeats), 2)})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| model | parameters | DDIM steps | ms per 120-frame window |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['params_m']} M | {r['steps']} | {r['ms']:.2f} |" for r in rows]
    return "\n".join(lines)
