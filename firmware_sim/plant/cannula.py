"""Cannula: laminar power-law pipe flow, where ~95 % of the injection pressure is lost.

For a power-law fluid in a straight pipe of radius R and length L the Rabinowitsch-Mooney relation
gives ``Q = (pi n R^3 / (3n+1)) * (R dP / (2 K L))**(1/n)``, or inverted, ``dP = K * a * Q**n`` with
the geometry coefficient ``a = (2 L / R) * ((3n+1) / (pi n R^3))**n``. Sections in series add their
``a`` (same Q, same K, same n). A proximal section of larger bore (Baroud & Steffen 2005) is one more
section; so is the open Luer tip of a disconnected syringe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

GAUGE_ID_M: dict[int, float] = {10: 2.692e-3, 11: 2.388e-3, 13: 1.803e-3}
"""Regular-wall inner diameters (standard needle gauge chart, docs/references.md)."""
GAUGE_OD_M: dict[int, float] = {10: 3.404e-3, 11: 3.048e-3, 13: 2.413e-3}
DEFAULT_DISTAL_LENGTH_M = 0.035
"""Length that must stay narrow when the proximal part is widened: the part inside pedicle and body
(lumbar pedicle ~15-20 mm plus ~15-20 mm into the body). An assumption; a parameter."""


def pipe_coefficient(n: float, radius_m: float, length_m: float) -> float:
    """Geometry coefficient a of ``dP = K a Q^n`` for one straight section (Rabinowitsch-Mooney)."""
    return (2.0 * length_m / radius_m) * math.pow((3.0 * n + 1.0) / (math.pi * n * radius_m**3), n)


def pressure_drop(q_m3_s: float, k_pa_sn: float, n: float, radius_m: float, length_m: float) -> float:
    """Pressure drop (Pa, signed like Q) to push Q through one section."""
    a = k_pa_sn * pipe_coefficient(n, radius_m, length_m)
    return math.copysign(a * abs(q_m3_s) ** n, q_m3_s)


def flow_rate(dp_pa: float, k_pa_sn: float, n: float, radius_m: float, length_m: float) -> float:
    """Flow (m^3/s, signed like dP) that a pressure drop drives through one section."""
    q = (math.pi * n * radius_m**3 / (3.0 * n + 1.0)) * (
        radius_m * abs(dp_pa) / (2.0 * k_pa_sn * length_m)
    ) ** (1.0 / n)
    return math.copysign(q, dp_pa)


def wall_shear_rate(q_m3_s: float, n: float, radius_m: float) -> float:
    """True wall shear rate (1/s) of a power-law fluid: ((3n+1)/4n) * 4Q/(pi R^3)."""
    return (3.0 * n + 1.0) / (4.0 * n) * 4.0 * abs(q_m3_s) / (math.pi * radius_m**3)


def newtonian_viscosity(dp_pa: float, q_m3_s: float, radius_m: float, length_m: float) -> float:
    """Hagen-Poiseuille viscosity that would explain dP at Q: what an online estimator reports."""
    if q_m3_s == 0.0:
        return math.inf
    return dp_pa * math.pi * radius_m**4 / (8.0 * length_m * q_m3_s)


@dataclass(frozen=True, slots=True)
class Cannula:
    """A straight cannula, optionally with a wider proximal section ahead of the narrow distal one."""

    inner_radius_m: float
    length_m: float
    proximal_radius_m: float | None = None
    distal_length_m: float = DEFAULT_DISTAL_LENGTH_M

    @classmethod
    def from_gauge(
        cls,
        gauge: int,
        length_m: float,
        proximal_id_m: float | None = None,
        distal_length_m: float = DEFAULT_DISTAL_LENGTH_M,
    ) -> Cannula:
        if gauge not in GAUGE_ID_M:
            raise ValueError(f"cannula gauge {gauge} is not one of {sorted(GAUGE_ID_M)}")
        proximal_r = None if proximal_id_m is None else proximal_id_m / 2.0
        return cls(GAUGE_ID_M[gauge] / 2.0, length_m, proximal_r, distal_length_m)

    def sections(self) -> list[tuple[float, float]]:
        """(radius, length) of each section, syringe end first."""
        if self.proximal_radius_m is None:
            return [(self.inner_radius_m, self.length_m)]
        distal = min(self.distal_length_m, self.length_m)
        return [(self.proximal_radius_m, self.length_m - distal), (self.inner_radius_m, distal)]

    def coefficient(self, n: float) -> float:
        """Sum of the sections' a: ``dP = K * coefficient(n) * Q^n``."""
        return sum(pipe_coefficient(n, r, length) for r, length in self.sections() if length > 0.0)

    def pressure_drop(self, q_m3_s: float, k_pa_sn: float, n: float) -> float:
        return math.copysign(k_pa_sn * self.coefficient(n) * abs(q_m3_s) ** n, q_m3_s)

    def flow_rate(self, dp_pa: float, k_pa_sn: float, n: float) -> float:
        return math.copysign((abs(dp_pa) / (k_pa_sn * self.coefficient(n))) ** (1.0 / n), dp_pa)
