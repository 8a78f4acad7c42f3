"""PMMA bone cement rheology: a power-law fluid whose consistency rises as the cement polymerises.

Why this shape. Bone cement is shear-thinning (Ferracane & Greener 1981; Lewis & Carroll 2002), so the
stress is a power law of the shear rate, ``tau = K * gamma_dot**n`` with ``n < 1``, and its apparent
viscosity ``K * gamma_dot**(n - 1)`` falls as the flow rises. Polymerisation thickens it: K rises slowly
through the working phase and then diverges at the gel point, like any chemical gel. We write that as

    K(theta) = min(K0 / (1 - theta / theta_g) ** s, K_set)

where ``theta`` is the *reduced time* since mixing (seconds at 25 degC, see below), ``s`` the gel
exponent and ``K_set`` = 75,000 Pa s^n the plateau every cement reaches on the rheometer (Nicholas et
al. 2007). ``theta_g`` follows from the published cure time: K reaches K_set at ``cure_time_25c_s``.

Temperature. The cure time about halves from 25 to 37 degC (Nicholas et al. 2007), i.e. a Q10 of
2 ** (10 / 12) = 1.78. We use the Arrhenius form of the same statement: the reaction clock runs
``rate_factor(T) = exp(-Ea/R (1/T - 1/298.15 K))`` times faster than at 25 degC with Ea = R ln 2 /
(1/298.15 - 1/310.15) = 44.4 kJ/mol, and ``theta = integral rate_factor(T(t)) dt``. A pre-chilled
cement (ISO 5833 data: ~12-14 min instead of ~6-7 min) is then just a colder temperature.

The fit. The power-law constants are not published (docs/references.md). We fixed the shape
(n = 0.60, s = 1.0: a modest rise through the working phase, a steep one in its last minutes) and
scaled K0 of the low-viscosity profile so that injections at 0.05 mL/s (3 mL/min) through an 11G
cannula of 100-150 mm, started 300-600 s after mixing at 22 degC, give a mean peak syringe pressure of
1693 kPa (Krebs et al. 2005). ``python -m firmware_sim.plant.fit`` repeats that fit; the result and
what it predicts (the maximum, the late/early ratio) are in docs/simulator.md and in
``cementguard sim validate``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

R_GAS_J_MOL_K = 8.314462618
KELVIN = 273.15
REFERENCE_TEMPERATURE_C = 25.0
"""Temperature at which the profiles' cure times are stated (Nicholas et al. 2007)."""
ACTIVATION_ENERGY_J_MOL = R_GAS_J_MOL_K * math.log(2.0) / (1.0 / 298.15 - 1.0 / 310.15)
"""44.4 kJ/mol: the Arrhenius energy at which the cure time halves from 25 to 37 degC (Nicholas)."""
K_SET_PA_SN = 75_000.0
"""Plateau consistency of a set cement: all cements reach ~75,000 Pa s on the rheometer (Nicholas)."""
NOMINAL_SHEAR_RATE_S = 44.0
"""Wall shear rate of 3 mL/min in an 11G cannula for n = 0.6, used to quote apparent viscosities."""


def rate_factor(temperature_c: float) -> float:
    """How many times faster the cement cures at `temperature_c` than at 25 degC (Arrhenius)."""
    t_k = temperature_c + KELVIN
    t_ref = REFERENCE_TEMPERATURE_C + KELVIN
    return math.exp(-ACTIVATION_ENERGY_J_MOL / R_GAS_J_MOL_K * (1.0 / t_k - 1.0 / t_ref))


