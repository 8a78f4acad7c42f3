"""The stop-event log: one row per STOP event, newest last."""

from __future__ import annotations

from textual.widgets import DataTable

from host.dashboard.model import DashboardModel
from host.dashboard.numbers import fixed


def _kpa(value: float) -> str:
    """The pressure at a stop; '-' where the event marked it invalid (sensor fault)."""
    return "-" if value != value else fixed(value, 0)


COLUMNS = ("t (s)", "reason", "source", "kPa", "mL", "latency")


class StopLog(DataTable[str]):
    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = True
        self.add_columns(*COLUMNS)
        self._shown = 0
        self._epoch = 0

    def show(self, model: DashboardModel) -> None:
        """Append the rows not shown yet; rebuild after the log was cleared."""
        if model.stops_epoch != self._epoch:
            self._epoch = model.stops_epoch
            self.clear()
            self._shown = model.stops_total - len(model.stops)
        new = min(model.stops_total - self._shown, len(model.stops))
        if new <= 0:
            return
        for e in list(model.stops)[len(model.stops) - new :]:
            latency = f"{e.latency_ms:.1f} ms" if e.latency_ms is not None else "-"
            self.add_row(
                f"{e.t_s:.3f}", e.reason, e.source, _kpa(e.pressure_kpa), fixed(e.delivered_ml, 3), latency
            )
        self._shown = model.stops_total
        self.move_cursor(row=self.row_count - 1)
