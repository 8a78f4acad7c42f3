"""Validation rows of the spatial body and the thermal model (targets 6-10 of `sim validate`).

Every number comes from running the model: the `Plant` with ``vertebra = "spatial"`` for leaks and
heat, the Plant's cure clock for setting times, the flow model alone for the stability sweep. Rows
whose published figure the model misses are kept in the table, marked as known misses with the
reason, rather than given a tolerance wide enough to pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from firmware_sim.hal import MotorCommand
from firmware_sim.plant.body import build_body
from firmware_sim.plant.cement import rate_factor
from firmware_sim.plant.config import PlantConfig
from firmware_sim.plant.darcy import DarcyFlow
from firmware_sim.plant.plant import Plant
from firmware_sim.plant.spatial_config import SpatialConfig
from firmware_sim.plant.validate import ValidationRow
from firmware_sim.plant.vertebra import DRAINAGE_RESISTANCE_PA_S_M3, RESTING_PRESSURE_PA

ML_MIN = 1e-6 / 60.0
HABIB_EARLY_S = 210.0
HABIB_LATE_S = 570.0
HABIB_HIGH_OVER_LOW = 1.5 / 4.0
HABIB_EARLY_OVER_LATE = 4.0 / 2.6
LEAK_VOLUME_ML = 4.5
"""Injected in each leak run: enough for a bipedicular fill from the left to reach the left segmental vein."""
KOH_SETTING_S = {20.0: 534.0, 24.0: 414.0, 28.0: 381.0}
KOH_ROOM_C = 20.0
ISO_ROOM_C = 23.0
ISO_ROOM_SETTING_S = 6.5 * 60.0
"""Middle of ISO 5833's ~6-7 min at 23 degC: the set point of that cement (calibrated)."""
PRECHILLED_C = 4.0
BELKOFF_VOLUME_ML = 6.0
BELKOFF_WAIT_S = 900.0


@dataclass(frozen=True, slots=True)
class LeakRun:
    leaked_m3: float
    intravertebral_pa: float


def spatial_injection(
    cement: str,
    mixed_ago_s: float,
    volume_ml: float,
    spatial: Mapping[str, object],
    *,
    syringe_bore_mm: float = 10.0,
    dt_s: float = 0.01,
    wait_s: float = 0.0,
) -> Plant:
    """Inject `volume_ml` at 3 mL/min into a spatial body, then wait `wait_s` with the motor still."""
    config = PlantConfig.model_validate(
        {
            "cement": cement,
            "mixed_ago_s": mixed_ago_s,
            "vertebra": "spatial",
            "sensor_noise_kpa": 0.0,
            "syringe_bore_mm": syringe_bore_mm,
            "spatial": spatial,
        }
    )
    plant = Plant(config)
    cmd = MotorCommand(3.0 * ML_MIN / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step))
    for _ in range(round(volume_ml / 3.0 * 60.0 / dt_s)):
        plant.step(cmd, dt_s)
    still = MotorCommand(0.0)
    wait_dt = 0.05
    for _ in range(round(wait_s / wait_dt)):
        plant.step(still, wait_dt)
    return plant


def _leak(cement: str, mixed_ago_s: float, spatial: Mapping[str, object]) -> LeakRun:
    plant = spatial_injection(cement, mixed_ago_s, LEAK_VOLUME_ML, spatial)
    return LeakRun(plant.leaked_volume_m3, plant.intravertebral_pressure_pa)


