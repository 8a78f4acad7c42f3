"""The movements outside an injection: PRIME, JOG, WITHDRAW (refill) and HOME (protocol/SPEC.md §8.6).

This module holds what a movement is and the checks of its command: pure functions from a message
and the device's limits to a `MoveRequest` or a `BadParam`, and the `Movement` record the
controller keeps while one runs (and after it, until the next starts, for MOTION_STATUS). The
controller core drives the step rate, runs the detectors and takes the transitions; nothing here
reads a clock or the hardware.

Why separate states and not a sub-state of INJECTING: a prime's volume must never count as
injected cement (`delivered_nl`), a jog must stop when the host stops asking, and a withdraw moves
backward, which an injection never does; each has its own refusals in the state table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_sim.controller.commands import (
    FL_PER_NL,
    BadParam,
    corrected_fl_per_count,
    fl_per_count,
    max_flow_for_bore,
)
from firmware_sim.controller.config import ControllerConfig
from firmware_sim.hal import Hardware
from protocol.enums import State
from protocol.messages import Home, Jog, Prime, Withdraw

PRIMING, JOGGING, WITHDRAWING, HOMING = (
    int(State.PRIMING),
    int(State.JOGGING),
    int(State.WITHDRAWING),
    int(State.HOMING),
)
MOVING = (PRIMING, JOGGING, WITHDRAWING, HOMING)
"""The movement states: entered from IDLE only, left to IDLE (normal end, plunger at rest) or to
STOPPED (any latched stop)."""

# Layout indexes of the fields a NAK BAD_PARAM names (Message.field_name() maps them back).
VOLUME_MOVE_BORE, VOLUME_MOVE_FLOW, VOLUME_MOVE_VOLUME = 1, 2, 3
"""PRIME and WITHDRAW share one layout."""
JOG_HOLD, JOG_SPEED = 1, 2
HOME_SPEED = 1


@dataclass(frozen=True, slots=True)
class MoveRequest:
    """An accepted movement command, in step rates and encoder counts."""

    kind: int
    rate: float
    """Target step rate, steps/s, forward positive."""
    target_counts: int
    """PRIME: the forward mark, counts from the start position. WITHDRAW, HOME: the absolute
    position it comes to rest on or in front of. JOG: unused (0)."""
    fl_per_count: int
    """Bore volume of one encoder count (fL); 0 for JOG and HOME."""
    bore_um: int
    flow_nl_s: int
    grant_us: int = 0
    """JOG: motion granted from the JOG's arrival, us."""
    clamped: tuple[int, ...] = ()


@dataclass(slots=True)
class Movement:
    """The movement in force, or the last one (kept for MOTION_STATUS until the next starts)."""

    kind: int
    rate: float
    origin: int
    """Encoder position when it started."""
    target_counts: int
    fl_per_count: int
    bore_um: int
    flow_nl_s: int
    grant_us: int
    granted_at_us: int
    """JOG: the (32-bit, wrap-safe) time of the JOG that granted the motion in force."""
    ending: bool = False
    """The movement reached its end (mark, home, end of the stroke, grant): braking to rest."""
    at_limit: bool = False
    """A JOG ended at home or at the end of the stroke: a JOG that way is refused, not renewed."""
    reach: int = 0
    """Farthest displacement from `origin` in the movement's direction, counts (>= 0)."""

    @classmethod
    def start(cls, request: MoveRequest, enc: int, now_us: int) -> Movement:
        return cls(
            request.kind,
            request.rate,
            enc,
            request.target_counts,
            request.fl_per_count,
            request.bore_um,
            request.flow_nl_s,
            request.grant_us,
            now_us,
        )

    @property
    def forward(self) -> bool:
        return self.rate > 0.0

    def track(self, enc: int) -> None:
        """Update the farthest displacement in the movement's direction."""
        d = enc - self.origin if self.rate > 0.0 else self.origin - enc
        if d > self.reach:
            self.reach = d

    def volume_nl(self) -> int:
        """Volume of the farthest displacement, nL (primed or withdrawn): an integer product."""
        return self.reach * self.fl_per_count // FL_PER_NL


