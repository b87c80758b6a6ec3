"""Timing helpers shared by the benchmarks."""
from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats: int = 50, warmup: int = 5) -> float:
    """Median wall time of fn() in milliseconds over `repeats` calls, after `warmup` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)
