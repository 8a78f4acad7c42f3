"""Confirmation dialogs. They bind only their own answer keys: the app's STOP keys (x, Escape, f)
are priority bindings and keep working while a dialog is open."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label


class ConfirmClear(ModalScreen[bool]):
    """Clearing releases a latched stop and drops the plan: asked before it is sent."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, clear"),
        Binding("n", "answer(False)", "No"),
    ]

    def __init__(self, what: str) -> None:
        super().__init__(id="confirm-clear")
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(
                f"Clear the controller?\n{self.what}\nThis releases the latched stop and drops the plan."
            )
            with Horizontal(id="dialog-buttons"):
                yield Button("Clear (y)", id="yes", variant="warning")
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmQuit(ModalScreen[bool]):
    """q while the plunger may move (INJECTING or PAUSED): quitting stops the injection, so it is
    asked first. The app's STOP keys (x, Escape, f) stop from here too, without answering."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop and quit"),
        Binding("n", "answer(False)", "Cancel"),
    ]

    def __init__(self, what: str) -> None:
        super().__init__(id="confirm-quit")
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(
                f"Quit the dashboard?\n{self.what}\nQuitting sends STOP first (latched: c clears it).\n"
                "x or Escape: STOP now, and stay."
            )
            with Horizontal(id="dialog-buttons"):
                yield Button("Stop and quit (y)", id="yes", variant="error")
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