@dataclass(frozen=True, slots=True)
class CementProfile:
    """One cement: its flow index, its consistency at mixing and how fast it gels."""

    name: str
    description: str
    flow_index_n: float
    """Power-law index n (< 1: shear-thinning)."""
    k0_pa_sn: float
    """Consistency K at the moment of mixing, Pa s^n."""
    gel_exponent: float
    """s in K0 / (1 - theta/theta_g)^s: how early the rise towards the gel point starts."""
    cure_time_25c_s: float
    """Seconds after mixing at 25 degC at which K reaches K_set (the rheometer's cure time)."""
    source: str
    k_set_pa_sn: float = K_SET_PA_SN

    @property
    def gel_time_25c_s(self) -> float:
        """theta_g: the reduced time at which the divergence term would be infinite."""
        ratio = math.pow(self.k0_pa_sn / self.k_set_pa_sn, 1.0 / self.gel_exponent)
        return self.cure_time_25c_s / (1.0 - ratio)

    def consistency(self, reduced_time_s: float) -> float:
        """K in Pa s^n at a reduced time (seconds since mixing, as if at 25 degC)."""
        theta_g = self.gel_time_25c_s
        theta = max(reduced_time_s, 0.0)
        if theta >= theta_g:
            return self.k_set_pa_sn
        k = self.k0_pa_sn / math.pow(1.0 - theta / theta_g, self.gel_exponent)
        return min(k, self.k_set_pa_sn)

    def consistency_at(self, seconds_since_mixing: float, temperature_c: float) -> float:
        """K for a cement held at one temperature since mixing."""
        return self.consistency(seconds_since_mixing * rate_factor(temperature_c))

    def apparent_viscosity(self, k_pa_sn: float, shear_rate_s: float) -> float:
        """Apparent viscosity K gamma_dot^(n-1) in Pa s; falls with shear rate when n < 1."""
        return k_pa_sn * math.pow(max(shear_rate_s, 1e-9), self.flow_index_n - 1.0)

    def cure_time_s(self, temperature_c: float) -> float:
        """Seconds after mixing at which K reaches K_set at a constant temperature (closed form)."""
        return self.cure_time_25c_s / rate_factor(temperature_c)

    def time_to_reach(self, k_pa_sn: float, temperature_c: float) -> float:
        """Seconds after mixing at which K first reaches `k_pa_sn` at a constant temperature."""
        if k_pa_sn <= self.k0_pa_sn:
            return 0.0
        k_pa_sn = min(k_pa_sn, self.k_set_pa_sn)
        theta = self.gel_time_25c_s * (1.0 - math.pow(self.k0_pa_sn / k_pa_sn, 1.0 / self.gel_exponent))
        return theta / rate_factor(temperature_c)


LOW_VISCOSITY = CementProfile(
    name="low_viscosity",
    description="low-viscosity vertebroplasty PMMA, runny for the first minutes",
    flow_index_n=0.60,
    k0_pa_sn=355.0,
    gel_exponent=1.0,
    cure_time_25c_s=13.0 * 60.0,
    source=(
        "cure 13 min at 25 degC (Nicholas 2007, Palacos R / Cemex); K0 fitted to Krebs 2005 mean peak "
        "1693 kPa; n and s chosen (not published)"
    ),
)

HIGH_VISCOSITY = CementProfile(
    name="high_viscosity",
    description="high-viscosity (doughy) PMMA for hydraulic delivery, lower leak risk",
    flow_index_n=0.45,
    k0_pa_sn=1500.0,
    gel_exponent=1.0,
    cure_time_25c_s=13.0 * 60.0,
    source=(
        "cure 13 min at 25 degC (Nicholas 2007, Palacos R); K0 set so its apparent viscosity at 3.5 min "
        "exceeds the low-viscosity cement's at 9.5 min (Habib 2010: less leakage) and 3 mL/min through "
        "11G needs 2-4 MPa over its working window (motorised / hydraulic delivery); n chosen"
    ),
)

FAST_SETTING = CementProfile(
    name="fast_setting",
    description="fast-setting PMMA, short working time (working-time and setting scenarios)",
    flow_index_n=0.60,
    k0_pa_sn=355.0,
    gel_exponent=1.0,
    cure_time_25c_s=8.7 * 60.0,
    source="cure 8.7 min at 25 degC (Nicholas 2007, CMW1); K0 and n as the low-viscosity profile",
)

PROFILES: dict[str, CementProfile] = {p.name: p for p in (LOW_VISCOSITY, HIGH_VISCOSITY, FAST_SETTING)}
