"""`cementguard syringe`, `zero` and `calibrate`: set up the pump before a run (protocol/SPEC.md
§5.17-§5.23).

    cementguard syringe list                               # the library (no device needed)
    cementguard syringe select 2.5ml --port /dev/ttyUSB0   # by name
    cementguard syringe custom --port P --bore-mm 9.5 --stroke-mm 50 --max-pressure-kpa 4000
    cementguard syringe show --port P                      # what the device has in force
    cementguard zero --port P                              # line open to the air, plunger at rest
    cementguard calibrate span --port P --reference-kpa 2000
    cementguard calibrate volume --port P --mass-g 1.0183 --density-g-ml 0.998203   # after a prime
    cementguard calibrate show --port P

Each option is checked here (finite, in range: host.cli_types, exit 2 naming the option, the value
and the range); the device then checks everything against its own limits and refuses, changing
nothing, what it cannot take (the NAK names the field and the bound, or carries the reading). All of
them need the controller IDLE with the plunger at rest. The dates are the host's UTC clock.

They open the port themselves; a port held by another session (run, dashboard, bridge) is refused
with its holder's name. Exit codes: 0 done; 1 refused by the device; 4 no device reached.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from host.cli_types import finite_float
from host.errors import CementguardError, CommandRefused
from host.port_lock import PortBusy
from host.syringes import LIBRARY, NAME_MAX, UnknownSyringeError, find

if TYPE_CHECKING:
    from host.client import DeviceClient
    from protocol.messages import CalibrationInfo, MotionStatus, SyringeInfo

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_LINK = 4
EPILOG = "exit codes: 0 done; 1 refused by the device; 4 no device reached"

BORE = finite_float("--bore-mm", 2.0, 40.0, "mm")
"""Syringe inner diameter: the range every device of this protocol accepts (SPEC §7.8)."""
STROKE = finite_float("--stroke-mm", 5.0, 1000.0, "mm")
"""Plunger travel full to empty; the device refuses more than its own drive's travel (detail)."""
DEAD_VOLUME = finite_float("--dead-volume-ml", 0.0, 100.0, "mL")
MAX_PRESSURE = finite_float("--max-pressure-kpa", 1.0, 100_000.0, "kPa")
"""The syringe's rating; the device refuses more than its own ceiling (detail = its max_pressure)."""
REFERENCE = finite_float("--reference-kpa", 1.0, 100_000.0, "kPa")
NOMINAL = finite_float("--nominal-ml", 0.001, 1000.0, "mL")
"""The volume the device counted (a prime's primed volume); the device takes 0.1-100 mL."""
MASS = finite_float("--mass-g", 1e-6, 4294.0, "g")
"""The balance's reading: µg on the wire (u32, so at most 4294 g)."""
DENSITY = finite_float("--density-g-ml", 0.1, 10.0, "g/mL")
"""Water at 20 °C: 0.998203 g/mL; the device takes 0.5-3 g/mL."""


