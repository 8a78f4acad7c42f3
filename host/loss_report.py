"""After a link loss: find out what the device did, tell the operator, and record it.

When the link drops mid-run, the controller stops on its own (HOST_LOST, latched) or finishes what it
was doing; the host only knows once it can read the device again. `report_after_loss` waits a
bounded time for the link's own reconnect (which re-reads STATUS and never resumes anything), then
prints the device's state and last stop ("device: STOPPED, latched HOST_LOST (source CONTROLLER),
0.410 mL delivered") and records that stop when its EVENT never reached the host (annotated
``read_from: STATUS after reconnect``). If the device cannot be reached again, it says so and why
the pump is stopped anyway.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from host.errors import CementguardError
from host.link import LinkState
from host.plan_stop import PlanStop
from protocol import Event, State, Status, StopReason, StopSource

if TYPE_CHECKING:
    from host.client import DeviceClient

RECONNECT_WAIT_S = 5.0
"""How long a run waits, after a link loss, for the link to reconnect and read the device's STATUS."""


class Printer(Protocol):
    def print(self, *objects: object, highlight: bool = ...) -> None: ...


@dataclass
class SeenEvents:
    """What the host received before the loss: the last event index and the last STOP event."""

    last_index: int | None = None
    last_stop: Event | None = None

    def saw(self, event: Event) -> None:
        self.last_index = event.event_index
        if event.reason != StopReason.NONE:
            self.last_stop = event


def _name(enum: type, value: int) -> str:
    try:
        return str(enum(value).name)
    except ValueError:
        return str(value)


def describe(status: Status, seen: SeenEvents) -> str:
    """One line: the device's state, its latched stop (with the time from its event when the host
    has it) and the volume delivered."""
    state = _name(State, status.state)
    parts = [f"device: {state}"]
    if status.stop_reason != StopReason.NONE:
        reason = _name(StopReason, status.stop_reason)
        source = _name(StopSource, status.stop_source)
        stop = seen.last_stop
        when = (
            f" at {stop.t_us / 1e6:.1f} s" if stop is not None and stop.reason == status.stop_reason else ""
        )
        verb = "finished with" if status.state == State.DONE else "latched"
        parts.append(f"{verb} {reason}{when} (source {source})")
    parts.append(f"{status.delivered_nl / 1e6:.3f} mL delivered")
    return ", ".join(parts)


async def report_after_loss(
    ctl: DeviceClient,
    *,
    seen: SeenEvents,
    record: Callable[[Event, dict[str, Any]], None] | None,
    console: Printer,
    wait_s: float = RECONNECT_WAIT_S,
) -> Status | None:
    """Wait up to `wait_s` for the reconnect, then report the device's state and last stop, and
    `record` (event, annotations) that stop if its event never arrived; returns the STATUS read, or
    None when the device could not be reached again."""
    try:
        await ctl.wait_for_link(LinkState.CONNECTED, timeout=wait_s)
        status = await ctl.get_status()
    except (TimeoutError, CementguardError) as exc:
        detail = "no reconnect" if isinstance(exc, TimeoutError) else str(exc)
        console.print(
            f"[bold red]device not reachable again[/] within {wait_s:g} s ({detail}): its watchdog has "
            "stopped the pump (HOST_LOST, latched until CLEAR); `cementguard status` shows it",
            highlight=False,
        )
        return None
    console.print(f"[bold]{describe(status, seen)}[/]", highlight=False)
    missed = missed_stop(status, seen)
    if record is not None and missed is not None:
        record(*missed)
    return status


def missed_stop(status: Status, seen: SeenEvents) -> tuple[Event, dict[str, Any]] | None:
    """The stop latched in `status` as an event to record, with its annotations, when its EVENT never
    reached the host (`seen` has no stop of that reason and source); None if there is none to add."""
    if status.stop_reason == StopReason.NONE:
        return None
    stop = seen.last_stop
    if stop is not None and (stop.reason, stop.source) == (status.stop_reason, status.stop_source):
        return None
    event = PlanStop.of_status(status).as_event(status.event_count)
    return event, {"read_from": "STATUS after reconnect", "note": "the STOP event never reached the host"}
