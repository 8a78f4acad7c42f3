"""JSON payloads of the bridge's topics: pydantic models, units in the field names (docs/mqtt.md).

The controller's own records (protocol.models EventRecord, TelemetryRecord) are carried as they are;
the models here add what the bridge knows: the rig, the link, the host's clock and, for stops, where
the request came from and how long it took.
"""

from __future__ import annotations

import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from host.relief_notice import relief_notice
from protocol import AlarmCode, Event, EventKind, State, StopReason, StopSource
from protocol.models import EventRecord, TelemetryRecord

__all__ = [
    "EventPayload",
    "RefusalPayload",
    "StatePayload",
    "StopRequestPayload",
    "TelemetryPayload",
    "enum_name",
    "parse_stop_request",
]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def enum_name(enum: Any, value: int | None) -> str | None:
    """The member's name, or the raw number for a value this host does not know (a newer device)."""
    if value is None:
        return None
    try:
        return str(enum(value).name)
    except ValueError:
        return str(int(value))


class StatePayload(_Out):
    """`cementguard/<rig>/state`, retained. While the bridge is away the topic holds the plain text
    `offline` instead (its last will)."""

    schema_version: Literal["cementguard.state/2"] = "cementguard.state/2"
    rig: str
    online: Literal[True] = True
    link: Literal["closed", "connecting", "connected", "lost", "failed"]
    """The serial link to the controller (host.link.LinkState)."""
    link_reason: str
    state: str | None
    """The controller's state (State name) while the link is connected; None while it is not: the
    controller then decides alone (it stops with HOST_LOST when its host goes away)."""
    last_state: str | None
    """The last state the controller reported, connected or not."""
    stop_reason: str | None
    stop_source: str | None
    device_serial: str | None
    pressure_kpa: float | None
    """At the last event or STATUS; None while the sensor is faulty (flags SENSOR_FAULT)."""
    delivered_ml: float | None
    """Cement delivered since ARM at the last event or STATUS (never decreases within a plan)."""
    plunger_mm: float | None
    """Plunger position from home at the last event or STATUS."""
    host_time_s: float = Field(description="host wall clock, Unix time, s")
    valid_for_s: float | None = Field(
        default=None,
        description="the bridge publishes this state again (its heartbeat) well within this many seconds, "
        "and the broker drops it this long after it was published (MQTT 5 message expiry): a state not "
        "renewed within valid_for_s is not current (the bridge, or the broker, went away)",
    )
    guard: str | None = Field(
        default=None,
        description="the fluoroscopic guard's state where this host runs one (WATCHING, BLIND(reason), "
        "STOPPED(rule), docs/fluoroscopy.md); None: no guard runs beside this bridge",
    )
    relief_notice: str | None = Field(
        default=None,
        description="the controller's last relief left the line pressurised (ALARM RELIEF_AT_LIMIT or "
        "RELIEF_INCOMPLETE, SPEC §6.7): the sentence with the pressure left, as the dashboard's banner "
        "says it; kept through CLEAR (which does not empty the line) until the next ARM or movement; "
        "None otherwise",
    )
    bridge_failures: list[str] = Field(
        default_factory=list,
        description="the bridge's own workers that failed (e.g. 'mqtt: events'): what they published "
        "is no longer current; empty while the bridge is whole",
    )


class TelemetryPayload(_Out):
    """`cementguard/<rig>/telemetry`: the link's telemetry batches since the last message, joined."""

    schema_version: Literal["cementguard.telemetry/2"] = "cementguard.telemetry/2"
    rig: str
    batches: int = Field(description="telemetry batches joined into this message")
    samples: int
    dropped_samples: int = Field(description="samples the bridge dropped since its start (bounded buffer)")
    host_time_s: float
    telemetry: TelemetryRecord
    """Column-wise samples in kPa, mL (delivered), mm (plunger), mL/min, mm/s, Pa·s; t_s is controller
    time."""


