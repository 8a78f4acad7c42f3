"""The dashboard's keys against the real simulator (`cementguard sim --pty`): each key sends its
command, STOP works from any screen and through a dialog, a lost link shows and disables the
controls, q stops before quitting, a refused command is a notification."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
from textual.geometry import Region
from textual.widgets import Button, Input, Static

from host.client import DeviceClient
from host.dashboard._textual_adapter import FooterKey
from host.dashboard.source import LiveSource
from host.dashboard.widgets.banner import StateBanner
from host.dashboard.widgets.dialogs import ConfirmClear, ConfirmQuit
from host.dashboard.widgets.help import HelpScreen
from host.dashboard.widgets.panels import Readouts
from host.dashboard.widgets.plots import PressurePlot, SignalPlot, draw
from host.recording import Recording
from protocol import State, StopReason, StopSource
from protocol.enums import Flags
from tests.dashboard.conftest import until


def relief_over(app) -> bool:  # type: ignore[no-untyped-def]
    """The newest sample shows the stop and no pressure relief running (CLEAR is refused BUSY before)."""
    return app.model.state == State.STOPPED and not app.model.latest.flags & Flags.RELIEF_ACTIVE


def ctl_state(app) -> object:  # type: ignore[no-untyped-def]
    source = app.source
    assert isinstance(source, LiveSource)
    assert source.controller is not None
    return source.controller.state


async def test_keys_drive_a_run_and_stop_is_logged_and_recorded(
    live_dashboard, continuous_plan: Path
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is not None)
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(
            pilot, lambda: ctl_state(app) == State.INJECTING and app.model.latest.delivered_ml > 0.005
        )
        await pilot.press("space")
        await until(pilot, lambda: ctl_state(app) == State.PAUSED)
        await pilot.press("space")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        await pilot.press("x")
        await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "OPERATOR_STOP")
        assert ctl_state(app) == State.STOPPED
        entry = app.model.stops[-1]
        assert entry.source == "operator"
        assert entry.origin == "dashboard key x"
        assert entry.latency_ms is not None
        assert entry.latency_ms > 0
        app.refresh_view()
        banner = app.query_one(StateBanner)
        assert banner.has_class("-stopped")
        assert "OPERATOR_STOP" in str(banner.render())
        path = app.model.recording
        assert path is not None
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is None)
        await until(pilot, lambda: (Path(path) / "closed.json").exists())
        await until(pilot, lambda: relief_over(app))
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, ConfirmClear))
        await pilot.press("y")
        await until(pilot, lambda: ctl_state(app) == State.IDLE)
    recording = Recording.open(path)
    assert len(recording.samples) > 100
    stops = recording.stop_events()
    assert [s.record.reason for s in stops] == [StopReason.OPERATOR_STOP]
    assert stops[0].annotations["stop_origin"] == "dashboard key x"
    assert stops[0].annotations["stop_latency_ms"] > 0


async def test_fluoroscopy_key_stops_with_its_source(live_dashboard, continuous_plan: Path) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        await pilot.press("f")
        await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "FLUORO_STOP")
        assert ctl_state(app) == State.STOPPED
        assert app.model.stop_source == StopSource.FLUORO_OPERATOR
        assert app.model.stops[-1].source == "fluoroscopy (dashboard key)"


async def test_increment_pause_then_space_resumes(live_dashboard, quick_increments: Path) -> None:
    async with live_dashboard(quick_increments) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.PAUSED, 10.0)
        assert app.model.stops[-1].reason == "INCREMENT_DONE"
        app.refresh_view()
        assert "INCREMENT_DONE" in str(app.query_one(StateBanner).render())
        await pilot.press("space")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING or len(app.model.stops) > 1)
        assert app.source.commands is not None


async def test_stop_keys_work_through_the_clear_dialog(live_dashboard, continuous_plan: Path) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        for key in ("escape", "x"):
            await pilot.press("a")
            await until(pilot, lambda: ctl_state(app) == State.ARMED)
            await pilot.press("s")
            await until(pilot, lambda: ctl_state(app) == State.INJECTING)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, ConfirmClear))
            await pilot.press(key)
            await until(pilot, lambda: ctl_state(app) == State.STOPPED)
            assert isinstance(app.screen, ConfirmClear), "the dialog stays: STOP does not answer it"
            assert app.model.stops[-1].reason == "OPERATOR_STOP"
            await until(pilot, lambda: relief_over(app))
            await pilot.press("y")
            await until(pilot, lambda: ctl_state(app) == State.IDLE)


async def test_escape_stops_while_typing_and_x_types(live_dashboard, continuous_plan: Path) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        box = app.query_one("#plan-file")
        box.focus()
        await pilot.pause()
        box.action_end()  # type: ignore[attr-defined]  # focus selected the text: type after it
        before = box.value  # type: ignore[attr-defined]
        await pilot.press("x")
        await until(pilot, lambda: len(box.value) == len(before) + 1, 2.0)  # type: ignore[attr-defined]
        assert box.value.count("x") == before.count("x") + 1  # type: ignore[attr-defined]
        assert ctl_state(app) == State.INJECTING, "x typed into a text field is text, not a stop"
        await pilot.press("escape")
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)


async def test_refused_command_is_a_notification(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        await pilot.press("s")  # START while IDLE: NAK BAD_STATE
        await until(pilot, lambda: any("refused" in title for title, _m, _s in app.notes))
        title, message, severity = next(n for n in app.notes if "refused" in n[0])
        assert title == "START refused"
        assert "BAD_STATE" in message
        assert severity == "warning"
        assert app.is_running


async def test_link_loss_shows_at_once_and_disables_controls(live_dashboard, sim) -> None:
    proc, _port = sim
    async with live_dashboard(refresh_hz=0.1) as (app, pilot):  # the timer redraws only every 10 s
        assert app.check_action("arm", ()) is True
        proc.kill()
        await until(pilot, lambda: app.model.link.state in ("lost", "failed"), 3.0)
        # shown with the change itself, not at the next timer redraw
        await until(pilot, lambda: app.query_one(StateBanner).has_class("-lost"), 2.0)
        assert "LINKLOST" in str(app.query_one(StateBanner).render()).replace(" ", "")
        for action in ("arm", "start", "space", "clear"):
            assert app.check_action(action, ()) is None, action
        buttons = {b.name: b for b in app.query(Button)}
        assert buttons["arm"].disabled
        assert buttons["start"].disabled
        assert not buttons["stop"].disabled, "the STOP button is never disabled"
        await pilot.press("a")  # disabled: nothing is sent, nothing crashes
        await pilot.press("x")
        await until(pilot, lambda: any(t == "STOP not sent" for t, _m, _s in app.notes))
        assert app.is_running


async def test_q_while_injecting_stops_before_quitting(live_dashboard, sim, continuous_plan: Path) -> None:
    _proc, port = sim
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        await pilot.press("q")  # asks first: quitting stops the injection
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        assert ctl_state(app) == State.INJECTING, "q alone neither stops nor quits"
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 5.0)
    report = app.exit_report()
    assert "STOP sent before quitting: acknowledged" in report
    assert "controller: STOPPED, OPERATOR_STOP (source: operator)" in report, report
    delivered = float(report.split("delivered: ")[1].split(" mL")[0])
    assert 0 < delivered < 1.5, report
    assert "recording: none" in report
    # the controller latched the operator's STOP, not the HOST_LOST of a host that just went away
    async with DeviceClient.open(port) as ctl:
        status = await ctl.get_status()
        assert status.state == State.STOPPED
        assert status.stop_reason == StopReason.OPERATOR_STOP
        assert status.stop_source == StopSource.OPERATOR


def footer_stop_keys(app) -> set[str]:  # type: ignore[no-untyped-def]
    """The keys the footer shows for STOP."""
    return {key.key for key in app.screen.query(FooterKey) if key.description == "STOP"}


async def test_stop_stays_in_view_while_a_plan_field_has_focus_and_letters_are_text(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        buttons = {b.name: b for b in app.query(Button)}
        flow = app.query_one("#field-flow_ml_min", Input)
        before = flow.value
        flow.focus()
        await pilot.pause()
        app.refresh_view()
        await pilot.pause()
        for name in ("stop", "fluoro_stop"):
            assert buttons[name].display, f"the {name} button is shown while a field has focus"
            assert not buttons[name].disabled, name
        # the footer names the stop key that works in a field (it is rebuilt after the focus moves)
        await until(pilot, lambda: footer_stop_keys(app) == {"escape"}, 2.0)
        await pilot.press("a")  # the arm key typed into a field is text: it neither arms nor replaces
        await until(pilot, lambda: flow.value != before, 2.0)
        assert flow.value == before + "a", "focus did not select the value: a letter adds, never overwrites"
        await pilot.press("s")
        await pilot.pause(0.3)
        assert ctl_state(app) == State.IDLE, "a and s typed in a field neither arm nor start"
        await pilot.press("tab")  # Tab lands in the next field without selecting its text
        await pilot.pause()
        nxt = app.focused
        assert isinstance(nxt, Input)
        assert nxt.selection.is_empty
        app.query_one("#stop-log").focus()
        await until(pilot, lambda: footer_stop_keys(app) == {"x"}, 2.0)
        flow.focus()
        await until(pilot, lambda: footer_stop_keys(app) == {"escape"}, 2.0)


async def test_q_while_injecting_asks_and_stop_works_inside_the_question(
    live_dashboard, continuous_plan: Path
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is not None)
        path = app.model.recording
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("n")  # cancel: nothing sent, still injecting
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.is_running
        assert ctl_state(app) == State.INJECTING
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("a")  # other command keys do nothing behind the question
        await pilot.press("x")  # STOP, one key away inside the question, which stays
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        assert app.model.stops[-1].origin == "dashboard key x"
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 8.0)
    report = app.exit_report()
    assert "STOP sent" not in report, "stopped already: quitting sent no STOP"
    assert "controller: STOPPED, OPERATOR_STOP (source: operator)" in report, report
    assert f"recording: {path}" in report, report


async def test_help_lists_every_key_stops_first_and_stop_works_over_it(
    live_dashboard, continuous_plan: Path
) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        shown = [
            (str(k.render()), str(w.render()))
            for k, w in zip(
                app.screen.query(".help-key").results(Static),
                app.screen.query(".help-what").results(Static),
                strict=True,
            )
        ]
        assert shown[0][0] == "x, Escape", shown
        assert "STOP" in shown[0][1], shown
        assert shown[1][0] == "f, ctrl+f", shown
        assert "fluoroscopy STOP" in shown[1][1], shown
        keys = {key for row, _what in shown for key in row.split(", ")}
        assert {"a", "s", "space", "c", "r", "q", "ctrl+q", "?", "F1"} <= keys, keys
        assert not keys & {"left", "right", "-", "+"}, "replay keys only in a replay"
        await pilot.press("enter")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        flow = app.query_one("#field-flow_ml_min", Input)
        flow.focus()  # F1 opens it from a text field, where ? is text
        await pilot.pause()
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("x")  # STOP over the help, which stays
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        assert app.model.stops[-1].origin == "dashboard key x"
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


def readout(app, name: str) -> str:  # type: ignore[no-untyped-def]
    """The text of one row of the readouts panel, as drawn."""
    app.refresh_view()
    panel = app.query_one(Readouts)
    lines = panel.render_lines(Region(0, 0, panel.size.width, panel.size.height))
    rows = [line.text.rstrip() for line in lines]
    return next(row[len(name) :].strip() for row in rows if row.startswith(name + " "))


async def test_readouts_label_the_relief_back_off_and_never_show_minus_zero(
    live_dashboard, quick_increments: Path
) -> None:
    async with live_dashboard(quick_increments) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)

        def backing_off() -> bool:
            flow = app.model.latest.flow_ml_min
            return flow < -0.5 and bool(app.model.latest.flags & Flags.RELIEF_ACTIVE)

        await until(pilot, backing_off, 10.0)  # the relief after the first increment
        assert ctl_state(app) == State.PAUSED
        flow = readout(app, "flow")
        assert flow.startswith("relief back-off "), flow
        assert not re.search(r"-\d", flow), f"no negative flow: {flow}"
        assert float(flow.split()[2]) == pytest.approx(-app.model.latest.flow_ml_min, abs=0.006)
        await until(pilot, lambda: relief_over(app) or not app.model.latest.flags & Flags.RELIEF_ACTIVE, 10.0)
        # the volume readout is the delivered volume: it does not fall back with the plunger
        history = app.model.history.downsampled("delivered_ml", 500).y
        assert (history[1:] >= history[:-1] - 1e-9).all(), "delivered volume fell"
        delivered = readout(app, "delivered")
        assert float(delivered.split()[0]) >= 0.05 * 0.95, delivered
        for value in (-0.0004, -0.4):
            app.model.latest.pressure_kpa = value
            assert readout(app, "pressure") == "0 kPa"


def red_cells(strips) -> int:  # type: ignore[no-untyped-def]
    """How many drawn cells are red (plotext's red is ANSI colour 1)."""
    return sum(
        len(seg.text.strip())
        for strip in strips
        for seg in strip
        if seg.style is not None
        and seg.style.color is not None
        and seg.style.color.name in ("red", "color(1)")
    )


async def test_planned_pauses_are_not_drawn_as_red_stops(live_dashboard, quick_increments: Path) -> None:
    async with live_dashboard(quick_increments) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.PAUSED, 10.0)
        assert app.model.stops[-1].reason == "INCREMENT_DONE"
        plot = app.query_one(PressurePlot)
        spec = plot.spec(app.model)
        bare = dataclasses.replace(spec, hlines=[], yticks=[])  # the hard limit line is red too
        assert red_cells(draw(bare)) == 0, "the planned pause is drawn in red"
        assert spec.vlines == [], "a planned pause is not a stop"
        assert len(spec.pauses) == 1
        await pilot.press("space")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        await pilot.press("x")
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        await until(pilot, lambda: len(plot.spec(app.model).vlines) == 1)
        bare = dataclasses.replace(plot.spec(app.model), hlines=[], yticks=[])
        assert red_cells(draw(bare)) > 0, "the operator's stop is a red line"


