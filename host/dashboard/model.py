"""The dashboard's view model: everything the screen shows, fed by a source, read by the widgets.

Sources (a live controller, a recording played back, a test's script) push what they receive into
a `DashboardModel` through its `on_*` methods; widgets read it on a timer. Nothing here does I/O or
knows about Textual, so the screen can be driven deterministically without a link.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from types import SimpleNamespace
from typing import Any

from host.dashboard.guard_view import GuardView
from host.dashboard.history import DEFAULT_CAPACITY, History
from host.plan import InjectionPlan
from host.relief_notice import relief_notice, relief_notice_ends
from host.stops import source_label
from protocol.enums import MOVEMENT_STATES, EventKind, State, StopReason, StopSource
from protocol.models import DeviceInfoRecord, StatusRecord
from protocol.telemetry import SampleArray

STOP_LOG_SIZE = 500
PLANNED_STOPS = frozenset({StopReason.INCREMENT_DONE, StopReason.VOLUME_LIMIT})
"""STOP events the plan asked for: the pause after each increment, the end at the target volume."""
LINKED_STATES = ("connected",)


def enum_name(enum: type[IntEnum], value: int | None) -> str:
    """The member name, or the bare number for a value this host does not know."""
    if value is None:
        return "-"
    try:
        return enum(value).name
    except ValueError:
        return str(int(value))


@dataclass(frozen=True, slots=True)
class StopEntry:
    """One row of the stop log: a STOP event and what the host knows about it."""

    t_s: float
    """Controller time of the event (s since power-up)."""
    reason: str
    source: str
    state: str
    pressure_kpa: float
    """NaN when the event marks the reading invalid (flags SENSOR_FAULT)."""
    delivered_ml: float
    latency_ms: float | None = None
    """Request (key, MQTT message) to event read off the port, for stops this host asked for."""
    origin: str | None = None
    received_at: float | None = None
    """time.perf_counter() when the event was read off the port (live only)."""


@dataclass(slots=True)
class LinkView:
    state: str = "closed"
    """A host.link.LinkState value ("connecting", "connected", "lost", "failed", "closed"), or "replay"."""
    reason: str = ""
    port: str = ""
    counters: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class Latest:
    """The newest telemetry sample, in edge units."""

    t_s: float = math.nan
    pressure_kpa: float = math.nan
    delivered_ml: float = math.nan
    flow_ml_min: float = math.nan
    viscosity_pa_s: float = math.nan
    flags: int = 0


@dataclass(slots=True)
class ReplayView:
    position_s: float = 0.0
    duration_s: float = 0.0
    speed: float = 1.0
    playing: bool = False
    complete: bool = True


class DashboardModel:
    """What the dashboard shows. `version` increases on every change to the non-plot panels."""

    def __init__(
        self,
        *,
        history_capacity: int = DEFAULT_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.history = History(history_capacity)
        self.clock = clock
        self.device: DeviceInfoRecord | None = None
        self.status: StatusRecord | None = None
        self.state: State | int | None = None
        self.stop_reason: StopReason | int = StopReason.NONE
        self.stop_source: StopSource | int = StopSource.NONE
        self.latest = Latest()
        self.stops: deque[StopEntry] = deque(maxlen=STOP_LOG_SIZE)
        self.stops_total = 0
        self.stops_epoch = 0
        """Increases when the log is cleared (a replay seek), so views rebuild it."""
        self.stop_marks_s: deque[float] = deque(maxlen=STOP_LOG_SIZE)
        """Times (plot axis, s since the first sample) of the STOP events that stopped the plan, for
        the plots (red)."""
        self.pause_marks_s: deque[float] = deque(maxlen=STOP_LOG_SIZE)
        """Times of the planned ones (`PLANNED_STOPS`: an increment's end, the target reached): drawn
        apart from the stops, which an operator must notice."""
        self.plan: InjectionPlan | None = None
        self.plan_source = ""
        self.link = LinkView()
        self.recording: str | None = None
        self.mqtt: str | None = None
        self.mixed_at: float | None = None
        """`clock()` value at which the cement was mixed (host side, before the device knows it)."""
        self.replay: ReplayView | None = None
        self.guard: GuardView | None = None
        """The fluoroscopic guard's state and newest frame; None: this session has no frame source."""
        self.version = 0
        self.on_urgent: Callable[[], None] | None = None
        """Called when the link state changes or a STOP arrives: the view redraws at once for those,
        not at its next timer tick."""
        self.relief_notice: str | None = None
        """The device's relief ended with the line still pressurised (ALARM RELIEF_AT_LIMIT or
        RELIEF_INCOMPLETE, SPEC §6.7): the banner says so until the next ARM or movement."""
        self.guard_listeners: list[Callable[[], None]] = []
        """Called after each change of the guard's state (the MQTT bridge republishes its state)."""

    # -- fed by sources -----------------------------------------------------------------------------

    def touch(self) -> None:
        self.version += 1

    def on_guard_state(self, state: str, label: str) -> None:
        """The guard's state changed: every screen shows it at once (the banner redraws now)."""
        if self.guard is None:
            return
        self.guard.status(state, label)
        self.touch()
        self._urgent()
        for listener in tuple(self.guard_listeners):
            listener()

    def on_device(self, device: DeviceInfoRecord | None) -> None:
        self.device = device
        self.touch()

    def on_link(self, state: str, reason: str, port: str | None = None) -> None:
        changed = state != self.link.state
        self.link.state = state
        self.link.reason = reason
        if port is not None:
            self.link.port = port
        self.touch()
        if changed:
            self._urgent()

    def _urgent(self) -> None:
        if self.on_urgent is not None:
            self.on_urgent()

    def on_counters(self, counters: dict[str, int]) -> None:
        if counters != self.link.counters:
            self.link.counters = counters
            self.touch()

    def on_status(self, status: StatusRecord) -> None:
        self.status = status
        self._set_state(status.state, status.stop_reason, status.stop_source)
        self.touch()

    def on_samples(self, samples: SampleArray) -> None:
        if not len(samples):
            return
        self.history.append(samples)
        last = samples[-1]
        latest = self.latest
        latest.t_s = int(last["t_us"]) / 1e6
        latest.pressure_kpa = int(last["pressure_pa"]) / 1000.0
        latest.delivered_ml = int(last["delivered_nl"]) / 1e6
        latest.flow_ml_min = int(last["flow_nl_s"]) * 60.0 / 1e6
        latest.viscosity_pa_s = float(last["viscosity_pas"])
        latest.flags = int(last["flags"])
        state, reason = int(last["state"]), int(last["stop_reason"])
        if state != self.state or reason != self.stop_reason:
            self._set_state(state, reason, None)
        self.touch()

    def on_event(
        self,
        *,
        kind: int,
        state: int,
        reason: int,
        source: int,
        t_s: float,
        pressure_kpa: float,
        delivered_ml: float,
        notes: dict[str, Any] | None = None,
        received_at: float | None = None,
        alarm: int = 0,
        detail: int = 0,
    ) -> StopEntry | None:
        """A controller event; returns the stop-log entry for a STOP event. An ALARM
        RELIEF_AT_LIMIT or RELIEF_INCOMPLETE sets `relief_notice` (shown on the banner at once)
        until a new push: ARM or a movement."""
        is_stop = kind == EventKind.STOP
        notice = relief_notice(SimpleNamespace(kind=kind, alarm=alarm, detail=detail))
        if notice is not None:
            self.relief_notice = notice
            self._urgent()
        elif relief_notice_ends(kind, state):
            self.relief_notice = None
        self._set_state(state, reason if is_stop else None, source if is_stop else None)
        entry = None
        if kind == EventKind.STOP:
            notes = notes or {}
            latency = notes.get("stop_latency_ms", notes.get("line_latency_ms"))
            entry = StopEntry(
                t_s=t_s,
                reason=enum_name(StopReason, reason),
                source=str(notes.get("stop_source") or source_label(source)),
                state=enum_name(State, state),
                pressure_kpa=pressure_kpa,
                delivered_ml=delivered_ml,
                latency_ms=float(latency) if isinstance(latency, int | float) else None,
                origin=notes.get("stop_origin"),
                received_at=received_at,
            )
            self.stops.append(entry)
            self.stops_total += 1
            t0 = self.history.t0_s
            marks = self.pause_marks_s if reason in PLANNED_STOPS else self.stop_marks_s
            marks.append(t_s - t0 if t0 is not None else 0.0)
        self.touch()
        if entry is not None:
            self._urgent()
        return entry

    def _set_state(self, state: int, reason: int | None, source: int | None) -> None:
        try:
            self.state = State(state)
        except ValueError:
            self.state = state
        if self.state in (State.IDLE, State.ARMED, State.INJECTING) or self.state in MOVEMENT_STATES:
            self.stop_reason, self.stop_source = StopReason.NONE, StopSource.NONE
            return
        if reason is not None:
            self.stop_reason = reason
        if source is not None:
            self.stop_source = source

    def set_plan(self, plan: InjectionPlan | None, source: str = "") -> None:
        self.plan = plan
        self.plan_source = source
        self.touch()

    def clear_history(self) -> None:
        self.history.clear()
        self.stops.clear()
        self.stops_epoch += 1
        self.stop_marks_s.clear()
        self.pause_marks_s.clear()
        self.touch()

    # -- derived values -----------------------------------------------------------------------------

    @property
    def linked(self) -> bool:
        """True when commands can reach the controller now."""
        return self.link.state in LINKED_STATES

    def limits(self) -> dict[str, float | None]:
        """soft/hard kPa, volume/increment mL: the values in force (STATUS after ARM), else the plan's."""
        out: dict[str, float | None] = dict.fromkeys(("soft_kpa", "hard_kpa", "volume_ml", "increment_ml"))
        plan = self.plan
        if plan is not None:
            out["soft_kpa"] = plan.pressure.soft_limit_kpa
            out["hard_kpa"] = plan.pressure.hard_limit_kpa
            out["volume_ml"] = plan.volume_limit_ml
            out["increment_ml"] = plan.increment_ml if plan.mode == "incremental" else None
        s = self.status
        if s is not None and s.volume_limit_ml > 0:
            out["soft_kpa"] = s.soft_limit_kpa or out["soft_kpa"]
            out["hard_kpa"] = s.hard_limit_kpa or out["hard_kpa"]
            out["volume_ml"] = s.volume_limit_ml
            out["increment_ml"] = s.increment_ml or None
        return out

    def cement_age_s(self) -> float | None:
        """Time since mixing: the device's count after ARM (advanced by controller time), else the
        host's from the mixing time the operator gave."""
        s = self.status
        if s is not None and s.mixed_age_s > 0 and s.state != State.IDLE:
            now = self.latest.t_s if math.isfinite(self.latest.t_s) else s.t_s
            return s.mixed_age_s + max(0.0, now - s.t_s)
        if self.mixed_at is not None:
            return self.clock() - self.mixed_at
        return None

    def working_time_s(self) -> float | None:
        s = self.status
        if s is not None and s.working_time_s > 0:
            return s.working_time_s
        return self.plan.cement.working_time_s if self.plan is not None else None
