"""What the dashboard's setup panel asks of the controller: syringe, zero, span, prime, jog,
withdraw, home, volume calibration, each as one coroutine on a connected `DeviceClient`.

They use the client's own methods (the same ones `cementguard syringe|zero|calibrate|prime|
withdraw|home|jog` use) and say what happened in the words those commands print
(`host.setup_cmds.describe_*`, `host.motion_cmds.moved_text`). The panel runs each as its own task
(`DashboardApp.spawn_command`), so neither the UI nor the link waits on it, and a NAK reaches the
operator as a notification naming the field, the value and the range (`host.errors.describe_nak`).
A movement reports its progress from MOTION_STATUS (`show`) until its end; a jog repeats JOG while
the key is held, by the one rule of `host.motion_cmds` (`JogHold.press`, `hold_to_move`).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from host.cli_types import FiniteFloat
from host.errors import CementguardError
from host.motion_cmds import SETTLE_S, JogHold, hold_to_move, moved_text
from host.setup_cmds import describe_calibration, describe_syringe
from protocol import State

if TYPE_CHECKING:
    from host.client import DeviceClient
    from protocol.messages import MotionStatus, SetSyringe

log = logging.getLogger(__name__)

POLL_S = 0.25
"""GET_MOTION cadence while a movement runs: the progress line's refresh."""

Show = Callable[[str], None]


class SetupFieldError(CementguardError):
    """A setup field that is not a number in its range: names the field, the value and the range."""


def field_value(spec: FiniteFloat, label: str, text: str) -> float:
    """The number typed in a setup field, checked as the CLI checks the same option (the range is
    defined once, in host.cli_types or host.setup_cmds); the error names the field as the panel
    labels it."""
    checker = dataclasses.replace(spec, name=label)
    try:
        return checker(text.strip())
    except argparse.ArgumentTypeError as exc:
        raise SetupFieldError(f"{label}: {exc}") from None


def describe_motion(motion: MotionStatus) -> str:
    """The progress line: the state, what the movement did so far, where the plunger is."""
    try:
        name = State(int(motion.state)).name
    except ValueError:  # a state this host does not know
        name = f"state {int(motion.state)}"
    return f"{name}: {moved_text(motion)}; plunger at {motion.plunger_um / 1000:.2f} mm from home"


async def set_syringe(ctl: DeviceClient, command: SetSyringe) -> str:
    return describe_syringe(await ctl.set_syringe(command)) + " (in force)"


async def zero(ctl: DeviceClient) -> str:
    info = await ctl.zero()
    return f"zeroed: offset {info.zero_offset_pa / 1000:+.1f} kPa from the factory zero"


async def span(ctl: DeviceClient, reference_kpa: float) -> str:
    info = await ctl.calibrate_span(reference_pa=round(reference_kpa * 1000.0))
    return f"span calibrated: gain {info.span_gain_ppm / 1e6:.6f} at {reference_kpa:g} kPa"


async def calibrate_volume(ctl: DeviceClient, nominal_ml: float, mass_g: float, density_g_ml: float) -> str:
    info = await ctl.calibrate_volume(
        nominal_nl=round(nominal_ml * 1e6),
        mass_ug=round(mass_g * 1e6),
        density_mg_l=round(density_g_ml * 1e6),
    )
    return f"volume calibrated: factor {info.volume_factor_ppm / 1e6:.6f}"


async def calibration(ctl: DeviceClient) -> str:
    syringe, cal = await ctl.get_calibration()
    return describe_syringe(syringe) + "\n" + describe_calibration(cal)


async def movement(
    ctl: DeviceClient,
    what: str,
    start: Callable[[DeviceClient], Awaitable[MotionStatus]],
    expected_s: float,
    show: Show,
) -> str:
    """Start a movement (PRIME, WITHDRAW, HOME), show its MOTION_STATUS every POLL_S until it ends,
    then say how it ended: done, or the stop that ended it (latched: c clears). A movement that
    outlasts `expected_s` plus SETTLE_S is stopped, as the CLI does."""
    motion = await start(ctl)
    show(describe_motion(motion))
    ended = asyncio.ensure_future(ctl.wait_for_motion_end(timeout=expected_s + SETTLE_S))
    try:
        while not ended.done():
            await asyncio.wait({ended}, timeout=POLL_S)
            if not ended.done():
                show(describe_motion(await ctl.get_motion()))
        ended.result()
    except TimeoutError:
        await ctl.stop()
        raise CementguardError(
            f"{what} did not end within {expected_s + SETTLE_S:.0f} s: stopped (latched)"
        ) from None
    finally:
        ended.cancel()
    return await _ended(ctl, what)


async def _ended(ctl: DeviceClient, what: str) -> str:
    motion = await ctl.get_motion()
    status = await ctl.get_status()
    where = f"plunger at {motion.plunger_um / 1000:.2f} mm from home"
    if status.state != State.IDLE:
        reason = getattr(status.stop_reason, "name", status.stop_reason)
        source = getattr(status.stop_source, "name", status.stop_source)
        after = f"after {moved_text(motion)}; {where}; c clears"
        return f"{what} ended by a stop: {reason} (source {source}) {after}"
    return f"{what} done: {moved_text(motion)}; {where}"


async def jog(
    ctl: DeviceClient, speed_um_s: int, hold: JogHold, show: Show, clock: Callable[[], float] = time.monotonic
) -> str:
    """JOG while `hold` says a key is held (`hold.once`: until its release), then wait for the
    device to bring the plunger to rest (it does within one grant by itself) and say where it is.
    A refusal (a STOP latched meanwhile, a forward jog too fast) ends it and is raised. `clock` is
    the one the key presses were noted on."""

    def report(direction: int) -> None:
        if direction:
            show(f"JOGGING {'forward' if direction > 0 else 'backward'} at {speed_um_s / 1000:.3f} mm/s")
        else:
            show("released: the device brings the plunger to rest by itself")

    _sent, refused = await hold_to_move(ctl, speed_um_s, hold, clock=clock, report=report)
    await ctl.wait_for_motion_end(timeout=SETTLE_S)
    if refused is not None:
        raise CementguardError(refused)
    return await _ended(ctl, "jog")


__all__ = [
    "SetupFieldError",
    "calibrate_volume",
    "calibration",
    "describe_motion",
    "field_value",
    "jog",
    "movement",
    "set_syringe",
    "span",
    "zero",
]
