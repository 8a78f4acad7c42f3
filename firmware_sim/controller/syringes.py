"""The syringe in force: SET_SYRINGE's checks and what a selected syringe changes.

The device keeps no library: the host sends a syringe's name and dimensions (its library, or the
operator's custom values), and the device refuses any whose limits exceed its own (protocol/SPEC.md
§5.17), so that a syringe the device accepted can never move the plunger past its end stop or hold
a pressure limit above what the device or the syringe can take. While one is selected:

- every ARM must name its bore (`syringe_bore_um`), so delivered volume and marks are computed for
  the barrel that is actually mounted, never for a stale plan;
- the usable end of the stroke is the shorter of the drive's travel and the syringe's stroke, less
  the forward margin (END_OF_TRAVEL, ARM's volume check and `travel_um` follow it);
- every pressure limit is clamped to the syringe's `max_pressure_pa` as to the device's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_sim.controller.commands import BadParam
from firmware_sim.controller.config import ControllerConfig
from firmware_sim.hal import Hardware
from protocol.messages import SetSyringe

# Layout indexes of SET_SYRINGE's fields (a NAK BAD_PARAM names them).
SYRINGE_NAME, SYRINGE_BORE, SYRINGE_STROKE, SYRINGE_DEAD_VOLUME, SYRINGE_MAX_PRESSURE = 1, 2, 3, 4, 5

NAME_MAX = 16


@dataclass(frozen=True, slots=True)
class MountedSyringe:
    """A syringe the device accepted (wire units)."""

    name: str
    bore_um: int
    stroke_um: int
    dead_volume_nl: int
    max_pressure_pa: int


def stroke_volume_nl(bore_um: int, stroke_um: int) -> int:
    """Volume of the whole stroke, nL, rounded down: pi (bore / 2)^2 x stroke (1 um3 = 1e-6 nL)."""
    area_um2 = 3.141592653589793 * bore_um * bore_um / 4.0
    return int(area_um2 * stroke_um // 1_000_000)


def _printable_name(name: str) -> bool:
    return 1 <= len(name) <= NAME_MAX and all(" " <= ch <= "~" for ch in name)


def check_syringe(
    msg: SetSyringe, config: ControllerConfig, hardware: Hardware
) -> MountedSyringe | BadParam | None:
    """SET_SYRINGE's parameter checks (SPEC §7.8), in order; the first failing one is answered.
    None: the deselection (empty name, every dimension 0): back to each ARM's bore, the whole travel.

    Name: 1-16 printable ASCII characters (detail = 16). Bore: inside the device's bore range
    (detail = the bound). Stroke: at least `syringe_stroke_um_min` and at most the drive's physical
    travel (detail = the bound): a longer syringe could not be emptied and its marks would lie past
    the end stop. Dead volume: below the stroke's volume (detail = that volume). Maximum pressure:
    at least 1 Pa and at most the device's `max_pressure_pa` (detail = the bound): a syringe rated
    above what the transducer reads safely is refused rather than silently limited."""
    if msg.name == "" and not (msg.bore_um or msg.stroke_um or msg.dead_volume_nl or msg.max_pressure_pa):
        return None
    if not _printable_name(msg.name):
        return BadParam(SYRINGE_NAME, NAME_MAX)
    lo, hi = config.syringe_bore_um_range
    if msg.bore_um < lo:
        return BadParam(SYRINGE_BORE, lo)
    if msg.bore_um > hi:
        return BadParam(SYRINGE_BORE, hi)
    travel_um = travel_limit_um(hardware)
    if msg.stroke_um < config.syringe_stroke_um_min:
        return BadParam(SYRINGE_STROKE, config.syringe_stroke_um_min)
    if msg.stroke_um > travel_um:
        return BadParam(SYRINGE_STROKE, travel_um)
    volume = stroke_volume_nl(msg.bore_um, msg.stroke_um)
    if msg.dead_volume_nl >= volume:
        return BadParam(SYRINGE_DEAD_VOLUME, volume)
    if msg.max_pressure_pa < 1:
        return BadParam(SYRINGE_MAX_PRESSURE, 1)
    if msg.max_pressure_pa > config.max_pressure_pa:
        return BadParam(SYRINGE_MAX_PRESSURE, config.max_pressure_pa)
    return MountedSyringe(msg.name, msg.bore_um, msg.stroke_um, msg.dead_volume_nl, msg.max_pressure_pa)


def travel_limit_um(hardware: Hardware) -> int:
    """The drive's physical travel, um: the longest stroke a syringe may have."""
    return round(hardware.travel_m * 1e6)


def stroke_m(syringe: MountedSyringe | None, hardware: Hardware) -> float:
    """Physical stroke in force, m: the syringe's when one is selected, else the drive's travel."""
    if syringe is None:
        return hardware.travel_m
    return min(hardware.travel_m, syringe.stroke_um * 1e-6)


def pressure_ceiling_pa(syringe: MountedSyringe | None, config: ControllerConfig) -> int:
    """Ceiling of every pressure limit: the device's, lowered to the selected syringe's rating."""
    if syringe is None:
        return config.max_pressure_pa
    return min(config.max_pressure_pa, syringe.max_pressure_pa)
