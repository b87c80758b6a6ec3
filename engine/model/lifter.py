"""The per-frame lifter: the baseline the denoiser is compared with (issue #5 item 7).

An MLP from ONE frame's conditions to that frame's motion, in the spirit of Martinez et al.'s
"simple yet effective baseline" for 3D lifting: no temporal context at all, so whatever the
denoiser gains from seeing a window of frames (smoothness, filling in occluded and missing frames,
velocities) shows up as the difference between the two. Per frame it is told what the denoiser is
told: the 33 MediaPipe landmarks (box-normalised; a missing landmark is a learned per-landmark
token, as in the denoiser) and the person's box with its presence flag. It predicts the frame's
normalised 144-D motion vector (engine.model.motion), root velocity included (which one frame cannot
really tell; a baseline built this way predicts it anyway), and the 6 contact logits.

Its forward has the denoiser's signature and ignores the noisy motion and the step, so training
(engine.train) and evaluation (engine.evaluate.protocol) treat it as a model that is always in estimation
mode. Layers are pre-norm residual (LayerNorm, not the paper's BatchNorm, so a frame's output never
depends on the rest of the batch). The default size, 4 layers of 1024, has 4.40 M parameters, as
the 192-wide, 4-layer denoiser of bench/README.md.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from engine.model.denoiser import NUM_CONTACTS, Conditions
from engine.model.motion import MOTION_DIM
from streamer.landmarks import NUM_LANDMARKS


@dataclass
class LifterConfig:
    width: int = 1024
    layers: int = 4            # hidden layers of `width`: the input layer, then layers - 1 residual ones
    landmark_dim: int = 32     # per-landmark embedding, as the denoiser's
    dropout: float = 0.1


class Residual(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width, eps=1e-6)
        self.fc = nn.Linear(width, width)
        self.act = nn.GELU(approximate="tanh")
        self.drop = nn.Dropout(dropout)

    def forward(self, h):
        return h + self.drop(self.act(self.fc(self.norm(h))))


class PerFrameLifter(nn.Module):
    def __init__(self, cfg: LifterConfig = LifterConfig()):
        super().__init__()
        self.cfg = cfg
        self.landmark = nn.Linear(2, cfg.landmark_dim)
        self.missing = nn.Parameter(torch.randn(NUM_LANDMARKS, cfg.landmark_dim) * 0.02)
        self.inp = nn.Sequential(nn.Linear(NUM_LANDMARKS * cfg.landmark_dim + 4, cfg.width),
                                 nn.GELU(approximate="tanh"), nn.Dropout(cfg.dropout))
        self.blocks = nn.ModuleList(Residual(cfg.width, cfg.dropout) for _ in range(cfg.layers - 1))
        self.norm = nn.LayerNorm(cfg.width, eps=1e-6)
        self.x0_head = nn.Linear(cfg.width, MOTION_DIM)
        self.contact_head = nn.Linear(cfg.width, NUM_CONTACTS)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, c: Conditions) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditions of B windows of L frames -> x0 (B, L, 144) normalised motion, contact logits
        (B, L, 6), each frame from its own conditions only. x_t (B, L, 144) and t (B,) are ignored
        (the denoiser's signature); c's text fields too."""
        lm = torch.where(c.visible[..., None], self.landmark(c.keypoints), self.missing)  # (B, L, 33, dim)
        box = torch.cat([c.box * c.has_box[..., None], c.has_box[..., None].float()], -1)  # (B, L, 4)
        h = self.inp(torch.cat([lm.flatten(-2), box], -1))
        for block in self.blocks:
            h = block(h)
        h = self.norm(h)
        return self.x0_head(h), self.contact_head(h)

    def config_dict(self) -> dict:
        return asdict(self.cfg)
