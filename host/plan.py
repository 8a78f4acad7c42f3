"""Injection plans: what a bench engineer writes in a TOML file, checked before anything reaches a pump.

A plan is in edge units (mL, mL/min, kPa, s, mm; docs/design.md), named in its field names. Every field has
bounds and the cross-field rules the device would otherwise enforce with a bare NAK BAD_PARAM (soft <
hard, relief < soft, increment <= volume, ...), so that a bad plan fails on the bench PC with one
line per problem naming the field, the value and what is allowed, instead of as a field index on the
wire. `plans/README.md` documents every field.

The cement's mixing time is deliberately not part of a reusable plan: a plan file describes a
procedure, the mixing happens at run time. `cement.mixed_at` exists for one-off files; otherwise the
age is given to `InjectionPlan.to_arm` when the plan is sent.
"""

from __future__ import annotations

import math
import os
import struct
import typing
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from host.config_file import Problem, Raw, RulesBrokenError, Unit, describe, read_toml, show
from host.run_metadata import RunMetadata
from host.syringes import LIBRARY as SYRINGE_LIBRARY
from protocol.enums import Capabilities, Mode, PlanFlags
from protocol.messages import Arm, DeviceInfo

GAUGE_ID_MM: dict[int, float] = {10: 2.692, 11: 2.388, 13: 1.803}
"""Regular-wall inner diameters from the standard needle gauge chart (docs/references.md)."""
SYRINGE_BORE_MM: dict[str, float] = {s.name: s.bore_mm for s in SYRINGE_LIBRARY}
"""Bores of the usual cement syringes (host/syringes.py: vendor tables, approximate)."""
SYRINGE_CAPACITY_ML: dict[str, float] = {s.name: s.capacity_ml for s in SYRINGE_LIBRARY}
U32_MAX = 0xFFFF_FFFF


class PlanError(ValueError):
    """A plan that cannot be used. `problems` holds one line per problem:
    "<file>: <field path>: <value> is <why>; allowed <range> (<unit>)"."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


def _gauge(value: object) -> object:
    """Accept 11, "11" and "11G", as on the needle's hub."""
    if isinstance(value, str):
        text = value.strip().upper().removesuffix("G")
        return int(text) if text.isdigit() else value
    return value


def _size(value: object) -> object:
    """Accept "2.5ml", "2.5 mL", "2.5mL"."""
    return value.replace(" ", "").lower() if isinstance(value, str) else value


class _Model(BaseModel):
    # strict: a TOML string is never silently read as a number; inf/nan are never a limit.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class PressureLimits(_Model):
    soft_limit_kpa: Annotated[float, Field(ge=10, le=20_000), Unit("kPa")]
    """The device's pressure loop throttles the flow to keep the syringe below this."""
    hard_limit_kpa: Annotated[float, Field(ge=10, le=20_000), Unit("kPa")]
    """OVERPRESSURE stop at or above this."""


class ReliefSection(_Model):
    enabled: Annotated[bool, Unit("true/false")] = True
    """Back the plunger off after every stop: cuts the cement pushed out by the line's stored pressure."""
    relief_kpa: Annotated[float, Field(ge=0, le=20_000), Unit("kPa")] = 200.0


class Cement(_Model):
    profile: Annotated[str, Field(min_length=1, max_length=64), Unit("text")]
    """Free text for the record (product, lot); the device does not use it."""
    working_time_s: Annotated[float, Field(ge=1, le=7200), Unit("s")]
    """WORKING_TIME stop once the cement is this old."""
    mixed_at: Annotated[datetime | None, Unit("local date-time")] = None
    """Only for one-off plans; normally the mixing time is given at run time."""
    viscosity_min_pa_s: Annotated[float, Field(ge=0, le=100_000), Unit("Pa s")]
    viscosity_max_pa_s: Annotated[float, Field(ge=0, le=100_000), Unit("Pa s")]


class CannulaSection(_Model):
    gauge: Annotated[Literal[10, 11, 13] | None, BeforeValidator(_gauge), Unit("gauge")] = None
    inner_diameter_mm: Annotated[float | None, Field(ge=0.3, le=6), Unit("mm")] = None
    length_mm: Annotated[float, Field(ge=20, le=500), Unit("mm")]

    @model_validator(mode="after")
    def _one_bore(self) -> CannulaSection:
        if self.gauge is None and self.inner_diameter_mm is None:
            why = "required unless inner_diameter_mm is given"
            raise RulesBrokenError([Problem("gauge", Raw("(missing)"), why, "10, 11 or 13", "gauge")])
        if self.gauge is not None and self.inner_diameter_mm is not None:
            why = f"given together with gauge {self.gauge}"
            allowed = "gauge or inner_diameter_mm, not both"
            raise RulesBrokenError([Problem("inner_diameter_mm", self.inner_diameter_mm, why, allowed, "mm")])
        return self

    @property
    def id_mm(self) -> float:
        return (
            GAUGE_ID_MM[self.gauge] if self.gauge is not None else typing.cast(float, self.inner_diameter_mm)
        )