def mark_counts(volume_nl: int, per_count_fl: int) -> int:
    """Counts from the start at which `volume_nl` has moved: ceil(V x 10^6 / A) (SPEC §8.5)."""
    return -(-volume_nl * FL_PER_NL // per_count_fl)


def home_counts(config: ControllerConfig, hardware: Hardware) -> int:
    """The home position, encoder counts: backward movements come to rest on or in front of it."""
    return round(config.home_margin_m / hardware.encoder_m_per_count)


def at_home_counts(config: ControllerConfig, hardware: Hardware) -> int:
    """At or behind this position the plunger is AT_HOME: home plus the band a backward movement's
    rest may lie in front of it (one period at top speed and the encoder's quantisation)."""
    return home_counts(config, hardware) + round(config.home_band_m / hardware.encoder_m_per_count)


def _bore_area_m2(bore_um: int) -> float:
    bore_m = bore_um * 1e-6
    return math.pi * bore_m * bore_m / 4.0


def _volume_move(
    kind: int,
    msg: Prime | Withdraw,
    config: ControllerConfig,
    hardware: Hardware,
    max_flow_nl_s: int,
    room_counts: int,
    selected_bore_um: int,
    volume_factor_ppm: int,
) -> MoveRequest | BadParam:
    lo, hi = config.syringe_bore_um_range
    if msg.syringe_bore_um < lo:
        return BadParam(VOLUME_MOVE_BORE, lo)
    if msg.syringe_bore_um > hi:
        return BadParam(VOLUME_MOVE_BORE, hi)
    if selected_bore_um and msg.syringe_bore_um != selected_bore_um:  # as ARM's check 5a (SPEC §5.17)
        return BadParam(VOLUME_MOVE_BORE, selected_bore_um)
    if msg.flow_nl_s < 1:
        return BadParam(VOLUME_MOVE_FLOW, 1)
    if msg.volume_nl < 1:
        return BadParam(VOLUME_MOVE_VOLUME, 1)
    area = _bore_area_m2(msg.syringe_bore_um)
    per_count = corrected_fl_per_count(fl_per_count(hardware, area), volume_factor_ppm)
    room_nl = max(0, room_counts) * per_count // FL_PER_NL
    if msg.volume_nl > room_nl:
        return BadParam(VOLUME_MOVE_VOLUME, room_nl)
    ceiling = min(max_flow_for_bore(config, hardware, area), max_flow_nl_s)
    flow = min(msg.flow_nl_s, ceiling)
    rate = flow * 1e-12 / (area * hardware.plunger_m_per_step)
    sign = 1.0 if kind == PRIMING else -1.0
    return MoveRequest(
        kind=kind,
        rate=sign * rate,
        target_counts=mark_counts(msg.volume_nl, per_count),
        fl_per_count=per_count,
        bore_um=msg.syringe_bore_um,
        flow_nl_s=flow,
        clamped=(flow,) if flow < msg.flow_nl_s else (),
    )


def check_prime(
    msg: Prime,
    config: ControllerConfig,
    hardware: Hardware,
    max_flow_nl_s: int,
    stroke_left_counts: int,
    *,
    selected_bore_um: int = 0,
    volume_factor_ppm: int = 1_000_000,
) -> MoveRequest | BadParam:
    """PRIME (SPEC §7.8): bore in range (and the selected syringe's, if any), flow >= 1 (then clamped
    as ARM's), 1 <= volume <= what the stroke left holds. `target_counts` is the mark, counts from
    the start position; volumes use the calibrated volume per count, as an injection's do."""
    return _volume_move(
        PRIMING, msg, config, hardware, max_flow_nl_s, stroke_left_counts, selected_bore_um, volume_factor_ppm
    )


def check_withdraw(
    msg: Withdraw,
    config: ControllerConfig,
    hardware: Hardware,
    max_flow_nl_s: int,
    enc: int,
    *,
    selected_bore_um: int = 0,
    volume_factor_ppm: int = 1_000_000,
) -> MoveRequest | BadParam:
    """WITHDRAW: as PRIME, with the volume bounded by the room back to home. `target_counts` becomes
    the absolute position of the mark, never behind home."""
    home = home_counts(config, hardware)
    request = _volume_move(
        WITHDRAWING, msg, config, hardware, max_flow_nl_s, enc - home, selected_bore_um, volume_factor_ppm
    )
    if isinstance(request, BadParam):
        return request
    target = max(home, enc - request.target_counts)
    return MoveRequest(
        request.kind,
        request.rate,
        target,
        request.fl_per_count,
        request.bore_um,
        request.flow_nl_s,
        clamped=request.clamped,
    )


def max_backward_um_s(hardware: Hardware) -> int:
    """Top backward speed: the plunger's top speed."""
    return int(hardware.max_step_rate_hz * hardware.plunger_m_per_step * 1e6)


def check_jog(msg: Jog, config: ControllerConfig, hardware: Hardware) -> MoveRequest | BadParam:
    """JOG: 1 <= hold_ms <= the watchdog period; speed non-zero, forward at most
    `jog_forward_max_um_s`, backward at most the plunger's top speed (refused, not clamped: the host
    repeats JOG several times a second, a clamp alarm each time would flood the event log)."""
    if msg.hold_ms < 1:
        return BadParam(JOG_HOLD, 1)
    if msg.hold_ms > config.watchdog_ms:
        return BadParam(JOG_HOLD, config.watchdog_ms)
    speed = msg.speed_um_s
    if speed == 0:
        return BadParam(JOG_SPEED, 1)
    if speed > config.jog_forward_max_um_s:
        return BadParam(JOG_SPEED, config.jog_forward_max_um_s)
    if -speed > max_backward_um_s(hardware):
        return BadParam(JOG_SPEED, -max_backward_um_s(hardware))
    rate = speed * 1e-6 / hardware.plunger_m_per_step
    target = home_counts(config, hardware) if speed < 0 else 0
    return MoveRequest(JOGGING, rate, target, 0, 0, 0, grant_us=msg.hold_ms * 1000)


def check_home(msg: Home, config: ControllerConfig, hardware: Hardware) -> MoveRequest | BadParam:
    """HOME: 1 <= speed <= the plunger's top speed."""
    if msg.speed_um_s < 1:
        return BadParam(HOME_SPEED, 1)
    top = max_backward_um_s(hardware)
    if msg.speed_um_s > top:
        return BadParam(HOME_SPEED, top)
    rate = -msg.speed_um_s * 1e-6 / hardware.plunger_m_per_step
    return MoveRequest(HOMING, rate, home_counts(config, hardware), 0, 0, 0)
