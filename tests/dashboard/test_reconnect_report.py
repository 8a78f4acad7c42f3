"""The dashboard after a link loss (issue 13 item 3): once the link is back it says what the device
did, and a latched stop whose EVENT never reached it is shown in the stop log and recorded, marked
as read from STATUS; a stop it did receive is not added twice."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from host.client import LinkChange, LinkState
from host.dashboard.model import DashboardModel
from host.dashboard.source import _ModelFeed
from protocol import Event, State, Status, StopReason, StopSource
from tests.host.conftest import status_message


class _Sink:
    failed = None

    def __init__(self) -> None:
        self.events: list[tuple[Event, dict[str, Any]]] = []

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.events.append((event, notes))


class _Source:
    def __init__(self) -> None:
        self.sink = _Sink()
        self.lines: list[str] = []

    def _log(self, line: str) -> None:
        self.lines.append(line)


def _host_lost_status() -> Status:
    status = status_message(0, State.STOPPED, StopReason.HOST_LOST)
    return dataclasses.replace(status, stop_source=StopSource.CONTROLLER, delivered_nl=410_000)


def test_a_stop_missed_during_the_loss_is_shown_and_recorded_after_the_reconnect() -> None:
    source, model = _Source(), DashboardModel()
    feed = _ModelFeed(source, model)  # type: ignore[arg-type]
    feed.on_link(LinkChange(LinkState.LOST, "no valid frame for 300 ms", time.monotonic(), None, None))
    status = _host_lost_status()
    feed.on_link(LinkChange(LinkState.CONNECTED, "reconnected", time.monotonic(), None, status))
    assert any("device: STOPPED, latched HOST_LOST (source CONTROLLER), 0.410 mL delivered" in line
               for line in source.lines)  # fmt: skip
    ((event, notes),) = source.sink.events
    assert (event.reason, notes["read_from"]) == (StopReason.HOST_LOST, "STATUS after reconnect")
    assert [e.reason for e in model.stops] == ["HOST_LOST"]
    feed.on_link(LinkChange(LinkState.LOST, "again", time.monotonic(), None, None))
    feed.on_link(LinkChange(LinkState.CONNECTED, "reconnected", time.monotonic(), None, status))
    assert len(source.sink.events) == 1  # the same latched stop is not recorded twice
