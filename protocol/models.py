"""JSON forms of messages, for the boundaries where they leave the binary world (MQTT, recordings).

Units are the edge units of docs/design.md and are named in every field: kPa, mL, mL/min, s. The hot
path never builds these: telemetry stays in numpy arrays until it is published or written.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from protocol.enums import AlarmCode, EventKind, Flags, State, StopReason, StopSource
from protocol.messages import CalibrationInfo, DeviceInfo, Event, Status, SyringeInfo
from protocol.telemetry import SampleArray

PA_PER_KPA = 1000.0
NL_PER_ML = 1e6
NL_S_PER_ML_MIN = 1e6 / 60.0


def kpa(pa: float) -> float:
    return pa / PA_PER_KPA


def ml(nl: float) -> float:
    return nl / NL_PER_ML


def ml_min(nl_s: float) -> float:
    return nl_s / NL_S_PER_ML_MIN


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DeviceInfoRecord(_Model):
    protocol_version: int
    firmware_version: str
    serial: str
    capabilities: list[str]
    sample_rate_hz: int
    watchdog_ms: int
    max_pressure_kpa: float
    max_flow_ml_min: float
    travel_mm: float

    @classmethod
    def from_message(cls, m: DeviceInfo) -> DeviceInfoRecord:
        return cls(
            protocol_version=m.protocol_version,
            firmware_version=m.firmware_version,
            serial=m.serial,
            capabilities=[c.name for c in type(m.capabilities) if c and c in m.capabilities and c.name],
            sample_rate_hz=m.sample_rate_hz,
            watchdog_ms=m.watchdog_ms,
            max_pressure_kpa=kpa(m.max_pressure_pa),
            max_flow_ml_min=ml_min(m.max_flow_nl_s),
            travel_mm=m.travel_um / 1000.0,
        )


class DeviceSetupRecord(_Model):
    """The syringe and the calibration in force (SYRINGE_INFO, CALIBRATION_INFO; SPEC §5.22), as a
    recording keeps them with its run. Dates are UTC seconds since 1970, 0 = never (factory value)."""

    syringe: str
    """The selected syringe's name; "" when none is selected (each plan's bore is used)."""
    bore_mm: float
    stroke_mm: float
    dead_volume_ml: float
    pressure_ceiling_kpa: float
    usable_stroke_mm: float
    zero_offset_kpa: float
    zero_utc_s: int
    span_gain: float
    span_reference_kpa: float
    span_utc_s: int
    volume_factor: float
    volume_utc_s: int
    zero_check_kpa: float

    @classmethod
    def from_messages(cls, syringe: SyringeInfo, cal: CalibrationInfo) -> DeviceSetupRecord:
        return cls(
            syringe=syringe.name,
            bore_mm=syringe.bore_um / 1000.0,
            stroke_mm=syringe.stroke_um / 1000.0,
            dead_volume_ml=ml(syringe.dead_volume_nl),
            pressure_ceiling_kpa=kpa(syringe.max_pressure_pa),
            usable_stroke_mm=syringe.travel_um / 1000.0,
            zero_offset_kpa=kpa(cal.zero_offset_pa),
            zero_utc_s=cal.zero_utc_s,
            span_gain=cal.span_gain_ppm / 1e6,
            span_reference_kpa=kpa(cal.span_reference_pa),
            span_utc_s=cal.span_utc_s,
            volume_factor=cal.volume_factor_ppm / 1e6,
            volume_utc_s=cal.volume_utc_s,
            zero_check_kpa=kpa(cal.zero_check_pa),
        )


_RAW = Field(union_mode="left_to_right")
"""An enum field of a device message: the member where this side defines the value, else the plain
int the codec kept (SPEC §11.3: D->H enum fields decode leniently; a reserved or newer value is
logged with its number, never refused and never taken for a known one)."""


class EventRecord(_Model):
    """One controller event, as published on MQTT and written to recordings. An enum value this
    side does not know (a reserved EventKind 7 or 8, an AlarmCode a newer device appends) stays a
    plain int, as the codec keeps it: the record is still published and written."""

    event_index: int
    kind: Annotated[EventKind | int, _RAW]
    state: Annotated[State | int, _RAW]
    prev_state: Annotated[State | int, _RAW]
    reason: Annotated[StopReason | int, _RAW]
    source: Annotated[StopSource | int, _RAW]
    alarm: Annotated[AlarmCode | int, _RAW]
    t_s: float = Field(description="controller time since power-up, s")
    flags: int = Field(description="status bits (Flags) at the event; SENSOR_FAULT: pressure not valid")
    pressure_kpa: float | None = Field(description="syringe pressure, kPa; null when the sensor is faulty")
    delivered_ml: float = Field(description="cement delivered since ARM, mL (never decreases)")
    plunger_mm: float | None = Field(
        description="plunger position from home, mm; null in protocol-1 recordings, which lacked it"
    )
    detail: int

    @classmethod
    def from_message(cls, m: Event) -> EventRecord:
        return cls(
            event_index=m.event_index,
            kind=m.kind,
            state=m.state,
            prev_state=m.prev_state,
            reason=m.reason,
            source=m.source,
            alarm=m.alarm,
            t_s=m.t_us / 1e6,
            flags=int(m.flags),
            pressure_kpa=None if m.flags & Flags.SENSOR_FAULT else kpa(m.pressure_pa),
            delivered_ml=ml(m.delivered_nl),
            plunger_mm=m.plunger_um / 1000.0,
            detail=m.detail,
        )


class StatusRecord(_Model):
    state: State
    stop_reason: StopReason
    stop_source: StopSource
    flags: int
    t_s: float
    pressure_kpa: float
    """Not valid while flags has SENSOR_FAULT."""
    delivered_ml: float
    """Cement delivered since ARM (never decreases)."""
    plunger_mm: float
    """Plunger position from home."""
    flow_ml_min: float
    flow_setpoint_ml_min: float
    volume_limit_ml: float
    increment_ml: float
    increments_done: int
    soft_limit_kpa: float
    hard_limit_kpa: float
    relief_kpa: float
    viscosity_pa_s: float | None
    mixed_age_s: float
    working_time_s: float

    @classmethod
    def from_message(cls, m: Status) -> StatusRecord:
        return cls(
            state=m.state,
            stop_reason=m.stop_reason,
            stop_source=m.stop_source,
            flags=int(m.flags),
            t_s=m.t_us / 1e6,
            pressure_kpa=kpa(m.pressure_pa),
            delivered_ml=ml(m.delivered_nl),
            plunger_mm=m.plunger_um / 1000.0,
            flow_ml_min=ml_min(m.flow_nl_s),
            flow_setpoint_ml_min=ml_min(m.flow_setpoint_nl_s),
            volume_limit_ml=ml(m.volume_limit_nl),
            increment_ml=ml(m.increment_nl),
            increments_done=m.increments_done,
            soft_limit_kpa=kpa(m.soft_limit_pa),
            hard_limit_kpa=kpa(m.hard_limit_pa),
            relief_kpa=kpa(m.relief_pa),
            viscosity_pa_s=m.viscosity_pas if math.isfinite(m.viscosity_pas) else None,
            mixed_age_s=m.mixed_age_ms / 1000.0,
            working_time_s=m.working_time_ms / 1000.0,
        )


class TelemetryRecord(_Model):
    """A telemetry batch in edge units, column-wise (one list per signal) to keep JSON small."""

    first_index: int
    t_s: list[float]
    pressure_kpa: list[float]
    delivered_ml: list[float]
    plunger_mm: list[float]
    flow_ml_min: list[float]
    flow_setpoint_ml_min: list[float]
    motor_mm_s: list[float]
    viscosity_pa_s: list[float | None]
    flags: list[int]
    state: list[int]

    @classmethod
    def from_samples(cls, first_index: int, s: SampleArray) -> TelemetryRecord:
        visc: list[Any] = [v if math.isfinite(v) else None for v in s["viscosity_pas"].tolist()]
        return cls(
            first_index=first_index,
            t_s=(s["t_us"] / 1e6).tolist(),
            pressure_kpa=(s["pressure_pa"] / PA_PER_KPA).tolist(),
            delivered_ml=(s["delivered_nl"] / NL_PER_ML).tolist(),
            plunger_mm=(s["plunger_um"] / 1000.0).tolist(),
            flow_ml_min=(s["flow_nl_s"] / NL_S_PER_ML_MIN).tolist(),
            flow_setpoint_ml_min=(s["flow_setpoint_nl_s"] / NL_S_PER_ML_MIN).tolist(),
            motor_mm_s=(s["motor_um_s"] / 1000.0).tolist(),
            viscosity_pa_s=visc,
            flags=s["flags"].tolist(),
            state=s["state"].tolist(),
        )
