"""What the host says when the device reports that its post-stop relief could not empty the line.

The controller's relief backs the plunger off after a stop until the pressure falls below
`relief_pa`, but never further than its travel bound (the larger of 3 mm and the forward travel
since the push began, and never past home; SPEC §8.4) and never longer than its time bound (3 s).
When it ends with the line still pressurised, cement may keep flowing after the stop, and the device
follows RELIEF_DONE with a one-shot notice carrying the pressure left (Pa, SPEC §6.7): ALARM
RELIEF_AT_LIMIT when it ended at its travel bound, ALARM RELIEF_INCOMPLETE when it ended on its time
bound or because the plunger could not move back (a stall). The run summary, the dashboard (its
banner), the report, `prime` and the MQTT bridge (the event's `notice`) say it in the same words,
from this one place.
"""

from __future__ import annotations

from typing import Protocol

from protocol import AlarmCode, EventKind, State
from protocol.enums import MOVEMENT_STATES

__all__ = ["relief_at_limit_text", "relief_incomplete_text", "relief_notice", "relief_notice_ends"]

_PUSHES = frozenset({State.ARMED, *MOVEMENT_STATES})
"""States that start a new push on the line: a relief notice from before no longer applies."""


class _EventLike(Protocol):
    """An EVENT as received (protocol.Event) or as recorded (protocol.models.EventRecord)."""

    @property
    def kind(self) -> int: ...

    @property
    def alarm(self) -> int: ...

    @property
    def detail(self) -> int: ...


def relief_at_limit_text(pressure_pa: float) -> str:
    """The sentence for a relief that ended at its travel bound with `pressure_pa` left."""
    return f"relief ended at its travel limit with {pressure_pa / 1000.0:.0f} kPa in the line"


def relief_incomplete_text(pressure_pa: float) -> str:
    """The sentence for a relief cut short by its time bound or a stall with `pressure_pa` left."""
    return (
        "relief stopped short (time limit, or the plunger could not move back) "
        f"with {pressure_pa / 1000.0:.0f} kPa in the line"
    )


def relief_notice(event: _EventLike) -> str | None:
    """The sentence for an ALARM RELIEF_AT_LIMIT or RELIEF_INCOMPLETE event, else None."""
    if int(event.kind) != EventKind.ALARM:
        return None
    if int(event.alarm) == AlarmCode.RELIEF_AT_LIMIT:
        return relief_at_limit_text(event.detail)
    if int(event.alarm) == AlarmCode.RELIEF_INCOMPLETE:
        return relief_incomplete_text(event.detail)
    return None


def relief_notice_ends(kind: int, state: int) -> bool:
    """True when this event starts a new push into the line (ARM or a movement, by a STATE_CHANGE
    or STOP event naming its state): the notice kept from the last relief no longer applies. CLEAR
    does not end it (it does not empty the line). The dashboard and the MQTT bridge share this rule."""
    return kind in (EventKind.STATE_CHANGE, EventKind.STOP) and state in _PUSHES
