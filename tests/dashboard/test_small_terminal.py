"""What a bench engineer must see at a glance fits the terminal: at 80x24 (the default size of many
bench PCs' terminals) as at 160x48, and after the window is resized either way.

"Seen" is judged by the widget's place on the screen (displayed, not clipped by its container, inside
the screen) and by the words it draws there.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from host.dashboard._textual_adapter import FooterKey
from host.dashboard.app import TALL_FROM, DashboardApp
from host.dashboard.widgets.banner import StateBanner
from host.dashboard.widgets.panels import ConnectionPanel, Readouts, RecordingIndicator
from host.dashboard.widgets.plots import SignalPlot
from tests.dashboard.conftest import SMALL, until
from tests.dashboard.test_snapshots import make_app, stopped_by_the_operator

LARGE = (160, 48)
FOOTER_KEYS = {"x", "f", "a", "s", "space", "c", "r", "u", "q", "question_mark"}
"""Every key of the live dashboard's footer (STOP, fluoro stop, arm, start, pause/resume, clear,
record, setup, quit, help)."""


def drawn(widget: Widget) -> str:
    """The text the widget draws, line by line."""
    lines = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    return "\n".join(line.text for line in lines)


def assert_in_view(app: DashboardApp, widget: Widget) -> None:
    """Displayed, whole (its container does not clip it) and inside the screen."""
    assert widget.display, widget
    assert widget.visible, widget
    screen = app.screen.region
    geometry = app.screen.find_widget(widget)
    assert geometry.region.area > 0, widget
    assert geometry.visible_region == geometry.region, f"{widget} clipped to {geometry.visible_region}"
    assert screen.contains_region(geometry.region), f"{widget} at {geometry.region} outside {screen}"


async def stopped_and_recording(pilot: Pilot[Any]) -> DashboardApp:
    app = pilot.app
    assert isinstance(app, DashboardApp)
    await until(pilot, lambda: app.model.state is not None and app.model.stops)
    app.model.recording = "recordings/2026-11-21T08-00-00-incremental-3x0-5ml"
    app.refresh_view()
    await pilot.pause()
    return app


def assert_a_glance_shows_it_all(app: DashboardApp) -> None:
    banner = app.query_one(StateBanner)
    assert_in_view(app, banner)
    assert "S T O P P E D" in drawn(banner)
    assert "OPERATOR_STOP  (source: operator)" in drawn(banner)

    readouts = app.query_one(Readouts)
    assert_in_view(app, readouts)
    lines = drawn(readouts).splitlines()
    assert any(line.startswith("pressure") and "kPa" in line for line in lines), lines
    assert any(line.startswith("delivered") and "0.200 mL / 1.500" in line for line in lines), lines

    connection = app.query_one(ConnectionPanel)
    assert_in_view(app, connection)
    assert any(line.split() == ["link", "CONNECTED"] for line in drawn(connection).splitlines())

    recording = app.query_one(RecordingIndicator)
    assert_in_view(app, recording)
    assert drawn(recording).startswith("\u25cf REC  recordings/")

    keys = list(app.screen.query(FooterKey))
    assert {key.key for key in keys} == FOOTER_KEYS
    for key in keys:
        assert_in_view(app, key)
        assert key.description in drawn(key), f"{key.key}: {drawn(key)!r} cut short"


SIZES = [SMALL, LARGE, (80, 48), (160, 24), (119, 39), (120, 40)]
"""80x24 and 160x48, narrow-and-tall, wide-and-short, and each side of the breakpoints."""


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
async def test_the_state_readouts_link_and_recording_are_in_view(size: tuple[int, int]) -> None:
    app, _source = make_app(stopped_by_the_operator())
    async with app.run_test(size=size) as pilot:
        assert_a_glance_shows_it_all(await stopped_and_recording(pilot))
        connection = drawn(app.query_one(ConnectionPanel))
        # The counters are for a closer look: only where there is room for them.
        assert ("frames" in connection) == (size[1] >= TALL_FROM), connection
        shown = [plot for plot in app.query(SignalPlot) if plot.display]  # v swaps the lower plot
        assert [plot.id for plot in shown] == ["pressure-plot", "volume-plot"]
        for plot in shown:
            assert_in_view(app, plot)


async def resize(pilot: Pilot[Any], app: DashboardApp, size: tuple[int, int]) -> None:
    """Resize the terminal; return once the screen's layout and the connection panel follow."""
    small = size == SMALL
    await pilot.resize_terminal(*size)
    await until(pilot, lambda: app.screen.has_class("-short") == small)
    await until(pilot, lambda: ("frames" in drawn(app.query_one(ConnectionPanel))) != small)
    assert app.screen.has_class("-narrow") == small


async def test_resizing_the_window_moves_between_the_layouts() -> None:
    app, _source = make_app(stopped_by_the_operator())
    async with app.run_test(size=LARGE) as pilot:
        await stopped_and_recording(pilot)
        for size in (SMALL, LARGE, SMALL):
            await resize(pilot, app, size)
            assert_a_glance_shows_it_all(app)
