"""Linear attenuation coefficients of what a lateral or AP beam crosses, at one effective energy.

A C-arm runs at 70-90 kVp with 3-4 mm Al (and often 0.1-0.2 mm Cu) filtration; after a lumbar
patient the spectrum reaching the detector has a mean energy near 55-65 keV. The renderer uses one
effective energy, 60 keV (a monoenergetic Beer-Lambert model: no beam hardening; docs/fluoroscopy.md
says what that leaves out). Mass attenuation coefficients are read, to two or three figures, from
the NIST XCOM / X-ray mass attenuation tables (Hubbell and Seltzer, NIST, 1995, NISTIR 5632):

    water 0.206 cm^2/g; cortical bone (ICRU, 1.92 g/cm^3) 0.315 cm^2/g; iron 1.205 cm^2/g;
    PMMA 0.192 cm^2/g; iodine 6.55 cm^2/g.

Barium is not in that short list: 7.5 cm^2/g at 60 keV is an estimate (iodine's 6.55 scaled by
Z^4/A from Z = 53 to 56, both well above their K edges at 33.2 and 37.4 keV), good to ~10 %.

Cement: PMMA with 30 % barium sulphate by mass (the opacifier load of vertebroplasty cements such
as KyphX HV-R; plain orthopaedic cements carry ~10 %, which is why vertebroplasty cements carry more).
BaSO4 is 58.8 % Ba by mass: 0.588 * 7.5 + 0.412 * ~0.19 = 4.5 cm^2/g. The mixture's density from
the volume fractions (PMMA 1.19, BaSO4 4.5 g/cm^3) is 1.53 g/cm^3, so mu = (0.7 * 0.192 + 0.3 * 4.5)
* 1.53 = 2.27 /cm. A zirconia-loaded cement (e.g. ~45 % ZrO2) is of the same order at this energy;
`FluoroConfig.cement_mu_per_mm` takes another figure.

Marrow is taken as water (red/yellow marrow mixes are 0.93-1.03 g/cm^3 with water-like composition).
Cancellous bone is bone tissue at its volume fraction (1 - porosity) plus marrow in the pores; the
cement replaces marrow in the pores it fills. Every coefficient here is per millimetre.
"""

from __future__ import annotations

__all__ = [
    "EFFECTIVE_ENERGY_KEV",
    "MU_BONE_PER_MM",
    "MU_CEMENT_PER_MM",
    "MU_MARROW_PER_MM",
    "MU_STEEL_PER_MM",
    "MU_WATER_PER_MM",
]

EFFECTIVE_ENERGY_KEV = 60.0
MU_WATER_PER_MM = 0.0206
"""Soft tissue, blood and marrow: 0.206 cm^2/g * 1.00 g/cm^3."""
MU_MARROW_PER_MM = MU_WATER_PER_MM
MU_BONE_PER_MM = 0.0605
"""Cortical bone tissue (ICRU): 0.315 cm^2/g * 1.92 g/cm^3. Trabeculae are the same tissue."""
MU_CEMENT_PER_MM = 0.227
"""PMMA with 30 wt% BaSO4 (derivation above)."""
MU_STEEL_PER_MM = 0.95
"""The cannula (stainless steel, taken as iron): 1.205 cm^2/g * 7.9 g/cm^3."""