def _target_6() -> list[ValidationRow]:
    venous = {"approach": "bipedicular"}
    cortical = {"tip_depth_fraction": 0.2, "cortical_defect": {"site": "anterior", "diameter_mm": 2.0}}
    low = _leak("low_viscosity", HABIB_EARLY_S, venous)
    high = _leak("high_viscosity", HABIB_EARLY_S, venous)
    late = _leak("low_viscosity", HABIB_LATE_S, venous)
    # a smaller body: the left segmental vein is reached after ~2.5 mL, so the leak runs through the
    # second half of the injection, as in a leak-mass test (in the default body only the last ~0.2 mL)
    established = {**venous, "width_mm": 40.0, "depth_mm": 30.0, "height_mm": 25.0, "tip_depth_fraction": 0.3}
    low_e = _leak("low_viscosity", HABIB_EARLY_S, established)
    high_e = _leak("high_viscosity", HABIB_EARLY_S, established)
    late_e = _leak("low_viscosity", HABIB_LATE_S, established)
    ratio_e = high_e.leaked_m3 / low_e.leaked_m3 if low_e.leaked_m3 > 0.0 else math.inf
    ageing_e = low_e.leaked_m3 / late_e.leaked_m3 if late_e.leaked_m3 > 0.0 else math.inf
    low_c = _leak("low_viscosity", HABIB_EARLY_S, cortical)
    high_c = _leak("high_viscosity", HABIB_EARLY_S, cortical)
    ratio = high.leaked_m3 / low.leaked_m3 if low.leaked_m3 > 0.0 else math.inf
    ratio_c = high_c.leaked_m3 / low_c.leaked_m3 if low_c.leaked_m3 > 0.0 else math.inf
    ageing = low.leaked_m3 / late.leaked_m3 if late.leaked_m3 > 0.0 else math.inf
    return [
        ValidationRow(
            6,
            "venous leak, high / low viscosity at 3.5 min (default body): direction",
            "< 1 (0.375)",
            ratio,
            "x",
            0.0,
            0.99,
            "predicted",
            "Habib 2010",
        ),
        ValidationRow(
            6,
            "cortical-defect leak (anterior, 2 mm), high / low viscosity at 3.5 min: direction",
            "< 1 (0.375; risk ratio 0.38 for any leak)",
            ratio_c,
            "x",
            0.0,
            0.99,
            "predicted",
            "Habib 2010",
        ),
        ValidationRow(
            6,
            f"venous leak, high / low viscosity at 3.5 min ({LEAK_VOLUME_ML:g} mL; leak from ~2.5 mL on, "
            "40 x 30 x 25 mm body)",
            "0.375 (1.5 g / 4.0 g)",
            ratio_e,
            "x",
            HABIB_HIGH_OVER_LOW / 1.5,
            HABIB_HIGH_OVER_LOW * 1.5,
            "predicted",
            "Habib 2010",
        ),
        ValidationRow(
            6,
            "venous leak, low viscosity at 3.5 / 9.5 min (same body)",
            "1.54 (4.0 g / 2.6 g)",
            ageing_e,
            "x",
            HABIB_EARLY_OVER_LATE / 1.5,
            HABIB_EARLY_OVER_LATE * 1.5,
            "predicted",
            "Habib 2010",
        ),
        ValidationRow(
            6,
            f"venous leak, high / low viscosity at 3.5 min ({LEAK_VOLUME_ML:g} mL, default body)",
            "0.375 (1.5 g / 4.0 g)",
            ratio,
            "x",
            HABIB_HIGH_OVER_LOW / 1.5,
            HABIB_HIGH_OVER_LOW * 1.5,
            "predicted",
            "Habib 2010",
            known_miss="in the default body the left segmental vein opens at 4.05 mL (low) and 4.35 mL "
            "(high viscosity) of the 4.5 mL and carries 0.008 vs 0.0012 mL (0.2 % and 0.03 % of the "
            "injection): the ratio measures when the vein is reached, which a thicker cement delays, not "
            "the leak mass of an established leak (grams in Habib's model; the rows above): "
            "docs/simulator.md",
        ),
        ValidationRow(
            6,
            "venous leak, low viscosity at 3.5 / 9.5 min (default body)",
            "1.54 (4.0 g / 2.6 g)",
            ageing,
            "x",
            HABIB_EARLY_OVER_LATE / 1.5,
            HABIB_EARLY_OVER_LATE * 1.5,
            "predicted",
            "Habib 2010",
            known_miss="same cause: the vein opens at 4.05 mL (3.5 min) and 4.25 mL (9.5 min) of 4.5, so "
            "the ratio is that of the open times; the cement in the body also cures faster at 37 degC",
        ),
        ValidationRow(
            6,
            "intravertebral pressure, high / low viscosity",
            "not significantly different",
            high.intravertebral_pa / low.intravertebral_pa,
            "x",
            0.8,
            1.25,
            "by construction",
            "Habib 2010",
        ),
    ]


