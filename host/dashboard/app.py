"""The Textual dashboard: live plots, state banner, stop log, connection and plan panels, controls.

The app reads a `DashboardModel` on a timer (`REFRESH_HZ`) and never awaits the link in a handler:
every command runs as its own asyncio task and reports a refusal (NAK) or a lost link as a
notification. STOP (x, Escape) and the fluoroscopy stop (f) are priority bindings of the app, so
they work on every screen, with a dialog open too, and each is sent at once as its own task, never
behind another command. The origin time of each stop request is noted (`StopRequests`), so the stop
log and the recording show the latency from key press to the STOP event.

SIGTERM (a shutdown, `kill`) and SIGHUP (the terminal window closed) leave as q does: STOP first
while the plunger may move, the recording closed, then exit; the controller latches the operator's
STOP, not the HOST_LOST its watchdog would raise only after `watchdog_ms` without this host.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import gc
import logging
import os
import signal
import sys
import termios
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input
from textual.widgets.button import ButtonVariant

from host.client import DeviceClient
from host.dashboard.exit_report import ExitNotes, exit_report
from host.dashboard.model import DashboardModel
from host.dashboard.source import DashboardSource, LiveSource
from host.dashboard.widgets.banner import StateBanner
from host.dashboard.widgets.dialogs import ConfirmClear, ConfirmDisarmQuit, ConfirmQuit
from host.dashboard.widgets.fluoro_panel import FluoroPanel
from host.dashboard.widgets.footer import KeyFooter
from host.dashboard.widgets.help import HelpScreen, key_rows
from host.dashboard.widgets.panels import ConnectionPanel, Readouts, RecordingIndicator, state_name
from host.dashboard.widgets.plan_panel import PlanPanel
from host.dashboard.widgets.plots import PressurePlot, PressureVolumePlot, VolumePlot
from host.dashboard.widgets.setup_panel import SetupPanel
from host.dashboard.widgets.stoplog import StopLog
from host.errors import CementguardError, CommandRefused, LinkLost
from host.logs import LOG_FILE, attach_log_file, detach_log_file
from host.plan import InjectionPlan
from host.pump import ConsumerFailure
from host.recording import Recorder, device_setup_json, new_run_dir
from host.recording_sink import close_recorder, free_space_problem, open_recorder
from host.run_metadata import RunMetadata, folder_label
from protocol import State, StopSource
from protocol.enums import MOVEMENT_STATES
from protocol.models import DeviceInfoRecord

log = logging.getLogger(__name__)

REFRESH_HZ = 5.0
RECORD_STOPS = (State.ARMED, State.INJECTING, State.PAUSED)
"""States in which a failed recording stops the injection."""
GIL_SWITCH_S = 0.001
QUIT_STOP_TIMEOUT_S = 2.0
"""How long q waits for the STOP acknowledgement before leaving anyway (the watchdog then stops)."""
MOVING_STATES = (State.INJECTING, State.PAUSED, *sorted(MOVEMENT_STATES))
"""States in which quitting sends STOP first (and q asks before it does): a prime, jog, withdraw or
home started from another terminal is stopped too."""
QUIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)
"""Signals that quit as q does (STOP first while injecting or paused)."""
HANGUP_EXIT_S = QUIT_STOP_TIMEOUT_S + 3.0
"""After SIGHUP, the latest moment the process ends: Textual's teardown writes to a terminal that
is gone, and must not keep the process (and its serial port) alive. The recording is closed without
its tail then."""
STOP_KEYS = ("x", "f")
"""Letters that stop: typed as text while a text field has the focus (Escape always stops)."""
STOP_ACTIONS = frozenset({"stop", "fluoro_stop"})
LINK_ACTIONS = frozenset({"arm", "start", "space", "clear"})
LIVE_ONLY = frozenset({*LINK_ACTIONS, "record", "setup"})
"""Actions a replay has not (it has space: play / pause)."""
REPLAY_ACTIONS = frozenset({"seek", "seek_to", "speed"})
WIDE_FROM = 120
"""Columns from which the side and plan panels get their full widths."""
TALL_FROM = 40
"""Rows from which the connection panel shows its counters and the stop log its full height."""
T = TypeVar("T")
HELP = {
    "stop": "STOP (source OPERATOR), latched until c clears it; Escape in every focus",
    "fluoro_stop": "fluoroscopy STOP (source FLUORO_OPERATOR); ctrl+f in every focus",
    "arm": "ARM the plan in the plan panel (a valid plan, the cement's age)",
    "start": "START the armed plan",
    "space": "PAUSE while injecting; RESUME while paused (after an increment)",
    "clear": "CLEAR a latched stop or fault (asks first; drops the plan)",
    "record": "recording on / off (a new folder each time)",
    "quit_safely": "quit; while injecting or paused: asks, then STOP before leaving",
    "help": "this help",
    "pv_plot": "plot: pressure against delivered volume / delivered volume against time",
    "fluoro_views": "fluoroscopy panel of a biplane guard: both views / lateral alone / AP alone",
    "setup": "setup panel: syringe, zero, span, prime, jog, withdraw, home, volume calibration, run metadata",
}
"""What each key does, for the help screen (? or F1) and the footer's tooltips."""