class Syringe(_Model):
    size: Annotated[
        Literal["1ml", "2.5ml", "3ml", "5ml", "10ml"] | None, BeforeValidator(_size), Unit("syringe size")
    ] = None
    bore_mm: Annotated[float | None, Field(ge=2, le=40), Unit("mm")] = None
    capacity_ml: Annotated[float | None, Field(gt=0, le=100), Unit("mL")] = None
    """What the barrel holds; defaults to the named size's nominal volume, required with bore_mm."""

    @model_validator(mode="after")
    def _one_bore(self) -> Syringe:
        if self.size is None and self.bore_mm is None:
            why = "required unless bore_mm is given"
            raise RulesBrokenError(
                [
                    Problem(
                        "size",
                        Raw("(missing)"),
                        why,
                        "'1ml', '2.5ml', '3ml', '5ml' or '10ml'",
                        "syringe size",
                    )
                ]
            )
        if self.size is not None and self.bore_mm is not None:
            why = f"given together with size {self.size!r}"
            raise RulesBrokenError([Problem("bore_mm", self.bore_mm, why, "size or bore_mm, not both", "mm")])
        if self.bore_mm is not None and self.capacity_ml is None:
            why = "required with bore_mm"
            raise RulesBrokenError([Problem("capacity_ml", Raw("(missing)"), why, "(0, 100]", "mL")])
        return self

    @property
    def bore(self) -> float:
        return SYRINGE_BORE_MM[self.size] if self.size is not None else typing.cast(float, self.bore_mm)

    @property
    def capacity(self) -> float:
        if self.capacity_ml is not None:
            return self.capacity_ml
        return SYRINGE_CAPACITY_ML[typing.cast(str, self.size)]