def setting_time_s(storage_c: float | None, room_c: float, set_point_s: float) -> float:
    """Seconds after mixing at which the Plant's cure clock reaches `set_point_s` (reduced)."""
    plant = Plant(
        PlantConfig(
            temperature_c=room_c,
            storage_temperature_c=storage_c,
            mixed_ago_s=0.0,
            sensor_noise_kpa=0.0,
        )
    )
    still = MotorCommand(0.0)
    dt = 0.5
    while plant.viscosity.reduced_time_s < set_point_s:
        plant.step(still, dt)
    return plant.t_s


def _target_7_8_9() -> list[ValidationRow]:
    koh_set_point = KOH_SETTING_S[KOH_ROOM_C] * rate_factor(KOH_ROOM_C)
    koh = {t: setting_time_s(t, KOH_ROOM_C, koh_set_point) for t in KOH_SETTING_S}
    rows = [
        ValidationRow(
            7,
            "setting time, stored at 20 degC, room 20 degC",
            "534 +/- 17 s",
            koh[20.0],
            "s",
            517.0,
            551.0,
            "calibrated",
            "Koh 2015",
        )
    ]
    for t in (24.0, 28.0):
        published = KOH_SETTING_S[t] / KOH_SETTING_S[20.0]
        rows.append(
            ValidationRow(
                7,
                f"setting time stored at {t:g} / at 20 degC (room 20 degC)",
                f"{published:.3f} ({KOH_SETTING_S[t]:.0f} / 534 s)",
                koh[t] / koh[20.0],
                "x",
                0.9 * published,
                1.1 * published,
                "predicted",
                "Koh 2015",
            )
        )
    per10 = [rate_factor(t + 10.0) / rate_factor(t) for t in np.arange(15.0, 27.5, 0.5)]
    rows += [
        ValidationRow(
            8,
            "cure speed-up per 10 degC, lowest over 15-37 degC",
            "1.5-2.0x",
            min(per10),
            "x",
            1.5,
            2.0,
            "predicted",
            "Arch Orthop Trauma Surg",
        ),
        ValidationRow(
            8,
            "cure speed-up per 10 degC, highest over 15-37 degC",
            "1.5-2.0x",
            max(per10),
            "x",
            1.5,
            2.0,
            "predicted",
            "Arch Orthop Trauma Surg",
        ),
    ]
    iso_set_point = ISO_ROOM_SETTING_S * rate_factor(ISO_ROOM_C)
    chilled = setting_time_s(PRECHILLED_C, ISO_ROOM_C, iso_set_point)
    room = setting_time_s(None, ISO_ROOM_C, iso_set_point)
    rows.append(
        ValidationRow(
            9,
            f"setting time, pre-chilled to {PRECHILLED_C:g} / at {ISO_ROOM_C:g} degC, warming in the room",
            "1.7-2.3x (12-14 min vs 6-7 min)",
            chilled / room,
            "x",
            1.7,
            2.3,
            "predicted",
            "ISO 5833 data",
        )
    )
    return rows


