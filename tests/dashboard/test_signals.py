"""SIGTERM and SIGHUP in the app itself (the real signals, in a real terminal, are in
test_real_terminal.py): the handlers live only as long as the app, and a signal quits as q does."""

from __future__ import annotations

import signal
from typing import Any

import pytest
from textual.pilot import Pilot

from host.dashboard.app import QUIT_SIGNALS, DashboardApp
from host.dashboard.model import DashboardModel
from protocol import State
from tests.dashboard.conftest import SIZE, until
from tests.dashboard.scripted import ScriptedSource, Step, ramp, status


def started(state: State) -> tuple[DashboardApp, ScriptedSource]:
    samples = [ramp(1.0, state=state)] if state == State.INJECTING else []
    source = ScriptedSource(Step(status=status(state, t_s=100.0), samples=samples))
    return DashboardApp(source, model=DashboardModel(clock=lambda: 1000.0)), source


async def fed(pilot: Pilot[Any], app: DashboardApp, source: ScriptedSource, state: State) -> None:
    await source.fed.wait()
    await until(pilot, lambda: app.model.linked and app.model.state == state)


@pytest.mark.parametrize("sig", QUIT_SIGNALS, ids=[s.name for s in QUIT_SIGNALS])
async def test_a_signal_while_injecting_sends_stop_then_quits(sig: signal.Signals) -> None:
    app, source = started(State.INJECTING)
    async with app.run_test(size=SIZE) as pilot:
        await fed(pilot, app, source, State.INJECTING)
        app.signalled(sig)
        await until(pilot, lambda: app.return_code is not None)
    assert app.return_code == 0
    assert source.commands.calls == ["stop OPERATOR"]
    assert len(source.stops) == 1  # noted, with its origin, for the STOP event's record


async def test_a_signal_while_idle_quits_without_a_stop() -> None:
    app, source = started(State.IDLE)
    async with app.run_test(size=SIZE) as pilot:
        await fed(pilot, app, source, State.IDLE)
        app.signalled(signal.SIGTERM)
        await until(pilot, lambda: app.return_code is not None)
    assert source.commands.calls == []


async def test_the_handlers_live_as_long_as_the_app() -> None:
    before = {sig: signal.getsignal(sig) for sig in QUIT_SIGNALS}
    app, source = started(State.IDLE)
    async with app.run_test(size=SIZE) as pilot:
        await fed(pilot, app, source, State.IDLE)
        during = {sig: signal.getsignal(sig) for sig in QUIT_SIGNALS}
        assert all(during[sig] != before[sig] for sig in QUIT_SIGNALS), during
    assert {sig: signal.getsignal(sig) for sig in QUIT_SIGNALS} == before
