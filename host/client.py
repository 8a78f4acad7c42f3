"""The typed async API to one controller: what the CLI, the dashboard, the MQTT bridge and HIL use.

    async with DeviceClient.open("/dev/ttyUSB0") as ctl:          # or a pty, or socket://host:port
        print(ctl.device.serial, ctl.state)
        async with ctl.events() as events, ctl.telemetry() as telemetry:
            await ctl.arm(plan, mixed_ago_s=240.0)               # a protocol.Arm, or a plan with to_arm()
            await ctl.start()
            stop = await ctl.wait_for_plan_stop(timeout=60)      # event, or STATUS if it was lost
            ...

Every command waits for its ACK and raises `CommandRefused` (with a readable message) on a NAK; the
commands that the device answers with a STATUS (ARM, SET_LIMITS, GET_STATUS) return that STATUS,
which shows the limits actually in force after the device clamped them; the movements (PRIME,
WITHDRAW, HOME, GET_MOTION; SPEC §5.16) return their MOTION_STATUS. Errors are in `host.errors`.

**Leaving the context closes the link and sends nothing, in particular no STOP.** The controller owns
safety (docs/design.md, "Safety model"): when its host goes away, the port closing (where the device sees
it) or its watchdog (`watchdog_ms` without a frame) stops the pump with HOST_LOST, latched until
CLEAR. A STOP sent from `__aexit__` would add nothing to that, and it would be wrong for the callers
that close on purpose while the device is supposed to keep its state (a CLI that only reads STATUS, a
dashboard restarting, a HIL runner handing the port over). Whoever decides that closing means
"stop now" (the CLI on Ctrl-C, for instance) calls `stop()` before leaving.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, Protocol

from host.errors import CommandRefused, ReplyLostError, StatusUnavailable
from host.link import (
    CommandLike,
    Link,
    LinkChange,
    LinkCounters,
    LinkOptions,
    LinkState,
    Subscription,
)
from host.plan_stop import PlanStop, wait_for_plan_stop
from protocol import (
    Ack,
    Arm,
    Clear,
    DeviceInfo,
    Event,
    GetStatus,
    NakCode,
    Pause,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Status,
    Stop,
    StopSource,
    TelemetryBatch,
)
from protocol.messages import (
    CalibrateSpan,
    CalibrateVolume,
    CalibrationInfo,
    GetCalibration,
    GetMotion,
    Home,
    Jog,
    MotionStatus,
    Prime,
    SetSyringe,
    SyringeInfo,
    Withdraw,
    Zero,
)

__all__ = [
    "BUSY_RETRY_S",
    "CLEAR_SETTLE_S",
    "DeviceClient",
    "LinkChange",
    "LinkCounters",
    "LinkOptions",
    "LinkState",
    "PlanLike",
    "PlanStop",
    "Subscription",
]

BUSY_RETRY_S = 0.05
"""How often a CLEAR refused with BUSY is asked again (`DeviceClient.clear`)."""
CLEAR_SETTLE_S = 5.0
"""How long an operator's CLEAR waits for the plunger to come to rest: the reference rig's relief
timeout (3 s, docs/controller.md) plus its brake time (80 ms), with margin."""


def _utc_s(utc_s: int | None) -> int:
    """A calibration's date: the host's UTC clock, whole seconds since 1970 (the device has none)."""
    return int(time.time()) if utc_s is None else utc_s


class PlanLike(Protocol):
    """Anything that can produce an ARM: `host.plan.InjectionPlan` is one."""

    def to_arm(self, cmd_id: int, mixed_ago_s: float | None) -> Arm: ...


class DeviceClient:
    """The host's client of one controller behind one port URL (named apart from the firmware's
    `firmware_sim.controller.Controller`, the device it talks to). Create with `DeviceClient.open(url)`
    and use as an async context manager, or `await DeviceClient.connect(url)` and `await ctl.close()`."""

    def __init__(self, url: str, settings: LinkOptions | Any = None) -> None:
        """`settings`: `LinkOptions`, or `host.settings.HostSettings` (or its `link` section), which is
        converted with `LinkOptions.from_settings`; None: the protocol's defaults."""
        if settings is not None and not isinstance(settings, LinkOptions):
            settings = LinkOptions.from_settings(settings)
        self._link = Link(url, settings)

    @classmethod
    def open(cls, url: str, settings: LinkOptions | Any = None) -> DeviceClient:
        """A controller to be entered with ``async with``: the port is opened on entry."""
        return cls(url, settings)

    @classmethod
    async def connect(cls, url: str, settings: LinkOptions | Any = None) -> DeviceClient:
        """Open the port and handshake now; the caller must `close()`."""
        ctl = cls(url, settings)
        await ctl._link.open()
        return ctl

    async def __aenter__(self) -> DeviceClient:
        await self._link.open()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the link. Sends no STOP (see the module docstring: the controller's watchdog does)."""
        await self._link.close()

    # -- what the controller is and does ----------------------------------------------------------

    @property
    def url(self) -> str:
        return self._link.url

    @property
    def link(self) -> Link:
        """The link underneath, for diagnostics and raw commands."""
        return self._link

    @property
    def device(self) -> DeviceInfo:
        """DEVICE_INFO from the handshake: serial, firmware, capabilities, watchdog, device limits."""
        info = self._link.device
        if info is None:
            raise RuntimeError("not connected yet: enter the context or await DeviceClient.connect()")
        return info

    @property
    def state(self) -> State | int | None:
        """The controller's state as last reported (any frame that carries it). A plain int is a state
        this host does not know. Only current while `link_state` is CONNECTED."""
        return self._link.state

    @property
    def status(self) -> Status | None:
        """The latest STATUS (after every ARM, SET_LIMITS, GET_STATUS and each (re)connect)."""
        return self._link.status

    @property
    def link_state(self) -> LinkState:
        return self._link.link_state

    @property
    def link_reason(self) -> str:
        return self._link.link_reason

    @property
    def counters(self) -> LinkCounters:
        return self._link.counters

    # -- commands ----------------------------------------------------------------------------------

    async def arm(
        self, plan: Arm | PlanLike | None = None, *, mixed_ago_s: float | None = None, **fields: Any
    ) -> Status:
        """Load a plan (IDLE, ARMED or DONE -> ARMED). Returns the STATUS showing the limits in force.

        `plan` is a `protocol.Arm` (its cmd_id is replaced), or an object with
        ``to_arm(cmd_id, mixed_ago_s)`` (a `host.plan.InjectionPlan`); `mixed_ago_s` is the cement's age
        in seconds, passed through (None lets the plan compute it from its own mixing time; `to_arm`
        is called just before the command is sent, so the age is current). Without `plan`, the
        keyword arguments are the fields of `Arm` (all but cmd_id).
        """
        make: CommandLike
        if plan is None:
            make = Arm(cmd_id=0, **fields)
        elif fields:
            raise TypeError("arm() takes a plan or Arm fields, not both")
        elif isinstance(plan, Arm):
            make = plan
        elif hasattr(plan, "to_arm"):
            age = None if mixed_ago_s is None else float(mixed_ago_s)
            source: PlanLike = plan

            def make(cmd_id: int) -> Arm:
                return source.to_arm(cmd_id, age)

        else:
            raise TypeError(f"arm() takes a protocol.Arm or a plan with to_arm(), not {type(plan).__name__}")
        return await self._with_status(make, "ARM")

    async def start(self) -> Ack:
        """ARMED -> INJECTING, after the device's START checks."""
        return await self._link.command(Start)

    async def pause(self) -> Ack:
        """INJECTING -> PAUSED (decelerates; relief if the plan has RELIEF)."""
        return await self._link.command(Pause)

    async def resume(self) -> Ack:
        """PAUSED -> INJECTING (same checks as START), e.g. after INCREMENT_DONE and an image."""
        return await self._link.command(Resume)

    async def stop(self, source: StopSource = StopSource.OPERATOR, detail: int = 0) -> Ack:
        """Latch a stop. Always accepted by the device; sent at once, even while another command waits.
        `detail` names the image rule of a FLUORO_IMAGE stop (a StopDetail, SPEC §5.6); 0 otherwise."""
        return await self._link.command(Stop(cmd_id=0, source=source, detail=int(detail)))

    async def clear(self, *, settle_s: float = 0.0) -> Ack:
        """Release a latched stop or a finished run (-> IDLE, plan dropped).

        The device refuses CLEAR with NAK BUSY while the plunger is not at rest: braking after a stop
        (up to the brake time, SPEC §9.1) or backing off for relief (SPEC §6.5). An operator who
        presses clear right after a stop means "as soon as it is safe", so with `settle_s` > 0 a BUSY
        is answered by asking again, each time with a new command id as SPEC §6.5 requires, every
        `BUSY_RETRY_S`, for at most `settle_s` seconds; then the last refusal is raised. Any other
        refusal is raised at once. The device alone decides when the plunger is at rest."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settle_s
        while True:
            try:
                return await self._link.command(Clear)
            except CommandRefused as refused:
                left = deadline - loop.time()
                if refused.code != NakCode.BUSY or left <= 0.0:
                    raise
            await asyncio.sleep(min(BUSY_RETRY_S, left))

    async def get_status(self) -> Status:
        return await self._with_status(GetStatus, "GET_STATUS")

    async def set_limits(
        self,
        *,
        soft_limit_pa: int = 0,
        hard_limit_pa: int = 0,
        relief_pa: int = 0,
        max_flow_nl_s: int = 0,
    ) -> Status:
        """Change limits in force (0 = unchanged). Returns the STATUS with the values after clamping."""
        return await self._with_status(
            lambda cmd_id: SetLimits(
                cmd_id=cmd_id,
                soft_limit_pa=soft_limit_pa,
                hard_limit_pa=hard_limit_pa,
                relief_pa=relief_pa,
                max_flow_nl_s=max_flow_nl_s,
            ),
            "SET_LIMITS",
        )

    async def set_telemetry(self, divider: int, batch: int = 20) -> Ack:
        """Every `divider`-th 1 kHz sample, `batch` samples per frame; divider 0 turns it off.
        Restored by the link after a reconnect."""
        return await self._link.command(
            lambda cmd_id: SetTelemetry(cmd_id=cmd_id, divider=divider, batch_samples=batch)
        )

    # -- movements (SPEC §5.16, §8.6): the device owns their limits ---------------------------------

    async def prime(self, *, syringe_bore_um: int, flow_nl_s: int, volume_nl: int) -> MotionStatus:
        """IDLE -> PRIMING: push `volume_nl` out at `flow_nl_s` with every forward limit active; the
        volume never counts as delivered. Returns the MOTION_STATUS; `wait_for_motion_end` waits."""
        return await self._with_motion(
            lambda cmd_id: Prime(cmd_id, syringe_bore_um, flow_nl_s, volume_nl), "PRIME"
        )

    async def withdraw(self, *, syringe_bore_um: int, flow_nl_s: int, volume_nl: int) -> MotionStatus:
        """IDLE -> WITHDRAWING (also refill): draw `volume_nl` back at `flow_nl_s`, never behind home."""
        return await self._with_motion(
            lambda cmd_id: Withdraw(cmd_id, syringe_bore_um, flow_nl_s, volume_nl), "WITHDRAW"
        )

    async def home(self, *, speed_um_s: int) -> MotionStatus:
        """IDLE -> HOMING: back to the home position at `speed_um_s`."""
        return await self._with_motion(lambda cmd_id: Home(cmd_id, speed_um_s), "HOME")

    async def jog(self, *, speed_um_s: int, hold_ms: int) -> Ack:
        """One hold-to-move grant: motion at `speed_um_s` (forward positive) for `hold_ms` from its
        arrival. Repeat it more often than every `hold_ms` / 2 while the operator holds the key;
        stop repeating and the device is at rest within `hold_ms` (SPEC §5.16)."""
        return await self._link.command(lambda cmd_id: Jog(cmd_id, hold_ms, speed_um_s))

    async def get_motion(self) -> MotionStatus:
        return await self._with_motion(GetMotion, "GET_MOTION")

    async def wait_for_motion_end(self, *, timeout: float | None) -> State | int:  # noqa: ASYNC109
        """Until the movement has ended: IDLE (its normal end, plunger at rest) or a latched stop
        (STOPPED, FAULT). Any other state this host does not know is not an end."""
        return await self._link.wait_for_state(State.IDLE, State.STOPPED, State.FAULT, timeout=timeout)

    async def _with_motion(self, make: CommandLike, what: str) -> MotionStatus:
        """The command's MOTION_STATUS; if that frame was lost while the ACK arrived, GET_MOTION."""
        _ack, reply = await self._link.request(make)
        if isinstance(reply, MotionStatus):
            return reply
        _ack, reply = await self._link.request(GetMotion)
        if isinstance(reply, MotionStatus):
            return reply
        raise StatusUnavailable(what)

    # -- syringe and calibration (SPEC §5.17-§5.23): IDLE only; the device bounds every correction --

    @property
    def syringe(self) -> SyringeInfo | None:
        """The syringe in force, as the device last reported it (handshake, SET_SYRINGE,
        GET_CALIBRATION); None from a device without capability SETUP."""
        return self._link.syringe

    @property
    def calibration(self) -> CalibrationInfo | None:
        """The calibration in force, as the device last reported it; None without capability SETUP."""
        return self._link.calibration

    async def set_syringe(self, command: SetSyringe) -> SyringeInfo:
        """Select a syringe (SET_SYRINGE; its cmd_id is replaced): the device refuses dimensions
        beyond its own with BAD_PARAM naming the field and the bound. Returns the syringe in force."""
        ack, _ = await self._link.request(command)
        syringe = self._link.syringe
        if syringe is not None and syringe.cmd_id == ack.cmd_id:
            return syringe
        return (await self._reread("SET_SYRINGE", "SYRINGE_INFO"))[0]

    async def zero(self, *, utc_s: int | None = None) -> CalibrationInfo:
        """Tare the pressure transducer (the line open to the air, the plunger at rest), dated
        `utc_s` (default: now). An offset beyond the device's bound is refused (NAK SENSOR_FAULT)."""
        when = _utc_s(utc_s)
        return await self._calibrate(lambda cmd_id: Zero(cmd_id, when), "ZERO")

    async def calibrate_span(self, *, reference_pa: int, utc_s: int | None = None) -> CalibrationInfo:
        """Second calibration point: the line holds `reference_pa`, as a reference gauge reads it."""
        when = _utc_s(utc_s)
        return await self._calibrate(
            lambda cmd_id: CalibrateSpan(cmd_id, reference_pa, when), "CALIBRATE_SPAN"
        )

    async def calibrate_volume(
        self, *, nominal_nl: int, mass_ug: int, density_mg_l: int, utc_s: int | None = None
    ) -> CalibrationInfo:
        """Gravimetric volume calibration: the device counted `nominal_nl` (a PRIME's primed volume),
        the balance weighed `mass_ug` of a fluid of `density_mg_l`."""
        when = _utc_s(utc_s)
        return await self._calibrate(
            lambda cmd_id: CalibrateVolume(cmd_id, nominal_nl, mass_ug, density_mg_l, when),
            "CALIBRATE_VOLUME",
        )

    async def get_calibration(self) -> tuple[SyringeInfo, CalibrationInfo]:
        """The syringe and the calibration in force, read now (GET_CALIBRATION)."""
        return await self._reread("GET_CALIBRATION", "SYRINGE_INFO and CALIBRATION_INFO")

    async def _calibrate(self, make: CommandLike, what: str) -> CalibrationInfo:
        """The CALIBRATION_INFO that answered the command (it precedes the ACK on the same stream);
        if it was lost on the way, GET_CALIBRATION."""
        ack, _ = await self._link.request(make)
        cal = self._link.calibration
        if cal is not None and cal.cmd_id == ack.cmd_id:
            return cal
        return (await self._reread(what, "CALIBRATION_INFO"))[1]

    async def _reread(self, what: str, reply: str) -> tuple[SyringeInfo, CalibrationInfo]:
        ack, _ = await self._link.request(GetCalibration)
        syringe, cal = self._link.syringe, self._link.calibration
        if syringe is None or cal is None or syringe.cmd_id != ack.cmd_id or cal.cmd_id != ack.cmd_id:
            raise ReplyLostError(what, reply)
        return syringe, cal

    async def command(self, command: CommandLike) -> Ack:
        """Any command message, numbered by the link."""
        return await self._link.command(command)

    async def _with_status(self, make: CommandLike, what: str) -> Status:
        """The command's own STATUS (the device sends it just before the ACK). If that frame was
        lost on the line while the ACK arrived, the link's last STATUS is from before this command
        (an ARM's limits would be the previous plan's): read it again with GET_STATUS, and if that
        one is lost too, say so (StatusUnavailable) rather than return a stale one."""
        _ack, reply = await self._link.request(make)
        if isinstance(reply, Status):
            return reply
        _ack, reply = await self._link.request(GetStatus)
        if isinstance(reply, Status):
            return reply
        raise StatusUnavailable(what)

    # -- streams and waits ---------------------------------------------------------------------------

    def telemetry(self, maxsize: int | None = None) -> Subscription[TelemetryBatch]:
        """Telemetry batches from now on (numpy `samples` of protocol.SAMPLE_DTYPE). A consumer that falls
        `maxsize` batches behind loses the oldest (counted in `counters.dropped_batches`)."""
        return self._link.subscribe_telemetry(maxsize)

    def events(self, maxsize: int | None = None) -> Subscription[Event]:
        """EVENTs from now on: stops, state changes, alarms, relief done, power-up."""
        return self._link.subscribe_events(maxsize)

    def link_changes(self) -> Subscription[LinkChange]:
        """Link state transitions from now on: LOST (with the reason) at once, CONNECTED after a
        reconnect (with the STATUS read then), FAILED, CLOSED."""
        return self._link.link_changes()

    async def wait_for_state(self, *states: State | int, timeout: float | None) -> State | int:  # noqa: ASYNC109
        """Until the controller reports one of `states`; TimeoutError, or LinkLost if the link drops."""
        return await self._link.wait_for_state(*states, timeout=timeout)

    async def wait_for_plan_stop(self, *, timeout: float | None = None) -> PlanStop:  # noqa: ASYNC109
        """Until the plan stops moving (after START or RESUME): the STOP event, or, when that frame
        was lost on the line, the stop read back from STATUS. Watches events and the state every
        frame carries, never an event alone (host.plan_stop). LinkLost if the link drops first."""
        return await wait_for_plan_stop(self, timeout=timeout)

    async def wait_for_link(self, *states: LinkState, timeout: float | None) -> LinkState:  # noqa: ASYNC109
        """Until the link is in one of `states`, e.g. CONNECTED again after a reconnect."""
        return await self._link.wait_for_link(*states, timeout=timeout)
