"""host/dashboard/_plotext_adapter.py uses four private plotext names; this fails loudly, naming what
changed, when a plotext release moves them or when the cell matrix no longer matches plotext's own
documented output (then re-check the adapter and the pin in pyproject.toml)."""

from __future__ import annotations

from importlib.metadata import version

from textual_plotext import PlotextPlot

from host.dashboard._plotext_adapter import (
    TESTED_TEXTUAL_PLOTEXT,
    TESTED_VERSION,
    build_matrix,
    set_size,
    theme_name,
)
from host.dashboard.widgets.plots import PlotSpec, figure, strips_from_ansi, strips_from_matrix

SPEC = PlotSpec(
    width=60,
    height=14,
    theme="dark",
    title="pressure",
    color="cyan",
    x=[0.0, 1.0, 2.0, 3.0, 4.0],
    y=[0.0, 200.0, 800.0, 600.0, 650.0],
    hlines=[(700.0, "orange")],
    vlines=[2.5],
    xlim=(0.0, 5.0),
    ylim=(0.0, 1000.0),
    yticks=[0.0, 700.0],
)


def test_the_installed_plotext_is_the_one_the_adapter_was_checked_against() -> None:
    assert version("plotext") == TESTED_VERSION, (
        f"plotext {version('plotext')} installed, the adapter was checked against {TESTED_VERSION}: "
        "re-run this test, update TESTED_VERSION and the pin"
    )


def test_the_installed_textual_plotext_is_the_one_the_adapter_was_checked_against() -> None:
    assert version("textual-plotext") == TESTED_TEXTUAL_PLOTEXT, (
        f"textual-plotext {version('textual-plotext')} installed, the adapter was checked against "
        f"{TESTED_TEXTUAL_PLOTEXT}: re-run this test, update TESTED_TEXTUAL_PLOTEXT and the pin"
    )


def test_the_widget_theme_is_read_as_textual_plotext_names_it() -> None:
    widget = PlotextPlot()
    widget.theme = "dark"
    assert theme_name(widget, "textual-dark") == "dark"
    widget.theme = "auto"
    assert theme_name(widget, "textual-dark") == "textual-auto-textual-dark"


def test_the_private_names_are_there() -> None:
    plot = figure(SPEC)
    set_size(plot, SPEC.width, SPEC.height)
    matrix = build_matrix(plot)
    for name in ("Rows", "cols", "marker", "fullground", "style", "background"):
        assert hasattr(matrix, name), f"plotext's cell matrix has no {name!r} any more"
    assert matrix.cols == SPEC.width


def test_the_matrix_path_draws_what_plotext_itself_draws() -> None:
    direct = strips_from_matrix(figure(SPEC), SPEC.width, SPEC.height)
    documented = strips_from_ansi(figure(SPEC), SPEC.width, SPEC.height)
    assert [s.text for s in direct] == [s.text for s in documented]
    assert [[seg.style for seg in s] for s in direct] == [[seg.style for seg in s] for s in documented]