def _target_10() -> list[ValidationRow]:
    plant = spatial_injection("low_viscosity", 300.0, BELKOFF_VOLUME_ML, {}, syringe_bore_mm=12.0, wait_s=0.0)
    spatial = plant.spatial
    assert spatial is not None
    still = MotorCommand(0.0)
    above_50 = 0.0
    for _ in range(round(BELKOFF_WAIT_S / 0.5)):
        plant.step(still, 0.5)
        if float(spatial.heat.temperature_c.max()) > 50.0:
            above_50 += 0.5
    # a thermocouple "at the spinal canal": on the canal face of the posterior wall
    canal_peak = spatial.heat.canal_peak_c
    peak = float(spatial.peak_temperature_c.max())
    return [
        ValidationRow(
            10,
            f"exotherm peak, centre of the body ({BELKOFF_VOLUME_ML:g} mL)",
            "49-112 degC",
            peak,
            "degC",
            49.0,
            112.0,
            "predicted",
            "Belkoff & Molloy 2003",
        ),
        ValidationRow(
            10,
            "time above 50 degC, hottest cell",
            "up to 8 min",
            above_50 / 60.0,
            "min",
            0.0,
            8.0,
            "predicted",
            "Belkoff & Molloy 2003",
        ),
        ValidationRow(
            10,
            "spinal canal peak (canal face of the posterior wall), 37 degC circulating bath",
            "at most 43.16 degC",
            canal_peak,
            "degC",
            37.0,
            43.16,
            "predicted",
            "Int Orthop 2012",
        ),
        ValidationRow(
            10,
            "spinal canal peak (canal face of the posterior wall), cadaver in a 37 degC bath",
            "39-57 degC",
            canal_peak,
            "degC",
            39.0,
            57.0,
            "predicted",
            "Belkoff & Molloy 2003",
        ),
    ]


def _compactness(s: np.ndarray) -> float:
    filled = s >= 0.5
    padded = np.pad(filled, 1)
    faces = sum(int(np.count_nonzero(np.diff(padded, axis=a))) for a in range(3))
    return float(faces) / (4.836 * math.pow(int(filled.sum()), 2.0 / 3.0))


def fill_shape(viscosity_ratio: float, volume_ml: float = 1.5) -> float:
    """Compactness of `volume_ml` injected at 3 mL/min at a cement / marrow viscosity ratio."""
    mu_m = 0.1
    body = build_body(SpatialConfig(), RESTING_PRESSURE_PA)
    flow = DarcyFlow(body, DRAINAGE_RESISTANCE_PA_S_M3["intact"], RESTING_PRESSURE_PA, 1.194e-3)
    q, dt = 3.0 * ML_MIN, 1.0
    for _ in range(round(volume_ml / 3.0 * 60.0 / dt)):
        flow.advance(q * dt, flow.solve(q, viscosity_ratio * mu_m, mu_m))
    return _compactness(flow.s)


def _target_11() -> list[ValidationRow]:
    ratios = (0.03, 0.1, 0.3, 1.0, 3.0, 1000.0)
    shape = {m: fill_shape(m) for m in ratios}
    compact = shape[1000.0]
    limit = 1.05 * compact
    threshold = ratios[0]
    for lo, hi in itertools.pairwise(ratios):
        if shape[lo] > limit >= shape[hi]:
            frac = (shape[lo] - limit) / (shape[lo] - shape[hi])
            threshold = math.exp(math.log(lo) + frac * (math.log(hi) - math.log(lo)))
            break
    return [
        ValidationRow(
            11,
            "stability threshold: cement / marrow viscosity ratio below which the front fingers "
            "(compactness > 1.05x a viscous fill)",
            "~1 (stable when the cement is more viscous than the marrow)",
            threshold,
            "x",
            0.3,
            3.0,
            "predicted",
            "Trivedi 2023; Baroud 2006",
        ),
        ValidationRow(
            11,
            "fill shape: exposed surface, cement 10x thinner than marrow / a viscous cement",
            "> 1 (runny cement fingers, viscous cement fills compactly)",
            shape[0.1] / compact,
            "x",
            1.1,
            math.inf,
            "predicted",
            "Trivedi 2023; Baroud 2006",
        ),
    ]


def spatial_rows() -> list[ValidationRow]:
    """Targets 6-11: leaks, storage temperature, cure rate, pre-chilling, exotherm, stability (~10 s)."""
    return [*_target_6(), *_target_7_8_9(), *_target_10(), *_target_11()]
