"""Denoiser speed: one 120-frame window, batch 1, the live case, for 1, 2 and 5 DDIM steps (1 =
estimation mode), for the design size (256 wide, 6 layers) and a smaller one (192 wide, 4 layers)
side by side in the same run; with a checkpoint, its own size too; and each at 1 step with mirror
averaging (engine.model.mirror: the window and its mirror image in one batch of 2). Random weights time
the same as trained ones. Text blocks are not run: a window with no text skips them.

    genmo-live bench engine [--threads 2] [--repeats 50] [--model PATH]
"""
from __future__ import annotations

import torch

from bench.timing import median_ms
from engine.model.denoiser import Conditions, Denoiser, ModelConfig
from engine.model.diffusion import cosine_alpha_bar, ddim
from engine.model.mirror import mirror_averaged
from engine.model.motion import MOTION_DIM, Normalizer

WINDOW = 120
STEPS = (1, 2, 5)
SIZES = {"256 wide, 6 layers (design)": ModelConfig(), "192 wide, 4 layers": ModelConfig(width=192, layers=4, mlp=768)}


def _conditions(g: torch.Generator) -> Conditions:
    return Conditions(keypoints=torch.randn(1, WINDOW, 33, 2, generator=g),
                      visible=torch.rand(1, WINDOW, 33, generator=g) > 0.2,
                      box=torch.randn(1, WINDOW, 3, generator=g), has_box=torch.ones(1, WINDOW, dtype=torch.bool))


def run(repeats: int = 50, model_path: str | None = None) -> list[dict]:
    """Rows of {case, params_m, steps, ms} (median per window)."""
    models = {name: (Denoiser(cfg).eval(), Normalizer()) for name, cfg in SIZES.items()}
    if model_path:
        from engine.model.checkpoint import load_model

        models[f"checkpoint {model_path}"] = load_model(model_path)[:2]
    g = torch.Generator().manual_seed(0)
    cond = _conditions(g)
    alpha_bar = cosine_alpha_bar()
    rows = []
    x = torch.zeros(1, WINDOW, MOTION_DIM)
    for name, (model, norm) in models.items():
        params = sum(p.numel() for p in model.parameters()) / 1e6
        cases = [(name, model, steps) for steps in STEPS] + [(f"{name}, mirror-averaged", mirror_averaged(model, norm), 1)]
        for case, run_model, steps in cases:
            def window():
                with torch.inference_mode():
                    ddim(lambda x_t, t: run_model(x_t, t, cond)[0], x, steps, alpha_bar)

            rows.append({"case": case, "params_m": round(params, 2), "steps": steps,
                         "ms": round(median_ms(window, repeats), 2)})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| model | parameters | DDIM steps | ms per 120-frame window |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['params_m']} M | {r['steps']} | {r['ms']:.2f} |" for r in rows]
    return "\n".join(lines)
