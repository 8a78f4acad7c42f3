"""Snapshots of the dashboard in its main states, from a deterministic source (no link, no clock).

Each main state at 140x44, and the idle and stopped screens at 80x24 (the default size of many bench
PCs' terminals: the narrow, short layout of dashboard.tcss). Update after an intended change of the
screen: `pytest tests/dashboard/test_snapshots.py --snapshot-update`, then look at the SVGs
(tests/dashboard/__snapshots__/) before committing them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from textual.pilot import Pilot

from host.dashboard.app import DashboardApp
from host.dashboard.model import DashboardModel
from host.dashboard.widgets.plots import SignalPlot
from host.plan import load_plan
from protocol import State, StopReason, StopSource
from tests.dashboard.conftest import EXAMPLE_PLAN, SIZE, SMALL, until
from tests.dashboard.scripted import ScriptedSource, Step, ramp, status, stop_event


def make_app(step: Step) -> tuple[DashboardApp, ScriptedSource]:
    source = ScriptedSource(step)
    app = DashboardApp(
        source,
        plan=load_plan(EXAMPLE_PLAN),
        plan_path=Path("plans/incremental-3x0.5ml.toml"),
        mixed_ago_s=240.0,
        model=DashboardModel(clock=lambda: 1000.0),
    )
    return app, source


def fed(source: ScriptedSource) -> Any:
    async def run_before(pilot: Pilot[Any]) -> None:
        await source.fed.wait()
        assert isinstance(pilot.app, DashboardApp)
        pilot.app.refresh_view()
        plots = [p for p in pilot.app.query(SignalPlot) if p.display]  # v swaps two of them
        await until(pilot, lambda: all(p.builds and p.idle for p in plots))
        await pilot.pause()

    return run_before


def tail(
    state: State, reason: StopReason, *, t0_s: float, seconds: float = 0.5, delivered_ml: float
) -> np.ndarray:
    samples = ramp(seconds, t0_s=t0_s, flow_ml_min=0.0, state=state)
    samples["delivered_nl"] = int(delivered_ml * 1e6)
    samples["pressure_pa"] = np.linspace(600e3, 150e3, len(samples)).astype(np.int32)
    samples["stop_reason"] = int(reason)
    return samples


def idle() -> Step:
    return Step(status=status(State.IDLE, t_s=100.0))


def stopped_by_the_operator() -> Step:
    return Step(
        status=status(State.ARMED, t_s=100.0),
        samples=[ramp(4.0), tail(State.STOPPED, StopReason.OPERATOR_STOP, t0_s=104.0, delivered_ml=0.2)],
        events=[
            stop_event(
                StopReason.OPERATOR_STOP,
                StopSource.OPERATOR,
                State.STOPPED,
                t_s=104.0,
                pressure_kpa=1108.0,
                delivered_ml=0.2,
                latency_ms=3.4,
            )
        ],
    )


def test_idle(snap_compare: Any) -> None:
    app, source = make_app(idle())
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def test_idle_80x24(snap_compare: Any) -> None:
    app, source = make_app(idle())
    assert snap_compare(app, terminal_size=SMALL, run_before=fed(source))


def test_injecting(snap_compare: Any) -> None:
    step = Step(status=status(State.ARMED, t_s=100.0), samples=[ramp(6.0)])
    app, source = make_app(step)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def test_paused_after_an_increment(snap_compare: Any) -> None:
    run = ramp(10.0)
    step = Step(
        status=status(
            State.PAUSED, t_s=110.0, delivered_ml=0.5, increments=1, reason=StopReason.INCREMENT_DONE
        ),
        samples=[run, tail(State.PAUSED, StopReason.INCREMENT_DONE, t0_s=110.0, delivered_ml=0.5)],
        events=[
            stop_event(
                StopReason.INCREMENT_DONE,
                StopSource.CONTROLLER,
                State.PAUSED,
                t_s=110.0,
                pressure_kpa=1150.0,
                delivered_ml=0.5,
            )
        ],
    )
    app, source = make_app(step)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def test_stopped_with_a_reason(snap_compare: Any) -> None:
    app, source = make_app(stopped_by_the_operator())
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def test_stopped_with_a_reason_80x24(snap_compare: Any) -> None:
    app, source = make_app(stopped_by_the_operator())
    assert snap_compare(app, terminal_size=SMALL, run_before=fed(source))


def test_link_lost(snap_compare: Any) -> None:
    step = Step(
        status=status(State.ARMED, t_s=100.0),
        samples=[ramp(3.0)],
        link=("lost", "no valid frame from the device for 512 ms (its heartbeat is every 250 ms)"),
    )
    app, source = make_app(step)
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def setup_panel(source: ScriptedSource) -> Any:
    """The main screen fed, then the setup panel (u) opened over it."""
    feed = fed(source)

    async def run_before(pilot: Pilot[Any]) -> None:
        await feed(pilot)
        await pilot.press("u")
        await until(pilot, lambda: pilot.app.setup_open)
        await pilot.pause()

    return run_before


def test_setup_panel(snap_compare: Any) -> None:
    app, source = make_app(idle())
    assert snap_compare(app, terminal_size=SIZE, run_before=setup_panel(source))


def test_setup_panel_80x24(snap_compare: Any) -> None:
    app, source = make_app(idle())
    assert snap_compare(app, terminal_size=SMALL, run_before=setup_panel(source))
