"""Errors of the host side: what can go wrong between the bench PC and the controller, and around it.

Every error the product raises on purpose derives from `CementguardError` (the one root), so a CLI
can catch one class and print `str(exc)`: each message says what happened and, where there is one,
what to do. Recording errors (`host.recording`) derive from it too.

    CementguardError
    ├── PortError                 the port could not be opened
    │   ├── PortNotFound          ... because it does not exist (or nothing listens at a socket:// URL)
    │   └── PortUnavailable       ... for another reason (permission, busy, a malformed URL)
    │       └── PortBusy          ... held by another cementguard session, named (host.port_lock)
    ├── DeviceNotResponding       the port opened, but no device answered HELLO
    ├── ProtocolVersionError      the device speaks another protocol version: the host sends nothing more
    ├── CommandRefused            the device answered NAK: nothing changed
    ├── StatusUnavailable         a command's STATUS reply was lost, and reading it again failed
    ├── RecordingError            (host.recording) a directory is not a readable recording
    │   └── RecordingVersionError ... its format is newer than this reader
    ├── RecorderError             (host.recording) a recorder cannot take more data (write failed)
    ├── LinkClosed                the host closed the link (a command or a wait after close)
    └── LinkLost                  the link went down (silent device, port gone, closed by the host)
        └── CommandTimeout        a command got no answer after its retries: the link is declared lost

`CommandTimeout` is a `LinkLost` because that is what the protocol makes of it (SPEC §7.5: after the
last retry the host declares the link lost and reconnects), and because its consequence for the caller
is the same: whether the command took effect is unknown, and the device's state must be read again
(STATUS after the reconnect) before anything else is decided.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# The protocol package is imported where it is used, not here: `cementguard stop` through a
# session's control endpoint raises these errors but never decodes a frame, and importing the
# protocol (numpy with it) would double the time before its request goes out.
if TYPE_CHECKING:
    from protocol import Command, Nak, NakCode, State


class CementguardError(Exception):
    """Base of every host-side error."""


class PortError(CementguardError):
    """The port could not be opened."""

    def __init__(self, port: str, message: str) -> None:
        super().__init__(message)
        self.port = port


class PortNotFound(PortError):  # noqa: N818 - names of the host API
    """The port does not exist (a device path), or nothing listens at a socket:// URL."""

    def __init__(self, port: str, reason: str = "") -> None:
        what = "nothing listens at" if port.startswith("socket://") else "no such port"
        detail = f" ({reason})" if reason else ""
        super().__init__(
            port,
            f"{what} {port}{detail}. `cementguard ports` lists the serial ports of this machine; "
            "`cementguard sim --pty` prints the port of a simulator.",
        )


class PortUnavailable(PortError):  # noqa: N818 - names of the host API
    """The port exists but could not be opened: permission, held by another program, bad URL."""

    def __init__(self, port: str, reason: str) -> None:
        super().__init__(port, f"cannot open {port}: {reason}")


class DeviceNotResponding(CementguardError):  # noqa: N818 - names of the host API
    """The port opened, but nothing answered the handshake (HELLO) after all retries."""

    def __init__(self, port: str, attempts: int, timeout_s: float, received: str | None = None) -> None:
        """`received`: what arrived meanwhile, in words (the link's diagnosis); None: nothing."""
        what = received or (
            "nothing was received. Is the controller powered, is this its port, and does the baud rate match?"
        )
        super().__init__(
            f"no cementguard device answered on {port}: HELLO sent {attempts} times, "
            f"{timeout_s * 1000:.0f} ms each, without a complete answer; {what}"
        )
        self.port = port
        self.attempts = attempts


class ProtocolVersionError(CementguardError):
    """The device speaks another wire protocol version (SPEC §11.4): the host stops talking to it."""

    def __init__(self, device_version: int, host_version: int | None = None) -> None:
        if host_version is None:
            from protocol import PROTOCOL_VERSION

            host_version = PROTOCOL_VERSION
        super().__init__(
            f"device speaks protocol version {device_version}, this host speaks version {host_version}: "
            "update the host or the controller firmware so that they match. No command was sent."
        )
        self.device_version = device_version
        self.host_version = host_version


class CommandRefused(CementguardError):  # noqa: N818 - names of the host API
    """The device answered NAK: the command was refused and changed nothing (SPEC §7.1)."""

    def __init__(self, command: Command, nak: Nak) -> None:
        self.command = command
        self.nak = nak
        super().__init__(describe_nak(command, nak))

    @property
    def code(self) -> NakCode | int:
        return self.nak.code


class ReplyLostError(CementguardError):
    """A setup command (SET_SYRINGE, ZERO, CALIBRATE_*, GET_CALIBRATION) was answered, but the reply
    that says what is now in force was lost on the line, and a GET_CALIBRATION got none either."""

    def __init__(self, command: str, reply: str) -> None:
        super().__init__(
            f"{command} was answered, but its {reply} was lost and could not be read again: "
            "read what is in force with `cementguard calibrate show` before going on"
        )
        self.command = command


class StatusUnavailable(CementguardError):  # noqa: N818 - names of the host API
    """A command that the device answers with STATUS then ACK (ARM, SET_LIMITS, GET_STATUS) was
    acknowledged, but its STATUS was lost on the line and a GET_STATUS after it got none either.
    The command took effect; the limits in force are not known to this host yet."""

    def __init__(self, command: str) -> None:
        super().__init__(
            f"{command} was acknowledged, but its STATUS reply was lost and could not be read again: "
            "the limits in force are unknown; read STATUS (`cementguard status`) before going on"
        )
        self.command = command


