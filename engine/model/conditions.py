"""From detector output to the denoiser's conditions (engine.model.denoiser.Conditions). Pure functions.

The live pipeline and training call the same code, so the model sees the same numbers in both:
- the person's box: the square around the landmarks in view, grown by BOX_MARGIN; a frame with
  fewer than MIN_VISIBLE landmarks in view has no box and counts as no observation;
- landmarks normalised by that box: 2 (xy - centre) / size, so about [-1, 1];
- a landmark is missing when its visibility is below 0.5, it is outside the image, or NaN;
- the box given to the model relative to the told focal length:
  [(cx - W/2) / f, (cy - H/2) / f, size / f]; uncalibrated, f is that of ASSUMED_HFOV_DEG.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from engine.model.denoiser import Conditions
from streamer.landmarks import present_landmarks

MIN_VISIBLE = 4       # GEM: a frame has 2D only with more than 3 visible joints
BOX_MARGIN = 1.2
ASSUMED_HFOV_DEG = 60.0


def assumed_focal(width: int, hfov_deg: float = ASSUMED_HFOV_DEG) -> float:
    """Focal length in pixels of an image `width` wide with the given horizontal field of view."""
    return (width / 2) / math.tan(math.radians(hfov_deg) / 2)


def landmark_conditions(keypoints: np.ndarray, visibility: np.ndarray, width: float | np.ndarray,
                        height: float | np.ndarray, focal: float | np.ndarray) -> dict[str, np.ndarray]:
    """(T, 33, 2) pixels and (T, 33) visibility -> numpy arrays of Conditions' first four fields:
    keypoints (T, 33, 2), visible (T, 33), box (T, 3), has_box (T,). width, height, focal: one
    image size and focal length (pixels) for all T frames, or (T,) each frame its own (frames of
    many streams)."""
    kp = np.asarray(keypoints, np.float64)
    width, height = np.asarray(width, np.float64), np.asarray(height, np.float64)
    visible = present_landmarks(kp, visibility, width[..., None], height[..., None])
    has_box = visible.sum(-1) >= MIN_VISIBLE
    lo = np.where(visible[..., None], kp, np.inf).min(1)
    hi = np.where(visible[..., None], kp, -np.inf).max(1)
    with np.errstate(invalid="ignore"):  # inf - inf on frames with nothing in view, masked below
        centre = np.where(has_box[:, None], (lo + hi) / 2, 0.0)
        size = np.where(has_box, np.maximum((hi - lo).max(-1) * BOX_MARGIN, 1.0), 1.0)
    norm = 2 * (kp - centre[:, None]) / size[:, None, None]
    # NaN pixels (missing landmarks) to 0, as nan_to_num did (the infinities it also clipped end
    # as inf in float32 all the same) without its checks, which took a sixth of this function.
    norm[np.isnan(norm)] = 0.0
    visible &= has_box[:, None]
    box = np.stack([(centre[:, 0] - width / 2) / focal, (centre[:, 1] - height / 2) / focal, size / focal], -1)
    box = np.where(has_box[:, None], box, 0.0)
    return {"keypoints": norm.astype(np.float32), "visible": visible, "box": box.astype(np.float32),
            "has_box": has_box}


def batch_conditions(items: list[dict], device=None) -> Conditions:
    """Stack per-window dicts of landmark_conditions (each (L, ...)) into a Conditions batch."""
    def stack(key, dtype):
        # np.array, not np.stack: the same array from equal shapes, in a quarter of the time.
        return torch.as_tensor(np.array([it[key] for it in items]), dtype=dtype, device=device)

    return Conditions(keypoints=stack("keypoints", torch.float32), visible=stack("visible", torch.bool),
                      box=stack("box", torch.float32), has_box=stack("has_box", torch.bool))
