"""Where the files the product needs at run time live: the repo's assets/ folder."""
from pathlib import Path

ASSET_DIR = Path(__file__).resolve().parents[1] / "assets"
DEFAULT_BODY_PATH = ASSET_DIR / "default_body.npz"
# Trained denoiser weights: committed once the engine is trained (issue 5).
WEIGHTS_PATH = ASSET_DIR / "genmo_live.pt"
# The per-frame lifter baseline (engine.model.lifter) trained like the weights, for the benchmarks.
LIFTER_PATH = ASSET_DIR / "per_frame_lifter.pt"
