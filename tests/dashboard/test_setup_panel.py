"""The setup panel (u) against the real simulator: each key runs its command as a task, the
progress line shows MOTION_STATUS, a refusal names the field, the value and the range, STOP works
from the panel in every focus, a held jog key moves only while held, and the run metadata typed
there is stored in the next recording."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button, Input, Static

from host.dashboard.setup_actions import describe_motion
from host.dashboard.widgets.setup_panel import SetupPanel, read_metadata
from host.motion_cmds import KEY_RELEASE_S
from host.recording import Recording
from protocol import State
from tests.dashboard.conftest import until
from tests.dashboard.test_keys_live import ctl_state, footer_stop_keys


def progress(app) -> str:  # type: ignore[no-untyped-def]
    return str(app.query_one("#setup-progress", Static).render())


def controller(app):  # type: ignore[no-untyped-def]
    ctl = app.source.controller
    assert ctl is not None
    return ctl


async def open_setup(app, pilot) -> SetupPanel:  # type: ignore[no-untyped-def]
    await pilot.press("u")
    await until(pilot, lambda: app.setup_open)
    panel = app.query_one(SetupPanel)
    await until(pilot, lambda: app.focused is panel.query_one("#setup-do-zero"))
    return panel


async def test_syringe_zero_prime_withdraw_from_the_panel(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        screen = await open_setup(app, pilot)
        await pilot.press("2")  # the library's second syringe
        await until(pilot, lambda: screen.busy is None and "syringe 2.5ml" in progress(app))
        assert controller(app).syringe.name == "2.5ml"
        assert controller(app).syringe.bore_um == 7290
        await pilot.press("z")
        await until(pilot, lambda: progress(app).startswith("zeroed") and screen.busy is None)
        assert controller(app).calibration.zero_utc_s > 0
        screen.query_one("#setup-prime-volume", Input).value = "0.1"  # the least a volume calibration takes
        screen.query_one("#setup-prime-flow", Input).value = "6"  # 100 uL in 1 s
        await pilot.press("p")
        await until(pilot, lambda: screen.busy is None and "prime done" in progress(app), 10.0)
        assert "0.100 mL primed" in progress(app), progress(app)
        assert app.model.latest.delivered_ml == 0.0, "a prime never counts as delivered"
        nominal = screen.query_one("#setup-nominal", Input).value
        assert 0.1000 <= float(nominal) <= 0.1020, "the volume calibration's nominal: the prime's count"
        screen.query_one("#setup-mass", Input).value = "0.0998"  # weighed: g of water
        await pilot.press("g")
        await until(pilot, lambda: screen.busy is None and "volume calibrated" in progress(app))
        factor = controller(app).calibration.volume_factor_ppm / 1e6
        expected = 0.0998 / 0.998203 / float(nominal)
        assert abs(factor - expected) < 1e-5, (factor, expected)
        screen.query_one("#setup-withdraw-volume", Input).value = "0.02"
        screen.query_one("#setup-withdraw-flow", Input).value = "3"
        await pilot.press("w")
        await until(pilot, lambda: screen.busy is None and "withdraw done" in progress(app), 10.0)
        assert "0.020 mL withdrawn" in progress(app), progress(app)
        await pilot.press("u")
        await until(pilot, lambda: not app.setup_open)


async def test_refusals_name_the_field_value_and_range(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        screen = await open_setup(app, pilot)
        screen.query_one("#setup-prime-volume", Input).value = "nan"
        await pilot.press("p")
        await until(pilot, lambda: app.notes)
        _title, message, severity = app.notes[-1]
        assert message == "prime volume (mL): nan is not a finite number; allowed 0.001..100 mL", message
        assert severity == "error"
        assert ctl_state(app) == State.IDLE, "nothing sent"
        screen.query_one("#setup-prime-volume", Input).value = "90"  # more than the stroke holds
        await pilot.press("p")
        await until(pilot, lambda: any("PRIME refused" in t for t, _m, _s in app.notes))
        _title, message, _sev = next(n for n in app.notes if n[0] == "PRIME refused")
        assert "volume_nl" in message, message
        assert "= 90000000 nL is out of range: allowed 1 nL to " in message, message
        assert ctl_state(app) == State.IDLE


async def test_stop_from_the_panel_in_every_focus_latches_a_prime(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        screen = await open_setup(app, pilot)
        screen.query_one("#setup-prime-volume", Input).value = "1"  # a minute at 1 mL/min
        await pilot.press("p")
        await until(pilot, lambda: ctl_state(app) == State.PRIMING)
        await until(pilot, lambda: progress(app).startswith("PRIMING: "), 3.0)
        field = screen.query_one("#meta-operator", Input)
        field.focus()
        await until(pilot, lambda: footer_stop_keys(app) == {"escape"}, 2.0)
        app.refresh_view()
        stops = [b for b in app.query(Button) if b.name == "stop"]
        assert len(stops) == 2, "the controls bar's STOP and the panel's"
        for button in stops:
            assert button.display, button
            assert not button.disabled, button
            assert button.region.height > 0, "in view, not scrolled away"
        await pilot.press("x")  # text in a field
        await until(pilot, lambda: field.value == "x")
        assert ctl_state(app) == State.PRIMING
        await pilot.press("escape")
        await until(pilot, lambda: ctl_state(app) == State.STOPPED)
        assert app.model.stops[-1].origin == "dashboard key escape"
        await until(pilot, lambda: screen.busy is None and "ended by a stop: OPERATOR_STOP" in progress(app))
        assert app.setup_open, "the panel stays"


async def test_a_jog_moves_while_the_key_is_held_and_stops_on_release(live_dashboard) -> None:
    clock = [0.0]
    async with live_dashboard() as (app, pilot):
        screen = await open_setup(app, pilot)
        screen._clock = lambda: clock[0]
        await pilot.press("minus")  # back from home is refused: forward first
        await until(pilot, lambda: screen.busy is None)
        clock[0] = 0.0
        await pilot.press("plus")
        await until(pilot, lambda: ctl_state(app) == State.JOGGING)
        assert screen.jog_hold is not None
        for t in (0.1, 0.2, 0.3):  # a terminal's key repeat
            clock[0] = t
            await pilot.press("plus")
        assert screen.jog_hold.held(0.3 + KEY_RELEASE_S - 0.01) == 1
        assert screen.jog_hold.held(0.3 + KEY_RELEASE_S) == 0, "released KEY_RELEASE_S after the last repeat"
        clock[0] = 10.0  # released
        await until(pilot, lambda: screen.busy is None and "jog done" in progress(app), 5.0)
        assert ctl_state(app) == State.IDLE, "no STOP needed, none latched"
        assert "moved +" in progress(app), progress(app)


async def test_the_metadata_typed_in_the_panel_is_in_the_recording(live_dashboard) -> None:
    async with live_dashboard() as (app, pilot):
        screen = await open_setup(app, pilot)
        screen.query_one("#meta-specimen", Input).value = "L2 left/07"
        screen.query_one("#meta-operator", Input).value = "A. Tester"
        screen.query_one("#meta-room_temperature_c", Input).value = "99"
        await pilot.pause()
        errors = str(screen.query_one("#meta-errors", Static).render())
        assert errors.startswith("room temp (degC): room_temperature_c: 99"), errors
        assert screen.query_one("#meta-room_temperature_c", Input).has_class("-invalid")
        assert app.run_metadata.specimen is None, "kept only once every field is right"
        screen.query_one("#meta-room_temperature_c", Input).value = "21.5"
        await until(pilot, lambda: app.run_metadata.specimen == "L2 left/07")
        await pilot.press("u")
        await until(pilot, lambda: not app.setup_open)
        await pilot.press("r")
        await until(pilot, lambda: app.model.recording is not None)
        path = Path(str(app.model.recording))
        await pilot.press("r")
        await until(pilot, lambda: (path / "closed.json").exists())
    assert "L2-left-07" in path.name
    assert Recording.open(path).run_metadata == {
        "specimen": "L2 left/07",
        "operator": "A. Tester",
        "room_temperature_c": 21.5,
    }


def test_read_metadata_names_a_wrong_number() -> None:
    metadata, problems = read_metadata({"mixing_time_s": "abc", "label": "ok"})
    assert metadata is None
    assert len(problems) == 1, problems
    assert problems[0].startswith("mixing time (s):"), problems
    metadata, problems = read_metadata({"mixing_time_s": " 45 ", "label": ""})
    assert problems == []
    assert metadata is not None
    assert metadata.mixing_time_s == 45.0
    assert metadata.label is None


def test_describe_motion_says_state_volume_and_position() -> None:
    from protocol.enums import Flags
    from protocol.messages import MotionStatus

    motion = MotionStatus(
        1, State.PRIMING, State.PRIMING, Flags(0), 0, 0, 1500, 0, 60000, 0, 25000, 0, 10, 7290
    )
    assert describe_motion(motion) == "PRIMING: 0.025 mL primed; plunger at 1.50 mm from home"
