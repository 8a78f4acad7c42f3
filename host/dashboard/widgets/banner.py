"""The state banner: the controller's state in large letters, coloured by state, with the stop
reason and source when stopped. A lost link overrides it at once, in red."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from host.dashboard.model import DashboardModel, enum_name
from host.dashboard.numbers import fixed
from host.stops import source_label
from protocol.enums import MOVEMENT_STATES, State, StopReason

STATE_CLASSES = {
    State.IDLE: "idle",
    State.ARMED: "armed",
    State.INJECTING: "injecting",
    State.PAUSED: "paused",
    State.STOPPED: "stopped",
    State.DONE: "done",
    State.FAULT: "fault",
    **dict.fromkeys(MOVEMENT_STATES, "moving"),
}
ALL_CLASSES = (*STATE_CLASSES.values(), "lost", "unknown")


def banner_text(model: DashboardModel) -> tuple[str, str, str]:
    """(css class, headline, detail line) for the model's state; a guard that is not WATCHING is
    named first on the detail line, whatever the link and the controller say (issue 15); a relief
    that left the line pressurised (ALARM RELIEF_AT_LIMIT or RELIEF_INCOMPLETE) is named before the
    controller's detail."""
    css, headline, detail = _controller_text(model)
    if model.relief_notice is not None and model.link.state not in ("lost", "failed", "closed", "connecting"):
        detail = f"{model.relief_notice.upper()}  -  {detail}" if detail else model.relief_notice.upper()
    guard = model.guard
    if guard is not None and guard.state != "WATCHING":
        detail = f"{guard.headline}  -  {detail}" if detail else guard.headline
    return css, headline, detail


def _controller_text(model: DashboardModel) -> tuple[str, str, str]:
    link = model.link
    if link.state in ("lost", "failed", "closed", "connecting") and link.state != "replay":
        headline = {"connecting": "CONNECTING", "closed": "NO LINK"}.get(link.state, "LINK LOST")
        detail = link.reason
        if link.state in ("lost", "failed") and model.device is not None:
            detail += "  -  the controller stops by itself (HOST_LOST) and stays latched"
        return ("lost" if link.state != "connecting" else "unknown"), headline, detail
    state = model.state
    if state is None:
        return "unknown", "WAITING", "no state reported yet"
    css = STATE_CLASSES.get(state, "unknown") if isinstance(state, State) else "unknown"
    headline = enum_name(State, int(state))
    detail = ""
    reason = int(model.stop_reason)
    if state in (State.STOPPED, State.FAULT, State.PAUSED, State.DONE) and reason:
        detail = enum_name(StopReason, reason)
        if state in (State.STOPPED, State.FAULT) and int(model.stop_source):
            detail += f"  (source: {source_label(model.stop_source)})"
        last = model.stops[-1] if model.stops else None
        if last is not None and last.reason == enum_name(StopReason, reason):
            pressure = (
                "pressure invalid" if math.isnan(last.pressure_kpa) else f"{fixed(last.pressure_kpa, 0)} kPa"
            )
            detail += f"  at {pressure}, {fixed(last.delivered_ml, 3)} mL"
    if state == State.PAUSED and reason == StopReason.INCREMENT_DONE:
        detail += "  -  check the image, then space resumes"
    elif state in (State.STOPPED, State.FAULT):
        detail += "  -  latched: c clears"
    elif state == State.INJECTING:
        detail = "space pauses  -  x or Escape: STOP  -  f: fluoroscopy stop"
    elif state in MOVEMENT_STATES:
        detail = "bench movement (not counted as delivered)  -  x or Escape: STOP"
    elif state == State.ARMED:
        detail = "plan loaded: s starts"
    elif state == State.IDLE:
        detail = "a arms the plan"
    return css, headline, detail


class StateBanner(Static):
    def show(self, model: DashboardModel) -> None:
        css, headline, detail = banner_text(model)
        for name in ALL_CLASSES:
            self.set_class(name == css, f"-{name}")
        text = Text(justify="center")
        text.append(f" {' '.join(headline)} ", style="bold")
        text.append("\n")
        text.append(detail)
        self.update(text)
