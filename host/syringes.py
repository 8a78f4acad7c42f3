"""The host's syringe library: the usual cement syringes, by name, as SET_SYRINGE sends them.

The device keeps no library (protocol/SPEC.md §5.17): the host sends a syringe's name and its
dimensions, and the device refuses any whose limits exceed its own. So the library lives here, once,
for the CLI (`cementguard syringe`), the plan (`[syringe] size`) and the dashboard.

Bores are the vendor tables' nominal inner diameters (approximate; docs/references.md, "syringe
bores"): 1 mL 4.65 mm, 2.5 mL 7.29 mm (Hamilton 1000-series gastight), 3 mL 8.66 mm, 5 mL 12.06 mm;
10 mL 15.8 mm (a 10 mL barrel with a 14.5 mm bore has a 61 mm stroke, longer than the reference
drive's 60 mm: the device would refuse it). The stroke is the capacity over the bore area. Dead
volumes are typical Luer hub and nozzle volumes, approximate: measure yours (a gravimetric prime)
if it matters. Maximum pressures are working limits, not manufacturer ratings: the pressure at
which 600 N on the plunger (the reference drive's stall force) would act on the bore, rounded down,
capped at the reference device's 8 MPa ceiling. Check your syringe's datasheet; `cementguard syringe
custom` takes any other syringe.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

from host.errors import CementguardError
from protocol.messages import SetSyringe, SyringeInfo

log = logging.getLogger(__name__)

NAME_MAX = 16
"""SET_SYRINGE.name holds 16 ASCII characters."""


class UnknownSyringeError(CementguardError):
    """A syringe name the library does not have; the message lists the names it has."""


class NoSyringeSelectedError(CementguardError):
    """A command needs the syringe's bore, none was given and the device has none selected."""


def selected_bore_um(syringe: SyringeInfo | None) -> int:
    """The bore of the syringe selected on the device (DeviceClient.syringe), for a command given
    without one; NoSyringeSelectedError when there is none."""
    if syringe is None or not syringe.name:
        raise NoSyringeSelectedError(
            "no syringe is selected on the device: give --bore-mm, or select one first "
            "(`cementguard syringe select NAME` or `syringe custom`)"
        )
    return syringe.bore_um


@dataclass(frozen=True, slots=True)
class SyringeSpec:
    """One syringe, in the operator's units (mm, mL, kPa)."""

    name: str
    """What the operator types and the device stores (SET_SYRINGE.name): "2.5ml"."""
    description: str
    bore_mm: float
    capacity_ml: float
    dead_volume_ml: float
    max_pressure_kpa: float

    @property
    def stroke_mm(self) -> float:
        """Plunger travel from full to empty: capacity over bore area."""
        area_mm2 = math.pi * self.bore_mm * self.bore_mm / 4.0
        return self.capacity_ml * 1000.0 / area_mm2

    def to_wire(self, cmd_id: int) -> SetSyringe:
        return SetSyringe(
            cmd_id=cmd_id,
            name=self.name,
            bore_um=round(self.bore_mm * 1000.0),
            stroke_um=math.floor(self.stroke_mm * 1000.0),
            dead_volume_nl=round(self.dead_volume_ml * 1e6),
            max_pressure_pa=round(self.max_pressure_kpa * 1000.0),
        )


LIBRARY: tuple[SyringeSpec, ...] = (
    SyringeSpec("1ml", "1 mL Luer-lock cement syringe", 4.65, 1.0, 0.07, 8000.0),
    SyringeSpec("2.5ml", "2.5 mL gastight syringe (Hamilton 1000 series)", 7.29, 2.5, 0.08, 8000.0),
    SyringeSpec("3ml", "3 mL Luer-lock syringe", 8.66, 3.0, 0.09, 8000.0),
    SyringeSpec("5ml", "5 mL Luer-lock syringe", 12.06, 5.0, 0.10, 5000.0),
    SyringeSpec("10ml", "10 mL Luer-lock syringe, 15.8 mm bore", 15.8, 10.0, 0.12, 3000.0),
)
BY_NAME: dict[str, SyringeSpec] = {s.name: s for s in LIBRARY}


def normalise(name: str) -> str:
    """ "2.5 mL", "2.5ML" and "2.5ml" name the same syringe (as a plan's `size` does)."""
    return name.replace(" ", "").lower()


def find(name: str) -> SyringeSpec:
    """The library syringe called `name`; UnknownSyringeError naming the value and the names allowed."""
    spec = BY_NAME.get(normalise(name))
    if spec is None:
        allowed = ", ".join(s.name for s in LIBRARY)
        raise UnknownSyringeError(
            f"syringe {name!r} is not in the library; allowed {allowed} (or `syringe custom`)"
        )
    return spec