async def test_the_pressure_axis_has_a_tick_near_the_plateau(live_dashboard, continuous_plan: Path) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(
            pilot, lambda: ctl_state(app) == State.INJECTING and app.model.latest.delivered_ml > 0.1, 10.0
        )
        plot = app.query_one(PressurePlot)
        spec = plot.spec(app.model)
        row = spec.ylim[1] / max(3, plot.size.height - 4)  # the value of one data row
        level = app.model.latest.pressure_kpa
        assert level > row, (level, row)  # off the 0 tick: the test can tell
        near = [tick for tick in spec.yticks if abs(tick - level) <= row]
        assert near, f"no tick within a row ({row:.0f} kPa) of {level:.0f} kPa: {spec.yticks}"
        await pilot.press("x")
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)


async def test_v_shows_pressure_against_delivered_volume(live_dashboard, continuous_plan: Path) -> None:
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: app.model.latest.delivered_ml > 0.1, 10.0)
        await pilot.press("x")
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        await pilot.press("v")
        pv = app.query_one("#pv-plot", SignalPlot)
        volume = app.query_one("#volume-plot", SignalPlot)
        await until(pilot, lambda: pv.display and not volume.display and pv.builds > 0)
        spec = pv.spec(app.model)
        assert spec.xlabel == "mL"
        x, y = np.array(spec.x), np.array(spec.y)
        delivered = app.model.history.signal("delivered_ml")
        assert x.max() == pytest.approx(float(delivered.max()), abs=1e-6), "x is the delivered volume"
        assert spec.xlim[1] >= 1.5, "the axis runs to the plan's target"
        assert y.max() == pytest.approx(float(app.model.history.signal("pressure_kpa").max()), rel=1e-6)
        assert {y for y, _c in spec.hlines} == {2500.0, 4000.0}, "the pressure limits are drawn"
        await pilot.press("v")
        await until(pilot, lambda: volume.display and not pv.display)


