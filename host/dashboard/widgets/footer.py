"""The key footer, wrapped onto two rows in a narrow terminal: at 80 columns the dashboard's keys
(94 columns in one row) would otherwise run off the right edge, quit first."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's footer, with a grid of two rows ready for a narrow screen.

    Footer sets its grid to one column per key; this halves that. The grid is used only where
    dashboard.tcss gives the footer the grid layout and two rows (`Screen.-narrow KeyFooter`):
    elsewhere it keeps Footer's one horizontal row."""

    def compose(self) -> ComposeResult:
        yield from super().compose()
        keys = self.styles.grid_size_columns or 1  # what Footer just set: one column per key
        self.styles.grid_size_columns = math.ceil(keys / 2)
