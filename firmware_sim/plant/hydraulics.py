"""Syringe-side hydraulics: compliance (the cause of after-flow), leak paths and the open Luer tip.

Compliance. Pressure squeezes the syringe barrel, the rubber plunger seal, the tubing and any gas in
the cement, so volume is stored while the pressure rises and flows on after the plunger stops. We
lump it into a linear elastic part C plus an optional bubble of free gas (isothermal, Boyle):
``V_stored(P) = C P + V_air * P / (P_atm + P)``. Default C = 0.05 mL/MPa, i.e. ~0.1 mL stored at 2 MPa,
which is what a plain stop then delivers as after-flow. Its make-up, order of magnitude: barrel
hoop strain of a 2.5 mL polycarbonate syringe (~0.01 mL at 2 MPa), plunger-seal compression (~0.02-0.05
mL), tubing, and the residual porosity of vacuum-mixed cement (~1 %, ~0.02 mL). Below the
cavitation pressure (-90 kPa gauge: dissolved gas and monomer vapour come out) the cement parts from
the plunger: the pressure stays there and the extra volume is a gap the plunger must close again.

Leak paths. A vein or a cortical defect next to the cannula tip opens a channel in parallel with the
bone: a power-law pipe of the leak's diameter and length (same K and n as the cannula), discharging
at the venous pressure (venous leak) or at the extra-osseous tissue pressure, ~0 (cortical leak).
`leak_fraction` solves the split at the tip: the bone branch (cement cloud K b Q^n, then the linear
marrow drainage) and the leak branch must see the same tip pressure. Veins do not give cement back:
when the flow reverses nothing comes out of a leak.

Disconnection. The syringe's Luer tip opens to air: the cement leaves through a short wide pipe and
the syringe pressure collapses to a few per cent of the cannula's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from firmware_sim.plant.cannula import pipe_coefficient

LeakPath = Literal["venous", "cortical"]

ATMOSPHERIC_PA = 101_325.0
CAVITATION_PA = -90_000.0
"""Gauge pressure below which the cement cavitates and separates from the plunger (vapour pressure of
MMA at room temperature is ~4 kPa absolute; dissolved air comes out a little above it)."""
DEFAULT_COMPLIANCE_ML_PER_MPA = 0.05
DEFAULT_COMPLIANCE_M3_PA = DEFAULT_COMPLIANCE_ML_PER_MPA * 1e-12
"""0.05 mL/MPa: a plain stop at 2 MPa gives ~0.1 mL after-flow (make-up in the module docstring)."""
LUER_ID_M = 2.0e-3
LUER_LENGTH_M = 7.5e-3
"""Bore and length of a male Luer tip (ISO 80369-7 tip length ~7.5 mm; bore ~2 mm): the vent path."""
LEAK_LENGTH_M: dict[str, float] = {"venous": 0.020, "cortical": 0.003}
"""Default channel lengths: a basivertebral / segmental vein segment to where it widens (~20 mm), a
crack through the cortical shell and end plate (~3 mm). Assumptions; event parameters."""


@dataclass(frozen=True, slots=True)
class Compliance:
    """Stored volume versus syringe pressure, and its inverse (closed form, one sqrt)."""

    linear_m3_pa: float = DEFAULT_COMPLIANCE_M3_PA
    air_volume_m3: float = 0.0
    """Free gas in the syringe at atmospheric pressure (hand-mixed cement can hold several %)."""
    cavitation_pa: float = CAVITATION_PA

    def stored_volume(self, pressure_pa: float) -> float:
        p = max(pressure_pa, self.cavitation_pa)
        return self.linear_m3_pa * p + self.air_volume_m3 * p / (ATMOSPHERIC_PA + p)

    @property
    def cavitation_volume_m3(self) -> float:
        return self.stored_volume(self.cavitation_pa)

    def pressure(self, stored_m3: float) -> float:
        """Inverse of `stored_volume`; the root of C P^2 + (C Pa + A - V) P - V Pa = 0 written in the
        form that does not cancel (2 V Pa / (b + sqrt(b^2 + 4 C V Pa)))."""
        if stored_m3 <= self.cavitation_volume_m3:
            return self.cavitation_pa
        c, a = self.linear_m3_pa, self.air_volume_m3
        if a == 0.0:
            return stored_m3 / c
        b = c * ATMOSPHERIC_PA + a - stored_m3
        return (
            2.0 * stored_m3 * ATMOSPHERIC_PA / (b + math.sqrt(b * b + 4.0 * c * stored_m3 * ATMOSPHERIC_PA))
        )

    def local(self, pressure_pa: float) -> float:
        """dV/dP at a pressure (m^3/Pa); infinite in the cavitated gap."""
        if pressure_pa <= self.cavitation_pa:
            return math.inf
        return self.linear_m3_pa + self.air_volume_m3 * ATMOSPHERIC_PA / (ATMOSPHERIC_PA + pressure_pa) ** 2


def leak_coefficient(n: float, diameter_m: float, length_m: float) -> float:
    """Geometry coefficient a (dP = K a Q^n) of a leak channel."""
    return pipe_coefficient(n, diameter_m / 2.0, length_m)


def leak_fraction(
    q_m3_s: float,
    n: float,
    a_cloud: float,
    r_drain: float,
    p_rest_pa: float,
    a_leak: float,
    p_leak_pa: float,
    iterations: int = 30,
) -> float:
    """Share of the tip flow Q that takes the leak channel (0..1), by bisection on the bone flow Qb:

    ``a_cloud Qb^n + r_drain Qb + p_rest = a_leak (Q - Qb)^n + p_leak`` (a_cloud, a_leak include K)."""
    if q_m3_s <= 0.0 or a_leak <= 0.0 or math.isinf(a_leak):
        return 0.0

    def excess(qb: float) -> float:
        bone = a_cloud * math.pow(qb, n) + r_drain * qb + p_rest_pa
        return bone - (a_leak * math.pow(q_m3_s - qb, n) + p_leak_pa)

    if excess(0.0) >= 0.0:
        return 1.0
    if excess(q_m3_s) <= 0.0:
        return 0.0
    lo, hi = 0.0, q_m3_s
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        if excess(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return 1.0 - 0.5 * (lo + hi) / q_m3_s


def vent_coefficient(n: float) -> float:
    """Geometry coefficient a (dP = K a Q^n) of the open Luer tip of a disconnected syringe."""
    return pipe_coefficient(n, LUER_ID_M / 2.0, LUER_LENGTH_M)
