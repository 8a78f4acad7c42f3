"""Command bookkeeping: the command-id cache and the checks of ARM and SET_LIMITS.

The checks are pure functions from a message and the device's limits to either a BAD_PARAM
(field index in the message layout, and the bound that was broken) or the values to put in force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from firmware_sim.controller.config import ControllerConfig
from firmware_sim.hal import Hardware
from protocol.enums import Capabilities, Mode, PlanFlags
from protocol.messages import Arm, Message, SetLimits

CACHE_SIZE = 16

# Layout indexes of the fields a NAK BAD_PARAM names (Message.field_name() maps them back).
ARM_MODE, ARM_FLAGS, ARM_FLOW, ARM_INCREMENT, ARM_VOLUME = 1, 2, 3, 4, 5
ARM_SOFT, ARM_HARD, ARM_RELIEF, ARM_MIXED_AGO, ARM_WORKING_TIME = 6, 7, 8, 9, 10
ARM_VISC_MIN, ARM_VISC_MAX, ARM_CANNULA_LENGTH, ARM_CANNULA_ID, ARM_BORE = 11, 12, 13, 14, 15
LIMITS_SOFT, LIMITS_HARD, LIMITS_RELIEF, LIMITS_FLOW = 1, 2, 3, 4
TELEMETRY_DIVIDER, TELEMETRY_BATCH = 1, 2

NL_PER_M3 = 1e12


class CommandCache:
    """The answers to the last `size` commands (protocol/SPEC.md §7.4): a retried command gets the
    same ACK/NAK and is not applied again. Only the ACK/NAK is kept, with a flag saying whether the
    command had a reply: a retried ARM, SET_LIMITS or GET_STATUS gets a STATUS built at the time of
    the retry first. A fixed ring: the oldest entry is overwritten. Entries are keyed by cmd_id and
    type, so a host that reuses an id for another command has that command applied, not answered
    with someone else's ACK."""

    __slots__ = ("_answers", "_ids", "_next", "_replies", "_types")

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._ids = [0] * size  # cmd_id 0 is never cached, so 0 marks an empty slot
        self._types = [0] * size
        self._answers: list[Message | None] = [None] * size
        self._replies = [False] * size
        self._next = 0

    def get(self, cmd_id: int, msg_type: int) -> tuple[Message, bool] | None:
        """(cached ACK/NAK, had a reply) or None."""
        ids = self._ids
        for i in range(len(ids)):
            if ids[i] == cmd_id and self._types[i] == msg_type:
                answer = self._answers[i]
                if answer is not None:
                    return answer, self._replies[i]
        return None

    def put(self, cmd_id: int, msg_type: int, answer: Message, had_reply: bool) -> None:
        i = self._next
        self._ids[i] = cmd_id
        self._types[i] = msg_type
        self._answers[i] = answer
        self._replies[i] = had_reply
        self._next = (i + 1) % len(self._ids)

    def clear(self) -> None:
        for i in range(len(self._ids)):
            self._ids[i] = 0
            self._answers[i] = None


@dataclass(frozen=True, slots=True)
class Plan:
    """An accepted ARM, in SI units, with its limits clamped to the device's."""

    incremental: bool
    relief: bool
    flow_nl_s: int
    increment_nl: int
    volume_limit_nl: int
    soft_limit_pa: int
    hard_limit_pa: int
    relief_pa: int
    mixed_ago_ms: int
    working_time_ms: int
    viscosity_min_pas: float
    viscosity_max_pas: float
    cannula_length_m: float
    cannula_id_m: float
    bore_area_m2: float
    fl_per_count: int
    """Volume of one encoder count of plunger travel through the bore, femtolitres (1e-6 nL; with
    a 1 um encoder: the bore area in um2). Every volume the controller counts is an integer
    multiple of it (SPEC §8.5)."""
    clamped: tuple[int, ...]
    """Values in force of the fields that were clamped (one LIMIT_CLAMPED alarm each)."""


@dataclass(frozen=True, slots=True)
class BadParam:
    field: int
    detail: int


def usable_stroke_counts(config: ControllerConfig, hardware: Hardware, stroke_m: float | None = None) -> int:
    """The usable stroke in encoder counts: the physical stroke (the drive's travel, or a selected
    syringe's shorter stroke) less the forward margin. END_OF_TRAVEL brings the plunger to rest here
    (not at the physical end stop), DEVICE_INFO reports it as `travel_um`, and ARM refuses a volume
    the rest of it cannot deliver."""
    stroke = hardware.travel_m if stroke_m is None else stroke_m
    return int((stroke - config.travel_margin_m) / hardware.encoder_m_per_count + 1e-6)


