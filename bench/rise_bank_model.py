"""What PRESSURE_RISE's window bank costs against the ideal detector, without noise.

    python bench/rise_bank_model.py             # slopes 350-2500 kPa/s, 1x and 2x noise
    python bench/rise_bank_model.py --json

A blocked line's pressure leaves a steady level on a ramp of Q / C (0.33-2.5 MPa/s at 1-6 mL/min on
the reference lines). Fed that trace *without* noise, the slope test's statistic z_w is its mean, so
the sample at which it first exceeds c is the latency the test has on average, and the ratio of two
tests' latencies isolates what their window banks (and their thresholds) cost, with none of the
noise realizations that `bench/detector_limit.py` adds. The product is `SlopeGlr` itself (its bank,
alternate windows on alternate samples, its integer arithmetic on a trace scaled to 1000 x the ADC
counts so that rounding does not count); the ideal is `firmware_sim.ideal_detector.ideal_alarm`
(every window 3..1000 at every sample) at the product's threshold c; the alternatives are the
product's code with another bank and the threshold its number of windows needs under the same
budget (`glr_threshold`).
"""

from __future__ import annotations

import argparse
from typing import Any

import _common
import numpy as np

from firmware_sim.controller import ControllerConfig
from firmware_sim.controller.config import RISE_RING
from firmware_sim.controller.detectors import SlopeGlr, glr_threshold, pa_per_count
from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.ideal_detector import ideal_alarm

CFG = ControllerConfig()
SCALE = 1000
"""The noise-free trace is in 1/1000 ADC counts (integers), sigma and beta scaled alike: z is unchanged."""
PRE = 300
"""Samples of steady level before the onset (the windows must be filled)."""
SLOPES_KPA_S = tuple(range(350, 2501, 50))
NOISE_X = (1.0, 2.0)
DENSE = tuple(sorted({round(8 * 2 ** (i / 4)) for i in range(21)} - {256} | {255}))
"""Windows 2^(1/4) apart from 8 to 255: twice the product's density."""
LONG = (*sorted(set(CFG.rise_windows)), 362, 511)
"""The product's bank plus two longer windows (a ring of 512)."""


def trace(slope_pa_s: float, gain: float, n_after: int) -> np.ndarray:
    """Steady level, then the occlusion's ramp, in 1/SCALE ADC counts."""
    k = np.arange(-PRE, n_after)
    p = np.where(k > 0, k * slope_pa_s / CFG.sample_rate_hz, 0.0) + 1.0e6
    return np.round(p / gain * SCALE).astype(np.int64)


def product_latency(
    x: np.ndarray, windows: tuple[int, ...], ring: int, c: float, beta: float, sigma: float
) -> int:
    test = SlopeGlr(windows, ring)
    test.set_threshold(beta, c, sigma)
    for n, v in enumerate(x.tolist()):
        test.push(v)
        if n >= PRE and test.exceeded():
            return n - PRE
    raise AssertionError("no alarm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    gain = pa_per_count(REFERENCE_RIG)
    beta = CFG.rise_nominal_pa_s / CFG.sample_rate_hz / gain * SCALE
    product = tuple(sorted(set(CFG.rise_windows)))
    banks = {
        "product": (product, RISE_RING),
        "dense": (DENSE, RISE_RING),
        "long": (LONG, 2 * RISE_RING),
    }
    cs = {
        name: glr_threshold(CFG.rise_false_alarms_per_h, CFG.sample_rate_hz, len(w))
        for name, (w, _) in banks.items()
    }
    rows = []
    for nx in NOISE_X:
        sigma = CFG.sensor_noise_spec_pa * nx / gain * SCALE
        for s in SLOPES_KPA_S:
            x = trace(s * 1e3, gain, 1200)
            hit = ideal_alarm(x, PRE, len(x), beta, sigma, cs["product"])
            assert hit is not None
            ideal = hit - PRE
            row: dict[str, Any] = {"noise_x": nx, "slope_kpa_s": s, "ideal_ms": ideal}
            for name, (w, ring) in banks.items():
                row[f"{name}_ms"] = product_latency(x, w, ring, cs[name], beta, sigma)
            rows.append(row)
    summary: dict[str, dict[str, Any]] = {}
    for name, (windows, _) in banks.items():
        ratios = [r[f"{name}_ms"] / r["ideal_ms"] for r in rows]
        summary[name] = {
            "windows": list(windows),
            "c": cs[name],
            "ratio_median": _common.median(ratios),
            "ratio_max": max(ratios),
        }
    if args.json:
        _common.dump_json({"benchmark": "rise_bank_model", "banks": summary, "rows": rows})
        return 0
    print(
        f"noise-free occlusion ramps {SLOPES_KPA_S[0]}-{SLOPES_KPA_S[-1]} kPa/s from a steady level, "
        f"noise {NOISE_X}x: latency ratio to the ideal (windows 3..1000, c = {cs['product']:.2f})"
    )
    for name, (windows, _) in banks.items():
        v = summary[name]
        print(
            f"{name:<8} {len(windows):>2} windows {windows[0]}..{windows[-1]}, c = {cs[name]:.2f}: "
            f"ratio median {v['ratio_median']:.3f}, max {v['ratio_max']:.3f}"
        )
    print("latency ms (noise x, slope kPa/s: ideal / product / dense / long):")
    for r in rows:
        if r["slope_kpa_s"] in (350, 400, 500, 1000, 2000):
            print(
                f"  {r['noise_x']:g}x {r['slope_kpa_s']:>5}: {r['ideal_ms']} / {r['product_ms']} / "
                f"{r['dense_ms']} / {r['long_ms']}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
