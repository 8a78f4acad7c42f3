"""Telemetry history for the plots: preallocated numpy ring buffers, and plot-width downsampling.

The dashboard keeps the last `capacity` samples (default 10 minutes at 1 kHz) in fixed arrays, so a
long run costs no allocation per batch and a bounded amount of memory (~15 MB). The recording, not
this buffer, is the complete record of a run. Plots never draw every sample: `downsampled` reduces
a signal to min/max pairs per plot column (`host.plot.minmax_downsample`), which keeps every spike
visible at any width.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from host.plot import minmax_downsample
from protocol.models import NL_PER_ML, NL_S_PER_ML_MIN, PA_PER_KPA
from protocol.telemetry import SampleArray

DEFAULT_CAPACITY = 600_000
"""10 minutes of 1 kHz telemetry."""
PRESTAGE = 8
"""A history longer than PRESTAGE x the points wanted is pre-reduced in blocks (see `downsampled`)."""
SIGNALS = ("pressure_kpa", "delivered_ml", "flow_ml_min", "viscosity_pa_s")

FloatArray = npt.NDArray[np.floating[Any]]


@dataclass(frozen=True, slots=True)
class Series:
    """One signal in time order, ready to plot: x in seconds since the first sample, y in edge units."""

    x: FloatArray
    y: FloatArray


class History:
    """Fixed-size ring buffers of the plotted signals, in edge units (kPa, mL, mL/min, Pa s).

    `version` increases with every change, so a view redraws only when there is something new."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 2:
            raise ValueError(f"history capacity {capacity} is too small; allowed >= 2 (samples)")
        self.capacity = capacity
        self._t = np.zeros(capacity, dtype=np.float64)
        self._cols = {name: np.zeros(capacity, dtype=np.float32) for name in SIGNALS}
        self._head = 0  # next write position
        self._count = 0
        self.t0_s: float | None = None
        """Controller time of the first sample ever added: the plots' time origin."""
        self.version = 0

    def __len__(self) -> int:
        return self._count

    def clear(self) -> None:
        self._head = self._count = 0
        self.t0_s = None
        self.version += 1

    def append(self, samples: SampleArray) -> None:
        """Add telemetry samples (protocol.telemetry.SAMPLE_DTYPE), oldest dropped when full."""
        n = len(samples)
        if n == 0:
            return
        if n > self.capacity:
            samples = samples[-self.capacity :]
            n = self.capacity
        t = samples["t_us"] / 1e6
        if self.t0_s is None:
            self.t0_s = float(t[0])
        columns = {
            "pressure_kpa": samples["pressure_pa"] / PA_PER_KPA,
            "delivered_ml": samples["delivered_nl"] / NL_PER_ML,
            "flow_ml_min": samples["flow_nl_s"] / NL_S_PER_ML_MIN,
            "viscosity_pa_s": samples["viscosity_pas"],
        }
        first = min(n, self.capacity - self._head)
        rest = n - first
        h = self._head
        self._t[h : h + first] = t[:first]
        for name, values in columns.items():
            self._cols[name][h : h + first] = values[:first]
        if rest:
            self._t[:rest] = t[first:]
            for name, values in columns.items():
                self._cols[name][:rest] = values[first:]
        self._head = (h + n) % self.capacity
        self._count = min(self._count + n, self.capacity)
        self.version += 1

    def _ordered(self, column: npt.NDArray[Any]) -> npt.NDArray[Any]:
        if self._count < self.capacity:
            return column[: self._count]
        if self._head == 0:
            return column
        return np.concatenate((column[self._head :], column[: self._head]))

    def times(self) -> FloatArray:
        """Sample times in seconds since the first sample (a view or a fresh array: do not modify)."""
        t = self._ordered(self._t)
        return t - (self.t0_s or 0.0)

    def signal(self, name: str) -> FloatArray:
        return self._ordered(self._cols[name])

    def downsampled(self, name: str, columns: int, against: str | None = None) -> Series:
        """`name` reduced to at most 2 x `columns` points: each bucket's minimum and maximum, in time
        order (`host.plot.minmax_downsample`). x is the time, or the signal `against` at the same
        samples (pressure against delivered volume).

        A long history is first cut to about 8 x `columns` blocks, keeping each block's minimum and
        maximum sample in time order (one argmin/argmax pass over float32, no copies), so the NaN-aware
        general reduction runs on a few thousand points instead of the whole history. The extremes
        survive both stages: every spike is still drawn."""
        target = max(2, 2 * columns)
        t, y = self._ordered(self._t), self._ordered(self._cols[name])
        if against is not None:
            t = self._ordered(self._cols[against]).astype(np.float64)
        n = len(y)
        if n > PRESTAGE * target:
            k = n // (PRESTAGE // 2 * target)
            m = n // k
            blocks = y[: m * k].reshape(m, k)
            lo, hi = blocks.argmin(axis=1), blocks.argmax(axis=1)
            base = np.arange(m) * k
            idx = np.stack((base + np.minimum(lo, hi), base + np.maximum(lo, hi)), axis=1).ravel()
            idx = np.concatenate((idx, np.arange(m * k, n)))
            t, y = t[idx], y[idx]
        origin = (self.t0_s or 0.0) if against is None else 0.0
        x, yy = minmax_downsample(t - origin, y, target)
        return Series(x, yy)
