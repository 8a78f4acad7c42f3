"""The plan panel's validation in place, and replaying a recording (play, pause, speed, seek)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from textual.widgets import Input, Static

from host.dashboard.app import DashboardApp
from host.dashboard.model import DashboardModel
from host.dashboard.replay import ReplaySource
from host.dashboard.widgets.banner import StateBanner
from host.plan import load_plan
from host.recording import Recorder, Recording
from protocol import Event, EventKind, Flags, State, StopReason, StopSource
from protocol.enums import AlarmCode
from tests.dashboard.conftest import EXAMPLE_PLAN, SIZE, NotedApp, until
from tests.dashboard.scripted import ScriptedSource, Step, ramp, status


def scripted_app(tmp_path: Path) -> NotedApp:
    source = ScriptedSource(Step(status=status(State.IDLE, t_s=100.0)))
    return NotedApp(source, plan=load_plan(EXAMPLE_PLAN), plan_path=EXAMPLE_PLAN, mixed_ago_s=240.0)


async def type_into(pilot, app: DashboardApp, widget_id: str, text: str) -> None:  # type: ignore[no-untyped-def]
    box = app.query_one(f"#{widget_id}", Input)
    box.value = text
    await pilot.pause()


def error_text(app: DashboardApp, widget_id: str) -> str:
    box = app.query_one(f"#{widget_id}", Static)
    return str(box.render()) if box.display else ""


async def test_bad_plan_values_show_messages_in_place_and_block_arming(tmp_path: Path) -> None:
    app = scripted_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, "field-flow_ml_min", "50")
        await until(pilot, lambda: error_text(app, "error-flow_ml_min") != "")
        assert error_text(app, "error-flow_ml_min") == (
            "flow_ml_min: 50 is too large; allowed [0.01, 20] (mL/min)"
        )
        assert app.query_one("#field-flow_ml_min").has_class("-invalid")
        await type_into(pilot, app, "field-flow_ml_min", "3")
        await until(pilot, lambda: error_text(app, "error-flow_ml_min") == "")
        assert not app.query_one("#field-flow_ml_min").has_class("-invalid")
        # a cross-field rule (checked once every field is in range) names both fields
        await type_into(pilot, app, "field-pressure-soft_limit_kpa", "5000")
        await until(
            pilot,
            lambda: "not below pressure.hard_limit_kpa" in error_text(app, "error-pressure-soft_limit_kpa"),
        )
        assert error_text(app, "error-pressure-soft_limit_kpa") == (
            "pressure.soft_limit_kpa: 5000 is not below pressure.hard_limit_kpa (4000); "
            "allowed [10, 4000) (kPa)"
        )
        await type_into(pilot, app, "field-mixed-ago", "abc")
        await until(pilot, lambda: error_text(app, "error-mixed-ago") != "")
        assert (
            error_text(app, "error-mixed-ago") == "mixed_ago_s: 'abc' is not a number; allowed [0, 7200] (s)"
        )
        await pilot.press("a")
        await until(pilot, lambda: any(t == "cannot arm: fix the plan" for t, _m, _s in app.notes))
        assert app.source.commands.calls == []  # type: ignore[union-attr]

        # corrected values arm the edited plan
        await type_into(pilot, app, "field-flow_ml_min", "2.5")
        await type_into(pilot, app, "field-pressure-soft_limit_kpa", "2000")
        await type_into(pilot, app, "field-mixed-ago", "300")
        await until(pilot, lambda: not app.plan_errors)
        assert error_text(app, "error-flow_ml_min") == ""
        assert app.model.plan is not None
        assert app.model.plan.flow_ml_min == 2.5
        assert app.model.plan.pressure.soft_limit_kpa == 2000
        await pilot.press("a")
        await until(pilot, lambda: app.source.commands.calls == ["arm"])  # type: ignore[union-attr]


async def test_loading_a_bad_plan_file_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(EXAMPLE_PLAN.read_text().replace("flow_ml_min = 3.0", "flow_ml_min = -1.0"))
    app = scripted_app(tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, "plan-file", str(bad))
        await pilot.click("#plan-load")
        await until(pilot, lambda: "flow_ml_min" in error_text(app, "plan-general"))
        assert f"{bad}: flow_ml_min: -1 is too small; allowed [0.01, 20] (mL/min)" in error_text(
            app, "plan-general"
        )
        assert app.model.plan is not None
        assert app.model.plan.flow_ml_min == 3.0, "the plan in use is unchanged"


def make_recording(path: Path) -> Path:
    """20 s of synthetic 1 kHz telemetry with a STOP (FLUORO_STOP) at 15 s."""
    run = ramp(20.0, t0_s=50.0)
    run["state"][15_000:] = int(State.STOPPED)
    run["stop_reason"][15_000:] = int(StopReason.FLUORO_STOP)
    stop = Event(
        t_us=65_000_000,
        event_index=7,
        kind=EventKind.STOP,
        state=State.STOPPED,
        prev_state=State.INJECTING,
        reason=StopReason.FLUORO_STOP,
        source=StopSource.FLUORO_REMOTE,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK | Flags.MOTOR_MOVING,
        pressure_pa=1_150_000,
        delivered_nl=750_000,
        plunger_um=11_000,
        detail=0,
    )
    with Recorder.create(path, load_plan(EXAMPLE_PLAN), background=False) as rec:
        rec.add_samples(run[:15_000])
        rec.add_event(stop, stop_source="fluoroscopy (imaging over MQTT)", stop_latency_ms=12.5)
        rec.add_samples(run[15_000:])
    return path


async def test_replay_plays_pauses_changes_speed_and_seeks(tmp_path: Path) -> None:
    recording = Recording.open(make_recording(tmp_path / "rec"))
    source = ReplaySource(recording, playing=False)
    app = DashboardApp(source)
    async with app.run_test(size=SIZE) as pilot:
        model = app.model
        assert app.check_action("arm", ()) is False, "a replay takes no commands"
        assert len(model.history) == 1  # the first sample: position 0
        await pilot.press("right")  # seek +5 s
        assert source.view.position_s == 5.0
        assert len(model.history) == 5001
        await pilot.press("plus")
        assert source.view.speed == 2.0
        await pilot.press("space")  # play
        await until(pilot, lambda: source.view.position_s > 5.5)
        await pilot.press("space")  # pause
        paused_at = source.view.position_s
        await pilot.pause(0.1)
        assert source.view.position_s == paused_at
        source.seek_to(16.0)
        assert len(model.history) == 16_001
        app.refresh_view()
        assert model.state == State.STOPPED
        assert app.query_one(StateBanner).has_class("-stopped")
        assert [(e.reason, e.source, e.latency_ms) for e in model.stops] == [
            ("FLUORO_STOP", "fluoroscopy (imaging over MQTT)", 12.5)
        ]
        await pilot.press("left")  # back before the stop: the log no longer shows it
        assert source.view.position_s == 11.0
        assert list(model.stops) == []
        assert model.state == State.INJECTING
        np.testing.assert_allclose(model.history.signal("delivered_ml")[-1], 11.0 * 3.0 / 60.0, atol=1e-6)


async def test_replay_reaches_an_event_after_the_last_sample(tmp_path: Path) -> None:
    """A recording closed just after its STOP holds the event after its last sample: the replay
    used to end at the last sample and never show the stop."""
    run = ramp(2.0, t0_s=50.0)
    stop = Event(
        t_us=52_004_000,  # 5 ms after the last sample
        event_index=3,
        kind=EventKind.STOP,
        state=State.STOPPED,
        prev_state=State.INJECTING,
        reason=StopReason.OPERATOR_STOP,
        source=StopSource.OPERATOR,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK,
        pressure_pa=900_000,
        delivered_nl=100_000,
        plunger_um=2_000,
        detail=0,
    )
    with Recorder.create(tmp_path / "rec", load_plan(EXAMPLE_PLAN), background=False) as rec:
        rec.add_samples(run)
        rec.add_event(stop)
    source = ReplaySource(Recording.open(tmp_path / "rec"), playing=False)
    model = DashboardModel()
    source.step(model, 1e9)  # to the end
    assert [e.reason for e in model.stops] == ["OPERATOR_STOP"]
    assert source.view.position_s == source.view.duration_s
