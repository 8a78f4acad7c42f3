"""The small text panels: live readouts, the connection, and the recording indicator."""

from __future__ import annotations

import math

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from host.dashboard.model import DashboardModel, enum_name
from host.dashboard.numbers import fixed
from host.link_quality import LinkQuality
from protocol.enums import Flags, State

LINK_STYLES = {"connected": "bold green", "replay": "bold cyan", "connecting": "yellow"}


def _num(value: float | None, fmt: str, unit: str) -> str:
    """`value` formatted with its unit; never "-0": a reading that rounds to zero reads 0."""
    if value is None or not math.isfinite(value):
        return "-"
    return f"{fixed(value, int(fmt.strip('.f')))} {unit}"


def flow_text(flow_ml_min: float, flags: int) -> Text:
    """The flow readout. The plunger backing off (the relief after a stop or an increment) is a
    negative flow on the wire; read as "-12.50 mL/min" it looks like cement flowing back. It is
    shown as what it is, labelled, at its own (positive) speed: "relief back-off 12.50 mL/min"."""
    if math.isfinite(flow_ml_min) and flow_ml_min < 0 and f"{-flow_ml_min:.2f}" != "0.00":
        what = "relief back-off" if flags & Flags.RELIEF_ACTIVE else "back-off"
        return Text(f"{what} {-flow_ml_min:.2f} mL/min", style="yellow")
    return Text(_num(flow_ml_min, ".2f", "mL/min"))


def _mmss(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    sign = "-" if seconds < 0 else ""
    s = abs(int(seconds))
    return f"{sign}{s // 60}:{s % 60:02d}"


def _grid() -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(style="bold", no_wrap=True, min_width=10)
    table.add_column(overflow="fold")
    return table


class Readouts(Static):
    """Pressure, delivered volume, flow, viscosity estimate and time since mixing."""

    def show(self, model: DashboardModel) -> None:
        latest, limits, status = model.latest, model.limits(), model.status
        table = _grid()
        table.add_row("pressure", _num(latest.pressure_kpa, ".0f", "kPa"))
        delivered = _num(latest.delivered_ml, ".3f", "mL")
        if limits["volume_ml"]:
            delivered += f" / {limits['volume_ml']:.3f}"
        table.add_row("delivered", delivered)
        if limits["increment_ml"] and status is not None:
            total = math.ceil(round((limits["volume_ml"] or 0) / limits["increment_ml"], 6))
            size = limits["increment_ml"]
            table.add_row("increments", f"{status.increments_done} of {total} x {size:g} mL")
        flow = flow_text(latest.flow_ml_min, latest.flags)
        if status is not None and status.flow_setpoint_ml_min:
            flow.append(f" (set {status.flow_setpoint_ml_min:.2f})")
        table.add_row("flow", flow)
        valid = bool(latest.flags & Flags.VISCOSITY_VALID) and math.isfinite(latest.viscosity_pa_s)
        table.add_row("viscosity", _num(latest.viscosity_pa_s if valid else None, ".0f", "Pa s"))
        age, working = model.cement_age_s(), model.working_time_s()
        mixed = f"{_mmss(age)} ago" if age is not None else "- (no mixing time)"
        if working:
            mixed += f" / {_mmss(working)} working"
        style = "bold red" if age is not None and working and age >= 0.8 * working else ""
        table.add_row("mixed", Text(mixed, style=style))
        self.update(table)


class ConnectionPanel(Static):
    """Port, firmware and protocol versions, link state (red when lost) and link counters.

    `compact` (a short terminal) keeps the port and the link state only: the banner carries the
    reason of a lost link, and the counters are for a closer look, not for a glance."""

    def show(self, model: DashboardModel, *, compact: bool = False) -> None:
        link, device = model.link, model.device
        table = _grid()
        table.add_row("port", link.port or "-")
        style = LINK_STYLES.get(link.state, "bold red")
        if compact:
            state = Text(link.state.upper(), style=style)
            if link.state == "replay" and link.reason:
                state.append(f"  {link.reason}")
            table.add_row("link", state)
            self._add_extras(table, model)
            self.update(table)
            return
        if device is not None:
            table.add_row("device", f"{device.serial}  fw {device.firmware_version}")
            table.add_row("protocol", f"v{device.protocol_version}  watchdog {device.watchdog_ms} ms")
        else:
            table.add_row("device", "-")
        table.add_row("link", Text(link.state.upper(), style=style))
        if link.reason and link.state != "connected":
            table.add_row("", Text(link.reason, style=style if link.state != "replay" else ""))
        c = link.counters
        if c:
            framing = sum(c.get(k, 0) for k in ("crc_errors", "cobs_errors", "overlong", "runts"))
            table.add_row("frames", f"rx {c.get('frames_rx', 0)}  tx {c.get('frames_tx', 0)}  bad {framing}")
            table.add_row(
                "lost",
                f"samples {c.get('lost_samples', 0)}  events {c.get('missed_events', 0)}  "
                f"dropped {c.get('dropped_batches', 0)}",
            )
            table.add_row(
                "link",
                f"retries {c.get('retries', 0)}  losses {c.get('link_losses', 0)}  "
                f"reconnects {c.get('reconnects', 0)}",
            )
            quality = LinkQuality.of(c)
            table.add_row("quality", Text(quality.short(), style="bold red" if quality.poor else ""))
        self._add_extras(table, model)
        self.update(table)

    @staticmethod
    def _add_extras(table: Table, model: DashboardModel) -> None:
        """The replay position and the MQTT bridge, shown in both forms."""
        replay = model.replay
        if replay is not None:
            mode = "playing" if replay.playing else "paused"
            where = f"{replay.position_s:6.1f} / {replay.duration_s:.1f} s"
            table.add_row("replay", f"{where}  x{replay.speed:g}  {mode}")
        if model.mqtt is not None:
            table.add_row("mqtt", model.mqtt)


class RecordingIndicator(Static):
    def show(self, model: DashboardModel) -> None:
        self.set_class(model.recording is not None, "-on")
        if model.recording is None:
            self.update(Text("REC off  (r records)", style="dim"))
        else:
            self.update(Text(f"\u25cf REC  {model.recording}", style="bold"))


def state_name(model: DashboardModel) -> str:
    return enum_name(State, None if model.state is None else int(model.state))
