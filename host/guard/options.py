"""`--frames URL`, `--frames-ap URL` and the `--guard-*` options: one definition for every command
that runs the guard (`cementguard run`, the dashboard). Ranges come from host/guard/config.py
(`RANGES`), so a bound is written once; a bad value is a usage error naming the option, the value and
the range.

Biplane on the bench: `--frames` is the lateral view's source, `--frames-ap` the AP view's (a second
grabber, or the simulator's `--frames-out-ap`); both are guarded, each by its own guard, and either
stops the pump (host/guard/biplane.py). The two must be on one clock: sim:// frames are stamped with
the controller's clock, a grabber's, a file's or a folder's with the host's, and a pair of one of each
is refused (a simulated view beside a real one is no biplane picture of one vertebra)."""

from __future__ import annotations

import argparse
import importlib
import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from host.cli_types import finite_float
from host.guard.config import BLIND_POLICIES, RANGES, GuardConfig

if TYPE_CHECKING:
    from host.guard.region import BodyRegion

__all__ = ["GuardSetup", "add_guard_arguments", "check_pair", "guard_setup"]

READY_TIMEOUT = finite_float("--guard-ready-timeout", 1.0, 600.0, "s")

_NUMBERS = {
    "posterior_fraction": "the posterior-quarter line, as a fraction of the AP depth from the anterior wall",
    "max_frame_gap_s": "blind when no frame came for this long",
    "confirm_frames": "consecutive frames a rule must hold on before the guard stops",
    "baseline_frames": "pre-injection frames averaged into the baseline",
    "max_shift_mm": "blind (outline lost) when the image moved more than this",
}


@dataclass(frozen=True)
class GuardSetup:
    """What a command needs to run the guard: where the frames come from, and how to judge them."""

    frames_url: str
    config: GuardConfig
    region: BodyRegion | None = None
    ready_timeout_s: float = 30.0
    """START waits this long for the guard to be WATCHING (baseline learned); else nothing starts."""
    ap_url: str | None = None
    """The AP view's own source (`--frames-ap`): biplane, `frames_url` is then the lateral view's."""

    def __post_init__(self) -> None:
        if self.ap_url is not None:
            check_pair(self.frames_url, self.ap_url)

    @property
    def views(self) -> tuple[str, ...]:
        """The views with a source of their own: ("lateral", "ap") with `--frames-ap`, else
        ("lateral",) (one source; a simulator stream may still carry both, alternating)."""
        return ("lateral", "ap") if self.ap_url is not None else ("lateral",)


def _clock_of(url: str) -> str | None:
    """'device' for sim:// (the controller's clock), None for mem:// (in-process: whatever the
    producer stamps), 'host' for a grabber, a video file or a folder."""
    if url.startswith("sim://"):
        return "device"
    if url.startswith("mem://"):
        return None
    return "host"


def check_pair(lateral: str, ap: str) -> None:
    """ValueError naming --frames-ap when the two sources cannot be one biplane picture."""
    if ap == lateral:
        raise ValueError(f"--frames-ap {ap}: the same source as --frames; allowed a second source (AP view)")
    clocks = (_clock_of(lateral), _clock_of(ap))
    if None not in clocks and clocks[0] != clocks[1]:
        raise ValueError(
            f"--frames-ap {ap}: its frames are stamped with the {clocks[1]}'s clock, --frames {lateral}'s "
            f"with the {clocks[0]}'s; allowed two sources on one clock (both sim://, or both real)"
        )


def _region(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    if len(parts) != 4:
        raise argparse.ArgumentTypeError(f"{text!r} is not X0,Y0,X1,Y1 (four numbers, pixels)")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not X0,Y0,X1,Y1 (four numbers, pixels)") from None
    if not all(math.isfinite(v) and 0 <= v <= 4096 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: every coordinate must be a finite 0..4096 px")
    return values[0], values[1], values[2], values[3]


def add_guard_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "fluoroscopic guard", "watch the fluoroscopy image and stop the pump from it (docs/fluoroscopy.md)"
    )
    group.add_argument(
        "--frames",
        metavar="URL",
        help="frame source: sim://..., /dev/videoN, a video file, or a folder of DICOM/PNG frames "
        "(the lateral view with --frames-ap)",
    )
    group.add_argument(
        "--frames-ap",
        metavar="URL",
        help="biplane: the AP view's own source (as --frames; sim:// from `cementguard sim "
        "--frames-out-ap`); both views are guarded and either stops the pump",
    )
    defaults = GuardConfig()
    for name, help_text in _NUMBERS.items():
        check = RANGES[name]
        option = "--guard-" + name.removesuffix("_s").replace("_", "-")
        group.add_argument(
            option,
            dest=f"guard_{name}",
            type=check,
            default=getattr(defaults, name),
            metavar="N",
            help=f"{help_text} (default %(default)s; {check.allowed})",
        )
    group.add_argument(
        "--guard-blind-stop",
        choices=BLIND_POLICIES,
        default=defaults.blind_stop,
        help="when a blind guard stops the pump: while injecting (default), also armed/paused, or never",
    )
    group.add_argument(
        "--guard-posterior",
        choices=("left", "right"),
        default=defaults.posterior,
        help="lateral view: the image side of the posterior wall (default %(default)s)",
    )
    group.add_argument(
        "--guard-region",
        type=_region,
        metavar="X0,Y0,X1,Y1",
        help="the vertebral body as a rectangle in pixels, in the lateral view (default: found in the "
        "pre-cement frames; the AP view's always is)",
    )
    group.add_argument(
        "--guard-rules",
        default=",".join(sorted(defaults.rules)),
        help="rules in force, comma-separated (default %(default)s)",
    )
    group.add_argument(
        "--guard-ready-timeout",
        type=READY_TIMEOUT,
        default=30.0,
        metavar="S",
        help=f"how long START waits for the guard to watch (default %(default)s; {READY_TIMEOUT.allowed})",
    )


def guard_setup(args: argparse.Namespace) -> GuardSetup | None:
    """The guard the options ask for, or None without --frames. ValueError names a bad option."""
    ap_url = getattr(args, "frames_ap", None)
    if not getattr(args, "frames", None):
        if ap_url:
            raise ValueError(f"--frames-ap {ap_url}: needs --frames URL (the lateral view's source)")
        return None
    rules = frozenset(r.strip() for r in args.guard_rules.split(",") if r.strip())
    config = replace(
        GuardConfig(),
        **{name: getattr(args, f"guard_{name}") for name in _NUMBERS},
        blind_stop=args.guard_blind_stop,
        posterior=args.guard_posterior,
        rules=rules,
    )
    region = None
    if args.guard_region is not None:
        from host.guard.region import BodyRegion  # opencv: only when a guard is asked for

        x0, y0, x1, y1 = args.guard_region
        region = BodyRegion.rectangle(x0, y0, x1, y1, posterior=args.guard_posterior)
    return GuardSetup(args.frames, config, region, args.guard_ready_timeout, ap_url or None)


def load_guard_modules() -> None:
    """Import the guard's modules (opencv, the frame sources, the worker: `host.guard_feed`) before a
    session opens. Imported once a session runs, even in a worker thread, they hold the GIL for
    ~0.3 s of a loaded 2-core machine's wall time (0.7-1.4 s on the event loop itself), long enough
    for the device's watchdog to end the session (docs/design.md, "Heartbeat and a stalled event
    loop"). Kept out of this module's imports: opencv is loaded only by a run that watches frames."""
    importlib.import_module("host.guard_feed")