def terminal_hung_up() -> bool:
    """Whether the terminal Textual draws on (stderr) has hung up (its window closed): a hung-up
    tty answers EIO; SIGHUP alone (e.g. from a shell that exits) leaves it working."""
    stderr = sys.__stderr__
    try:
        termios.tcgetattr(stderr.fileno() if stderr is not None else -1)
    except termios.error as exc:
        return bool(exc.args) and exc.args[0] == errno.EIO
    except (ValueError, OSError):  # stderr closed
        return False
    return False


class DashboardApp(App[int]):
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")
    TITLE = "cementguard"
    ENABLE_COMMAND_PALETTE = False
    """Its text field would take Escape, which must stay STOP everywhere."""
    AUTO_FOCUS = "#stop-log"
    """Not a text field: the command keys work from the start."""
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE_FROM, "-wide")]  # noqa: RUF012 (as App declares it)
    VERTICAL_BREAKPOINTS = [(0, "-short"), (TALL_FROM, "-tall")]  # noqa: RUF012
    """The screen's size classes (dashboard.tcss): a narrow or short terminal (80x24) gets narrower
    side and plan panels, a shorter stop log, a two-row footer and the compact connection panel."""
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("x", "stop('x')", "STOP", key_display="x/Esc", priority=True, tooltip=HELP["stop"]),
        Binding("escape", "stop('escape')", "STOP", show=False, priority=True, tooltip=HELP["stop"]),
        Binding("f", "fluoro_stop", "fluoro stop", priority=True, tooltip=HELP["fluoro_stop"]),
        Binding(
            "ctrl+f",
            "fluoro_stop('ctrl+f')",
            "fluoro stop",
            show=False,
            priority=True,
            tooltip=HELP["fluoro_stop"],
        ),
        Binding("a", "arm", "arm", tooltip=HELP["arm"]),
        Binding("s", "start", "start", tooltip=HELP["start"]),
        Binding("space", "space", "pause/resume", tooltip=HELP["space"]),
        Binding("c", "clear", "clear", tooltip=HELP["clear"]),
        Binding("r", "record", "rec on/off", tooltip=HELP["record"]),
        Binding("u", "setup", "setup", tooltip=HELP["setup"]),
        Binding("q", "quit_safely", "quit", tooltip=HELP["quit_safely"]),
        Binding("question_mark", "help", "help", key_display="?", tooltip=HELP["help"]),
        Binding("f1", "help", "help", show=False, tooltip=HELP["help"]),
        Binding("v", "pv_plot", "P-V plot", show=False, tooltip=HELP["pv_plot"]),
        Binding("b", "fluoro_views", "views", show=False, tooltip=HELP["fluoro_views"]),
        Binding("left", "seek(-5)", "-5 s", tooltip="replay: back 5 s"),
        Binding("right", "seek(5)", "+5 s", tooltip="replay: forward 5 s"),
        Binding("home", "seek_to(0)", "start", show=False, tooltip="replay: back to the start"),
        Binding("minus", "speed(0.5)", "slower", tooltip="replay: half the speed"),
        Binding("plus,equals_sign", "speed(2)", "faster", tooltip="replay: twice the speed"),
    ]

    def __init__(
        self,
        source: DashboardSource,
        *,
        plan: InjectionPlan | None = None,
        plan_path: Path | None = None,
        mixed_ago_s: float | None = None,
        record_root: Path = Path("recordings"),
        model: DashboardModel | None = None,
        refresh_hz: float = REFRESH_HZ,
        background: Callable[[DashboardApp], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.model = model or DashboardModel()
        self.model.set_plan(plan, str(plan_path or ""))
        self.plan_errors: list[str] = [] if plan is not None else ["no plan loaded"]
        self._plan_path = plan_path
        self._mixed_ago_s = mixed_ago_s
        self.record_root = record_root
        self.refresh_hz = refresh_hz
        self._background = background
        self._tasks: set[asyncio.Task[Any]] = set()
        self._linked: bool | None = None
        self._quitting = False
        self._hung_up = False
        self._signal_handlers: dict[signal.Signals, Any] = {}
        self.recorder: Recorder | None = None
        self.run_metadata = plan.metadata if plan is not None else RunMetadata()
        """The lab notebook's metadata for the next recording (the plan's, then the setup panel's)."""
        self.pv_plot = False
        """Whether the lower plot is pressure against delivered volume (v), not volume over time."""
        self.exit_notes = ExitNotes()
        """What quitting did, for the lines printed after the app exits (`exit_report`)."""
        self._log_file: logging.Handler | None = None
        self._switch_interval = sys.getswitchinterval()
        self._guard_label: str | None = None

    @property
    def replaying(self) -> bool:
        return self.source.commands is None

    # -- layout ---------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield StateBanner(id="banner")
        with Horizontal(id="main"):
            with Vertical(id="plots"):
                yield PressurePlot(id="pressure-plot")
                yield VolumePlot(id="volume-plot")
                yield PressureVolumePlot(id="pv-plot")
            with Vertical(id="side"):
                yield Readouts(id="readouts")
                yield ConnectionPanel(id="connection")
                yield RecordingIndicator(id="recording")
                if self.model.guard is not None:
                    yield FluoroPanel(id="fluoro")
        with Horizontal(id="bottom"):
            yield StopLog(id="stop-log")
            yield PlanPanel(self.model.plan, self._plan_path, self._mixed_ago_s)
        yield self._setup_panel()
        with Horizontal(id="controls"):
            controls: tuple[tuple[str, str, ButtonVariant], ...] = (
                ("arm", "Arm a", "default"),
                ("start", "Start s", "success"),
                ("space", "Pause/Resume \u2423", "default"),
                ("clear", "Clear c", "warning"),
                ("record", "Rec r", "default"),
                ("fluoro_stop", "Fluoro stop f", "error"),
                ("stop('button')", "STOP x", "error"),
            )
            for action, label, variant in controls:
                name = action.split("(")[0]
                yield Button(
                    label, variant=variant, compact=True, classes="control", name=name, action=f"app.{action}"
                )
        yield KeyFooter()

    def on_mount(self) -> None:
        self._main_screen = self.screen
        # The plots are drawn in worker threads; a short GIL switch interval lets the event loop
        # (keys, STOP, the link's heartbeat) take the interpreter back within ~1 ms, not 5 ms.
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(GIL_SWITCH_S)
        # Everything built so far (modules, Textual, the widgets) lives as long as the app: keep it
        # out of the collector's full passes, which otherwise stall the plots' drawing and the
        # event loop for tens of milliseconds (bench/dashboard_redraw.py: p99 57 -> 19 ms).
        gc.freeze()
        if self._mixed_ago_s is not None:
            self.model.mixed_at = self.model.clock() - self._mixed_ago_s
        if isinstance(self.source, LiveSource):
            self.source.on_recorder_error = self._recorder_failed
            self.source.on_failure = self._consumer_failed
        self.run_worker(self._run_source(), name="source", group="source", exit_on_error=False)
        if self._background is not None:
            self.run_worker(
                self._background(self), name="background", group="background", exit_on_error=False
            )
        self.model.on_urgent = self._redraw_soon
        self._handle_quit_signals()
        self.refresh_view()
        self.set_interval(1.0 / self.refresh_hz, self.refresh_view, name="redraw")

    async def _run_source(self) -> None:
        try:
            await self.source.run(self.model)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # shown, never a crash: the controller stops by itself without us
            self.model.on_link("failed", f"the data source failed: {exc!r}")
            self.notify(f"{exc!r}", title="data source failed", severity="error", timeout=30)

    # -- the view -------------------------------------------------------------------------------

    def _redraw_soon(self) -> None:
        """A lost link or a STOP shows at once, not at the next timer tick."""
        self.call_later(self.refresh_view)

    def refresh_view(self) -> None:
        """Redraw what changed. Called on the timer, never per sample."""
        m = self.model
        main = self._main_screen  # not self.screen: a dialog may be on top
        if not main.is_attached or not main.query(StateBanner):
            return  # closing down: the widgets are going
        main.query_one(StateBanner).show(m)
        main.query_one(Readouts).show(m)
        # with a fluoroscopy panel, the link's counters give way to the picture (compact form)
        compact = main.has_class("-short") or m.guard is not None
        main.query_one(ConnectionPanel).show(m, compact=compact)
        main.query_one(RecordingIndicator).show(m)
        self._show_guard(main)
        main.query_one(StopLog).show(m)
        main.query_one(PressurePlot).redraw(m)
        volume, pv = main.query_one(VolumePlot), main.query_one(PressureVolumePlot)
        volume.display, pv.display = not self.pv_plot, self.pv_plot
        (pv if self.pv_plot else volume).redraw(m)
        linked = m.linked
        if linked != self._linked:
            self._linked = linked
            self.refresh_bindings()
        for button in main.query(".control").results(Button):
            name = button.name or ""
            # A button is pressed, not typed: the stop buttons are shown and live in every focus.
            allowed = self.check_action(name, ("button",) if name in STOP_ACTIONS else ())
            button.disabled = not allowed
            button.display = allowed is not False

    def _show_guard(self, main: Any) -> None:
        """The fluoroscopy panel, and a notification (on whatever screen is on top) each time the guard
        goes blind or stops: what it cannot see is said at once, everywhere."""
        view = self.model.guard
        if view is None:
            return
        for panel in main.query(FluoroPanel).results(FluoroPanel):
            panel.show(view)
        if view.label != self._guard_label:
            first = self._guard_label is None
            self._guard_label = view.label
            if view.state != "WATCHING" and not (first and view.label == "BLIND(starting)"):
                self.notify(view.label, title="fluoroscopic guard", severity="error", timeout=10)

    def on_resize(self, event: events.Resize) -> None:
        """The screen's size classes follow the terminal: redraw the panels in their form at once,
        not at the next timer tick."""
        self.call_after_refresh(self.refresh_view)

    # -- which controls are live ----------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in STOP_ACTIONS:
            key = parameters[0] if parameters else "f"
            return not (key in STOP_KEYS and isinstance(self.focused, Input))
        if action in REPLAY_ACTIONS:
            return self.replaying
        if action == "fluoro_views":
            return self._biplane
        if self.replaying:
            return action == "space" or action not in LIVE_ONLY
        if action in LINK_ACTIONS:
            return True if self.model.linked else None
        return True

    # -- help and views ------------------------------------------------------------------------

    def action_pv_plot(self) -> None:
        """v: swap the lower plot between volume over time and pressure against delivered volume."""
        self.pv_plot = not self.pv_plot
        self.refresh_view()

    @property
    def _biplane(self) -> bool:
        """The session's guard has two views (live `--frames-ap`, or a recording that kept both)."""
        return self.model.guard is not None and self.model.guard.biplane

    def action_fluoro_views(self) -> None:
        """b: the fluoroscopy panel shows both views, then the lateral alone, then the AP alone."""
        view = self.model.guard
        if view is None or not view.biplane:
            return
        view.next_shown()
        self.refresh_view()

    def action_help(self) -> None:
        """? or F1: every key of this dashboard (live or replay) and what it does, stops first."""
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_rows()))

    def _setup_panel(self) -> SetupPanel:
        """The setup panel, built with the rest of the screen (hidden until u): showing it is then
        a layout change, not the building of ~90 widgets, which stalled the event loop (and the
        link's heartbeat with it) for 150-400 ms on a loaded machine."""
        source = self.source

        def controller() -> DeviceClient | None:
            return source.controller if isinstance(source, LiveSource) else None

        def keep(metadata: RunMetadata) -> None:
            self.run_metadata = metadata

        return SetupPanel(
            spawn=self.spawn_command,
            controller=controller,
            metadata=self.run_metadata,
            on_metadata=keep,
            on_close=self.action_setup,
        )

    @property
    def setup_open(self) -> bool:
        return bool(self._main_screen.query_one(SetupPanel).display)

    def action_setup(self) -> None:
        """u: the setup panel (syringe, zero, span, prime, jog, withdraw, home, volume calibration,
        run metadata) in place of the plots and the plan, or back. The banner, the controls with
        STOP and the footer stay; x and Escape stop there as everywhere (priority bindings)."""
        if self.replaying:
            return
        main = self._main_screen
        panel = main.query_one(SetupPanel)
        opening = not panel.display
        panel.display = opening
        main.query_one("#main").display = not opening
        main.query_one("#bottom").display = not opening
        if opening:
            panel.opened()
        else:
            if panel.jog_hold is not None:
                panel.jog_hold.quit = True
            main.query_one(StopLog).focus()
        self.refresh_bindings()

    def help_rows(self) -> list[tuple[str, str]]:
        """(keys, what) for each action this dashboard has (replay keys only in a replay, command
        keys only live), from the bindings themselves."""
        triples = []
        for binding in Binding.make_bindings(self.BINDINGS):
            name = binding.action.split("(")[0]
            live_only = name in (*LIVE_ONLY, *STOP_ACTIONS) and name != "space"
            if live_only if self.replaying else name in REPLAY_ACTIONS:
                continue
            if name == "fluoro_views" and not self._biplane:
                continue
            key = self.get_key_display(dataclasses.replace(binding, key_display=None))
            key = {"esc": "Escape", "f1": "F1", "^f": "ctrl+f"}.get(key, key)
            what = "replay: play / pause" if self.replaying and name == "space" else binding.tooltip
            triples.append((key, binding.action, what or binding.description))
            if name == "quit_safely":
                triples.append(("ctrl+q", binding.action, what or binding.description))
        return key_rows(triples)

    # -- stops ----------------------------------------------------------------------------------

    def action_stop(self, key: str = "x") -> None:
        self.fire_stop(StopSource.OPERATOR, f"dashboard key {key}")

    def action_fluoro_stop(self, key: str = "f") -> None:
        self.fire_stop(StopSource.FLUORO_OPERATOR, f"dashboard key {key}")

    def fire_stop(self, source: StopSource, origin: str) -> asyncio.Task[Any] | None:
        """Send STOP now, as its own task; note its origin for the latency record. Tried whatever the
        view says about the link (it may lag the link by a moment); a link that is down makes it a
        notification (the controller has stopped by itself then: HOST_LOST)."""
        t = time.perf_counter()
        commands = self.source.commands
        if commands is None:
            self.notify("a replay cannot be stopped", severity="warning")
            return None
        self.source.stops.requested(source, origin, t)
        return self.spawn_command(commands.stop(source), "STOP")

    # -- commands -------------------------------------------------------------------------------

    def spawn_command(self, command: Awaitable[T], what: str) -> asyncio.Task[T | None]:
        """Run `command` as its own task, never awaited by a handler: a NAK, a lost link or another
        failure becomes a notification titled with `what` (the setup panel's actions run here too)."""
        task = asyncio.get_running_loop().create_task(self._command(command, what))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _command(self, command: Awaitable[T], what: str) -> T | None:
        try:
            return await command
        except CommandRefused as exc:
            self.notify(str(exc), title=f"{what} refused", severity="warning", timeout=8)
        except LinkLost as exc:
            hint = (
                "\nthe controller stops by itself when its host is gone (HOST_LOST)" if what == "STOP" else ""
            )
            self.notify(f"{exc}{hint}", title=f"{what} not sent", severity="error", timeout=8)
        except CementguardError as exc:
            self.notify(str(exc), title=f"{what} failed", severity="error", timeout=8)
        return None

    def action_arm(self) -> None:
        commands = self.source.commands
        if commands is None:
            return
        plan = self.model.plan
        if plan is None or self.plan_errors:
            problems = "\n".join(self.plan_errors) or "no plan"
            self.notify(problems, title="cannot arm: fix the plan", severity="error")
            return
        if self.model.mixed_at is None:
            what = "enter the cement's age (mixed ago, s) in the plan panel"
            self.notify(what, title="cannot arm", severity="error")
            return
        age = self.model.clock() - self.model.mixed_at

        async def arm() -> None:
            warnings = await commands.arm(plan, age)
            for warning in warnings:
                self.notify(warning, title="clamped to the device", severity="warning", timeout=10)

        self.spawn_command(arm(), "ARM")

    def action_start(self) -> None:
        if self.source.commands is None:
            return
        if self.recorder is not None:
            problem = free_space_problem(self.recorder.path)
            if problem is not None:  # refused before START, not a recording that dies half-way
                log.warning("START refused: %s", problem)
                self.notify(problem, title="START refused", severity="error", timeout=12)
                return
        self.spawn_command(self.source.commands.start(), "START")

    def action_space(self) -> None:
        if self.replaying:
            toggle = getattr(self.source, "toggle", None)
            if toggle is not None:
                toggle()
            return
        commands = self.source.commands
        assert commands is not None
        if self.model.state == State.INJECTING:
            self.spawn_command(commands.pause(), "PAUSE")
        elif self.model.state == State.PAUSED:
            self.spawn_command(commands.resume(), "RESUME")
        else:
            self.notify(f"nothing to pause or resume: the controller is {state_name(self.model)}", timeout=4)

    def action_clear(self) -> None:
        commands = self.source.commands
        if commands is None:
            return
        what = f"It is {state_name(self.model)}."

        def answered(yes: bool | None) -> None:
            if yes:
                self.spawn_command(commands.clear(), "CLEAR")

        self.push_screen(ConfirmClear(what), answered)

    async def action_quit(self) -> None:
        """Textual's own quit key (ctrl+q, and what its ctrl+c hint names) quits as q does: it
        must not leave a moving plunger to the watchdog's HOST_LOST."""
        self.action_quit_safely("ctrl+q")

    def action_quit_safely(self, key: str = "q") -> None:
        """q: while the plunger may move, ask first (quitting stops the injection); then STOP
        first and quit. The STOP keys work inside the question too."""
        if self._quitting or isinstance(self.screen, ConfirmQuit):
            return
        live = self.source.commands is not None and self.model.linked
        armed = live and self.model.state == State.ARMED
        if not (live and self.model.state in MOVING_STATES) and not armed:
            self.quit_safely(f"dashboard key {key}")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.quit_safely(f"dashboard key {key}", disarm=armed)

        dialog = ConfirmDisarmQuit if armed else ConfirmQuit
        self.push_screen(dialog(f"The controller is {state_name(self.model)}."), answered)

    def exit_report(self) -> str:
        """What the session ended with, for the terminal once the app has exited."""
        return exit_report(self.model, self.exit_notes)

    def quit_safely(self, origin: str, *, disarm: bool = False) -> None:
        """STOP (noted with `origin`) first when the plunger is (or may be about to be) moving,
        wait for its acknowledgement (at most QUIT_STOP_TIMEOUT_S), close the recording, exit.
        With `disarm` (q answered yes while ARMED), CLEAR first instead: an armed plan left behind
        could be started by anyone while no one watches this dashboard."""
        if self._quitting:
            return
        self._quitting = True
        commands = self.source.commands
        if disarm and commands is not None and self.model.linked and self.model.state == State.ARMED:

            async def disarm_then_quit() -> None:
                try:
                    await asyncio.wait_for(commands.clear(), QUIT_STOP_TIMEOUT_S)
                    self.exit_notes.disarm = "acknowledged"
                except TimeoutError:
                    self.exit_notes.disarm = f"not acknowledged within {QUIT_STOP_TIMEOUT_S:g} s"
                except CementguardError as exc:
                    self.exit_notes.disarm = f"not done: {exc}"
                await self._close_recorder(tail=not self._hung_up)
                self._leave()

            self.notify("disarming before quitting", severity="warning")
            asyncio.get_running_loop().create_task(disarm_then_quit())
            return
        if commands is not None and self.model.linked and self.model.state in MOVING_STATES:
            self.source.stops.requested(StopSource.OPERATOR, origin)

            async def stop_then_quit() -> None:
                try:
                    await asyncio.wait_for(commands.stop(StopSource.OPERATOR), QUIT_STOP_TIMEOUT_S)
                    self.exit_notes.stop = "acknowledged"
                except TimeoutError:
                    self.exit_notes.stop = (
                        f"not acknowledged within {QUIT_STOP_TIMEOUT_S:g} s"
                        " (the controller stops by itself when its host is gone: HOST_LOST)"
                    )
                except CementguardError as exc:
                    self.exit_notes.stop = f"not sent: {exc} (the controller stops by itself: HOST_LOST)"
                await self._close_recorder(tail=not self._hung_up)
                self._leave()

            self.notify("stopping before quitting", severity="warning")
            asyncio.get_running_loop().create_task(stop_then_quit())
            return

        async def quit_now() -> None:
            await self._close_recorder(tail=not self._hung_up)
            self._leave()

        asyncio.get_running_loop().create_task(quit_now())

    def _leave(self) -> None:
        """Exit, the STOP and the recording done. Textual's teardown restores the terminal; once
        the terminal has hung up there is none to restore, and the teardown would block writing
        to it (its writer thread died of EIO): the process ends at once instead."""
        if self._hung_up:
            os._exit(0)
        self.exit(0)

    # -- signals --------------------------------------------------------------------------------

    def _handle_quit_signals(self) -> None:
        """SIGTERM and SIGHUP quit safely, from this app's event loop (Textual runs on asyncio)."""
        loop = asyncio.get_running_loop()
        for sig in QUIT_SIGNALS:
            previous = signal.getsignal(sig)
            try:
                loop.add_signal_handler(sig, self.signalled, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no signals
                continue
            self._signal_handlers[sig] = previous

    def _restore_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig, previous in self._signal_handlers.items():
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._signal_handlers.clear()

    def signalled(self, sig: signal.Signals) -> None:
        """SIGTERM or SIGHUP: quit as q does, the stop noted as "dashboard signal <name>"."""
        if sig == signal.SIGHUP and not self.is_headless and terminal_hung_up():
            self._terminal_gone()
        self.quit_safely(f"dashboard signal {sig.name}")

    def _terminal_gone(self) -> None:
        """The terminal hung up: every write to it now fails (EIO), which kills Textual's writer
        thread (often before this runs: the kernel signals as it hangs up), and the event loop
        then blocks on the writer's full queue, 30 writes later. Point the output at /dev/null,
        so that a writer still alive lives on, and bound the time to the exit (HANGUP_EXIT_S)
        whatever blocks: the STOP is sent within QUIT_STOP_TIMEOUT_S before it."""
        if self._hung_up:
            return
        self._hung_up = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in (1, 2):
                os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        timer = threading.Timer(HANGUP_EXIT_S, os._exit, (0,))
        timer.daemon = True
        timer.start()

    # -- recording ------------------------------------------------------------------------------

    def action_record(self) -> None:
        if self.replaying or not isinstance(self.source, LiveSource):
            return
        if self.recorder is not None:
            self.spawn_command(self._close_recorder(), "recording")
        else:
            self.spawn_command(self._open_recorder(self.source), "recording")

    async def _open_recorder(self, source: LiveSource) -> None:
        model = self.model
        plan = model.plan
        metadata = self.run_metadata
        label = folder_label(metadata, plan.name if plan else "dashboard")
        ctl = source.controller
        device = model.device if isinstance(model.device, DeviceInfoRecord) else None
        counters = (lambda: ctl.counters) if ctl is not None else None
        setup = device_setup_json(ctl.syringe, ctl.calibration) if ctl is not None else None
        try:
            recorder = await open_recorder(
                new_run_dir(self.record_root, label),
                plan,
                device,
                extra={
                    "port": source.url,
                    "from": "dashboard",
                    "device_setup": setup,
                    "run_metadata": metadata.record(),
                },
                counters_source=counters,
            )
        except OSError as exc:
            log.error("cannot record under %s: %s", self.record_root, exc)
            self.notify(f"cannot record under {self.record_root}: {exc}", severity="error")
            return
        self._log_file = attach_log_file(recorder.path / LOG_FILE)
        log.info("recording to %s", recorder.path)
        self.recorder = recorder
        source.recorder = recorder
        model.recording = str(recorder.path)
        model.touch()

    async def _close_recorder(self, tail: bool = True) -> None:
        """Close the recording, after its tail (`host.recording_sink`: the relief and after-flow after
        the last stop, while connected), and say whether it was saved or failed. Without `tail` at
        once: the app is being torn down, or its terminal hung up (every redraw during a tail could
        then block the loop on Textual's dead writer before the recording is closed)."""
        recorder = self.recorder
        if recorder is None:
            return
        if tail and isinstance(self.source, LiveSource) and self.source.sink is not None:
            with contextlib.suppress(Exception):
                await self.source.sink.keep_tail(self.source.options.time_scale)
        if self.recorder is not recorder:  # closed meanwhile
            return
        self.recorder = None
        if isinstance(self.source, LiveSource):
            self.source.recorder = None
        self.model.recording = None
        self.model.touch()
        failed = await close_recorder(recorder)
        self.exit_notes.recording = str(recorder.path)
        self.exit_notes.recording_problem = None if failed is None else str(failed)
        if failed is not None:
            self.notify(f"{recorder.path}: {failed}", title="recording failed", severity="error", timeout=30)
        else:
            self.notify(f"recording saved: {recorder.path}", timeout=6)
        self._detach_log_file()

    def _detach_log_file(self) -> None:
        handler, self._log_file = self._log_file, None
        if handler is not None:
            detach_log_file(handler)

    def _recorder_failed(self, exc: Exception) -> None:
        """The pump took the failed recorder out: say so, and stop the injection (the pump's one
        policy: an injection is not left running unrecorded without the operator knowing why)."""
        recorder, self.recorder = self.recorder, None
        self.model.recording = None
        self.model.touch()
        if recorder is not None:
            self.spawn_command(close_recorder(recorder, f"failed: {exc!r}"), "recording")
            self.exit_notes.recording, self.exit_notes.recording_problem = str(recorder.path), str(exc)
        self._detach_log_file()
        commands = self.source.commands
        stopping = commands is not None and self.model.linked and self.model.state in RECORD_STOPS
        log.error("recording failed: %s%s", exc, "; stopping the injection" if stopping else "")
        self.notify(
            f"{exc}" + ("\nthe injection is stopped" if stopping else ""),
            title="recording failed",
            severity="error",
            timeout=30,
        )
        if stopping and commands is not None:
            self.source.stops.requested(StopSource.OPERATOR, "dashboard: recording failed")
            self.spawn_command(commands.stop(StopSource.OPERATOR), "STOP")

    def _consumer_failed(self, failure: ConsumerFailure) -> None:
        self.notify(str(failure), title="dashboard component failed", severity="error", timeout=30)

    # -- replay ---------------------------------------------------------------------------------

    def action_seek(self, delta_s: float) -> None:
        seek = getattr(self.source, "seek", None)
        if seek is not None:
            seek(float(delta_s))

    def action_seek_to(self, position_s: float) -> None:
        seek_to = getattr(self.source, "seek_to", None)
        if seek_to is not None:
            seek_to(float(position_s))

    def action_speed(self, factor: float) -> None:
        faster = getattr(self.source, "faster", None)
        if faster is not None:
            faster(float(factor))

    # -- events from widgets --------------------------------------------------------------------

    def on_plan_panel_changed(self, message: PlanPanel.Changed) -> None:
        loaded = message.plan is not None or message.errors
        self.plan_errors = message.errors if loaded else ["no plan loaded"]
        if message.plan is not None:
            self.model.set_plan(message.plan, message.source)
        if message.mixed_ago_s != self._mixed_ago_s:  # a new age typed: the mixing time moves
            self._mixed_ago_s = message.mixed_ago_s
            age = message.mixed_ago_s
            self.model.mixed_at = None if age is None else self.model.clock() - age
            self.model.touch()

    async def on_unmount(self) -> None:
        self._restore_signal_handlers()
        sys.setswitchinterval(self._switch_interval)
        gc.unfreeze()
        await self._close_recorder(tail=False)
