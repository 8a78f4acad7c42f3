"""What the dashboard did, said on the terminal after it exits: the alternate screen is gone by
then, and with it everything the operator saw, so the final state, the delivered volume, whether
quitting sent a STOP, and where the recording is are printed in a few plain lines."""

from __future__ import annotations

import math
from dataclasses import dataclass

from host.dashboard.model import DashboardModel, enum_name
from host.stops import source_label
from protocol import State, StopReason


@dataclass(slots=True)
class ExitNotes:
    """What quitting itself did, noted by the app as it happens."""

    stop: str | None = None
    """"acknowledged" / "not acknowledged (...)" when quitting sent STOP; None when it did not."""
    disarm: str | None = None
    """"acknowledged" / why not, when quitting an ARMED controller sent CLEAR; None when it did not."""
    recording: str | None = None
    """The recording closed on the way out (or during the session, the last one)."""
    recording_problem: str | None = None
    """Why that recording failed, if it did."""


def exit_report(model: DashboardModel, notes: ExitNotes) -> str:
    """The lines printed after the dashboard exits (no trailing newline)."""
    lines = ["cementguard dashboard: quit"]
    if notes.stop is not None:
        lines.append(f"  STOP sent before quitting: {notes.stop}")
    if notes.disarm is not None:
        lines.append(f"  CLEAR sent before quitting (disarmed): {notes.disarm}")
    state = "unknown (never connected)" if model.state is None else enum_name(State, int(model.state))
    if model.state is not None and int(model.stop_reason) != StopReason.NONE:
        reason = enum_name(StopReason, int(model.stop_reason))
        state += f", {reason} (source: {source_label(model.stop_source)})"
    lines.append(f"  controller: {state}")
    delivered = model.latest.delivered_ml
    if math.isnan(delivered):
        lines.append("  delivered: - (no telemetry)")
    else:
        shown = 0.0 if abs(delivered) < 0.0005 else delivered  # never "-0.000 mL"
        lines.append(f"  delivered: {shown:.3f} mL")
    if notes.recording is None:
        lines.append("  recording: none")
    elif notes.recording_problem is not None:
        lines.append(f"  recording: {notes.recording} (FAILED: {notes.recording_problem})")
    else:
        lines.append(f"  recording: {notes.recording}")
    return "\n".join(lines)
