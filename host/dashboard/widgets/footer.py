"""The key footer, wrapped onto two rows in a narrow terminal: at 80 columns the dashboard's keys
(94 columns in one row) would otherwise run off the right edge, quit first.

STOP and the fluoroscopy stop are named in every focus: while a text field has the focus, the letter
keys are typed there (Textual leaves their bindings out, x's and f's are off), and the footer names
Escape and ctrl+f, which stop there as everywhere."""

from __future__ import annotations

import math

from textual.app import ComposeResult
from textual.widgets import Footer

from host.dashboard._textual_adapter import FooterKey

ESCAPE_STOP = "stop('escape')"
"""The app's Escape binding (shown only where x is not)."""
CTRL_F_FLUORO = "fluoro_stop('ctrl+f')"
"""The app's ctrl+f binding (shown only where f is not)."""


class KeyFooter(Footer):
    """Textual's footer, with a grid of two rows ready for a narrow screen, and a STOP key always.

    Footer sets its grid to one column per key; this halves that. The grid is used only where
    dashboard.tcss gives the footer the grid layout and two rows (`Screen.-narrow KeyFooter`):
    elsewhere it keeps Footer's one horizontal row."""

    def compose(self) -> ComposeResult:
        keys = list(super().compose())
        columns = self.styles.grid_size_columns or 1  # what Footer just set: one column per key
        shown = {key.description for key in keys if isinstance(key, FooterKey)}
        if self._bindings_ready and "fluoro stop" not in shown:
            fluoro = FooterKey("ctrl+f", "^f", "fluoro stop", CTRL_F_FLUORO)
            keys.insert(0, fluoro.data_bind(compact=Footer.compact))
            columns += 1
        if self._bindings_ready and "STOP" not in shown:
            keys.insert(0, FooterKey("escape", "Esc", "STOP", ESCAPE_STOP).data_bind(compact=Footer.compact))
            columns += 1
        self.styles.grid_size_columns = math.ceil(columns / 2)
        yield from keys
