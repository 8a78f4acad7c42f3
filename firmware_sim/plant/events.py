"""Plant events a scenario schedules: leaks, occlusion, disconnection, sensor and motor faults, the
fluoroscopy stop line.

Each event fires once, either at a simulated time (`at_s`, seconds since the plant started) or when
the cement delivered out of the cannula tip reaches a volume (`at_volume_ml`); with neither it fires
at the next tick (the device's runtime fault-injection hook). Events with a `duration_s` undo
themselves after it; without one they last. Pydantic models with `kind` as the discriminator, so a
scenario's TOML can hold them as ``[[plant.events]]`` tables; an out-of-range value fails validation
with a message that names the field, the value and the allowed range.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)


def in_range(low: float, high: float, unit: str) -> AfterValidator:
    """A validator that rejects values outside [low, high] (and NaN) with one readable message."""

    def check(value: float, info: ValidationInfo) -> float:
        if not low <= value <= high:
            raise ValueError(
                f"{info.field_name} = {value!r} {unit} is outside the allowed range {low:g}..{high:g} {unit}"
            )
        return value

    return AfterValidator(check)


Seconds = Annotated[float, in_range(0.0, 86_400.0, "s")]
Duration = Annotated[float, in_range(1e-3, 86_400.0, "s")]
VolumeMl = Annotated[float, in_range(0.0, 100.0, "mL")]


class EventBase(BaseModel):
    """When an event fires: at a time, at a delivered volume, or (neither given) at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    at_s: Seconds | None = None
    at_volume_ml: VolumeMl | None = None

    @model_validator(mode="after")
    def _one_trigger(self) -> EventBase:
        if self.at_s is not None and self.at_volume_ml is not None:
            raise ValueError(
                f"give at_s ({self.at_s} s) or at_volume_ml ({self.at_volume_ml} mL), not both: "
                "an event fires on one trigger"
            )
        return self


class LeakOpen(EventBase):
    """The cement front reaches a vein or a cortical defect: a channel opens in parallel."""

    kind: Literal["leak_open"] = "leak_open"
    path: Literal["venous", "cortical"] = "venous"
    diameter_mm: Annotated[float, in_range(0.1, 6.0, "mm")] = 2.0
    """Equivalent channel diameter: basivertebral / segmental veins are ~1-3 mm."""
    length_mm: Annotated[float, in_range(0.5, 100.0, "mm")] | None = None
    """Channel length; None: 20 mm venous, 3 mm cortical."""


class Occlusion(EventBase):
    """The cannula blocks (cement setting in it): its resistance is multiplied by `factor`."""

    kind: Literal["occlusion"] = "occlusion"
    factor: Annotated[float, in_range(1.0, 1e9, "x")] = 1e4
    duration_s: Duration | None = None


class Disconnection(EventBase):
    """The syringe comes off the cannula: it vents through its open Luer tip, for good."""

    kind: Literal["disconnection"] = "disconnection"


class SensorStuck(EventBase):
    """The reading freezes at its last value."""

    kind: Literal["sensor_stuck"] = "sensor_stuck"
    duration_s: Duration | None = None


class SensorOpen(EventBase):
    """The 4-20 mA loop opens: ~0 mA, below the 3.6 mA fault band."""

    kind: Literal["sensor_open"] = "sensor_open"
    duration_s: Duration | None = None


class SensorShort(EventBase):
    """The loop shorts or the transmitter fails high: ~24 mA, above the 21 mA fault band."""

    kind: Literal["sensor_short"] = "sensor_short"
    duration_s: Duration | None = None


class SensorNoiseBurst(EventBase):
    """Interference: the noise sigma is multiplied by `factor` for `duration_s`."""

    kind: Literal["sensor_noise_burst"] = "sensor_noise_burst"
    factor: Annotated[float, in_range(1.0, 1000.0, "x")] = 10.0
    duration_s: Duration = 1.0


class SensorDrift(EventBase):
    """The zero drifts at `rate_kpa_s` (the offset reached is kept when a duration ends)."""

    kind: Literal["sensor_drift"] = "sensor_drift"
    rate_kpa_s: Annotated[float, in_range(-1000.0, 1000.0, "kPa/s")] = 1.0
    duration_s: Duration | None = None


class MotorStall(EventBase):
    """Steps are commanded but the plunger does not move (mechanical jam, driver fault)."""

    kind: Literal["motor_stall"] = "motor_stall"
    duration_s: Duration | None = None


class EndSwitch(EventBase):
    """The forward limit switch closes before the plunger is at the end (misadjusted switch, a
    foreign body): the controller must stop on END_OF_TRAVEL at once and refuse START while it is
    closed. ARM never accepts a plan beyond the usable stroke, so this is how a scenario reaches that
    stop."""

    kind: Literal["end_switch"] = "end_switch"
    duration_s: Duration | None = None


class FluoroStopLine(EventBase):
    """The footswitch / imaging-system stop input is asserted (or released)."""

    kind: Literal["fluoro_stop_line"] = "fluoro_stop_line"
    asserted: bool = True
    duration_s: Duration | None = None


PlantEvent = Annotated[
    LeakOpen
    | Occlusion
    | Disconnection
    | SensorStuck
    | SensorOpen
    | SensorShort
    | SensorNoiseBurst
    | SensorDrift
    | MotorStall
    | EndSwitch
    | FluoroStopLine,
    Field(discriminator="kind"),
]

# mypy reads an Annotated union of more than ten models as a UnionType value, not a type form; whether
# it says so depends on its cache (a fresh run does not): the ignore may be unused either way
EVENT_ADAPTER: TypeAdapter[PlantEvent] = TypeAdapter(PlantEvent)  # type: ignore[arg-type, unused-ignore]


def parse_event(data: object) -> PlantEvent:
    """An event from a dict (a TOML table, JSON); raises pydantic.ValidationError when invalid."""
    return EVENT_ADAPTER.validate_python(data)
