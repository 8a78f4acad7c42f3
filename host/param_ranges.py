"""The allowed range of each command field the device checks, as SPEC §7.8 states it, for the
sentence of a NAK BAD_PARAM.

A BAD_PARAM carries only the field index and the bound that was broken (SPEC §6.5); the host knows
what it sent. Together with the range below, the refusal names the field, the value sent and the
allowed range (the product's rule for bad input). Where a bound is the device's own (the drive's
travel, its `max_pressure_pa`, the stroke left), the NAK's `detail` fills it in when that bound was
the one broken; otherwise the range names it in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["BORE_RANGE_UM", "FieldRange", "bad_param_text", "field_range", "unit_of"]

_UTC_MIN_S = 1_577_836_800
"""2020-01-01: the earliest date a setup command may carry (SPEC §7.8, ZERO)."""


@dataclass(frozen=True, slots=True)
class FieldRange:
    """`lo`..`hi` inclusive; None: the device's own bound, named by `lo_name` / `hi_name`.
    `below`: the upper bound is exclusive (the field must stay below it). `text`: the whole range in
    words where it is not one interval (a JOG's signed speed)."""

    lo: int | None = None
    hi: int | None = None
    lo_name: str = ""
    hi_name: str = ""
    below: bool = False
    text: str = ""


BORE_RANGE_UM = (2_000, 40_000)
"""The bore range every device of this protocol accepts (SPEC §7.8, ARM check 5; SET_SYRINGE)."""
_BORE = FieldRange(*BORE_RANGE_UM)
_UTC = FieldRange(_UTC_MIN_S, None, hi_name="no upper bound")
_AT_LEAST_1 = FieldRange(1, None, hi_name="no upper bound")

_RANGES: dict[str, dict[str, FieldRange]] = {
    "ARM": {
        "mode": FieldRange(0, 1, text="0 (CONTINUOUS) or 1 (INCREMENTAL, with capability INCREMENTAL)"),
        "plan_flags": FieldRange(text="only the bits the device accepts (detail: their mask)"),
        "flow_nl_s": FieldRange(1, None, hi_name="any (clamped to the device's maximum)"),
        "increment_nl": FieldRange(1, None, hi_name="volume_limit_nl"),
        "volume_limit_nl": FieldRange(1, None, hi_name="the volume of the stroke left"),
        "soft_limit_pa": FieldRange(1, None, lo_name="relief_pa + 1", hi_name="hard_limit_pa"),
        "hard_limit_pa": FieldRange(None, None, lo_name="soft_limit_pa", hi_name="the device's maximum"),
        "relief_pa": FieldRange(0, None, hi_name="soft_limit_pa", below=True),
        "working_time_ms": _AT_LEAST_1,
        "viscosity_min_pas": FieldRange(0, None, hi_name="viscosity_max_pas"),
        "viscosity_max_pas": FieldRange(None, None, lo_name="viscosity_min_pas", hi_name="no upper bound"),
        "cannula_length_um": FieldRange(20_000, 500_000),
        "cannula_id_um": FieldRange(300, 6_000, text="300..6000 um and below syringe_bore_um"),
        "syringe_bore_um": _BORE,
    },
    "SET_LIMITS": {
        "soft_limit_pa": FieldRange(None, None, lo_name="relief_pa + 1", hi_name="hard_limit_pa"),
        "hard_limit_pa": FieldRange(None, None, lo_name="soft_limit_pa", hi_name="the device's maximum"),
        "relief_pa": FieldRange(0, None, hi_name="soft_limit_pa", below=True),
    },
    "SET_TELEMETRY": {
        "divider": FieldRange(0, 1_000),
        "batch_samples": FieldRange(1, None, hi_name="the device's max_batch_samples"),
    },
    "SET_SYRINGE": {
        "name": FieldRange(text="1..16 printable ASCII characters"),
        "bore_um": _BORE,
        "stroke_um": FieldRange(5_000, None, hi_name="the drive's physical travel"),
        "dead_volume_nl": FieldRange(0, None, hi_name="the stroke's volume", below=True),
        "max_pressure_pa": FieldRange(1, None, hi_name="the device's max_pressure_pa"),
    },
    "ZERO": {"utc_s": _UTC},
    "CALIBRATE_SPAN": {
        "reference_pa": FieldRange(500_000, None, hi_name="the device's max_pressure_pa"),
        "utc_s": _UTC,
    },
    "CALIBRATE_VOLUME": {
        "nominal_nl": FieldRange(100_000, 100_000_000),
        "mass_ug": _AT_LEAST_1,
        "density_mg_l": FieldRange(500_000, 3_000_000),
        "utc_s": _UTC,
    },
    "PRIME": {
        "syringe_bore_um": _BORE,
        "flow_nl_s": FieldRange(1, None, hi_name="any (clamped to the device's maximum)"),
        "volume_nl": FieldRange(1, None, hi_name="the volume of the stroke left"),
    },
    "WITHDRAW": {
        "syringe_bore_um": _BORE,
        "flow_nl_s": FieldRange(1, None, hi_name="any (clamped to the device's maximum)"),
        "volume_nl": FieldRange(1, None, hi_name="the volume back to home"),
    },
    "JOG": {
        "hold_ms": FieldRange(1, None, hi_name="the device's watchdog_ms"),
        "speed_um_s": FieldRange(
            text="backward -5000..-1 um/s or forward 1..250 um/s (the device's top and jog speeds; never 0)"
        ),
    },
    "HOME": {"speed_um_s": FieldRange(1, 5_000)},
}

_UNITS = (
    ("_um_s", "um/s"),
    ("_nl_s", "nL/s"),
    ("_mg_l", "mg/L"),
    ("_pas", "Pa s"),
    ("_um", "um"),
    ("_nl", "nL"),
    ("_pa", "Pa"),
    ("_ms", "ms"),
    ("_ug", "ug"),
    ("_s", "s"),
)


def unit_of(field: str) -> str:
    """The unit a field name carries as its suffix (SPEC §1.2), or "" for a bare count."""
    return next((unit for suffix, unit in _UNITS if field.endswith(suffix)), "")


def field_range(command: str, field: str) -> FieldRange | None:
    """The range SPEC §7.8 gives a field of a command (by MsgType name), or None if it lists none."""
    return _RANGES.get(command, {}).get(field)


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _allowed(rng: FieldRange, sent: float | None, bound: int, unit: str) -> str:
    """The range in words, the broken bound filled in from the NAK's detail where it is the device's."""
    if rng.text:
        return rng.text

    def num(value: int) -> str:
        return f"{value} {unit}".rstrip()

    below_lo = sent is not None and rng.lo is not None and sent < rng.lo
    upper_broken = sent is not None and sent >= bound and not below_lo
    if rng.lo is not None:
        lo = num(rng.lo)
    else:
        lo = num(bound) if not upper_broken else rng.lo_name or "the device's bound"
    if rng.hi is not None:
        hi = num(rng.hi)
    else:
        hi = num(bound) if upper_broken else rng.hi_name or "the device's bound"
    return f"{lo} to less than {hi}" if rng.below else f"{lo} to {hi}"


def bad_param_text(command: str, field: str, index: int, sent: object, bound: int) -> str:
    """'<field> (field i) = <sent> is out of range: allowed <range> (bound broken: <bound>)'."""
    unit = unit_of(field)
    number = _number(sent)
    if isinstance(sent, str):
        shown = repr(sent)
    elif number is not None and float(number).is_integer():
        shown = f"{int(number)} {unit}".rstrip()
    else:
        shown = f"{sent} {unit}".rstrip()
    rng = field_range(command, field)
    if rng is None:
        side = "at least" if number is not None and number < bound else "at most"
        allowed = f"{side} {bound} {unit}".rstrip()
    else:
        allowed = _allowed(rng, number, bound, unit)
    return f"{field} (field {index}) = {shown} is out of range: allowed {allowed} (bound broken: {bound})"
