"""`PlantConfig`: everything a scenario sets about the simulated rig, validated at the edge.

Units at the edge (mm, mL, kPa, degC), named in the field names; `Plant` converts to SI once. Every
default is the reference bench set-up: low-viscosity cement mixed 4 min before start, at 22 degC,
through an 11G cannula of 125 mm from a 2.5 mL syringe into an intact vertebral body.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.plant.cannula import DEFAULT_DISTAL_LENGTH_M, GAUGE_ID_M
from firmware_sim.plant.events import PlantEvent, in_range
from firmware_sim.plant.hydraulics import DEFAULT_COMPLIANCE_ML_PER_MPA
from firmware_sim.plant.motor import SEAL_FRICTION_N
from firmware_sim.plant.sensor import DEFAULT_NOISE_FRACTION_OF_FULL_SCALE
from firmware_sim.plant.spatial_config import SpatialConfig
from firmware_sim.plant.vertebra import DEFAULT_VOID_VOLUME_M3, RESTING_PRESSURE_PA

CementName = Literal["low_viscosity", "high_viscosity", "fast_setting"]
BoneName = Literal["intact", "tumour", "void"]
VertebraModel = Literal["lumped", "spatial"]
WARMING_TIME_CONSTANT_S = 600.0
"""How fast mixed cement in its bowl and syringe relaxes from its storage temperature to the room's:
~40 g of cement (1.45 J/g/K, ~58 J/K) losing heat at ~0.1 W/K (still air, ~10 W/m^2/K over ~0.01 m^2
of bowl and syringe) gives ~600 s. An order-of-magnitude estimate, not fitted; a parameter."""

SYRINGE_BORE_MM: dict[str, float] = {"1ml": 4.65, "2.5ml": 7.29, "3ml": 8.66}
"""Bores of common small syringes (vendor tables, approximate; docs/references.md)."""


def _gauge(value: object) -> object:
    """Accept 11, "11" and "11G" for the cannula gauge."""
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("G")
        return int(text) if text.isdigit() else value
    return value


class PlantConfig(BaseModel):
    """Parameters of one simulated rig and the events scheduled on it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cement: CementName = "low_viscosity"
    mixed_ago_s: Annotated[float, in_range(0.0, 7200.0, "s")] = 240.0
    """Seconds since the cement was mixed, at plant time 0."""
    temperature_c: Annotated[float, in_range(2.0, 45.0, "degC")] = 22.0
    """Room (bench / operating room) temperature; the cement's too unless `storage_temperature_c`
    is given. A cement held at 2-6 degC throughout is this set low."""
    storage_temperature_c: Annotated[float, in_range(0.0, 45.0, "degC")] | None = None
    """Temperature the cement was stored at (pre-chilled 2-6 degC, Koh 2015's 20-28 degC): it starts
    there at mixing and relaxes to `temperature_c` with `warming_time_constant_s`. None: the cement
    is at `temperature_c` throughout."""
    warming_time_constant_s: Annotated[float, in_range(1.0, 7200.0, "s")] = WARMING_TIME_CONSTANT_S
    vertebra: VertebraModel = "lumped"
    """'lumped': the cloud and drainage resistances (the default, docs/simulator.md); 'spatial': the
    vertebral body on a 3D grid with flow, leak paths and heat (`spatial`)."""
    spatial: SpatialConfig = SpatialConfig()
    """Parameters of the spatial body; used only when vertebra = 'spatial'."""
    cannula_gauge: Annotated[Literal[10, 11, 13], BeforeValidator(_gauge)] = 11
    cannula_length_mm: Annotated[float, in_range(30.0, 300.0, "mm")] = 125.0
    cannula_proximal_id_mm: Annotated[float, in_range(1.0, 10.0, "mm")] | None = None
    """Inner diameter of a widened proximal section (Baroud & Steffen); None: uniform bore."""
    cannula_distal_length_mm: Annotated[float, in_range(5.0, 300.0, "mm")] = DEFAULT_DISTAL_LENGTH_M * 1e3
    """Length of the narrow distal section when a proximal one is widened."""
    syringe_bore_mm: Annotated[float, in_range(3.0, 30.0, "mm")] = SYRINGE_BORE_MM["2.5ml"]
    plunger_start_mm: Annotated[float, in_range(0.0, 1000.0, "mm")] = 0.0
    """Plunger position at start, from home (fully retracted); must lie inside the rig's stroke."""
    seal_friction_n: Annotated[float, in_range(0.0, 100.0, "N")] = SEAL_FRICTION_N
    bone: BoneName = "intact"
    void_volume_ml: Annotated[float, in_range(0.1, 10.0, "mL")] = DEFAULT_VOID_VOLUME_M3 * 1e6
    """Volume of the cavity when bone = 'void'."""
    resting_pressure_kpa: Annotated[float, in_range(0.0, 15.0, "kPa")] = RESTING_PRESSURE_PA / 1e3
    """Intraosseous pressure at rest: IVC pressure, 5 mmHg; up to ~12 kPa with Valsalva; 0 ex vivo."""
    sensor_noise_kpa: Annotated[float, in_range(0.0, 1000.0, "kPa")] = (
        DEFAULT_NOISE_FRACTION_OF_FULL_SCALE * REFERENCE_RIG.sensor_full_scale_pa / 1e3
    )
    """Sigma of the transducer's white noise: 0.1 % of the reference 10 MPa full scale."""
    compliance_ml_per_mpa: Annotated[float, in_range(1e-3, 10.0, "mL/MPa")] = DEFAULT_COMPLIANCE_ML_PER_MPA
    entrained_air_ml: Annotated[float, in_range(0.0, 2.0, "mL")] = 0.0
    """Free gas in the syringe at atmospheric pressure (hand-mixed cement); adds low-pressure compliance."""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1)] = 0
    events: tuple[PlantEvent, ...] = ()

    @model_validator(mode="after")
    def _geometry(self) -> PlantConfig:
        if self.vertebra == "spatial" and self.bone != "intact":
            raise ValueError(
                f"bone = {self.bone!r} with vertebra = 'spatial': allowed only 'intact'; a spatial body "
                "places its tumour, cleft or cortical defect in [plant.spatial]"
            )
        bore_mm = GAUGE_ID_M[self.cannula_gauge] * 1e3
        if self.cannula_proximal_id_mm is not None:
            if self.cannula_proximal_id_mm < bore_mm:
                raise ValueError(
                    f"cannula_proximal_id_mm = {self.cannula_proximal_id_mm} mm is narrower than the "
                    f"{self.cannula_gauge}G bore ({bore_mm:.3f} mm): allowed range {bore_mm:.3f}..10 mm"
                )
            if self.cannula_distal_length_mm > self.cannula_length_mm:
                raise ValueError(
                    f"cannula_distal_length_mm = {self.cannula_distal_length_mm} mm is longer than the "
                    f"cannula ({self.cannula_length_mm} mm): allowed range 5..{self.cannula_length_mm} mm"
                )
        return self