class LinkClosed(CementguardError):  # noqa: N818 - names of the host API
    """The link was closed by the host: no more commands, subscriptions end."""

    def __init__(self, port: str) -> None:
        super().__init__(f"the link to {port} is closed")
        self.port = port


class LinkLost(CementguardError):  # noqa: N818 - names of the host API
    """The link to the device went down. The controller stops the pump on its own (host watchdog,
    HOST_LOST); after a reconnect the host reads STATUS and never resumes anything by itself."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"link lost: {reason}")
        self.reason = reason


class CommandTimeout(LinkLost):
    """A command got no ACK/NAK after all its retries (same cmd_id each time).

    Whether it took effect is unknown: read STATUS (after the reconnect) before deciding anything."""

    def __init__(self, command: Command, attempts: int, timeout_s: float) -> None:
        name = _type_name(command.TYPE)
        super().__init__(
            f"{name} (cmd_id {command.cmd_id}) got no answer after {attempts} attempts of "
            f"{timeout_s * 1000:.0f} ms; whether it took effect is unknown"
        )
        self.command = command
        self.attempts = attempts


def _type_name(msg_type: int) -> str:
    from protocol import MsgType

    try:
        return MsgType(msg_type).name
    except ValueError:
        return f"type 0x{msg_type:02X}"


def _state_name(state: State | int) -> str:
    from protocol import State

    return state.name if isinstance(state, State) else f"unknown state {int(state)}"


def describe_nak(command: Command, nak: Nak) -> str:
    """A readable sentence for a NAK: which command, the code, and what it means here."""
    from host.param_ranges import BORE_RANGE_UM, bad_param_text
    from protocol import MsgType, NakCode

    name = _type_name(nak.cmd_type)
    code = nak.code
    if not isinstance(code, NakCode):
        return f"{name} refused: code {int(code)} (not known to this host; nothing changed)"
    state = _state_name(nak.state)
    if code is NakCode.BAD_PARAM:
        field = command.field_name(nak.field) if nak.field != 0xFF else None
        if nak.cmd_id == 0 or (field == "cmd_id"):
            why = "cmd_id 0 is not allowed"
        elif field is None:
            why = f"field index {nak.field} is out of range (bound {nak.detail})"
        elif field == "syringe_bore_um" and nak.detail not in BORE_RANGE_UM:
            # Not a range bound: the bore of the syringe selected on the device (SPEC §5.17, check 5a)
            asked = getattr(command, "syringe_bore_um", None)
            why = (
                f"syringe_bore_um (field {nak.field}) = {asked} is not the bore of the syringe selected on "
                f"the device, {nak.detail} um: select the plan's syringe (`cementguard syringe select`) "
                "or use a plan for the one mounted"
            )
        else:
            sent = getattr(command, field, None)
            why = bad_param_text(name, field, nak.field, sent, nak.detail)
        return f"{name} refused: BAD_PARAM ({why})"
    if code is NakCode.SENSOR_FAULT and nak.cmd_type == MsgType.ZERO:
        return (
            f"{name} refused: SENSOR_FAULT (the reading at rest is {nak.detail / 1000:g} kPa from the "
            "transducer's factory zero, beyond the device's bound: open the line to the air and retry; "
            "if it still reads so, the transducer's zero has drifted out of its specification; "
            "nothing changed)"
        )
    explain = {
        NakCode.UNKNOWN_COMMAND: "the device does not implement this command",
        NakCode.BAD_LENGTH: f"the device expects a {nak.detail}-byte body",
        NakCode.BAD_STATE: f"not allowed while the controller is {state}"
        + (", or the fluoroscopy line is asserted" if nak.cmd_type == MsgType.START else ""),
        NakCode.STOP_LATCHED: f"the controller is {state}: CLEAR first",
        NakCode.VERSION_MISMATCH: f"the device speaks protocol version {nak.detail}",
        NakCode.VISCOSITY_OUT_OF_WINDOW: "the last viscosity estimate is outside the plan's window",
        NakCode.SENSOR_FAULT: "the pressure sensor is faulty",
        NakCode.END_OF_TRAVEL: "the plunger has no travel left",
        NakCode.WORKING_TIME_EXCEEDED: "the cement is at or past its working time",
        NakCode.BUSY: (
            "the jog still runs the other way: release it first"
            if nak.cmd_type == MsgType.JOG
            else "the plunger is still braking after a stop: try again in a moment (a new command)"
            if nak.detail == 2  # BusyDetail.PLUNGER_MOVING, SPEC §6.5
            else "pressure relief is still running: try again after RELIEF_DONE (a new command)"
        ),
        NakCode.NO_SESSION: "no session on this link (the device's watchdog closed it): re-handshaking",
        NakCode.AT_HOME: "the plunger is at home: it cannot move further back",
        NakCode.CALIBRATION_OUT_OF_RANGE: (
            f"the measurement implies a correction of {nak.detail / 1e6:.6f} "
            f"({(nak.detail - 1_000_000) / 1e4:+.2f} %), beyond the device's bound; nothing changed: "
            "check the reference (span) or the weighing and density (volume), the syringe for leaks and air"
        ),
        NakCode.ZERO_DRIFT: (
            f"the pressure at rest reads {nak.detail / 1000:g} kPa on a line presumed open to the air, "
            "beyond the zero check's bound: the transducer's zero has drifted; open the line to the air, "
            "run `cementguard zero`, then ARM again"
        ),
    }.get(code, "nothing changed")
    return f"{name} refused: {code.name} ({explain})"
