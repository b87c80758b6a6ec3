"""Training speed: one optimiser step (engine.train.train_step: the estimation and, for the
denoiser, the generation pass, backward, AdamW) on a batch of 24 windows of 120 frames, in float32
and in bfloat16 mixed precision side by side, for the bundled denoiser's size (192 wide, 4 layers)
and the per-frame lifter baseline (1024 wide, 4 layers). Random weights and windows time the same
as real ones; 60 % of the windows carry a text, as in training.

    genmo-live bench train [--threads 2] [--repeats 20]
"""
from __future__ import annotations

import torch

from bench.timing import median_ms
from engine.model.denoiser import TEXT_DIM, Conditions, Denoiser, ModelConfig
from engine.model.diffusion import cosine_alpha_bar
from engine.model.lifter import LifterConfig, PerFrameLifter
from engine.model.motion import MOTION_DIM, Normalizer
from engine.train import TrainConfig, train_step

BATCH, WINDOW, TEXT_TOKENS = 24, 120, 12
MODELS = {"denoiser, 192 wide, 4 layers (bundled)": lambda: Denoiser(ModelConfig(width=192, layers=4, mlp=768)),
          "per-frame lifter, 1024 wide, 4 layers (bundled)": lambda: PerFrameLifter(LifterConfig())}


def _batch(g: torch.Generator) -> dict:
    """A training batch of random numbers in the shapes engine.train.sample_windows gives."""
    told = torch.rand(BATCH, generator=g) < 0.6
    c = Conditions(keypoints=torch.randn(BATCH, WINDOW, 33, 2, generator=g),
                   visible=torch.rand(BATCH, WINDOW, 33, generator=g) > 0.1,
                   box=torch.randn(BATCH, WINDOW, 3, generator=g) * 0.1 + torch.tensor([0.0, 0.0, 0.5]),
                   has_box=torch.ones(BATCH, WINDOW, dtype=torch.bool),
                   text=torch.randn(BATCH, 1, TEXT_TOKENS, TEXT_DIM, generator=g),
                   text_mask=torch.ones(BATCH, 1, TEXT_TOKENS, dtype=torch.bool),
                   text_frames=told[:, None, None].expand(BATCH, 1, WINDOW).clone())
    return {"x": torch.randn(BATCH, WINDOW, MOTION_DIM, generator=g) * 0.5, "c": c,
            "contacts": (torch.rand(BATCH, WINDOW, 6, generator=g) < 0.5).float(),
            "valid": torch.ones(BATCH, WINDOW, dtype=torch.bool), "focal": torch.full((BATCH,), 554.0),
            "size": torch.tensor([[640.0, 480.0]]).expand(BATCH, 2)}


def run(repeats: int = 20) -> list[dict]:
    """Rows of {case, precision, ms} (median per step), float32 and bfloat16 for each model."""
    from engine.body.body_model import load_default_body

    rest = load_default_body().rest_joints
    g = torch.Generator().manual_seed(0)
    batch = _batch(g)
    norm, alpha_bar, cfg = Normalizer(), cosine_alpha_bar(), TrainConfig()
    rows = []
    for name, make in MODELS.items():
        for precision in ("fp32", "bf16"):
            torch.manual_seed(0)
            model = make().train()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

            def step():
                train_step(model, opt, batch["x"], batch["c"], batch["contacts"], batch["valid"], batch["focal"],
                           batch["size"], norm, rest, alpha_bar, cfg, precision == "bf16")

            rows.append({"case": name, "precision": precision, "ms": round(median_ms(step, repeats, warmup=2), 1)})
    return rows


def format_rows(rows: list[dict]) -> str:
    lines = ["| model | precision | ms per training step (24 windows of 120 frames) | vs float32 |", "|---|---|---|---|"]
    base = {r["case"]: r["ms"] for r in rows if r["precision"] == "fp32"}
    lines += [f"| {r['case']} | {r['precision']} | {r['ms']:.0f} | {base[r['case']] / r['ms']:.2f}x |" for r in rows]
    return "\n".join(lines)
