"""The One-Euro filter (Casiez, Roussel, Vogel, CHI 2012) as a pure step function.

A low-pass whose cutoff rises with the signal's speed: still poses are smoothed hard, fast motion
passes with little lag. cutoff = min_cutoff + beta * |filtered derivative| (Hz; beta in 1 / the
signal's units); the derivative itself is low-passed at d_cutoff.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff, dt: float):
    tau = 1.0 / (2 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


def one_euro_step(x: np.ndarray, t: float, state: tuple | None, min_cutoff: float, beta: float,
                  d_cutoff: float = 1.0) -> tuple[np.ndarray, tuple]:
    """Filter one sample x (any shape, each value on its own) taken at time t (seconds) ->
    (filtered x, new state). state: None for the first sample, else what the last call returned."""
    if state is None:
        return x, (x, np.zeros_like(x), t)
    x_prev, dx_prev, t_prev = state
    dt = max(t - t_prev, 1e-6)
    dx = (x - x_prev) / dt
    dx_hat = dx_prev + _alpha(d_cutoff, dt) * (dx - dx_prev)
    a = _alpha(min_cutoff + beta * np.abs(dx_hat), dt)
    x_hat = x_prev + a * (x - x_prev)
    return x_hat, (x_hat, dx_hat, t)
