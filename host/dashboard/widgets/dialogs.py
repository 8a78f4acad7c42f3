"""Confirmation dialogs. They bind only their own answer keys: the app's STOP keys (x, Escape, f)
are priority bindings and keep working while a dialog is open."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label
from textual.widgets.button import ButtonVariant


class YesNoDialog(ModalScreen[bool]):
    """A question answered with y (or its button) or n; dismissed with the answer. Subclasses give
    the screen id, the question (`{what}` stands for the situation it is asked in) and the yes
    button."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
    ]
    SCREEN_ID: ClassVar[str]
    QUESTION: ClassVar[str]
    YES_LABEL: ClassVar[str]
    YES_VARIANT: ClassVar[ButtonVariant]

    def __init__(self, what: str) -> None:
        super().__init__(id=self.SCREEN_ID)
        self.what = what

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(self.QUESTION.format(what=self.what))
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self.YES_LABEL} (y)", id="yes", variant=self.YES_VARIANT)
                yield Button("Cancel (n)", id="no", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmClear(YesNoDialog):
    """Clearing releases a latched stop and drops the plan: asked before it is sent."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes, clear"),
        Binding("n", "answer(False)", "No"),
    ]
    SCREEN_ID = "confirm-clear"
    YES_LABEL = "Clear"
    QUESTION = "Clear the controller?\n{what}\nThis releases the latched stop and drops the plan."
    YES_VARIANT = "warning"


class ConfirmQuit(YesNoDialog):
    """q while the plunger may move (INJECTING or PAUSED): quitting stops the injection, so it is
    asked first. The app's STOP keys (x, Escape, f) stop from here too, without answering."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Stop and quit"),
        Binding("n", "answer(False)", "Cancel"),
    ]
    SCREEN_ID = "confirm-quit"
    YES_LABEL = "Stop and quit"
    QUESTION = (
        "Quit the dashboard?\n{what}\nQuitting sends STOP first (latched: c clears it).\n"
        "x or Escape: STOP now, and stay."
    )
    YES_VARIANT: ClassVar[ButtonVariant] = "error"


class ConfirmDisarmQuit(ConfirmQuit):
    """q while ARMED: nothing moves, but a plan left armed could be started (START) by another
    program or terminal while no one watches this dashboard; quitting disarms it (CLEAR), asked first."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Disarm and quit"),
        Binding("n", "answer(False)", "Cancel"),
    ]
    SCREEN_ID = "confirm-disarm-quit"
    YES_LABEL = "Disarm and quit"
    QUESTION = (
        "Quit the dashboard?\n{what}\nQuitting disarms it first (CLEAR: the plan is dropped, the "
        "controller goes to IDLE).\nx or Escape: STOP now, and stay."
    )
    YES_VARIANT = "warning"
