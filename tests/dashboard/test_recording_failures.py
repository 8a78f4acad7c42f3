"""The dashboard's recording when the disk fails (issue 12, item 3): a failed final flush is reported
as a failed recording, never "recording saved"; a write failure during an injection stops it."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import host.recording
from host.dashboard.source import LiveSource
from protocol import State, StopReason
from tests.dashboard.conftest import until
from tests.dashboard.test_keys_live import ctl_state


def _fail_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_space(fd: int, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(host.recording, "_write_all", no_space)


async def test_a_failed_final_flush_is_reported_as_failed(
    live_dashboard, continuous_plan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is not None)
        source = app.source
        assert isinstance(source, LiveSource)
        assert source.recorder is not None
        source.recorder.flush_interval_s = 3600.0  # nothing flushes before the close: its flush fails
        _fail_writes(monkeypatch)
        await pilot.press("r")
        await until(pilot, lambda: any(title == "recording failed" for title, _m, _s in app.notes))
    messages = [message for _t, message, _s in app.notes]
    assert not any(m.startswith("recording saved") for m in messages), messages
    assert any("No space left on device" in m for m in messages), messages


async def test_a_write_failure_while_injecting_stops_the_injection(
    live_dashboard, continuous_plan: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is not None)
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        _fail_writes(monkeypatch)
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "OPERATOR_STOP")
        assert app.model.stops[-1].origin == "dashboard: recording failed"
        assert app.model.recording is None
    assert any(title == "recording failed" for title, _m, _s in app.notes)
    assert StopReason.OPERATOR_STOP.name == app.model.stops[-1].reason
