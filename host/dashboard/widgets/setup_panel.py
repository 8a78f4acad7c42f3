"""The setup panel (u), in place of the plots and the plan: everything before and after an
injection, and the run's metadata.

Choose the syringe (the library's by a digit key, or a custom bore), zero the
transducer, calibrate its span, prime, jog (hold + or -), withdraw (refill), home, calibrate the
volume (dispense with a prime, weigh, enter mass and density), and type the run metadata that the
next recording keeps (meta.json `extra.run_metadata`, as `cementguard run --specimen ...` does).

Each action runs as its own task (`DashboardApp.spawn_command`): neither the UI nor the link waits,
a refusal is a notification naming the field, the value and the range, and the progress line shows
the movement's MOTION_STATUS (state, volume primed or withdrawn, plunger position). One action runs
at a time; STOP (x, Escape, the STOP buttons of the panel and of the controls bar, which stays) is
the app's priority binding and works here as everywhere, in every focus. The panel is built with the
main screen and only shown by u (`DashboardApp.action_setup`). The panel's fields are checked with
the CLI's ranges (`host.dashboard.setup_actions.field_value`)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import ValidationError
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from host.cli_types import BORE_MM, FLOW_ML_MIN, VOLUME_ML
from host.config_file import describe
from host.dashboard import setup_actions as act
from host.errors import CementguardError
from host.motion_cmds import HOME_SPEED, JOG_SPEED, JogHold, speed_um_s
from host.run_metadata import FIELDS, RunMetadata
from host.setup_cmds import DENSITY, MASS, MAX_PRESSURE, NOMINAL, REFERENCE, STROKE, describe_syringe
from host.syringes import LIBRARY, NoSyringeSelectedError, selected_bore_um
from protocol.messages import SetSyringe

if TYPE_CHECKING:
    from host.client import DeviceClient

log = logging.getLogger(__name__)

CUSTOM = "custom"
"""The syringe list's entry for a custom bore (the fields beside it)."""
DEFAULTS = {
    "bore": "9.5",
    "stroke": "50",
    "max-kpa": "4000",
    "reference": "2000",
    "prime-volume": "0.05",
    "prime-flow": "1",
    "withdraw-volume": "0.05",
    "withdraw-flow": "1",
    "jog-speed": "0.1",
    "home-speed": "2",
    "nominal": "0.1",
    "mass": "",
    "density": "0.998203",
}
"""What the fields hold when the panel opens (a 50 uL prime at 1 mL/min takes 3 s). A prime sets the
volume calibration's nominal volume to what it counted; the reference device takes 0.1 mL or more."""
META_LABELS = {
    "label": "label",
    "specimen": "specimen id",
    "operator": "operator",
    "cement_product": "cement product",
    "cement_lot": "cement lot",
    "mixing_time_s": "mixing time (s)",
    "room_temperature_c": "room temp (degC)",
    "bath_temperature_c": "bath temp (degC)",
    "notes": "notes",
}
KEYS = "1-6 syringe, z zero, k span, p prime, hold +/- jog, w withdraw, h home, g volume cal"
"""The panel's keys in one line (the progress line when it opens, the help screen's note)."""
READY = f"ready: {KEYS}"
"""The progress line when the panel opens with nothing running (its keys work from then on)."""
NUMERIC_META = frozenset({"mixing_time_s", "room_temperature_c", "bath_temperature_c"})


def read_metadata(texts: dict[str, str]) -> tuple[RunMetadata | None, list[str]]:
    """The metadata typed in the panel (empty fields unset), or the problems, one line per field
    naming the value and what is allowed (the plan file's and the CLI's rules: RunMetadata)."""
    given: dict[str, Any] = {}
    for name, text in texts.items():
        text = text.strip()
        if not text:
            continue
        if name in NUMERIC_META:
            try:
                given[name] = float(text)
            except ValueError:
                given[name] = text  # refused below, named with its field
        else:
            given[name] = text
    try:
        return RunMetadata.model_validate(given), []
    except ValidationError as exc:
        return None, describe(exc, RunMetadata, lambda path: META_LABELS.get(path, path))


def _row(label: str, *widgets: Any) -> Horizontal:
    return Horizontal(Label(label, classes="setup-label"), *widgets, classes="setup-row")


def _field(name: str, width: int = 10) -> Input:
    field = Input(DEFAULTS[name], id=f"setup-{name}", compact=True, select_on_focus=False)
    field.styles.width = width
    return field


