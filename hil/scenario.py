"""HIL scenarios: one TOML file per case, checked before anything runs.

A scenario names the simulated rig (`[plant]`, the simulator's `PlantConfig`), the plan the host sends
(`[plan]`, the schema of `plans/*.toml`, or `plan_file`), the events to inject (`[[events]]`: plant
faults the simulator fires, and host-side events the runner performs) and what must come out
(`[expect]`). docs/hil.md documents every field with its unit and range. A bad file fails with one
line per problem naming the field path, the value and what is allowed, in the style of
`host.plan.PlanError`.
"""

from __future__ import annotations

import os
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from firmware_sim.plant.config import PlantConfig
from firmware_sim.plant.events import (
    Disconnection,
    EndSwitch,
    EventBase,
    FluoroStopLine,
    LeakOpen,
    MotorStall,
    Occlusion,
    PlantEvent,
    SensorDrift,
    SensorNoiseBurst,
    SensorOpen,
    SensorShort,
    SensorStuck,
)
from host.config_file import Problem, Raw, RulesBrokenError, Unit, describe, read_toml
from host.plan import InjectionPlan, load_plan
from protocol.enums import NakCode, State, StopReason, StopSource

StateName = Literal["IDLE", "ARMED", "INJECTING", "PAUSED", "STOPPED", "DONE", "FAULT"]
ReasonName = Literal[
    "OVERPRESSURE",
    "PRESSURE_RISE",
    "PRESSURE_LOSS",
    "VOLUME_LIMIT",
    "INCREMENT_DONE",
    "FLUORO_STOP",
    "OPERATOR_STOP",
    "HOST_LOST",
    "SENSOR_FAULT",
    "MOTOR_STALL",
    "END_OF_TRAVEL",
    "WORKING_TIME",
    "VISCOSITY_WINDOW",
]
SourceName = Literal[
    "OPERATOR", "FLUORO_OPERATOR", "FLUORO_REMOTE", "REMOTE", "FLUORO_LINE", "CONTROLLER", "FLUORO_IMAGE"
]
ImageRuleName = Literal["POSTERIOR_QUARTER", "EXTRAVASATION", "VENOUS_FILLING", "IMAGE_LOST"]
RefusalName = Literal[
    "BAD_STATE",
    "STOP_LATCHED",
    "VISCOSITY_OUT_OF_WINDOW",
    "SENSOR_FAULT",
    "END_OF_TRAVEL",
    "WORKING_TIME_EXCEEDED",
]

PLANT_EVENT_KINDS: frozenset[str] = frozenset(
    member.model_fields["kind"].default for member in typing.get_args(typing.get_args(PlantEvent)[0])
)
"""Events the simulator's plant fires: they need the simulator (skipped on a real rig)."""


