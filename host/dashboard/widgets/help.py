"""The help screen (? or F1): every key of the dashboard and what it does, the stop keys first.

It is built from the app's own bindings, so it cannot drift from them. It binds only the keys that
close it: the app's STOP keys (x, Escape, f) are priority bindings and stop from here too."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from host.dashboard.widgets.setup_panel import KEYS as SETUP_KEYS

STOP_FIRST = ("stop", "fluoro_stop")
"""Actions listed first, in this order."""
NOTES = (
    "In a plan field letters are text (a, s, c, x, f do nothing else there): Escape stops there as "
    "everywhere, Tab or a click leaves the field, F1 shows this help.",
    f"In the setup panel (u): {SETUP_KEYS}; u or F2 back to the plots (docs/dashboard.md).",
    "?, F1 or Enter closes this help.",
)


def key_rows(bindings: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """(keys, what) rows from (key display, action, description) triples: one row per action (its
    keys joined), the stop actions first."""
    rows: dict[str, tuple[list[str], str]] = {}
    for key, action, description in bindings:
        name = action.split("(")[0]
        group = name if name in ("stop", "fluoro_stop") else action  # one row per stop, all its keys
        keys, _what = rows.setdefault(group, ([], description))
        if key not in keys:
            keys.append(key)
    order = sorted(
        rows, key=lambda a: STOP_FIRST.index(a.split("(")[0]) if a.split("(")[0] in STOP_FIRST else len(rows)
    )
    return [(", ".join(rows[a][0]), rows[a][1]) for a in order]


class HelpScreen(ModalScreen[None]):
    """Every key and what it does (`key_rows`), with the notes about text fields and quitting."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("question_mark,f1,enter", "dismiss", "close help"),
    ]

    def __init__(self, rows: list[tuple[str, str]]) -> None:
        super().__init__(id="help")
        self.rows = rows

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static("[b]Keys[/b]", classes="help-title")
            for keys, what in self.rows:
                stop = "STOP" in what
                with Horizontal(classes="help-row"):
                    yield Static(keys, classes="help-key -stop" if stop else "help-key", markup=False)
                    yield Static(what, classes="help-what", markup=False)
            for note in NOTES:
                yield Static(note, classes="help-note", markup=False)