class InjectionPlan(_Model):
    """One injection procedure. Load it with `load_plan`, send it with `to_arm`."""

    name: Annotated[str, Field(min_length=1, max_length=64), Unit("text")]
    description: Annotated[str, Field(max_length=2000), Unit("text")] = ""
    mode: Annotated[Literal["continuous", "incremental"], Unit("mode")]
    flow_ml_min: Annotated[float, Field(ge=0.01, le=20), Unit("mL/min")]
    increment_ml: Annotated[float | None, Field(ge=0, le=100), Unit("mL")] = None
    """Volume per increment (incremental mode): the pump pauses after each for imaging."""
    volume_limit_ml: Annotated[float, Field(ge=0.01, le=100), Unit("mL")]
    pressure: PressureLimits
    relief: ReliefSection = ReliefSection()
    cement: Cement
    cannula: CannulaSection
    syringe: Syringe
    metadata: RunMetadata = RunMetadata()
    """For the lab notebook (specimen, operator, ...): recorded with the run, never sent to the device."""

    @model_validator(mode="after")
    def _rules(self) -> InjectionPlan:
        p, problems = self.pressure, []
        if p.soft_limit_kpa >= p.hard_limit_kpa:
            why = f"not below pressure.hard_limit_kpa ({show(p.hard_limit_kpa)})"
            problems.append(
                Problem(
                    "pressure.soft_limit_kpa", p.soft_limit_kpa, why, f"[10, {show(p.hard_limit_kpa)})", "kPa"
                )
            )
        if self.relief.relief_kpa >= p.soft_limit_kpa:
            why = f"not below pressure.soft_limit_kpa ({show(p.soft_limit_kpa)})"
            problems.append(
                Problem(
                    "relief.relief_kpa", self.relief.relief_kpa, why, f"[0, {show(p.soft_limit_kpa)})", "kPa"
                )
            )
        volume = self.volume_limit_ml
        if self.mode == "incremental" and not (self.increment_ml and self.increment_ml <= volume):
            value = Raw("(missing)") if self.increment_ml is None else self.increment_ml
            why = (
                "required in incremental mode" if self.increment_ml is None else "not in (0, volume_limit_ml]"
            )
            problems.append(Problem("increment_ml", value, why, f"(0, {show(volume)}]", "mL"))
        if self.mode == "continuous" and self.increment_ml:
            problems.append(
                Problem("increment_ml", self.increment_ml, "set in continuous mode", "0 or absent", "mL")
            )
        if volume > self.syringe.capacity:
            why = "more than the syringe holds"
            problems.append(
                Problem("volume_limit_ml", volume, why, f"[0.01, {show(self.syringe.capacity)}]", "mL")
            )
        if self.cannula.id_mm >= self.syringe.bore:
            path = "cannula.gauge" if self.cannula.gauge is not None else "cannula.inner_diameter_mm"
            value = self.cannula.gauge if self.cannula.gauge is not None else self.cannula.id_mm
            why = f"not narrower than the syringe bore ({show(self.syringe.bore)} mm)"
            problems.append(
                Problem(path, value, why, f"an inner diameter below {show(self.syringe.bore)}", "mm")
            )
        c = self.cement
        if c.viscosity_min_pa_s >= c.viscosity_max_pa_s:
            why = f"not above cement.viscosity_min_pa_s ({show(c.viscosity_min_pa_s)})"
            allowed = f"({show(c.viscosity_min_pa_s)}, 100000]"
            problems.append(Problem("cement.viscosity_max_pa_s", c.viscosity_max_pa_s, why, allowed, "Pa s"))
        if problems:
            raise RulesBrokenError(problems)
        return self

    def mixed_ago_s(self, now: datetime | None = None) -> float | None:
        """Age of the cement from `cement.mixed_at` (None if the plan leaves it to run time)."""
        mixed = self.cement.mixed_at
        if mixed is None:
            return None
        if now is None:
            now = datetime.now(mixed.tzinfo)
        elif (now.tzinfo is None) != (mixed.tzinfo is None):  # compare like with like, in local time
            now = now.astimezone(mixed.tzinfo) if mixed.tzinfo else now.astimezone().replace(tzinfo=None)
        return (now - mixed).total_seconds()

    def to_arm(self, cmd_id: int, mixed_ago_s: float | None = None, *, now: datetime | None = None) -> Arm:
        """The ARM command for this plan, in wire units.

        `mixed_ago_s` is the cement's age when the command is sent; if None it is computed from
        `cement.mixed_at` at `now` (default: the clock). A run-time value wins over the file's.
        Rounding: integers to the nearest wire unit (Pa, nL, nL/s, ms, um), halves away from zero,
        computed in decimal on the value as written, so 0.1 mL is exactly 100 000 nL; viscosities to
        the nearest float32, the wire type, so the message equals what the device decodes."""
        if not 1 <= cmd_id <= 0xFFFF:
            raise ValueError(f"cmd_id {cmd_id} is outside 1..65535")
        if mixed_ago_s is None:
            mixed_ago_s = self.mixed_ago_s(now)
        where = f"plan {self.name!r}"
        if mixed_ago_s is None:
            raise PlanError(
                [
                    f"{where}: cement.mixed_at: (missing) is required when no cement age is given at "
                    "run time; allowed a local date-time in the plan, or mixed_ago_s (s)"
                ]
            )
        mixed_ago_ms = wire(mixed_ago_s, 1000) if math.isfinite(mixed_ago_s) else -1
        if not 0 <= mixed_ago_ms <= U32_MAX:
            raise PlanError(
                [
                    f"{where}: mixed_ago_s: {show(mixed_ago_s)} is not a cement age (mixing in the "
                    f"future?); allowed [0, {U32_MAX // 1000}] (s)"
                ]
            )
        incremental = self.mode == "incremental"
        return Arm(
            cmd_id=cmd_id,
            mode=Mode.INCREMENTAL if incremental else Mode.CONTINUOUS,
            plan_flags=PlanFlags.RELIEF if self.relief.enabled else PlanFlags.NONE,
            flow_nl_s=wire(self.flow_ml_min, 1_000_000, 60),
            increment_nl=wire(self.increment_ml or 0.0, 1_000_000) if incremental else 0,
            volume_limit_nl=wire(self.volume_limit_ml, 1_000_000),
            soft_limit_pa=wire(self.pressure.soft_limit_kpa, 1000),
            hard_limit_pa=wire(self.pressure.hard_limit_kpa, 1000),
            relief_pa=wire(self.relief.relief_kpa, 1000),
            mixed_ago_ms=mixed_ago_ms,
            working_time_ms=wire(self.cement.working_time_s, 1000),
            viscosity_min_pas=f32(self.cement.viscosity_min_pa_s),
            viscosity_max_pas=f32(self.cement.viscosity_max_pa_s),
            cannula_length_um=wire(self.cannula.length_mm, 1000),
            cannula_id_um=wire(self.cannula.id_mm, 1000),
            syringe_bore_um=wire(self.syringe.bore, 1000),
        )


