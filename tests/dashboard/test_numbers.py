"""No "-0" anywhere on the dashboard: a small negative reading (sensor noise around zero) that
rounds to zero is printed as 0 in the readouts, the stop log and the banner."""

from __future__ import annotations

from host.dashboard.numbers import fixed
from host.dashboard.widgets.banner import StateBanner
from host.dashboard.widgets.stoplog import StopLog
from protocol import State, StopReason, StopSource
from protocol.enums import EventKind
from tests.dashboard.conftest import until
from tests.dashboard.test_snapshots import make_app, stopped_by_the_operator


def test_fixed_drops_the_sign_of_a_zero_only() -> None:
    assert fixed(-0.3, 0) == "0"
    assert fixed(-0.0004, 3) == "0.000"
    assert fixed(-0.0, 2) == "0.00"
    assert fixed(-0.6, 0) == "-1"
    assert fixed(-12.5, 2) == "-12.50"
    assert fixed(1151.4, 0) == "1151"


async def test_a_stop_at_a_reading_just_below_zero_shows_0_kpa() -> None:
    app, _source = make_app(stopped_by_the_operator())
    async with app.run_test(size=(140, 44)) as pilot:
        await until(pilot, lambda: app.model.stops)
        app.model.on_event(
            kind=EventKind.STOP,
            state=State.STOPPED,
            reason=StopReason.OPERATOR_STOP,
            source=StopSource.OPERATOR,
            t_s=99.0,
            pressure_kpa=-0.3,
            delivered_ml=-0.0001,
        )
        app.refresh_view()
        await pilot.pause()
        log = app.query_one(StopLog)
        row = log.get_row_at(log.row_count - 1)
        assert row[3] == "0"
        assert row[4] == "0.000"
        banner = str(app.query_one(StateBanner).render())
        assert "at 0 kPa, 0.000 mL" in banner, banner
