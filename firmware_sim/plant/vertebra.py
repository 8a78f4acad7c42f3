"""Vertebral body: the back-pressure the cement meets at the cannula tip.

Two resistances in series, both small next to the cannula's:

1. The cement cloud. Cement permeates cancellous bone radially from the tip (Darcy flow in a porous
   medium of permeability k, porosity phi). For a power-law fluid the Christopher-Middleman form of
   Darcy's law gives ``-dP/dr = (H/k) v^n`` with ``H = (K/12)(9 + 3/n)^n (150 k phi)^((1-n)/2)`` and the
   superficial velocity ``v = Q / (4 pi r^2)``. Integrated from the source radius r0 (the cannula bore)
   to the cloud front rc (which grows with the volume injected, rc^3 = r0^3 + 3 V / (4 pi phi)):
   ``dP_cloud = K * b(rc) * Q^n`` with ``b = (H/K)/k (1/4 pi)^n (r0^(1-2n) - rc^(1-2n)) / (2n-1)``.
   Same K and n as the cannula, so it simply adds to the cannula's geometry coefficient. This is
   where the remaining ~5 % of Baroud & Steffen's pressure budget goes: it is predicted, not fitted.
2. The marrow. The cloud pushes marrow out of the body through its veins; what a pressure needle in
   the body reads (Reidy 2003, Li 2015) is this marrow pressure: ``P_iv = P_rest + R_drain * Q``. R_drain
   is *calibrated* per bone: intact to the mean of Reidy (6.83 kPa) and Li (5.09 kPa) at 3 mL/min;
   tumour (soft tissue, no permeation: the cement pushes a bolus) at Reidy's ratio 39.66/6.83; a void
   (cavity made first, cement pools before it permeates) at Li's ratio 1.20/5.09.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

BoneKind = Literal["intact", "tumour", "void"]

Q_3_ML_MIN_M3_S = 3e-6 / 60.0
BONE_PERMEABILITY_M2 = (4.45e-8 * 3.44e-8 * 3.44e-8) ** (1.0 / 3.0)
"""3.75e-8 m^2: isotropic equivalent (geometric mean) of Baroud 2004's superior-inferior 4.45e-8 and
anterior-posterior 3.44e-8 m^2, taking medio-lateral equal to anterior-posterior (an assumption)."""
BONE_POROSITY = 0.90
"""Porosity of osteoporotic lumbar cancellous bone (bone volume fraction ~10 %): a textbook value."""
RESTING_PRESSURE_PA = 667.0
"""5 mmHg: intraosseous pressure equals inferior vena cava pressure at rest (Spine 1981;6:159)."""
REIDY_INTACT_PA = 6830.0
LI_INTACT_PA = 5090.0
REIDY_TUMOUR_PA = 39660.0
LI_VOID_PA = 1200.0
DRAINAGE_RESISTANCE_PA_S_M3: dict[str, float] = {
    "intact": 0.5 * (REIDY_INTACT_PA + LI_INTACT_PA) / Q_3_ML_MIN_M3_S,
}
DRAINAGE_RESISTANCE_PA_S_M3["tumour"] = (
    DRAINAGE_RESISTANCE_PA_S_M3["intact"] * REIDY_TUMOUR_PA / REIDY_INTACT_PA
)
DRAINAGE_RESISTANCE_PA_S_M3["void"] = DRAINAGE_RESISTANCE_PA_S_M3["intact"] * LI_VOID_PA / LI_INTACT_PA
DEFAULT_VOID_VOLUME_M3 = 2.0e-6
"""Cavity made before injection (a kyphoplasty balloon makes ~2-4 mL): an assumption, a parameter."""


def christopher_middleman_factor(n: float, permeability_m2: float, porosity: float) -> float:
    """H/K of the Christopher-Middleman power-law Darcy law (dimension m^(1-n))."""
    return math.pow(9.0 + 3.0 / n, n) / 12.0 * math.pow(150.0 * permeability_m2 * porosity, (1.0 - n) / 2.0)


def spherical_integral(n: float, r0_m: float, rc_m: float) -> float:
    """Integral of r^(-2n) from r0 to rc (the log form at n = 1/2)."""
    if rc_m <= r0_m:
        return 0.0
    if abs(2.0 * n - 1.0) < 1e-9:
        return math.log(rc_m / r0_m)
    return (math.pow(r0_m, 1.0 - 2.0 * n) - math.pow(rc_m, 1.0 - 2.0 * n)) / (2.0 * n - 1.0)


@dataclass(frozen=True, slots=True)
class Vertebra:
    """One vertebral body: its bone, its drainage and where the cement enters it."""

    bone: BoneKind
    source_radius_m: float
    """Radius at which the cement enters the bone: the cannula bore."""
    resting_pressure_pa: float = RESTING_PRESSURE_PA
    permeability_m2: float = BONE_PERMEABILITY_M2
    porosity: float = BONE_POROSITY
    void_volume_m3: float = DEFAULT_VOID_VOLUME_M3
    drainage_resistance_pa_s_m3: float | None = None
    """None: the calibrated value for `bone`."""

    @property
    def drainage_resistance(self) -> float:
        if self.drainage_resistance_pa_s_m3 is not None:
            return self.drainage_resistance_pa_s_m3
        return DRAINAGE_RESISTANCE_PA_S_M3[self.bone]

    @property
    def void_radius_m(self) -> float:
        return math.cbrt(3.0 * self.void_volume_m3 / (4.0 * math.pi))

    def cloud_radii(self, bone_volume_m3: float) -> tuple[float, float]:
        """(r0, rc): where permeation starts and where its front is, for the cement in the body."""
        v = max(bone_volume_m3, 0.0)
        if self.bone == "void":
            r0 = self.void_radius_m
            v = max(v - self.void_volume_m3, 0.0)
        else:
            r0 = self.source_radius_m
        rc = math.cbrt(r0**3 + 3.0 * v / (4.0 * math.pi * self.porosity))
        return r0, rc

    def cloud_coefficient(self, n: float, bone_volume_m3: float) -> float:
        """b of ``dP_cloud = K b Q^n``: zero for a tumour (bolus) and while a void is still filling."""
        if self.bone == "tumour":
            return 0.0
        r0, rc = self.cloud_radii(bone_volume_m3)
        h = christopher_middleman_factor(n, self.permeability_m2, self.porosity)
        return h / self.permeability_m2 * math.pow(4.0 * math.pi, -n) * spherical_integral(n, r0, rc)

    def marrow_pressure(self, q_m3_s: float) -> float:
        """Intravertebral (marrow) pressure while cement enters at Q: what Reidy and Li measured."""
        return self.resting_pressure_pa + self.drainage_resistance * q_m3_s
