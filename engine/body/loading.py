"""Choosing the body a run uses from its config: the bundled default body, the procedural skeleton
or the user's own SMPL model."""
from __future__ import annotations

from engine.body.body_model import Body, load_default_body, procedural_body
from engine.paths import DEFAULT_BODY_PATH


def load_body(cfg) -> Body:
    """The body a BodyConfig (configs.config) asks for."""
    if cfg.model == "procedural":
        return procedural_body(cfg.stature)
    if cfg.model == "smpl":
        from engine.body.smpl import load_smpl_body  # scipy and the optional smplx, for this body only

        return load_smpl_body(cfg.smpl_path, gender=cfg.gender, betas=cfg.betas or None)
    return load_default_body(DEFAULT_BODY_PATH, cfg.stature, cfg.mesh)
