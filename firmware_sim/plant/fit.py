"""Repeat the fit of the low-viscosity cement's K0 to Krebs' mean peak syringe pressure.

``python -m firmware_sim.plant.fit`` runs the validation's Krebs population through the plant and
rescales K0 until the mean peak is 1693 kPa. Peak pressure is nearly proportional to K (cannula and
cloud scale with K; only the few kPa of marrow pressure do not), so a fixed-point rescale converges in
a few rounds. The shape constants (n, gel exponent s, cure time) are inputs, not fitted.
"""

from __future__ import annotations

from firmware_sim.plant.cement import PROFILES, CementProfile
from firmware_sim.plant.validate import KREBS_MEAN_PEAK_PA, krebs_population, with_k0


def fit_k0(profile: CementProfile, rounds: int = 6, dt_s: float = 5e-3) -> tuple[float, float]:
    """(K0, mean peak Pa) after `rounds` fixed-point rescales of K0."""
    k0 = profile.k0_pa_sn
    mean = 0.0
    for _ in range(rounds):
        runs = krebs_population(with_k0(profile, k0), dt_s)
        mean = sum(r.peak_syringe_pa for r in runs) / len(runs)
        k0 *= KREBS_MEAN_PEAK_PA / mean
    return k0, mean


def main() -> int:
    profile = PROFILES["low_viscosity"]
    k0, mean = fit_k0(profile)
    print(
        f"{profile.name}: n={profile.flow_index_n} s={profile.gel_exponent} cure={profile.cure_time_25c_s} s"
    )
    print(f"K0 = {k0:.1f} Pa s^n (mean peak before the last rescale: {mean / 1e3:.1f} kPa)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
