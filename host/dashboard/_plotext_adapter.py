"""The one place the dashboard relies on plotext (and textual-plotext) beyond their documented API.

plotext draws a figure to an ANSI string (`build()`, documented); the dashboard's plots skip that
string and its parse back by Rich and read the figure's cell matrix directly, at about half the cost
per redraw (bench/dashboard_redraw.py). That needs four of plotext's private names, kept here and
nowhere else:

- `_set_size(width, height)`: the figure's size, as textual-plotext's own render sets it (its
  issue #5: `plotsize` alone is not honoured in a widget);
- `_set_sizes()` and `_build_matrix()`: lay out and fill the cell matrix, as `build()` does before
  turning it into text; then `monitor.matrix` holds the cells;
- `_utility.colors_to_ansi`: the ANSI code of one cell's colours, to turn into a Rich style;
- textual-plotext's `PlotextPlot._get_plotext_theme_name`: the plotext theme a widget draws with
  (with the widget's "auto" theme, the one textual-plotext registered for the app's theme), so a
  figure built in a worker thread looks as the widget's own render would.

tests/dashboard/test_plotext_adapter.py fails loudly when a release moves any of them or when the
matrix stops matching `build()`'s own text; pyproject.toml pins plotext and textual-plotext to the
releases they were checked against. `draw` falls back to the documented ANSI path if the matrix
read fails at run time, and logs that it did.
"""

from __future__ import annotations

from typing import Any

from plotext._utility import colors_to_ansi as _colors_to_ansi

__all__ = [
    "TESTED_TEXTUAL_PLOTEXT",
    "TESTED_VERSION",
    "build_matrix",
    "colors_to_ansi",
    "set_size",
    "theme_name",
]

TESTED_VERSION = "5.3.2"
"""The plotext release these private names were checked against (the test compares)."""
TESTED_TEXTUAL_PLOTEXT = "1.0.1"
"""The textual-plotext release `theme_name` was checked against."""


def set_size(plot: Any, width: int, height: int) -> None:
    """Size the figure in characters, as textual-plotext's render does."""
    plot._set_size(width, height)


def build_matrix(plot: Any) -> Any:
    """Lay out and draw the figure into its cell matrix; returns the matrix (`Rows`, `cols`,
    `marker`, `fullground`, `style`, `background`, row by row)."""
    plot._set_sizes()
    plot._build_matrix()
    return plot.monitor.matrix


def colors_to_ansi(fullground: object, style: object, background: object) -> str:
    """The ANSI escape of one cell's colour triple."""
    return str(_colors_to_ansi(fullground, style, background))


def theme_name(widget: Any, app_theme: str) -> str:
    """The plotext theme `widget` (a textual_plotext.PlotextPlot) draws with under `app_theme`."""
    return str(widget._get_plotext_theme_name(app_theme))