def syringe_name(text: str) -> str:
    """argparse type of --name: 1-16 printable ASCII characters (SET_SYRINGE.name)."""
    allowed = f"allowed 1..{NAME_MAX} printable ASCII characters"
    if not 1 <= len(text) <= NAME_MAX or not all(" " <= ch <= "~" for ch in text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a syringe name; {allowed}")
    return text


def add_parsers(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("syringe", help="list, select or show the syringe", epilog=EPILOG)
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sub.add_parser("list", help="the syringe library (no device needed)").set_defaults(func=_list)
    s = sub.add_parser("select", help="select a library syringe by name", epilog=EPILOG)
    s.add_argument("name", help=f"one of {', '.join(x.name for x in LIBRARY)} ('2.5 mL' works too)")
    _port(s).set_defaults(func=_select)
    c = sub.add_parser("custom", help="select a syringe by its dimensions", epilog=EPILOG)
    _port(c)
    c.add_argument("--name", type=syringe_name, default="custom", help="its name (default 'custom')")
    c.add_argument("--bore-mm", type=BORE, required=True, help=f"inner diameter ({BORE.allowed})")
    c.add_argument("--stroke-mm", type=STROKE, required=True, help=f"travel full to empty ({STROKE.allowed})")
    c.add_argument(
        "--dead-volume-ml", type=DEAD_VOLUME, default=0.0, help=f"hub and nozzle ({DEAD_VOLUME.allowed})"
    )
    c.add_argument(
        "--max-pressure-kpa", type=MAX_PRESSURE, required=True, help=f"its rating ({MAX_PRESSURE.allowed})"
    )
    c.set_defaults(func=_custom)
    n = sub.add_parser("none", help="deselect: each plan's bore, the whole drive travel", epilog=EPILOG)
    _port(n).set_defaults(func=_deselect)
    _port(sub.add_parser("show", help="the syringe the device has in force", epilog=EPILOG)).set_defaults(
        func=_show_syringe
    )

    z = subparsers.add_parser(
        "zero",
        help="tare the pressure transducer (line open to the air, plunger at rest)",
        description=(
            "Tare the pressure transducer at atmospheric pressure: open the line to the air first. The "
            "device refuses an offset beyond its bound (a pressurised line, or a transducer out of its "
            "specification) and says what it read."
        ),
        epilog=EPILOG,
    )
    _port(z).set_defaults(func=_zero)

    k = subparsers.add_parser(
        "calibrate", help="span and volume calibration; show the calibration", epilog=EPILOG
    )
    ksub = k.add_subparsers(dest="action", required=True, metavar="ACTION")
    span = ksub.add_parser(
        "span", help="second point: the line holds a reference pressure, give its value", epilog=EPILOG
    )
    _port(span)
    span.add_argument(
        "--reference-kpa",
        type=REFERENCE,
        required=True,
        help=f"the reference's reading ({REFERENCE.allowed})",
    )
    span.set_defaults(func=_span)
    vol = ksub.add_parser(
        "volume",
        help="gravimetric: the volume the device primed, its weighed mass and density",
        epilog=EPILOG,
    )
    _port(vol)
    vol.add_argument(
        "--nominal-ml",
        type=NOMINAL,
        default=None,
        help=f"the volume the device counted ({NOMINAL.allowed}; default: the last prime's primed volume)",
    )
    vol.add_argument("--mass-g", type=MASS, required=True, help=f"weighed mass ({MASS.allowed})")
    vol.add_argument(
        "--density-g-ml", type=DENSITY, required=True, help=f"the fluid's density ({DENSITY.allowed})"
    )
    vol.set_defaults(func=_volume)
    _port(
        ksub.add_parser("show", help="the calibration in force, with its dates", epilog=EPILOG)
    ).set_defaults(func=_show_calibration)


def _port(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--port", required=True, help="serial device or pyserial URL")
    return p


# -- what the device says, in the operator's units -------------------------------------------------


def _date(utc_s: int) -> str:
    if not utc_s:
        return "never (factory value)"
    return datetime.fromtimestamp(utc_s, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_syringe(info: SyringeInfo) -> str:
    travel = f"usable stroke {info.travel_um / 1000:.2f} mm"
    limit = f"pressure ceiling {info.max_pressure_pa / 1000:.0f} kPa"
    if not info.name:
        return f"no syringe selected: each plan's bore is used; {travel}, {limit}"
    return (
        f"syringe {info.name}: bore {info.bore_um / 1000:.2f} mm, stroke {info.stroke_um / 1000:.2f} mm "
        f"({travel}), dead volume {info.dead_volume_nl / 1e6:.3f} mL, {limit}"
    )


def describe_calibration(info: CalibrationInfo) -> str:
    span = "gain 1 (factory value)"
    if info.span_utc_s:
        at = f"{info.span_reference_pa / 1000:g} kPa"
        span = f"gain {info.span_gain_ppm / 1e6:.6f} at {at}, {_date(info.span_utc_s)}"
    return "\n".join(
        (
            f"zero:   offset {info.zero_offset_pa / 1000:+.1f} kPa, {_date(info.zero_utc_s)}",
            f"span:   {span}",
            f"volume: factor {info.volume_factor_ppm / 1e6:.6f}, {_date(info.volume_utc_s)}",
            f"zero check at ARM: |pressure| <= {info.zero_check_pa / 1000:g} kPa on an open line",
        )
    )


def in_force_lines(
    syringe: SyringeInfo | None, calibration: CalibrationInfo | None, motion: MotionStatus | None
) -> list[str]:
    """What `cementguard status` adds to the STATUS: the syringe and the calibration in force and
    the last movement (PRIME, JOG, WITHDRAW, HOME), each left out when the device does not report
    it (no capability SETUP or MOTION)."""
    from host.motion_cmds import moved_text
    from protocol import State

    lines = []
    if syringe is not None:
        lines.append(f"syringe   {describe_syringe(syringe)}")
    if calibration is not None:
        for i, line in enumerate(describe_calibration(calibration).splitlines()):
            lines.append(("calib     " if i == 0 else "          ") + line)
    if motion is not None:
        last = int(motion.last_motion)
        if last == State.IDLE:
            lines.append("last move none since power-up")
        else:
            try:
                name = State(last).name
            except ValueError:  # a movement this host does not know
                name = f"state {last}"
            lines.append(f"last move {name}: {moved_text(motion)}")
    return lines


async def read_in_force(ctl: DeviceClient) -> list[str]:
    """`in_force_lines` for a connected device: the syringe and calibration it last reported, and a
    fresh GET_MOTION when it has capability MOTION (a failed one leaves the last movement out)."""
    from protocol import Capabilities

    motion = None
    if ctl.device.capabilities & Capabilities.MOTION:
        try:
            motion = await ctl.get_motion()
        except CementguardError as exc:
            log.info("status without the last movement: %s", exc)
    return in_force_lines(ctl.syringe, ctl.calibration, motion)


# -- the commands --------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, flush=True)


def _fail(text: str) -> None:
    print(f"cementguard: {text}", flush=True)


def _list(args: argparse.Namespace) -> int:
    _say(f"{'name':<7} {'bore mm':>8} {'stroke mm':>10} {'dead mL':>8} {'max kPa':>8}  description")
    for s in LIBRARY:
        _say(
            f"{s.name:<7} {s.bore_mm:>8.2f} {s.stroke_mm:>10.2f} {s.dead_volume_ml:>8.3f} "
            f"{s.max_pressure_kpa:>8.0f}  {s.description}"
        )
    return EXIT_OK


def _select(args: argparse.Namespace) -> int:
    try:
        spec = find(args.name)
    except UnknownSyringeError as exc:
        _fail(str(exc))
        return 2
    return _device(args.port, "SET_SYRINGE", lambda ctl: _set(ctl, spec.to_wire(1)))


def _custom(args: argparse.Namespace) -> int:
    from protocol.messages import SetSyringe

    command = SetSyringe(
        cmd_id=1,
        name=args.name,
        bore_um=round(args.bore_mm * 1000.0),
        stroke_um=round(args.stroke_mm * 1000.0),
        dead_volume_nl=round(args.dead_volume_ml * 1e6),
        max_pressure_pa=round(args.max_pressure_kpa * 1000.0),
    )
    return _device(args.port, "SET_SYRINGE", lambda ctl: _set(ctl, command))


def _deselect(args: argparse.Namespace) -> int:
    from protocol.messages import SetSyringe

    return _device(args.port, "SET_SYRINGE", lambda ctl: _set(ctl, SetSyringe(1, "", 0, 0, 0, 0)))


async def _set(ctl: DeviceClient, command: object) -> str:
    from protocol.messages import SetSyringe

    assert isinstance(command, SetSyringe)
    return describe_syringe(await ctl.set_syringe(command)) + " (in force)"


def _show_syringe(args: argparse.Namespace) -> int:
    async def show(ctl: DeviceClient) -> str:
        syringe, _cal = await ctl.get_calibration()
        return describe_syringe(syringe)

    return _device(args.port, "GET_CALIBRATION", show)


def _zero(args: argparse.Namespace) -> int:
    async def zero(ctl: DeviceClient) -> str:
        info = await ctl.zero()
        offset = f"{info.zero_offset_pa / 1000:+.1f} kPa"
        return f"zeroed: offset {offset} from the factory zero, {_date(info.zero_utc_s)}"

    return _device(args.port, "ZERO", zero)


def _span(args: argparse.Namespace) -> int:
    reference = round(args.reference_kpa * 1000.0)

    async def span(ctl: DeviceClient) -> str:
        info = await ctl.calibrate_span(reference_pa=reference)
        gain = f"{info.span_gain_ppm / 1e6:.6f}"
        return f"span calibrated: gain {gain} at {reference / 1000:g} kPa, {_date(info.span_utc_s)}"

    return _device(args.port, "CALIBRATE_SPAN", span)


def _volume(args: argparse.Namespace) -> int:
    mass = round(args.mass_g * 1e6)
    density = round(args.density_g_ml * 1e6)  # g/mL -> mg/L

    async def volume(ctl: DeviceClient) -> str:
        nominal = round(args.nominal_ml * 1e6) if args.nominal_ml is not None else await _last_primed_nl(ctl)
        info = await ctl.calibrate_volume(nominal_nl=nominal, mass_ug=mass, density_mg_l=density)
        counted = f"{nominal / 1e6:.6f} mL counted, {args.mass_g:g} g weighed"
        factor = f"{info.volume_factor_ppm / 1e6:.6f}"
        return f"volume calibrated ({counted}): factor {factor}, {_date(info.volume_utc_s)}"

    return _device(args.port, "CALIBRATE_VOLUME", volume)


class NoPrimeError(CementguardError):
    """`calibrate volume` without --nominal-ml, and the device's last movement was not a prime."""


async def _last_primed_nl(ctl: DeviceClient) -> int:
    """The volume the last PRIME pushed out, as the device counted it (MOTION_STATUS.primed_nl)."""
    from protocol import Capabilities, State

    if not ctl.device.capabilities & Capabilities.MOTION:
        raise NoPrimeError("the device has no movements (capability MOTION): give --nominal-ml")
    motion = await ctl.get_motion()
    if motion.last_motion != State.PRIMING or motion.primed_nl <= 0:
        raise NoPrimeError(
            "the device's last movement was not a prime: prime into the weighed vessel first "
            "(`cementguard prime --volume-ml 1`), or give --nominal-ml"
        )
    return int(motion.primed_nl)


def _show_calibration(args: argparse.Namespace) -> int:
    async def show(ctl: DeviceClient) -> str:
        syringe, cal = await ctl.get_calibration()
        return describe_syringe(syringe) + "\n" + describe_calibration(cal)

    return _device(args.port, "GET_CALIBRATION", show)


def _device(port: str, what: str, act: Callable[[DeviceClient], Awaitable[str]]) -> int:
    """Open the port, check the device has capability SETUP, act, say the result."""

    async def main() -> int:
        from host.client import DeviceClient
        from protocol import Capabilities

        async with DeviceClient.open(port) as ctl:
            if not ctl.device.capabilities & Capabilities.SETUP:
                _fail(f"{what} not sent: the device has no capability SETUP (syringe and calibration)")
                return EXIT_REFUSED
            try:
                _say(await act(ctl))
            except (CommandRefused, NoPrimeError) as exc:
                _fail(str(exc))
                return EXIT_REFUSED
            return EXIT_OK

    try:
        return asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_REFUSED
    except PortBusy as exc:
        _fail(f"{what} not sent: {exc}")
        return EXIT_LINK
    except CementguardError as exc:
        _fail(f"{what}: {exc}")
        return EXIT_LINK


__all__ = ["add_parsers", "describe_calibration", "describe_syringe", "syringe_name"]