def _button(label: str, action: str, variant: Any = "default") -> Button:
    name = action.replace("(-1)", "-back").replace("(1)", "-fwd").replace("('custom')", "-custom")
    return Button(
        label, id=f"setup-do-{name}", compact=True, variant=variant, name=action, classes="setup-action"
    )


class SetupPanel(Vertical):
    """The setup panel. The app gives it a way to run a task (`spawn`), the controller when
    connected (`controller`), and where the run metadata goes (`on_metadata`)."""

    FIRST_FOCUS = "#setup-do-zero"
    """Where the focus goes when the panel opens: not a text field, so its keys work at once."""
    BINDINGS: ClassVar[list[BindingType]] = [  # the action keys are on the buttons, not in the footer
        Binding("u,f2", "close", "close setup", key_display="u"),
        *(
            Binding(str(i), f"syringe('{s.name}')", s.name, show=False, tooltip=f"select the {s.description}")
            for i, s in enumerate(LIBRARY, start=1)
        ),
        Binding("6", "syringe('custom')", "custom syringe", show=False),
        Binding("z", "zero", "zero", show=False),
        Binding("k", "span", "span", show=False),
        Binding("p", "prime", "prime", show=False),
        Binding("plus,equals_sign", "jog(1)", "jog +", key_display="+", show=False),
        Binding("minus", "jog(-1)", "jog -", key_display="-", show=False),
        Binding("w", "withdraw", "withdraw", show=False),
        Binding("h", "home", "home", show=False),
        Binding("g", "calibrate_volume", "volume cal", show=False),
    ]

    def __init__(
        self,
        *,
        spawn: Callable[[Awaitable[Any], str], Any],
        controller: Callable[[], DeviceClient | None],
        metadata: RunMetadata,
        on_metadata: Callable[[RunMetadata], None],
        on_close: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(id="setup")
        self._on_close = on_close
        self._spawn = spawn
        self._controller = controller
        self._metadata = metadata
        self._on_metadata = on_metadata
        self._clock = clock
        self.busy: str | None = None
        """The action running now (one at a time; STOP is never held back)."""
        self.jog_hold: JogHold | None = None
        """The jog key held now, while a jog runs."""

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        library = "  ".join(f"{i} {s.name}" for i, s in enumerate(LIBRARY, start=1))
        with Horizontal(id="setup-controls"):  # above the scroll: always in view
            stop = "app.stop('button')"
            yield Button("STOP x/Esc", variant="error", compact=True, name="stop", action=stop)
            yield Button("Close u", compact=True, name="close", classes="setup-action")
            yield Static("[b]Pump setup[/b]  (x or Escape: STOP, here as everywhere)", id="setup-title")
        with VerticalScroll(id="setup-body"):
            yield Static("syringe in force: (not read yet)", id="setup-in-force", markup=False)
            yield _row("syringe", Static(f"keys {library}; 6 custom:", id="setup-syringe", markup=False))
            yield _row(
                "custom (mm, kPa)",
                Label("bore"),
                _field("bore", 7),
                Label("stroke"),
                _field("stroke", 7),
                Label("max"),
                _field("max-kpa", 7),
                _button("Select custom (6)", "syringe('custom')", "primary"),
            )
            yield _row(
                "transducer",
                _button("Zero (z)", "zero"),
                Label(" span ref kPa"),
                _field("reference", 8),
                _button("Span (k)", "span"),
            )
            yield _row(
                "prime",
                Label("mL"),
                _field("prime-volume", 8),
                Label("mL/min"),
                _field("prime-flow", 6),
                _button("Prime (p)", "prime", "success"),
            )
            yield _row(
                "jog",
                Label("mm/s"),
                _field("jog-speed", 6),
                _button("+ fwd", "jog(1)"),
                _button("- back", "jog(-1)"),
                Label(" hold + or -: moves while held"),
            )
            yield _row(
                "withdraw / home",
                Label("mL"),
                _field("withdraw-volume", 8),
                Label("mL/min"),
                _field("withdraw-flow", 6),
                _button("Withdraw (w)", "withdraw"),
                Label(" mm/s"),
                _field("home-speed", 5),
                _button("Home (h)", "home"),
            )
            yield _row(
                "volume cal",
                Label("mL"),
                _field("nominal", 7),
                Label("g"),
                _field("mass", 9),
                Label("g/mL"),
                _field("density", 9),
                _button("Calibrate (g)", "calibrate_volume"),
            )
            yield Static("", id="setup-progress", markup=False)
            yield Static("[b]Run metadata[/b] (kept in the next recording)", classes="setup-heading")
            for name in FIELDS:
                value = getattr(self._metadata, name)
                text = "" if value is None else str(value)
                meta = Input(text, id=f"meta-{name}", compact=True, select_on_focus=False)
                yield _row(META_LABELS[name], meta)
            yield Static("", id="meta-errors", markup=False)

    def opened(self) -> None:
        """Shown (u): what is in force now, and the focus on the panel's first button."""
        self.show_in_force()

        def focus() -> None:  # once laid out: a widget still hidden cannot take the focus
            self.query_one(self.FIRST_FOCUS).focus()
            if self.busy is None:
                self.show_progress(READY)

        self.call_after_refresh(focus)

    # -- what is shown --------------------------------------------------------------------------

    def show_progress(self, text: str) -> None:
        if self.is_attached:
            self.query_one("#setup-progress", Static).update(text)

    def show_in_force(self) -> None:
        ctl = self._controller()
        syringe = ctl.syringe if ctl is not None else None
        text = "not connected" if ctl is None else "the device has no syringe setup (capability SETUP)"
        if syringe is not None:
            text = describe_syringe(syringe)
        if self.is_attached:
            self.query_one("#setup-in-force", Static).update(f"in force: {text}")

    # -- running an action ----------------------------------------------------------------------

    def _run(self, what: str, make: Callable[[DeviceClient], Awaitable[str]]) -> None:
        """Run one action as its own task: refused while another runs or without a link; its
        result (or refusal, named by the app's notification) goes to the progress line."""
        if self.busy is not None:
            self.app.notify(f"{self.busy} is running: wait for its end, or STOP (x)", severity="warning")
            return
        ctl = self._controller()
        if ctl is None:
            self.app.notify(f"{what} not sent: not connected to the controller", severity="error")
            return
        self.busy = what
        self.show_progress(f"{what} ...")

        async def go() -> None:
            text = f"{what}: not done"
            try:
                text = await make(ctl)
            except CementguardError as exc:
                text = f"{what}: {exc}"
                raise
            finally:
                self.busy = None
                self.show_progress(text)
                self.show_in_force()

        self._spawn(go(), what)

    def _number(self, spec: Any, label: str, name: str) -> float | None:
        """A field's number, or None after a notification naming the field, value and range."""
        try:
            return act.field_value(spec, label, self.query_one(f"#setup-{name}", Input).value)
        except act.SetupFieldError as exc:
            self.app.notify(str(exc), title="not sent", severity="error", timeout=8)
            return None

    def _bore_um(self) -> int | None:
        """The selected syringe's bore (the device requires it), else the custom field's."""
        ctl = self._controller()
        if ctl is not None:
            with contextlib.suppress(NoSyringeSelectedError):
                return selected_bore_um(ctl.syringe)
        bore = self._number(BORE_MM, "custom bore (mm)", "bore")
        return None if bore is None else round(bore * 1000.0)

    # -- actions --------------------------------------------------------------------------------

    def action_close(self) -> None:
        if self.jog_hold is not None:
            self.jog_hold.quit = True
        self._on_close()

    def action_syringe(self, choice: str) -> None:
        """A library syringe by name, or `custom`: the custom fields' bore, stroke and pressure."""
        spec = next((s for s in LIBRARY if s.name == choice), None)
        if spec is not None:
            command = spec.to_wire(1)
        else:
            bore = self._number(BORE_MM, "custom bore (mm)", "bore")
            stroke = self._number(STROKE, "custom stroke (mm)", "stroke")
            max_kpa = self._number(MAX_PRESSURE, "custom max pressure (kPa)", "max-kpa")
            if bore is None or stroke is None or max_kpa is None:
                return
            command = SetSyringe(
                1, CUSTOM, round(bore * 1000), round(stroke * 1000), 0, round(max_kpa * 1000)
            )
        self._run("SET_SYRINGE", lambda ctl: act.set_syringe(ctl, command))

    def action_zero(self) -> None:
        self._run("ZERO", act.zero)

    def action_span(self) -> None:
        reference = self._number(REFERENCE, "span reference (kPa)", "reference")
        if reference is not None:
            self._run("CALIBRATE_SPAN", lambda ctl: act.span(ctl, reference))

    def _volume_move(self, what: str, prefix: str) -> None:
        volume = self._number(VOLUME_ML, f"{what.lower()} volume (mL)", f"{prefix}-volume")
        flow = self._number(FLOW_ML_MIN, f"{what.lower()} flow (mL/min)", f"{prefix}-flow")
        bore = self._bore_um()
        if volume is None or flow is None or bore is None:
            return
        vol_nl, flow_nl_s = round(volume * 1e6), max(1, round(flow * 1e6 / 60.0))
        seconds = volume / flow * 60.0

        async def start(ctl: DeviceClient) -> Any:
            if what == "PRIME":
                return await ctl.prime(syringe_bore_um=bore, flow_nl_s=flow_nl_s, volume_nl=vol_nl)
            return await ctl.withdraw(syringe_bore_um=bore, flow_nl_s=flow_nl_s, volume_nl=vol_nl)

        async def move(ctl: DeviceClient) -> str:
            said = await act.movement(ctl, what.lower(), start, seconds, self.show_progress)
            if what == "PRIME":  # the volume calibration's nominal volume: what this prime counted
                primed = (await ctl.get_motion()).primed_nl
                if primed > 0 and self.is_attached:
                    self.query_one("#setup-nominal", Input).value = f"{primed / 1e6:.4f}"
            return said

        self._run(what, move)

    def action_prime(self) -> None:
        self._volume_move("PRIME", "prime")

    def action_withdraw(self) -> None:
        self._volume_move("WITHDRAW", "withdraw")

    def action_home(self) -> None:
        speed = self._number(HOME_SPEED, "home speed (mm/s)", "home-speed")
        if speed is None:
            return
        um_s = speed_um_s(speed)

        async def start(ctl: DeviceClient) -> Any:
            return await ctl.home(speed_um_s=um_s)

        travel = 100_000 / um_s  # the longest way home: the whole stroke at this speed
        self._run("HOME", lambda ctl: act.movement(ctl, "home", start, travel, self.show_progress))

    def action_jog(self, direction: int) -> None:
        """A jog key read (its first byte or a terminal's repeat): held for KEY_RELEASE_S after
        it (`JogHold.press`); the first starts the jog task, which ends at the release."""
        now = self._clock()
        if self.jog_hold is not None and self.busy == "JOG":
            self.jog_hold.press(direction, now)
            return
        speed = self._number(JOG_SPEED, "jog speed (mm/s)", "jog-speed")
        if speed is None:
            return
        hold = JogHold(once=True)
        hold.press(direction, now)
        um_s = speed_um_s(speed)

        async def jog(ctl: DeviceClient) -> str:
            try:
                return await act.jog(ctl, um_s, hold, self.show_progress, self._clock)
            finally:
                if self.jog_hold is hold:
                    self.jog_hold = None

        self.jog_hold = hold
        self._run("JOG", jog)
        if self.busy != "JOG":  # refused before it started
            self.jog_hold = None

    def action_calibrate_volume(self) -> None:
        nominal = self._number(NOMINAL, "volume cal nominal (mL)", "nominal")
        mass = self._number(MASS, "volume cal mass (g)", "mass")
        density = self._number(DENSITY, "volume cal density (g/mL)", "density")
        if nominal is None or mass is None or density is None:
            return
        self._run("CALIBRATE_VOLUME", lambda ctl: act.calibrate_volume(ctl, nominal, mass, density))

    async def on_button_pressed(self, event: Button.Pressed) -> None:
        """A panel button runs the panel's action named on it (the keys run the same ones)."""
        if event.button.has_class("setup-action") and event.button.name:
            event.stop()
            await self.run_action(event.button.name)

    # -- run metadata ---------------------------------------------------------------------------

    def on_input_changed(self, event: Input.Changed) -> None:
        if not (event.input.id or "").startswith("meta-"):
            return
        texts = {name: self.query_one(f"#meta-{name}", Input).value for name in FIELDS}
        metadata, problems = read_metadata(texts)
        self.query_one("#meta-errors", Static).update("\n".join(problems))
        for name in FIELDS:
            wrong = any(line.startswith(META_LABELS[name] + ":") for line in problems)
            self.query_one(f"#meta-{name}", Input).set_class(wrong, "-invalid")
        if metadata is not None:
            self._on_metadata(metadata)


__all__ = ["SetupPanel", "read_metadata"]