class EventPayload(_Out):
    """`cementguard/<rig>/events`, QoS 1: one controller event; a stop with who asked and how fast."""

    schema_version: Literal["cementguard.event/2"] = "cementguard.event/2"
    rig: str
    kind_name: str
    state_name: str
    reason_name: str
    source_name: str
    alarm_name: str = ""
    """Kinds ALARM and ALARM_CLEARED: the alarm's name (its number for one this host does not know);
    "" for the other kinds. Added within cementguard.event/2 (readers that ignore unknown fields
    are unaffected)."""
    notice: str | None = None
    """What the operator must be told about this event in words, where there is such a sentence: an
    ALARM RELIEF_AT_LIMIT or RELIEF_INCOMPLETE says the relief left the line pressurised and with
    how much (host.relief_notice, the dashboard's and the run summary's sentence)."""
    event: EventRecord
    """reason, source, flags, pressure_kpa (null while the sensor is faulty), delivered_ml and plunger_mm
    at the event, t_s (controller time), detail."""
    stop_source: str | None = None
    """A stop's source in words (host.stops.source_label)."""
    stop_origin: str | None = None
    """For a stop this host asked for: where the request came from ("mqtt cementguard/rig1/fluoro/stop")."""
    stop_latency_ms: float | None = None
    """Request entering the host -> STOP event read off the port, ms."""
    line_latency_ms: float | None = None
    """For the controller's footswitch line: first asserted sample -> stop, ms (the event's detail)."""
    host_time_s: float

    @classmethod
    def from_event(cls, rig: str, event: Event, notes: dict[str, Any]) -> EventPayload:
        return cls(
            rig=rig,
            kind_name=enum_name(EventKind, event.kind) or "",
            state_name=enum_name(State, event.state) or "",
            reason_name=enum_name(StopReason, event.reason) or "",
            source_name=enum_name(StopSource, event.source) or "",
            alarm_name=(enum_name(AlarmCode, event.alarm) or "") if event.kind in _ALARM_KINDS else "",
            notice=relief_notice(event),
            event=EventRecord.from_message(event),
            host_time_s=time.time(),
            **{k: v for k, v in notes.items() if k in _NOTES},
        )


_ALARM_KINDS = (EventKind.ALARM, EventKind.ALARM_CLEARED)
_NOTES = ("stop_source", "stop_origin", "stop_latency_ms", "line_latency_ms")


class RefusalPayload(_Out):
    """`cementguard/<rig>/refused`, QoS 1: a request the bridge did not forward, and why."""

    schema_version: Literal["cementguard.refused/1"] = "cementguard.refused/1"
    rig: str
    topic: str
    request: str
    """What was asked, as far as it could be read ("start", "arm", or the raw text cut to 200 chars)."""
    reason: str
    accepted_topics: list[str]
    """Where a remote client may publish instead: the stop topics."""
    host_time_s: float


class StopRequestPayload(BaseModel):
    """What an imaging system or supervisor MAY publish on a stop topic. Every field is optional and
    any payload stops, this one or not (fail safe): the fields only go into the log."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    reason: str | None = Field(default=None, max_length=200)
    by: str | None = Field(default=None, max_length=100)
    """Who asked: the imaging system, an operator's console."""
    sent_at: float | None = Field(default=None, description="sender's Unix time, s")


def parse_stop_request(payload: bytes) -> tuple[StopRequestPayload | None, str | None]:
    """(request, None) for an empty payload or a valid JSON object, else (None, why it is malformed)."""
    if not payload.strip():
        return StopRequestPayload(), None
    try:
        data = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"not JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"not a JSON object but {type(data).__name__}"
    try:
        return StopRequestPayload.model_validate(data), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(k) for k in first["loc"])
        return None, f"{where}: {first['msg']}"


def describe_request(topic: str, payload: bytes, limit: int) -> str:
    """What a refused request asked for: its "command" field, else the topic's last level, else text."""
    if len(payload) <= limit:
        try:
            data = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            data = None
        if isinstance(data, dict) and isinstance(data.get("command"), str):
            return str(data["command"])[:200]
    last = topic.rsplit("/", 1)[-1]
    if last != "command":
        return last[:200]
    return payload[:200].decode("utf-8", errors="replace") or "(empty)"


LATE_STOP_S = 1.0
"""A stop whose `sent_at` is older than this when it arrives was held up (queued by the broker while
the bridge was away, or a sender's clock far off): it stops all the same and is recorded as late."""


def stop_lateness(
    payload: bytes | bytearray | str | Any, max_bytes: int, now: float | None = None
) -> float | None:
    """Seconds between a stop request's `sent_at` and now, when more than LATE_STOP_S; else None
    (no `sent_at`, a malformed or oversized payload, or on time)."""
    if isinstance(payload, str):
        payload = payload.encode()
    if not isinstance(payload, bytes | bytearray) or len(payload) > max_bytes:
        return None
    request, _problem = parse_stop_request(bytes(payload))
    if request is None or request.sent_at is None:
        return None
    late = (time.time() if now is None else now) - request.sent_at
    return late if late > LATE_STOP_S else None