class ScenarioError(ValueError):
    """A scenario that cannot be run. `problems`: one line per problem,
    "<file>: <field path>: <value> is <why>; allowed <range> (<unit>)"."""

    def __init__(self, problems: list[str] | tuple[str, ...]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class HostEventBase(EventBase):
    """A host-side event, performed by the runner. `at_s`: device seconds since power-up (the
    simulator's clock, read from telemetry); `at_volume_ml`: the delivered volume the pump reports
    (telemetry `delivered_nl`, SPEC §5.15)."""


class HostSilence(HostEventBase):
    """The host stops sending heartbeats (a hung host): the device's watchdog must stop (HOST_LOST)."""

    kind: Literal["host_silence"] = "host_silence"


class LinkCut(HostEventBase):
    """The host's port closes under the session (a pulled cable): link down, HOST_LOST."""

    kind: Literal["link_cut"] = "link_cut"


class MqttStop(HostEventBase):
    """The imaging system publishes a fluoroscopy stop on `cementguard/<rig>/fluoro/stop`; the host's
    MQTT bridge forwards it (STOP source FLUORO_REMOTE). Runs a real Mosquitto."""

    kind: Literal["mqtt_stop"] = "mqtt_stop"


class OperatorStop(HostEventBase):
    """The operator's STOP (source OPERATOR): `DeviceClient.stop()`."""

    kind: Literal["operator_stop"] = "operator_stop"


class FluoroKeyStop(HostEventBase):
    """The dashboard's fluoroscopy key: `DeviceClient.stop(FLUORO_OPERATOR)`."""

    kind: Literal["fluoro_key_stop"] = "fluoro_key_stop"


ScenarioEvent = Annotated[
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
    | FluoroStopLine
    | HostSilence
    | LinkCut
    | MqttStop
    | OperatorStop
    | FluoroKeyStop,
    Field(discriminator="kind"),
]
EventKindName = Literal[
    "leak_open",
    "occlusion",
    "disconnection",
    "sensor_stuck",
    "sensor_open",
    "sensor_short",
    "sensor_noise_burst",
    "sensor_drift",
    "motor_stall",
    "end_switch",
    "fluoro_stop_line",
    "host_silence",
    "link_cut",
    "mqtt_stop",
    "operator_stop",
    "fluoro_key_stop",
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


Range = tuple[float, float]


def _range_problem(path: str, r: Range | None, unit: str, lowest: float, highest: float) -> list[Problem]:
    """A [low, high] range must have lowest <= low <= high <= highest."""
    if r is None or lowest <= r[0] <= r[1] <= highest:
        return []
    return [
        Problem(path, list(r), "not a range", f"[low, high], {lowest:g} <= low <= high <= {highest:g}", unit)
    ]


class TruthExpect(_Model):
    """Expectations on the spatial body's ground truth at the end of the run (`[expect.truth]`):
    simulator truth the controller never sees (`firmware_sim/plant/spatial_truth.py`). Needs
    ``plant.vertebra = "spatial"``; not checked on a real rig. Unset fields are not checked."""

    front_ap_fraction: Annotated[Range | None, Unit("", "[low, high] within 0..1")] = None
    """How far back the cement reaches: 0 anterior cortex, 1 posterior wall (0.75: the quarter line)."""
    posterior_quarter: Annotated[bool | None, Unit("true/false")] = None
    """Whether the front crossed the posterior-quarter line during the run."""
    leak_ml: Annotated[dict[str, Range] | None, Unit("mL", "{ path = [low, high] }")] = None
    """Cement in each named leak path (basivertebral, segmental_left, segmental_right,
    cortical_<site>); a path not named is not checked."""
    total_leak_ml: Annotated[Range | None, Unit("mL", "[low, high]")] = None
    peak_temperature_c: Annotated[Range | None, Unit("degC", "[low, high]")] = None
    """Hottest cell of the body over the run."""
    canal_peak_c: Annotated[Range | None, Unit("degC", "[low, high]")] = None
    """Hottest the canal face of the posterior wall has been over the run."""

    @model_validator(mode="after")
    def _rules(self) -> TruthExpect:
        problems = [
            *_range_problem("front_ap_fraction", self.front_ap_fraction, "", 0.0, 1.0),
            *_range_problem("total_leak_ml", self.total_leak_ml, "mL", 0.0, 100.0),
            *_range_problem("peak_temperature_c", self.peak_temperature_c, "degC", 0.0, 150.0),
            *_range_problem("canal_peak_c", self.canal_peak_c, "degC", 0.0, 150.0),
        ]
        for name, r in (self.leak_ml or {}).items():
            problems += _range_problem(f"leak_ml.{name}", r, "mL", 0.0, 100.0)
        if problems:
            raise RulesBrokenError(problems)
        return self


class GuardScenario(_Model):
    """`[guard]`: the simulator publishes synthetic fluoroscopy (`sim --frames-out`) and the runner's
    host side runs the fluoroscopic guard on it (`sim://`), as `cementguard run --frames` does. START
    waits until the guard is watching. Needs ``plant.vertebra = "spatial"`` and the simulator."""

    fps: Annotated[float, Field(ge=1, le=30), Unit("frames/s")] = 5.0
    dose: Annotated[float, Field(ge=10, le=1e6), Unit("photons per pixel")] = 1000.0
    size_px: Annotated[int, Field(ge=64, le=1024), Unit("px")] = 512
    """Frame width and height (the field is size_px x 0.2 mm)."""
    feed_lost_at_s: Annotated[float | None, Field(gt=0, le=3600), Unit("s")] = None
    """Device seconds after START at which the frame feed is cut (a grabber unplugged): the guard must
    go blind and stop."""
    views: Annotated[Literal["lateral", "ap", "both"], Unit("view")] = "lateral"
    """The projections on the stream: "both" is a biplane stream (alternating pulses), watched by a
    guard per view (host/guard/biplane.py), the stop from either."""


class Expect(_Model):
    """What the run must show. Unset fields are not checked."""

    state: Annotated[StateName, Unit("state")]
    """Final controller state, read with GET_STATUS after the run settled."""
    reason: Annotated[ReasonName | None, Unit("stop reason")] = None
    """Final stop reason (of STATUS); INCREMENT_DONE / VOLUME_LIMIT for planned ends."""
    source: Annotated[SourceName | None, Unit("stop source")] = None
    max_latency_ms: Annotated[float | None, Field(ge=0, le=600_000), Unit("ms")] = None
    """Onset of the trigger event to the STOP event (device clock; host wall clock for stops the host
    sends, see docs/hil.md)."""
    latency_from: Annotated[EventKindName | None, Unit("event kind")] = None
    """Which event's onset the latency counts from; default the first event to fire."""
    max_after_flow_ml: Annotated[float | None, Field(ge=0, le=100), Unit("mL")] = None
    """Cement out of the cannula tip after the stop, until `settle_s` later (simulator truth)."""
    delivered_ml: Annotated[tuple[float, float] | None, Unit("mL", "[low, high] with 0 <= low <= high")] = (
        None
    )
    """Range of the delivered volume the pump reports (`delivered_nl`, SPEC §5.15) at the final stop
    (or at the end of the run)."""
    no_false_stop: Annotated[bool, Unit("true/false")] = True
    """No latched stop before the trigger event's onset (or, without events, none but `reason`)."""
    refused: Annotated[RefusalName | None, Unit("NAK code")] = None
    """START or RESUME must be refused with this NAK code (the run ends there)."""
    increments_done: Annotated[int | None, Field(ge=0, le=1000), Unit("count")] = None
    image_rule: Annotated[ImageRuleName | None, Unit("guard rule")] = None
    """The fluoroscopic guard's rule named by the final stop (its STOP event's detail); needs [guard]."""
    truth: TruthExpect | None = None
    """Ground truth of the spatial body at the end of the run (`[expect.truth]`)."""

    @model_validator(mode="after")
    def _rules(self) -> Expect:
        if self.delivered_ml is not None:
            low, high = self.delivered_ml
            if not 0 <= low <= high:
                raise RulesBrokenError(
                    [
                        Problem(
                            "delivered_ml",
                            list(self.delivered_ml),
                            "not a range",
                            "[low, high], 0 <= low <= high",
                            "mL",
                        )
                    ]
                )
        return self


class Scenario(_Model):
    """One HIL case. Load with `load_scenario`."""

    name: Annotated[
        str,
        Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_.-]+$"),
        Unit("name", "letters, digits, - _ ."),
    ]
    description: Annotated[str, Field(max_length=4000), Unit("text")] = ""
    seed: Annotated[int, Field(ge=0, le=2**63 - 1), Unit("integer")] = 0
    """The simulator's noise seed (`cementguard sim --seed`): the run is reproducible."""
    time_scale: Annotated[float | None, Field(ge=1, le=100), Unit("x")] = None
    """Simulated time per wall second for this scenario; None: the runner's default."""
    max_duration_s: Annotated[float, Field(gt=0, le=3600), Unit("s")] = 120.0
    """Device seconds after START after which the run is ended as timed out."""
    settle_s: Annotated[float, Field(ge=0, le=60), Unit("s")] = 2.0
    """Device seconds recorded after the final stop (relief, after-flow)."""
    resume_after_s: Annotated[float, Field(ge=0, le=600), Unit("s")] = 1.0
    """Imaging pause: device seconds in PAUSED after each INCREMENT_DONE before the runner's RESUME."""
    resume_increments: Annotated[bool, Unit("true/false")] = True
    """False: no RESUME is ever sent; the run ends at the first INCREMENT_DONE."""
    plant: PlantConfig = PlantConfig()
    guard: GuardScenario | None = None
    plan: InjectionPlan
    events: tuple[ScenarioEvent, ...] = ()
    expect: Expect

    @model_validator(mode="after")
    def _rules(self) -> Scenario:
        problems = []
        if self.plant.events:
            problems.append(
                Problem(
                    "plant.events",
                    Raw(f"({len(self.plant.events)} events)"),
                    "not the place for events",
                    "[[events]] at the top level",
                    "events",
                )
            )
        kinds = {e.kind for e in self.events}
        e = self.expect
        if e.latency_from is not None and e.latency_from not in kinds:
            problems.append(
                Problem(
                    "expect.latency_from",
                    e.latency_from,
                    "not an event of this scenario",
                    " or ".join(sorted(kinds)) or "(no events)",
                    "event kind",
                )
            )
        if e.max_latency_ms is not None and not self.events and self.guard is None:  # [guard]: truth onsets
            problems.append(
                Problem(
                    "expect.max_latency_ms",
                    e.max_latency_ms,
                    "set without any event to count from",
                    "an [[events]] entry",
                    "ms",
                )
            )
        if e.truth is not None and self.plant.vertebra != "spatial":
            problems.append(
                Problem(
                    "expect.truth",
                    Raw("(a table)"),
                    f'set for plant.vertebra = "{self.plant.vertebra}"',
                    'plant.vertebra = "spatial"',
                    "table",
                )
            )
        if self.guard is not None and self.plant.vertebra != "spatial":
            problems.append(
                Problem(
                    "guard",
                    Raw("(a table)"),
                    f'set for plant.vertebra = "{self.plant.vertebra}"',
                    'plant.vertebra = "spatial"',
                    "table",
                )
            )
        if e.image_rule is not None and self.guard is None:
            problems.append(
                Problem("expect.image_rule", e.image_rule, "set without [guard]", "a [guard] table", "rule")
            )
        if e.increments_done is not None and self.plan.mode != "incremental":
            problems.append(
                Problem(
                    "expect.increments_done",
                    e.increments_done,
                    "set for a continuous plan",
                    "absent",
                    "count",
                )
            )
        if problems:
            raise RulesBrokenError(problems)
        return self

    @property
    def plant_events(self) -> list[Any]:
        return [e for e in self.events if e.kind in PLANT_EVENT_KINDS]

    @property
    def host_events(self) -> list[Any]:
        return [e for e in self.events if e.kind not in PLANT_EVENT_KINDS]

    def plant_file_data(self) -> dict[str, Any]:
        """The simulator's `--scenario` file content: the plant, its events and the seed."""
        data = self.plant.model_dump(mode="json", exclude={"events", "seed"}, exclude_defaults=True)
        data["seed"] = self.seed
        data["events"] = [e.model_dump(mode="json", exclude_none=True) for e in self.plant_events]
        return {"plant": data}


def parse_scenario(data: Mapping[str, Any], source: str, base_dir: Path | None = None) -> Scenario:
    """Validate a scenario given as a mapping. `plan_file` (a path relative to `base_dir`) is read
    into `plan`; `name` defaults to the file's stem."""
    data = dict(data)
    plan_file = data.pop("plan_file", None)
    if plan_file is not None:
        if "plan" in data:
            raise ScenarioError(
                [
                    f"{source}: plan_file: {plan_file!r} is given together with [plan]; "
                    "allowed one of them (plan)"
                ]
            )
        if not isinstance(plan_file, str):
            raise ScenarioError(
                [f"{source}: plan_file: {plan_file!r} is not text (quote it); allowed a path (path)"]
            )
        path = (base_dir or Path(".")) / plan_file
        try:
            data["plan"] = load_plan(path).model_dump()
        except ValueError as exc:
            raise ScenarioError([f"{source}: plan_file: {line}" for line in str(exc).splitlines()]) from None
    if "name" not in data and source.endswith(".toml"):
        data["name"] = Path(source).stem
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        raise ScenarioError([_tidy(line) for line in describe(exc, Scenario, source)]) from None


_RANGE = re.compile(
    r"^(?P<head>.*?): (?P<value>\S+) is \w+ = \S+ (?P<unit>.*?) ?"
    r"is outside the allowed range (?P<range>\S+) .*$"
)
_TAG = re.compile(
    r"^(?P<head>.*?: [\w.]+): .* is Input tag (?P<tag>'[^']*') found using 'kind' does not match .*$"
)
_BOTH = re.compile(
    r"^(?P<head>.*?: [\w.]+): .* is give at_s \((?P<s>[^)]*)\) or at_volume_ml \((?P<v>[^)]*)\).*$"
)


def _tidy(line: str) -> str:
    """The simulator's range errors and pydantic's union-tag errors in the plan-file wording."""
    m = _RANGE.match(line)
    if m:
        unit = m["unit"] or "-"
        return f"{m['head']}: {m['value']} is outside the allowed range; allowed {m['range']} ({unit})"
    m = _TAG.match(line)
    if m:
        kinds = ", ".join(typing.get_args(EventKindName))
        return f"{m['head']}.kind: {m['tag']} is not a known event kind; allowed {kinds} (event kind)"
    m = _BOTH.match(line)
    if m:
        return (
            f"{m['head']}: at_s = {m['s']} and at_volume_ml = {m['v']} are both given; "
            "allowed one of them: an event fires on one trigger (trigger)"
        )
    return line


def load_scenario(path: str | os.PathLike[str]) -> Scenario:
    """Read and check a scenario file; raises ScenarioError listing every problem found."""
    p = Path(path)
    return parse_scenario(read_toml(p, ScenarioError), os.fspath(p), p.parent)


def state_value(name: str) -> State:
    return State[name]


def reason_value(name: str) -> StopReason:
    return StopReason[name]


def source_value(name: str) -> StopSource:
    return StopSource[name]


def nak_value(name: str) -> NakCode:
    return NakCode[name]
