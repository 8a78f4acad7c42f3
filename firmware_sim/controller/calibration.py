"""Pressure transducer zero and span, volume correction: the checks and the values in force.

Each calibration is a measurement the device takes itself (ZERO, CALIBRATE_SPAN) or computes from
the operator's weighing (CALIBRATE_VOLUME), and each is bounded: a correction beyond its bound
means a pressurised line, a failing transducer, a wrong reference or a leaking syringe, and is
refused with the value it would have put in force (protocol/SPEC.md §5.18-§5.20), never applied.

- Pressure: `p = (p_raw - zero_offset_pa) x span_gain_ppm / 10^6`, p_raw the factory conversion
  of the 4-20 mA loop. ZERO stores p_raw at atmospheric pressure; CALIBRATE_SPAN the gain that
  makes the reading equal the operator's reference.
- Volume: the volume of one encoder count is `A = round(A0 x volume_factor_ppm / 10^6)` fL, A0 the
  bore's geometric volume per count (SPEC §8.5): an integer, so delivered volume and the volume
  marks stay exact integer products of counts and A.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from firmware_sim.controller.commands import BadParam
from firmware_sim.controller.config import ControllerConfig
from firmware_sim.controller.syringes import MountedSyringe
from protocol.messages import CalibrateSpan, CalibrateVolume, Zero

PPM = 1_000_000

# Layout indexes (a NAK BAD_PARAM names them).
ZERO_UTC = 1
SPAN_REFERENCE, SPAN_UTC = 1, 2
VOLUME_NOMINAL, VOLUME_MASS, VOLUME_DENSITY, VOLUME_UTC = 1, 2, 3, 4


@dataclass(frozen=True, slots=True)
class Calibration:
    """The calibration in force (wire units). A `*_utc_s` of 0: never done, factory value in force."""

    zero_offset_pa: int = 0
    zero_utc_s: int = 0
    span_gain_ppm: int = PPM
    span_reference_pa: int = 0
    span_utc_s: int = 0
    volume_factor_ppm: int = PPM
    volume_utc_s: int = 0


@dataclass(frozen=True, slots=True)
class DeviceSetup:
    """What the device keeps across power cycles: the syringe in force and the calibration."""

    syringe: MountedSyringe | None = None
    calibration: Calibration = Calibration()


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """A measurement whose correction is beyond its bound: refused with the correction (Pa or ppm)."""

    value: int


def _check_utc(utc_s: int, field: int, config: ControllerConfig) -> BadParam | None:
    return BadParam(field, config.utc_s_min) if utc_s < config.utc_s_min else None


def check_zero(
    msg: Zero, raw_pa: float, cal: Calibration, config: ControllerConfig
) -> Calibration | BadParam | OutOfRange:
    """ZERO: the uncorrected reading at rest becomes the offset, if within `zero_max_offset_pa` of the
    factory zero. Beyond it the line is pressurised or the transducer's zero has drifted past its
    specification: refused (NAK SENSOR_FAULT, detail = the reading), never silently tared away."""
    bad = _check_utc(msg.utc_s, ZERO_UTC, config)
    if bad is not None:
        return bad
    offset = round(raw_pa)
    if abs(offset) > config.zero_max_offset_pa:
        return OutOfRange(offset)
    return replace(cal, zero_offset_pa=offset, zero_utc_s=msg.utc_s)


def check_span(
    msg: CalibrateSpan, raw_pa: float, cal: Calibration, config: ControllerConfig, ceiling_pa: int
) -> Calibration | BadParam | OutOfRange:
    """CALIBRATE_SPAN: gain = reference / (raw - zero offset), bounded by `span_gain_ppm_range`.
    The reference must lie between `span_reference_pa_min` (a small reference gives a coarse gain)
    and the device's pressure ceiling."""
    if msg.reference_pa < config.span_reference_pa_min:
        return BadParam(SPAN_REFERENCE, config.span_reference_pa_min)
    if msg.reference_pa > ceiling_pa:
        return BadParam(SPAN_REFERENCE, ceiling_pa)
    bad = _check_utc(msg.utc_s, SPAN_UTC, config)
    if bad is not None:
        return bad
    reading = raw_pa - cal.zero_offset_pa
    lo, hi = config.span_gain_ppm_range
    if reading <= 0.0:
        return OutOfRange(0)
    gain = round(msg.reference_pa * PPM / reading)
    if not lo <= gain <= hi:
        return OutOfRange(min(gain, 0x7FFF_FFFF))
    return replace(cal, span_gain_ppm=gain, span_reference_pa=msg.reference_pa, span_utc_s=msg.utc_s)


def check_volume(
    msg: CalibrateVolume, cal: Calibration, config: ControllerConfig
) -> Calibration | BadParam | OutOfRange:
    """CALIBRATE_VOLUME: the device counted `nominal_nl` (with the factor in force), the balance says
    `mass_ug / density_mg_l` x 10^6 nL left the syringe. New factor, exactly rounded (half up):
    k' = round(k x mass_ug x 10^6 / (density_mg_l x nominal_nl)), bounded by `volume_factor_ppm_range`."""
    lo, hi = config.volume_nominal_nl_range
    if msg.nominal_nl < lo:
        return BadParam(VOLUME_NOMINAL, lo)
    if msg.nominal_nl > hi:
        return BadParam(VOLUME_NOMINAL, hi)
    if msg.mass_ug < 1:
        return BadParam(VOLUME_MASS, 1)
    dlo, dhi = config.density_mg_l_range
    if msg.density_mg_l < dlo:
        return BadParam(VOLUME_DENSITY, dlo)
    if msg.density_mg_l > dhi:
        return BadParam(VOLUME_DENSITY, dhi)
    bad = _check_utc(msg.utc_s, VOLUME_UTC, config)
    if bad is not None:
        return bad
    den = msg.density_mg_l * msg.nominal_nl
    factor = (2 * cal.volume_factor_ppm * msg.mass_ug * PPM + den) // (2 * den)
    flo, fhi = config.volume_factor_ppm_range
    if not flo <= factor <= fhi:
        return OutOfRange(min(factor, 0x7FFF_FFFF))
    return replace(cal, volume_factor_ppm=factor, volume_utc_s=msg.utc_s)


def check_stored(setup: DeviceSetup, config: ControllerConfig) -> str | None:
    """Why a stored calibration cannot be put in force (None: it can). The bounds are those the
    commands enforce, so a file edited by hand cannot smuggle in a correction a command would refuse."""
    cal = setup.calibration
    problems: list[tuple[str, int, int, int]] = [
        ("zero_offset_pa", cal.zero_offset_pa, -config.zero_max_offset_pa, config.zero_max_offset_pa),
        ("span_gain_ppm", cal.span_gain_ppm, *config.span_gain_ppm_range),
        ("volume_factor_ppm", cal.volume_factor_ppm, *config.volume_factor_ppm_range),
        ("span_reference_pa", cal.span_reference_pa, 0, config.max_pressure_pa),
    ]
    for name in ("zero_utc_s", "span_utc_s", "volume_utc_s"):
        problems.append((name, getattr(cal, name), 0, 0xFFFF_FFFF))
    for name, value, lo, hi in problems:
        if not lo <= value <= hi:
            return f"{name} = {value} is outside {lo}..{hi}"
    return None