def max_flow_for_bore(config: ControllerConfig, hardware: Hardware, bore_area_m2: float) -> int:
    """The highest flow setpoint with this syringe: the device limit, or what the plunger's top
    speed delivers, whichever is lower (nL/s). ARM clamps to it."""
    motor = hardware.max_step_rate_hz * hardware.plunger_m_per_step * bore_area_m2 * NL_PER_M3
    return min(config.max_flow_nl_s, int(motor))


def _out_of(value: int, bounds: tuple[int, int]) -> int | None:
    lo, hi = bounds
    if value < lo:
        return lo
    if value > hi:
        return hi
    return None


FL_PER_NL = 1_000_000


def fl_per_count(hardware: Hardware, bore_area_m2: float) -> int:
    """Bore volume per encoder count in femtolitres, rounded once (1 m3 = 1e18 fL)."""
    return round(bore_area_m2 * hardware.encoder_m_per_count * 1e18)


def corrected_fl_per_count(geometric_fl: int, factor_ppm: int) -> int:
    """A = round(A0 x k / 10^6), half up: the volume of one encoder count with the volume
    calibration `k` (CALIBRATE_VOLUME, SPEC §5.20) in force; an integer, so every volume stays an
    exact integer product of counts and A (SPEC §8.5)."""
    return (geometric_fl * factor_ppm + 500_000) // 1_000_000


def check_arm(
    arm: Arm,
    config: ControllerConfig,
    hardware: Hardware,
    capabilities: Capabilities,
    stroke_left_counts: int | None = None,
    *,
    selected_bore_um: int = 0,
    pressure_ceiling_pa: int | None = None,
    volume_factor_ppm: int = 1_000_000,
) -> Plan | BadParam:
    """ARM's checks (protocol/SPEC.md §7.8), on the values after clamping; nothing is applied here.

    Beyond the SPEC's list, the dimensions must be plausible (ControllerConfig.*_um_range, and the
    cannula narrower than the syringe) and the volume limit must fit in the stroke: a bore of a few
    um would turn every volume check into nonsense. A cement already past its working time is not
    refused here: ARM is accepted and the WORKING_TIME stop follows.

    `stroke_left_counts`: encoder counts from the plunger's position to the end of the usable stroke
    (`travel_um`); the volume limit must fit in it. None: the whole stroke (for checks without a rig).

    With a syringe selected (SET_SYRINGE): `selected_bore_um` is its bore, which the plan must name
    (check 5a: field `syringe_bore_um`, detail = the selected bore); `pressure_ceiling_pa` the lower of
    the device's and the syringe's maximum pressure, to which the limits are clamped; and
    `volume_factor_ppm` the volume calibration, which scales the volume per count (SPEC §8.5)."""
    if int(arm.mode) not in (Mode.CONTINUOUS, Mode.INCREMENTAL) or (
        arm.mode == Mode.INCREMENTAL and not capabilities & Capabilities.INCREMENTAL
    ):
        return BadParam(ARM_MODE, int(max(Mode)))
    defined = int(PlanFlags.RELIEF) if capabilities & Capabilities.RELIEF_BACKOFF else 0
    if int(arm.plan_flags) & ~defined:
        return BadParam(ARM_FLAGS, defined)
    for index, value, bounds in (
        (ARM_CANNULA_LENGTH, arm.cannula_length_um, config.cannula_length_um_range),
        (ARM_CANNULA_ID, arm.cannula_id_um, config.cannula_id_um_range),
        (ARM_BORE, arm.syringe_bore_um, config.syringe_bore_um_range),
    ):
        bound = _out_of(value, bounds)
        if bound is not None:
            return BadParam(index, bound)
    if selected_bore_um and arm.syringe_bore_um != selected_bore_um:
        return BadParam(ARM_BORE, selected_bore_um)
    if arm.cannula_id_um >= arm.syringe_bore_um:
        return BadParam(ARM_CANNULA_ID, arm.syringe_bore_um)
    ceiling_pa = config.max_pressure_pa if pressure_ceiling_pa is None else pressure_ceiling_pa

    clamped: list[int] = []

    def clamp(value: int, ceiling: int) -> int:
        if value > ceiling:
            clamped.append(ceiling)
            return ceiling
        return value

    bore_m = arm.syringe_bore_um * 1e-6
    area = math.pi * bore_m * bore_m / 4.0
    if arm.flow_nl_s < 1:
        return BadParam(ARM_FLOW, 1)
    flow = clamp(arm.flow_nl_s, max_flow_for_bore(config, hardware, area))
    incremental = arm.mode == Mode.INCREMENTAL
    if arm.volume_limit_nl < 1:
        return BadParam(ARM_VOLUME, 1)
    per_count = corrected_fl_per_count(fl_per_count(hardware, area), volume_factor_ppm)
    if stroke_left_counts is None:
        stroke_left_counts = usable_stroke_counts(config, hardware)
    volume_max = max(0, stroke_left_counts) * per_count // FL_PER_NL
    if arm.volume_limit_nl > volume_max:
        return BadParam(ARM_VOLUME, volume_max)
    if incremental and arm.increment_nl < 1:
        return BadParam(ARM_INCREMENT, 1)
    if incremental and arm.increment_nl > arm.volume_limit_nl:
        return BadParam(ARM_INCREMENT, arm.volume_limit_nl)

    soft = clamp(arm.soft_limit_pa, ceiling_pa)
    hard = clamp(arm.hard_limit_pa, ceiling_pa)
    relief = clamp(arm.relief_pa, ceiling_pa)
    if soft < 1:
        return BadParam(ARM_SOFT, 1)
    if soft > hard:
        return BadParam(ARM_SOFT, hard)
    if relief >= soft:
        return BadParam(ARM_RELIEF, soft)
    if arm.working_time_ms < 1:
        return BadParam(ARM_WORKING_TIME, 1)
    vmin, vmax = arm.viscosity_min_pas, arm.viscosity_max_pas
    if not (math.isfinite(vmin) and vmin >= 0.0):
        return BadParam(ARM_VISC_MIN, 0)
    if not (math.isfinite(vmax) and vmax >= vmin):
        return BadParam(ARM_VISC_MAX, math.ceil(vmin))

    return Plan(
        incremental=incremental,
        relief=bool(arm.plan_flags & PlanFlags.RELIEF),
        flow_nl_s=flow,
        increment_nl=arm.increment_nl if incremental else 0,
        volume_limit_nl=arm.volume_limit_nl,
        soft_limit_pa=soft,
        hard_limit_pa=hard,
        relief_pa=relief,
        mixed_ago_ms=arm.mixed_ago_ms,
        working_time_ms=arm.working_time_ms,
        viscosity_min_pas=vmin,
        viscosity_max_pas=vmax,
        cannula_length_m=arm.cannula_length_um * 1e-6,
        cannula_id_m=arm.cannula_id_um * 1e-6,
        bore_area_m2=area,
        fl_per_count=per_count,
        clamped=tuple(clamped),
    )


