"""The host reads the movement states (SPEC §8.6) and the values it does not know safely (§11.3):
the dashboard's banner, its model, the NAK texts."""

from __future__ import annotations

import pytest

from host.dashboard.model import DashboardModel
from host.dashboard.widgets.banner import banner_text
from host.errors import describe_nak
from protocol import MsgType, Nak, NakCode, State, StopReason, StopSource
from protocol.enums import MOVEMENT_STATES, BusyDetail, EventKind
from protocol.messages import Home, Jog


def _model(state: int) -> DashboardModel:
    model = DashboardModel(clock=lambda: 0.0)
    model.link.state = "connected"
    model.on_event(
        kind=EventKind.STATE_CHANGE,
        state=state,
        reason=StopReason.NONE,
        source=StopSource.NONE,
        t_s=0.0,
        pressure_kpa=0.0,
        delivered_ml=0.0,
    )
    return model


@pytest.mark.parametrize("state", sorted(MOVEMENT_STATES), ids=lambda s: s.name)
def test_the_banner_names_a_movement_and_its_stop_key(state: State) -> None:
    css, headline, detail = banner_text(_model(state))
    assert (css, headline) == ("moving", state.name)
    assert "STOP" in detail
    assert "not counted as delivered" in detail


def test_a_state_this_host_does_not_know_is_shown_as_its_number() -> None:
    css, headline, _detail = banner_text(_model(11))
    assert (css, headline) == ("unknown", "11")


def test_a_movement_after_a_stop_clears_the_last_stop_reason_from_the_banner() -> None:
    model = _model(State.STOPPED)
    model.on_event(
        kind=EventKind.STOP,
        state=State.STOPPED,
        reason=StopReason.OVERPRESSURE,
        source=StopSource.CONTROLLER,
        t_s=1.0,
        pressure_kpa=4000.0,
        delivered_ml=0.1,
    )
    model.on_event(
        kind=EventKind.STATE_CHANGE,
        state=State.PRIMING,
        reason=StopReason.NONE,
        source=StopSource.NONE,
        t_s=2.0,
        pressure_kpa=0.0,
        delivered_ml=0.1,
    )
    assert model.stop_reason == StopReason.NONE


def test_nak_texts_for_the_movements() -> None:
    at_home = Nak(cmd_id=3, cmd_type=MsgType.HOME, code=NakCode.AT_HOME, state=State.IDLE)
    assert describe_nak(Home(3, 1_000), at_home) == (
        "HOME refused: AT_HOME (the plunger is at home: it cannot move further back)"
    )
    busy = Nak(
        cmd_id=4,
        cmd_type=MsgType.JOG,
        code=NakCode.BUSY,
        state=State.JOGGING,
        detail=BusyDetail.PLUNGER_MOVING,
    )
    assert "the jog still runs the other way" in describe_nak(Jog(4, 100, -200), busy)
    bad = Nak(cmd_id=5, cmd_type=MsgType.JOG, code=NakCode.BAD_PARAM, state=State.IDLE, field=2, detail=250)
    assert describe_nak(Jog(5, 100, 300), bad) == (
        "JOG refused: BAD_PARAM (speed_um_s (field 2) = 300 um/s is out of range: allowed backward "
        "-5000..-1 um/s or forward 1..250 um/s (the device's top and jog speeds; never 0) "
        "(bound broken: 250))"
    )
