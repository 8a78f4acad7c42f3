"""Argparse types for numeric options: finite, bounded, refused with a usage error that says why.

Every duration, rate and scale option of every command goes through `finite_float` (and counts
through `bounded_int`), so that `--auto-resume nan`, `--auto-resume -1` or `--time-scale 0` is
refused by the parser (exit 2, "argument --auto-resume: nan is not a finite number; allowed
0.1..3600 s") instead of reaching code that would sleep a negative time (and skip the imaging
pause) or divide by zero. argparse puts the option's name in front of the message; `check` gives
the same message with the name for values that come from code rather than the command line.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

__all__ = ["BoundedInt", "FiniteFloat", "bounded_int", "finite_float"]


def _fmt(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class FiniteFloat:
    """An argparse ``type=``: a finite float in [minimum, maximum] (`unit` is shown in the message)."""

    name: str
    minimum: float
    maximum: float
    unit: str = ""

    def __post_init__(self) -> None:
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum) and self.minimum <= self.maximum):
            raise ValueError(f"{self.name}: bad range {self.minimum}..{self.maximum}")

    @property
    def allowed(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"allowed {_fmt(self.minimum)}..{_fmt(self.maximum)}{unit}"

    def __call__(self, text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; {self.allowed}") from None
        return self._in_range(value, text)

    def _in_range(self, value: float, shown: str) -> float:
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{shown} is not a finite number; {self.allowed}")
        if not self.minimum <= value <= self.maximum:
            raise argparse.ArgumentTypeError(f"{shown} is outside the range; {self.allowed}")
        return value

    def check(self, value: float) -> float:
        """The same test for a value given in code: ValueError naming the option, value and range."""
        try:
            return self._in_range(float(value), str(value))
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{self.name}: {exc}") from None


@dataclass(frozen=True)
class BoundedInt:
    """An argparse ``type=``: an integer in [minimum, maximum]."""

    name: str
    minimum: int
    maximum: int
    unit: str = ""

    @property
    def allowed(self) -> str:
        unit = f" {self.unit}" if self.unit else ""
        return f"allowed {self.minimum}..{self.maximum}{unit}"

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; {self.allowed}") from None
        if not self.minimum <= value <= self.maximum:
            raise argparse.ArgumentTypeError(f"{value} is outside the range; {self.allowed}")
        return value

    def check(self, value: int) -> int:
        """The same test for a value given in code: ValueError naming the option, value and range
        (a bool or a float is not an integer here, even 3.0)."""
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{self.name}: {value!r} is not an integer; {self.allowed}")
        if not self.minimum <= value <= self.maximum:
            raise ValueError(f"{self.name}: {value} is outside the range; {self.allowed}")
        return value


def finite_float(name: str, minimum: float, maximum: float, unit: str = "") -> FiniteFloat:
    """The argparse type for option `name`: finite floats in [minimum, maximum]."""
    return FiniteFloat(name, float(minimum), float(maximum), unit)


def bounded_int(name: str, minimum: int, maximum: int, unit: str = "") -> BoundedInt:
    """The argparse type for option `name`: integers in [minimum, maximum]."""
    return BoundedInt(name, minimum, maximum, unit)


# The shared ranges: one definition per quantity, used by every command that takes it.
TIME_SCALE = finite_float("--time-scale", 1.0, 100.0, "x")
"""Simulated seconds per wall second; the simulator accepts 1..100, and the host must use the same."""
MIXED_AGO = finite_float("--mixed-ago", 0.0, 7200.0, "s")
"""Age of the cement at arm time (a plan's working time is well below two hours)."""
AUTO_RESUME = finite_float("--auto-resume", 0.1, 3600.0, "s")
"""Length of each unattended imaging pause; never 0, negative or NaN (that would skip the pause)."""
REPLAY_SPEED = finite_float("--speed", 0.25, 64.0, "x")
"""Replay speeds the dashboard offers (host.dashboard.replay.SPEEDS spans the same range)."""
BORE_MM = finite_float("--bore-mm", 2.0, 40.0, "mm")
"""Syringe inner diameter: the reference device's range (SPEC §7.8, ARM check 5)."""
VOLUME_ML = finite_float("--volume-ml", 0.001, 100.0, "mL")
"""A volume to move (prime, withdraw); the device refuses more than its stroke holds, naming that volume."""
FLOW_ML_MIN = finite_float("--flow-ml-min", 0.01, 10.0, "mL/min")
"""A flow: up to the reference device's max_flow_nl_s (10 mL/min); it clamps to what the syringe allows."""


CONFIG_HELP = "settings file (default: $CEMENTGUARD_CONFIG or ./cementguard.toml)"
"""`--config` of every command that reads host.settings (run, status, bridge)."""


# Exit codes shared by every command (README, "Exit codes"): one convention for bad input.
EXIT_OK = 0
EXIT_FAILED = 1
"""The command ran and failed at its job: an output it could not write, a HIL scenario that failed."""
EXIT_USAGE = 2
"""Bad input, as argparse's own usage errors: an option, a settings or plan file, or a path that is not
a recording (export, plot, report, replay), refused before anything is done."""


RECORD_TAIL = finite_float("--record-tail", 0.0, 600.0, "s")
"""Device seconds a recording stays open after the last stop or DONE (run, dashboard)."""
DEFAULT_TAIL_S = 6.0
"""Its default. Relief backs the plunger off within about a second and the after-flow settles within a
few (docs/controller.md); 6 s covers both with a margin, and is above the 5 s the recording format
promises (host.recording_sink uses the same value)."""


def add_time_scale(parser: argparse.ArgumentParser, default: float = 1.0, what: str | None = None) -> None:
    """`--time-scale`, defined once for every command that talks to a simulator (run, dashboard,
    bridge, hil run)."""
    text = what or "the simulator's --time-scale, if any"
    parser.add_argument(
        "--time-scale", type=TIME_SCALE, default=default, help=f"{text} ({TIME_SCALE.allowed})"
    )


def add_record_tail(parser: argparse.ArgumentParser) -> None:
    """`--record-tail`, defined once for the commands that record (run, dashboard)."""
    parser.add_argument(
        "--record-tail",
        type=RECORD_TAIL,
        default=DEFAULT_TAIL_S,
        metavar="S",
        help="device seconds the recording stays open after the last stop or DONE, to record the relief "
        f"and the after-flow (default %(default)s; {RECORD_TAIL.allowed})",
    )