async def test_ctrl_f_stops_for_fluoroscopy_while_a_field_has_focus_and_f_types(
    live_dashboard, continuous_plan: Path
) -> None:
    """As Escape is to x: a fluoroscopy stop one key away while f is text in a plan field."""
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("s")
        await until(pilot, lambda: ctl_state(app) == State.INJECTING)
        box = app.query_one("#plan-file", Input)
        box.focus()
        await pilot.pause()
        box.action_end()
        before = box.value
        await pilot.press("f")
        await until(pilot, lambda: len(box.value) == len(before) + 1)
        assert ctl_state(app) == State.INJECTING, "f typed into a text field is text, not a stop"
        await until(pilot, lambda: "fluoro stop" in footer_descriptions(app))
        await pilot.press("ctrl+f")
        await until(pilot, lambda: app.model.stops and app.model.stops[-1].reason == "FLUORO_STOP")
        assert ctl_state(app) == State.STOPPED
        assert app.model.stop_source == StopSource.FLUORO_OPERATOR
        assert app.model.stops[-1].origin == "dashboard key ctrl+f"
        assert box.value == before + "f", "ctrl+f typed nothing"
    keys = dict(app.help_rows())
    assert any("ctrl+f" in k and "f" in k.split(", ") for k in keys), keys


def footer_descriptions(app) -> set[str]:  # type: ignore[no-untyped-def]
    return {key.description for key in app.screen.query(FooterKey)}


async def test_q_while_armed_asks_and_yes_disarms_and_says_so(
    live_dashboard, sim, continuous_plan: Path
) -> None:
    _proc, port = sim
    async with live_dashboard(continuous_plan) as (app, pilot):
        await pilot.press("a")
        await until(pilot, lambda: ctl_state(app) == State.ARMED)
        await pilot.press("q")  # an armed plan left behind could be started by anyone: asked first
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.is_running
        assert ctl_state(app) == State.ARMED, "cancel: nothing sent"
        await pilot.press("q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 10.0)
    report = app.exit_report()
    assert "CLEAR sent before quitting (disarmed): acknowledged" in report, report
    assert "STOP sent" not in report, "nothing moved: no STOP"
    async with DeviceClient.open(port) as ctl:
        status = await ctl.get_status()
        assert status.state == State.IDLE, "the plan was dropped on the device"
