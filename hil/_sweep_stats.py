"""Pure bookkeeping for the detector sweep: rates with Wilson or exact (Clopper-Pearson) intervals,
rare-event bounds (exact Clopper-Pearson), size bins, latency percentiles.

No simulation and no I/O here, so that every figure the sweep reports can be unit-tested on its own.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

Z_95 = 1.959963984540054
"""Two-sided 95 % normal quantile."""


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """Wilson score interval of a binomial rate: honest near 0 and 1, where the normal one is not
    (0 of 500 false stops still bounds the rate at 0.76 %, not at 0). No trials: (0, 1), no knowledge."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"successes = {successes} must be in 0..trials ({trials}), trials >= 0")
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    denom = 1.0 + z2 / trials
    centre = (p + z2 / (2 * trials)) / denom
    half = z * math.sqrt(p * (1.0 - p) / trials + z2 / (4 * trials * trials)) / denom
    # Clamp rounding at the ends: the exact interval always contains p and stays inside [0, 1].
    return (max(0.0, min(centre - half, p)), min(1.0, max(centre + half, p)))


def clopper_pearson_upper(events: int, trials: int, confidence: float = 0.95) -> float:
    """One-sided exact (Clopper-Pearson, 1934) upper bound of a binomial rate: the largest rate under
    which seeing at most `events` in `trials` still has probability 1 - confidence. The statement a
    reviewer asks of a safety detector ("false stops below p with 95 % confidence"); with no events it
    is 1 - (1 - confidence)^(1/trials), about 3/N at 95 % (the "rule of three"). No trials: 1."""
    if trials < 0 or not 0 <= events <= trials:
        raise ValueError(f"events = {events} must be in 0..trials ({trials}), trials >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence = {confidence} must be in (0, 1)")
    if trials == 0 or events == trials:
        return 1.0
    if events == 0:  # closed form; beta.ppf agrees, this is exact to the last bit
        return float(-math.expm1(math.log1p(-confidence) / trials))
    from scipy.stats import beta  # imported here: the report needs it, a run does not

    return float(beta.ppf(confidence, events + 1, trials - events))


def clopper_pearson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided exact (Clopper-Pearson, 1934) interval of a binomial rate: each end leaves
    (1 - confidence) / 2 in its tail. Conservative (covers at least `confidence` for every true
    rate), which is what a detection rate from tens of runs needs: 18 of 18 is [0.815, 1], not 1.
    No trials: (0, 1)."""
    if trials < 0 or not 0 <= successes <= trials:
        raise ValueError(f"successes = {successes} must be in 0..trials ({trials}), trials >= 0")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence = {confidence} must be in (0, 1)")
    if trials == 0:
        return (0.0, 1.0)
    from scipy.stats import beta  # imported here: the report needs it, a run does not

    tail = (1.0 - confidence) / 2.0
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = 1.0 if successes == trials else float(beta.ppf(1.0 - tail, successes + 1, trials - successes))
    return (low, high)


def bin_index(value: float, edges: Sequence[float]) -> int | None:
    """Index i of the bin [edges[i], edges[i+1]) holding `value`; the last bin is closed on the right.
    None outside the edges or for NaN."""
    if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"bin edges {list(edges)} must be at least two, strictly increasing")
    if math.isnan(value) or value < edges[0] or value > edges[-1]:
        return None
    lo, hi = 0, len(edges) - 1
    while hi - lo > 1:  # edges[lo] <= value, and value < edges[hi] unless value == edges[-1]
        mid = (lo + hi) // 2
        if value >= edges[mid]:
            lo = mid
        else:
            hi = mid
    return lo


def bin_label(edges: Sequence[float], index: int) -> str:
    """`[a, b)`, or `[a, b]` for the last bin, with compact numbers."""
    close = "]" if index == len(edges) - 2 else ")"
    return f"[{edges[index]:g}, {edges[index + 1]:g}{close}"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by linear interpolation between order statistics (numpy's
    default); NaN for no values."""
    if not 0.0 <= q <= 100.0:
        raise ValueError(f"percentile q = {q} is outside 0..100")
    data = sorted(values)
    if not data:
        return math.nan
    pos = (len(data) - 1) * q / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


@dataclass(frozen=True)
class CellStats:
    """One cell of the table: runs with the event in one size bin at one noise level."""

    runs: int
    detected: int
    """Stopped by an expected detector after the onset, within the window."""
    stopped: int
    """Stopped by anything after the onset (expected or not): the pump is safe either way."""
    rate: float
    rate_low: float
    rate_high: float
    stop_rate: float
    latency_p50_ms: float
    latency_p90_ms: float
    latency_max_ms: float


def cell_stats(detected: Sequence[bool], stopped: Sequence[bool], latencies_ms: Sequence[float]) -> CellStats:
    """Rates with their 95 % Wilson interval and the latency percentiles of the detected runs."""
    if len(detected) != len(stopped):
        raise ValueError(f"{len(detected)} detection flags against {len(stopped)} stop flags")
    return counted_cell_stats(len(detected), sum(detected), sum(stopped), latencies_ms)


def counted_cell_stats(n: int, k: int, s: int, latencies_ms: Sequence[float]) -> CellStats:
    """`cell_stats` from counts (n runs, k detected, s stopped), as a streaming tally keeps them."""
    if not 0 <= k <= n or not 0 <= s <= n:
        raise ValueError(f"detected {k} and stopped {s} must be in 0..runs ({n})")
    low, high = wilson_interval(k, n)
    return CellStats(
        runs=n,
        detected=k,
        stopped=s,
        rate=k / n if n else math.nan,
        rate_low=low,
        rate_high=high,
        stop_rate=s / n if n else math.nan,
        latency_p50_ms=percentile(latencies_ms, 50),
        latency_p90_ms=percentile(latencies_ms, 90),
        latency_max_ms=max(latencies_ms, default=math.nan),
    )


def derive_seed(master: int, index: int) -> list[int]:
    """The seed sequence of run `index`: a function of the master seed and the index only, so a run's
    draw does not depend on the number of workers or the order they finish in."""
    if master < 0 or index < 0:
        raise ValueError(f"seed {master} and run index {index} must be >= 0")
    return [master, index]


def weighted_cycle(weights: Sequence[tuple[str, int]]) -> list[str]:
    """A cycle holding each name `weight` times, interleaved (largest remaining share first), so that
    any n consecutive runs cover every kind as evenly as the weights allow."""
    if any(w <= 0 for _, w in weights):
        raise ValueError(f"weights {list(weights)} must be positive")
    total = sum(w for _, w in weights)
    credit = {name: 0.0 for name, _ in weights}
    out: list[str] = []
    for _ in range(total):
        for name, w in weights:
            credit[name] += w / total
        name = max(credit, key=lambda k: (credit[k], -list(credit).index(k)))
        credit[name] -= 1.0
        out.append(name)
    return out