@dataclass(frozen=True, slots=True)
class Limits:
    soft_limit_pa: int
    hard_limit_pa: int
    relief_pa: int
    max_flow_nl_s: int
    clamped: tuple[int, ...] = ()


def check_limits(
    request: SetLimits, current: Limits, config: ControllerConfig, pressure_ceiling_pa: int | None = None
) -> Limits | BadParam:
    """SET_LIMITS: 0 leaves a field as it is; values above the device's own (or the selected
    syringe's maximum pressure, `pressure_ceiling_pa`) are clamped; the resulting limits must keep
    soft <= hard and relief < soft, else nothing changes."""
    ceiling_pa = config.max_pressure_pa if pressure_ceiling_pa is None else pressure_ceiling_pa
    clamped: list[int] = []

    def take(asked: int, now: int, ceiling: int) -> int:
        if asked == 0:
            return now
        if asked > ceiling:
            clamped.append(ceiling)
            return ceiling
        return asked

    soft = take(request.soft_limit_pa, current.soft_limit_pa, ceiling_pa)
    hard = take(request.hard_limit_pa, current.hard_limit_pa, ceiling_pa)
    relief = take(request.relief_pa, current.relief_pa, ceiling_pa)
    flow = take(request.max_flow_nl_s, current.max_flow_nl_s, config.max_flow_nl_s)
    if soft > hard:
        field = LIMITS_SOFT if request.soft_limit_pa else LIMITS_HARD
        return BadParam(field, hard if field == LIMITS_SOFT else soft)
    if relief >= soft:
        field = LIMITS_RELIEF if request.relief_pa else LIMITS_SOFT
        return BadParam(field, soft if field == LIMITS_RELIEF else relief + 1)
    return Limits(soft, hard, relief, flow, tuple(clamped))
