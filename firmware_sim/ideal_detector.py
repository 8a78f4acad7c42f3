"""The ideal occlusion detector: the yardstick the product's PRESSURE_RISE is measured against.

Offline, on a recorded trace (numpy, no size bound: it is not firmware): the generalized likelihood
ratio for "the last w samples lie on a line steeper than beta" (intercept unknown, white noise of a
known sigma), maximized over every window w = 3..`max_window` samples, i.e. over the unknown onset.
That is the likelihood-ratio test for a change in the pressure slope that tolerates nominal ramps up
to beta (least favourable null: a ramp at exactly beta). `bench/detector_limit.py` runs it on the
samples the controller saw; `tests/controller/test_sequential_detectors.py` bounds the product's
latency by it.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MAX_WINDOW = 1000
"""Longest window (samples): 1 s, beyond the slowest occlusion the benchmark detects (~0.2 s)."""


def ideal_alarm(
    adc: npt.ArrayLike,
    start: int,
    stop: int,
    beta_counts: float,
    sigma_counts: float,
    c: float,
    max_window: int = MAX_WINDOW,
) -> int | None:
    """First sample index n in [start, stop) at which max_w z_w(n) > c, z_w the standardized
    least-squares slope of samples n-w+1..n minus `beta_counts` (counts per sample); None if none."""
    x = np.asarray(adc, dtype=np.int64)
    k = np.arange(len(x), dtype=np.int64)
    s0 = np.concatenate(([0], np.cumsum(x)))
    s1 = np.concatenate(([0], np.cumsum(k * x)))
    for n in range(max(start, 2), min(stop, len(x))):
        w = np.arange(3, min(max_window, n + 1) + 1, dtype=np.int64)
        a = s0[n + 1] - s0[n + 1 - w]
        b = s1[n + 1] - s1[n + 1 - w]
        t2 = 2 * b - (2 * n - w + 1) * a
        d = w * (w * w - 1) / 12.0
        z = (t2 / (2.0 * d) - beta_counts) * np.sqrt(d) / sigma_counts
        if z.max() > c:
            return n
    return None