def wire(value: float, scale: int, divisor: int = 1) -> int:
    """`value * scale / divisor` to the nearest integer, halves away from zero, in exact decimal
    arithmetic on the float's shortest repr (the number as written in the plan)."""
    exact = Decimal(repr(float(value))) * scale / divisor
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


def f32(value: float) -> float:
    """The nearest float32: what a `f` field carries on the wire."""
    return typing.cast(float, struct.unpack("<f", struct.pack("<f", value))[0])


def edge(wire_value: int, scale: int, divisor: int = 1) -> float:
    """Inverse of `wire` for a wire integer: `wire(edge(n, s, d), s, d) == n` for every u32 n."""
    return float(Decimal(wire_value) * divisor / scale)


def parse_plan(data: Mapping[str, Any], source: str = "<plan>") -> InjectionPlan:
    """Validate a plan given as a mapping (a parsed TOML file, a scenario's embedded plan)."""
    try:
        return InjectionPlan.model_validate(data)
    except ValidationError as exc:
        raise PlanError(describe(exc, InjectionPlan, source)) from None


def load_plan(path: str | os.PathLike[str]) -> InjectionPlan:
    """Read and check a plan file; raises PlanError listing every problem found."""
    return parse_plan(read_toml(path, PlanError), os.fspath(path))


def clamp_to_device(plan: InjectionPlan, info: DeviceInfo) -> tuple[InjectionPlan, list[str]]:
    """The plan as the device will run it, and one warning per field lowered to the device's limit.

    The device clamps the same way (SPEC §7.8) and raises a LIMIT_CLAMPED alarm; doing it here lets
    the operator see the values in force before arming. Limits: pressures to `max_pressure_pa`,
    flow to `max_flow_nl_s`, volume (and an increment above it) to what the stroke holds with this
    syringe (`travel_um` x bore area, as the controller computes it, rounded down to whole nL).
    Raises PlanError if the clamped plan breaks a rule (e.g. soft no longer below hard) or needs a
    capability the device lacks: the device would refuse it."""
    where = f"plan {plan.name!r} on device {info.serial or '?'}"
    caps = Capabilities(info.capabilities)
    missing = []
    if plan.mode == "incremental" and not caps & Capabilities.INCREMENTAL:
        missing.append(
            f"{where}: mode: 'incremental' is not supported by the device; allowed 'continuous' (mode)"
        )
    if plan.relief.enabled and not caps & Capabilities.RELIEF_BACKOFF:
        missing.append(
            f"{where}: relief.enabled: true is not supported by the device; allowed false (true/false)"
        )
    if missing:
        raise PlanError(missing)

    data = plan.model_dump()
    warnings: list[str] = []

    def lower(path: str, unit: str, asked: float, in_force: float, because: str) -> None:
        table, _, key = path.rpartition(".")
        (data[table] if table else data)[key] = in_force
        warnings.append(
            f"{path}: requested {show(asked)} {unit}, in force {show(in_force)} {unit} "
            f"(device {info.serial or '?'} {because})"
        )

    for path, asked in (
        ("pressure.soft_limit_kpa", plan.pressure.soft_limit_kpa),
        ("pressure.hard_limit_kpa", plan.pressure.hard_limit_kpa),
        ("relief.relief_kpa", plan.relief.relief_kpa),
    ):
        if wire(asked, 1000) > info.max_pressure_pa:
            lower(
                path,
                "kPa",
                asked,
                edge(info.max_pressure_pa, 1000),
                f"max_pressure_pa {info.max_pressure_pa} Pa",
            )
    if wire(plan.flow_ml_min, 1_000_000, 60) > info.max_flow_nl_s:
        in_force = edge(info.max_flow_nl_s, 1_000_000, 60)
        lower("flow_ml_min", "mL/min", plan.flow_ml_min, in_force, f"max_flow_nl_s {info.max_flow_nl_s} nL/s")
    bore_m = wire(plan.syringe.bore, 1000) * 1e-6
    stroke_nl = int(info.travel_um / 1e6 * (math.pi * bore_m * bore_m / 4.0) * 1e12)
    because = (
        f"travel_um {info.travel_um} um x syringe bore {show(plan.syringe.bore)} mm holds {stroke_nl} nL"
    )
    if wire(plan.volume_limit_ml, 1_000_000) > stroke_nl:
        lower("volume_limit_ml", "mL", plan.volume_limit_ml, edge(stroke_nl, 1_000_000), because)
    if plan.mode == "incremental" and wire(plan.increment_ml or 0.0, 1_000_000) > stroke_nl:
        lower(
            "increment_ml", "mL", typing.cast(float, plan.increment_ml), edge(stroke_nl, 1_000_000), because
        )
    if not warnings:
        return plan, []
    return parse_plan(data, f"{where} (after clamping)"), warnings
