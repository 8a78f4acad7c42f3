"""Wait for the running plan to stop moving, from events AND from the state the device reports.

A STOP event is one frame on the line; line noise can destroy it (one damaged INCREMENT_DONE or
VOLUME_LIMIT frame made `run` wait forever while the device's heartbeats said PAUSED or DONE). So
the host never waits on an event alone: `wait_for_plan_stop` watches its own event subscription and
the device state that every HEARTBEAT, telemetry batch, STATUS and ACK carries, and re-reads STATUS

- when the device reports a state other than INJECTING without the STOP event that explains it, and
- when the event index jumps (an event was missed: it may have been the stop).

GET_STATUS is answered after every frame the device sent before it, so once the STATUS is in, a
STOP event that was only late has arrived too; if none has, the STATUS is the authority and the stop
is reported from it (`PlanStop.event is None`). Nothing here retries or resumes anything.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from host.errors import StatusUnavailable
from protocol import AlarmCode, Event, EventKind, Flags, State, Status, StopReason, StopSource

if TYPE_CHECKING:
    from host.client import DeviceClient
    from host.link import Subscription

__all__ = ["NOT_MOVING", "PlanStop", "wait_for_plan_stop"]

NOT_MOVING = tuple(s for s in State if s is not State.INJECTING)
"""Every state but INJECTING: the plan is no longer running (a movement, PRIMING .. HOMING, is
never entered from a running plan: it starts from IDLE)."""


@dataclass(frozen=True, slots=True)
class PlanStop:
    """Why the plan stopped moving: the device's STOP event, or its STATUS when the event was lost."""

    state: State
    reason: StopReason
    source: StopSource
    pressure_pa: int
    """Not valid while `flags` has SENSOR_FAULT."""
    delivered_nl: int
    """Cement delivered since ARM (SPEC §5.15)."""
    plunger_um: int
    flags: Flags
    t_us: int
    event: Event | None
    """The STOP event; None when it never arrived and this was read from STATUS."""
    event_index: int | None = None

    @property
    def event_lost(self) -> bool:
        """The STOP event never arrived: this stop was read from STATUS."""
        return self.event is None

    @classmethod
    def of_event(cls, event: Event) -> PlanStop:
        return cls(
            event.state,
            event.reason,
            event.source,
            event.pressure_pa,
            event.delivered_nl,
            event.plunger_um,
            event.flags,
            event.t_us,
            event,
            event.event_index,
        )

    @classmethod
    def of_status(cls, status: Status) -> PlanStop:
        return cls(
            status.state,
            status.stop_reason,
            status.stop_source,
            status.pressure_pa,
            status.delivered_nl,
            status.plunger_um,
            status.flags,
            status.t_us,
            None,
            None,
        )

    def as_event(self, event_count: int, prev_state: State = State.INJECTING) -> Event:
        """The stop as an EVENT-shaped record (for recordings) when it was read from STATUS; its
        index is the last one the device counted (`event_count - 1`)."""
        if self.event is not None:
            return self.event
        return Event(
            t_us=self.t_us,
            event_index=max(0, event_count - 1),
            kind=EventKind.STOP if self.reason else EventKind.STATE_CHANGE,
            state=self.state,
            prev_state=prev_state,
            reason=self.reason,
            source=self.source,
            alarm=AlarmCode.NONE,
            flags=self.flags,
            pressure_pa=self.pressure_pa,
            delivered_nl=self.delivered_nl,
            plunger_um=self.plunger_um,
            detail=0,
        )


async def wait_for_plan_stop(ctl: DeviceClient, *, timeout: float | None = None) -> PlanStop:  # noqa: ASYNC109
    """Until the device stops moving the plan forward (PAUSED, DONE, STOPPED, FAULT, or any other
    state but INJECTING). Call it after START or RESUME was acknowledged. Raises `LinkLost` if the
    link drops first (the state is then unknown), TimeoutError after `timeout`."""
    async with asyncio.timeout(timeout), ctl.events() as events:
        missed = ctl.counters.missed_events
        while True:
            if ctl.state != State.INJECTING or ctl.counters.missed_events != missed:
                missed = ctl.counters.missed_events
                found = await _reconcile(ctl, events)
                if found is not None:
                    return found
            event = await _next_event_or_state(ctl, events)
            if event is not None and event.kind == EventKind.STOP:
                return PlanStop.of_event(event)


async def _next_event_or_state(ctl: DeviceClient, events: Subscription[Event]) -> Event | None:
    """The next event, or None when the device reports a state other than INJECTING first."""
    get = asyncio.ensure_future(events.get())
    moved = asyncio.ensure_future(ctl.wait_for_state(*NOT_MOVING, timeout=None))
    waits: set[asyncio.Future[Any]] = {get, moved}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waits:
            task.cancel()
        for task in waits:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if get in done and not get.cancelled() and get.exception() is None:
        return get.result()
    if moved in done and not moved.cancelled() and moved.exception() is not None:
        raise moved.exception()  # type: ignore[misc]  # LinkLost: the state is unknown now
    return None


async def _reconcile(ctl: DeviceClient, events: Subscription[Event]) -> PlanStop | None:
    """Re-read STATUS; the STOP event if it came before it, else the STATUS if it says stopped."""
    try:
        status = await ctl.get_status()
    except StatusUnavailable:
        return None  # lost on the line twice: the state that disagreed will ask again at once
    while (event := events.get_nowait()) is not None:
        if event.kind == EventKind.STOP:
            return PlanStop.of_event(event)
    if status.state == State.INJECTING:
        return None  # a stale or damaged state report: the device is still injecting
    return PlanStop.of_status(status)
