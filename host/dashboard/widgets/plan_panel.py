"""The plan panel: load a plan file, edit flow, increment, volume and pressure limits, and the
cement's age, with each field's validation message shown under it as it is typed.

A field does not select its text when it takes the focus (Tab): a key pressed there out of habit
(a to arm) then adds a letter the validation flags, it never replaces the value."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, Static

from host.config_file import show
from host.dashboard.plan_edit import EDITABLE, apply_edits, field_text, parse_age
from host.plan import InjectionPlan, PlanError, load_plan


def _key(path: str) -> str:
    return path.replace(".", "-")


class PlanPanel(Vertical):
    """Posts `PlanPanel.Changed` whenever the plan in use or its validity changes."""

    @dataclass
    class Changed(Message):
        plan: InjectionPlan | None
        """None while a field is wrong (or no plan is loaded): arming is refused."""
        errors: list[str]
        source: str
        mixed_ago_s: float | None

    def __init__(self, plan: InjectionPlan | None, plan_path: Path | None, mixed_ago_s: float | None) -> None:
        super().__init__(id="plan-panel")
        self.base = plan
        self.plan = plan
        self.plan_path = plan_path
        self.mixed_ago_s = mixed_ago_s
        self.errors: list[str] = []

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            path = str(self.plan_path or "")
            yield Input(
                path, placeholder="plan file (TOML)", id="plan-file", compact=True, select_on_focus=False
            )
            yield Button("Load", id="plan-load", compact=True)
        yield Static(id="plan-title")
        for path, (label, unit) in EDITABLE.items():
            with Horizontal(classes="row"):
                yield Label(f"{label} ({unit})", classes="field-label")
                yield Input(id=f"field-{_key(path)}", compact=True, select_on_focus=False)
            yield Static(id=f"error-{_key(path)}", classes="field-error")
        with Horizontal(classes="row"):
            yield Label("mixed ago (s)", classes="field-label")
            age = "" if self.mixed_ago_s is None else show(float(self.mixed_ago_s))
            yield Input(age, id="field-mixed-ago", compact=True, select_on_focus=False)
        yield Static(id="error-mixed-ago", classes="field-error")
        yield Static(id="plan-general", classes="field-error")

    def on_mount(self) -> None:
        self._fill()
        self._validate()

    # -- loading --------------------------------------------------------------------------------

    def load(self, path: Path) -> bool:
        """Load a plan file; False (and the file's problems shown) if it cannot be used."""
        try:
            plan = load_plan(path)
        except PlanError as exc:
            self._show("plan-general", "\n".join(exc.problems))
            self.query_one("#plan-title", Static).update(f"[b]{path}[/]: not loaded")
            return False
        self.base = self.plan = plan
        self.plan_path = path
        self._show("plan-general", "")
        self._fill()
        self._validate()
        return True

    def _fill(self) -> None:
        plan = self.base
        for path in EDITABLE:
            box = self.query_one(f"#field-{_key(path)}", Input)
            with box.prevent(Input.Changed):
                box.value = field_text(plan, path) if plan is not None else ""
            box.disabled = plan is None
            self._show(f"error-{_key(path)}", "")
        title = "no plan loaded: type a plan file and press Load"
        if plan is not None:
            title = f"[b]{plan.name}[/]  {plan.mode}"
        self.query_one("#plan-title", Static).update(title)

    # -- editing --------------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id and event.input.id.startswith("field-"):
            event.stop()
            self._validate()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "plan-file":
            event.stop()
            self.load(Path(event.value.strip()))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "plan-load":
            event.stop()
            self.load(Path(self.query_one("#plan-file", Input).value.strip()))

    def _validate(self) -> None:
        errors: list[str] = []
        age, age_error = parse_age(self.query_one("#field-mixed-ago", Input).value)
        self._show("error-mixed-ago", age_error or "")
        self.query_one("#field-mixed-ago", Input).set_class(age_error is not None, "-invalid")
        if age_error:
            errors.append(age_error)
        self.mixed_ago_s = age
        plan = None
        if self.base is not None:
            texts = {path: self.query_one(f"#field-{_key(path)}", Input).value for path in EDITABLE}
            result = apply_edits(self.base, texts)
            for path in EDITABLE:
                message = result.errors.get(path, "")
                self._show(f"error-{_key(path)}", message)
                self.query_one(f"#field-{_key(path)}", Input).set_class(bool(message), "-invalid")
            self._show("plan-general", "\n".join(result.general))
            errors += [*result.errors.values(), *result.general]
            plan = result.plan
        self.plan = plan
        self.errors = errors
        source = str(self.plan_path or "")
        self.post_message(self.Changed(plan, errors, source, age))

    def _show(self, widget_id: str, text: str) -> None:
        box = self.query_one(f"#{widget_id}", Static)
        box.update(text)
        box.display = bool(text)
