"""SET_SYRINGE, ZERO, CALIBRATE_SPAN, CALIBRATE_VOLUME and GET_CALIBRATION (protocol/SPEC.md §5.17-§5.23)
on the controller, every command in every state, through the real codec (encoded frames fed to a
MessageStream), and what each changes on the physical quantities: the pressure read, the volume
delivered, where the plunger comes to rest."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_sim.controller import Controller, ControllerConfig
from firmware_sim.controller.calibration import Calibration, DeviceSetup
from firmware_sim.controller.commands import corrected_fl_per_count, fl_per_count
from firmware_sim.hal import REFERENCE_RIG
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    AlarmCode,
    CalibrateSpan,
    CalibrateVolume,
    CalibrationInfo,
    Clear,
    Command,
    EventKind,
    GetCalibration,
    Message,
    MessageStream,
    Nak,
    NakCode,
    SetLimits,
    SetSyringe,
    Start,
    State,
    Status,
    SyringeInfo,
    Zero,
    encode_frame,
    framing,
)
from protocol.codec import HEADER, Frame
from protocol.messages import GetMotion, MotionStatus, Prime
from tests.controller.fakeplant import FakePlant
from tests.controller.harness import Rig, arm_msg
from tests.controller.test_motion_states import prime, rig_in

UTC = 1_780_000_000
"""A plausible host clock (2026)."""
BD5 = SetSyringe(
    0, "5ml", bore_um=12_060, stroke_um=43_800, dead_volume_nl=120_000, max_pressure_pa=5_000_000
)
"""The host library's 5 mL syringe (host/syringes.py)."""


def syringe(cmd_id: int, **changes: Any) -> SetSyringe:
    return dataclasses.replace(BD5, cmd_id=cmd_id, **changes)


U32 = st.integers(0, 0xFFFF_FFFF)
NEAR = st.one_of(U32, st.integers(0, 10_000_000))
"""Field values: anywhere in the wire range, and often near the device's bounds."""
UTCS = st.one_of(U32, st.just(UTC))
COMMANDS = st.one_of(
    st.builds(
        SetSyringe,
        cmd_id=st.just(1),
        name=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=16),
        bore_um=st.one_of(NEAR, st.integers(2_000, 40_000)),
        stroke_um=st.one_of(NEAR, st.integers(5_000, 60_000)),
        dead_volume_nl=NEAR,
        max_pressure_pa=NEAR,
    ),
    st.builds(Zero, cmd_id=st.just(1), utc_s=UTCS),
    st.builds(CalibrateSpan, cmd_id=st.just(1), reference_pa=NEAR, utc_s=UTCS),
    st.builds(
        CalibrateVolume, cmd_id=st.just(1), nominal_nl=NEAR, mass_ug=NEAR, density_mg_l=NEAR, utc_s=UTCS
    ),
    st.builds(GetCalibration, cmd_id=st.just(1)),
)
REPLIES: dict[type[Command], list[type[Message]]] = {
    SetSyringe: [SyringeInfo],
    Zero: [CalibrationInfo],
    CalibrateSpan: [CalibrationInfo],
    CalibrateVolume: [CalibrationInfo],
    GetCalibration: [SyringeInfo, CalibrationInfo],
}
REFUSED_IN_IDLE = {NakCode.BAD_PARAM, NakCode.SENSOR_FAULT, NakCode.CALIBRATION_OUT_OF_RANGE}
"""What a setup command may meet in IDLE: its parameters or its measurement, never the state."""


def over_the_wire(rig: Rig, command: Command) -> list[Message]:
    """Encode the command as the host would, decode it as the device's runtime does, tick once."""
    stream = MessageStream()
    items = stream.feed(encode_frame(command, rig.cmd_id & 0xFFFF))
    assert len(items) == 1, items
    assert isinstance(items[0], Frame), items
    return rig.tick(items)


def answer_of(outgoing: list[Message], cmd_id: int) -> Ack | Nak:
    (answer,) = [m for m in outgoing if isinstance(m, Ack | Nak) and m.cmd_id == cmd_id]
    return answer


def state_refusal(command: Command, state: State) -> NakCode | None:
    """SPEC §8.2: setup commands only in IDLE (STOP_LATCHED in STOPPED / FAULT, BAD_STATE in every
    other state, the movements' included); GET_CALIBRATION in every state."""
    if isinstance(command, GetCalibration) or state == State.IDLE:
        return None
    if state in (State.STOPPED, State.FAULT):
        return NakCode.STOP_LATCHED
    return NakCode.BAD_STATE


@pytest.mark.parametrize("state", list(State), ids=[s.name for s in State])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=COMMANDS)
def test_every_setup_command_in_every_state(state: State, drawn: Command) -> None:
    """Whatever its fields, a setup command outside IDLE gets the state's refusal (the state is
    checked before the parameters, SPEC §7.7); in IDLE it is accepted with its replies right before
    the ACK, or refused for its parameters or its measurement; a refusal changes nothing."""
    rig = rig_in(state)
    cmd = dataclasses.replace(drawn, cmd_id=rig.next_id())  # type: ignore[type-var]
    before = (rig.c.setup, rig.c.setup_version, rig.c.state, len(rig.transitions()))
    outgoing = over_the_wire(rig, cmd)
    answer = answer_of(outgoing, cmd.cmd_id)
    refusal = state_refusal(cmd, state)
    if refusal is not None:
        assert isinstance(answer, Nak), answer
        assert answer.code == refusal, answer
    elif isinstance(answer, Nak):
        assert answer.code in REFUSED_IN_IDLE, answer
    if isinstance(answer, Nak):
        assert (rig.c.setup, rig.c.setup_version, rig.c.state, len(rig.transitions())) == before
        assert not [m for m in outgoing if isinstance(m, SyringeInfo | CalibrationInfo)], (
            "no reply with a NAK"
        )
        return
    assert isinstance(answer, Ack)
    assert rig.c.state == state, "a setup command never changes the state"
    replies = REPLIES[type(cmd)]
    at = outgoing.index(answer)
    got = outgoing[at - len(replies) : at]
    assert [type(m) for m in got] == replies, "replies immediately before the ACK (SPEC §7.2)"
    assert all(m.cmd_id == cmd.cmd_id for m in got)  # type: ignore[attr-defined]
    assert rig.c.setup_version == before[1] + (0 if isinstance(cmd, GetCalibration) else 1)


# -- syringe ----------------------------------------------------------------------------------------
def test_selected_syringe_sets_the_end_of_travel_and_is_reported() -> None:
    rig = rig_in(State.IDLE)
    outgoing = rig.ok(lambda i: syringe(i))
    (info,) = [m for m in outgoing if isinstance(m, SyringeInfo)]
    assert (info.name, info.bore_um, info.stroke_um, info.dead_volume_nl) == ("5ml", 12_060, 43_800, 120_000)
    assert info.travel_um == 43_800 - 500, "the syringe's stroke less the 0.5 mm forward margin"
    assert info.max_pressure_pa == 5_000_000


def test_arm_must_name_the_selected_bore() -> None:
    rig = rig_in(State.IDLE)
    rig.ok(lambda i: syringe(i))
    answer, _ = rig.command(arm_msg)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 15, 12_060)
    status = rig.arm(syringe_bore_um=12_060, volume_limit_nl=500_000)
    assert status.state == State.ARMED


def test_volume_limit_refused_beyond_the_syringe_stroke() -> None:
    """ARM's check 9 uses the syringe's end: the stroke left from the plunger (10 mm from home on the
    fake plant) to 43.3 mm, through the 12.06 mm bore."""
    rig = rig_in(State.IDLE)
    rig.ok(lambda i: syringe(i))
    per_count = fl_per_count(REFERENCE_RIG, 3.141592653589793 * (12_060e-6) ** 2 / 4)
    left = 43_300 - rig.c.plunger_um
    most = left * per_count // 1_000_000
    answer, _ = rig.command(lambda i: arm_msg(i, syringe_bore_um=12_060, volume_limit_nl=most + 1))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 5, most)


def test_plunger_comes_to_rest_at_the_syringe_end_not_the_drive_end() -> None:
    """A syringe shorter than the drive: END_OF_TRAVEL at the syringe's usable end (the physical thing)."""
    short = 15_000  # usable end 14.5 mm; the fake plant's plunger starts at 10 mm
    rig = Rig(plant=FakePlant(position_m=0.010))
    rig.hello()
    rig.ok(lambda i: syringe(i, stroke_um=short))
    end_um = 14_500
    left_nl = (end_um - rig.c.plunger_um) * fl_per_count(REFERENCE_RIG, 3.141592653589793 * 12_060e-6**2 / 4)
    rig.arm(syringe_bore_um=12_060, volume_limit_nl=left_nl // 1_000_000, flow_nl_s=150_000)
    rig.ok(Start)
    rig.run(10.0, lambda r: r.c.state != State.INJECTING)
    rig.run(0.2)
    assert rig.c.state in (State.DONE, State.STOPPED)
    assert rig.plant.max_position_m * 1e6 < end_um + 5, (
        "never past the syringe's usable end (+ the braking overshoot)"
    )
    assert rig.plant.max_position_m * 1e6 > end_um - 10


def test_pressure_limits_clamped_to_the_syringe() -> None:
    rig = rig_in(State.IDLE)
    rig.ok(lambda i: syringe(i, max_pressure_pa=3_000_000))
    clamps = [e for e in rig.kinds(EventKind.ALARM) if e.alarm == AlarmCode.LIMIT_CLAMPED]
    assert [e.detail for e in clamps] == [3_000_000], (
        "the default hard limit 4 MPa fell to the syringe's 3 MPa"
    )
    assert rig.c.limits.hard_limit_pa == 3_000_000
    outgoing = rig.ok(lambda i: SetLimits(i, hard_limit_pa=3_500_000))
    (status,) = [m for m in outgoing if isinstance(m, Status)]
    assert status.hard_limit_pa == 3_000_000
    status = rig.arm(syringe_bore_um=12_060, volume_limit_nl=500_000, hard_limit_pa=4_000_000)
    assert status.hard_limit_pa == 3_000_000


LIMITS = [
    ("name", "", 1, 16),
    ("name", "not ascii", 1, 16),
    ("bore_um", 1_999, 2, 2_000),
    ("bore_um", 40_001, 2, 40_000),
    ("stroke_um", 4_999, 3, 5_000),
    ("stroke_um", 60_001, 3, 60_000),
    ("max_pressure_pa", 0, 5, 1),
    ("max_pressure_pa", 8_000_001, 5, 8_000_000),
]


@pytest.mark.parametrize(("field", "value", "index", "bound"), LIMITS)
def test_syringe_beyond_the_device_is_refused_naming_field_and_bound(
    field: str, value: object, index: int, bound: int
) -> None:
    rig = rig_in(State.IDLE)
    before = rig.c.setup
    if field == "name" and value != "":  # a control character: what pack_body would refuse to send
        body = bytearray(syringe(1).pack_body())
        body[4:20] = b"bad\x07name".ljust(16, b"\0")
        items = MessageStream().feed(
            framing.encode(HEADER.pack(PROTOCOL_VERSION, SetSyringe.TYPE, 0) + bytes(body))
        )
        answer = answer_of(rig.tick(items), 1)
    else:
        answer, _ = rig.command(lambda i: syringe(i, **{field: value}))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, index, bound)
    assert rig.c.setup == before


def test_dead_volume_must_be_below_the_stroke_volume() -> None:
    rig = rig_in(State.IDLE)
    answer, _ = rig.command(lambda i: syringe(i, dead_volume_nl=6_000_000))
    assert isinstance(answer, Nak)
    assert (answer.field, answer.code) == (4, NakCode.BAD_PARAM)
    assert 4_990_000 < answer.detail < 5_010_000, "5 mL: the stroke's volume"


def test_deselect_goes_back_to_the_plan_bore_and_the_drive_travel() -> None:
    rig = rig_in(State.IDLE)
    rig.ok(lambda i: syringe(i))
    outgoing = rig.ok(lambda i: SetSyringe(i, "", 0, 0, 0, 0))
    (info,) = [m for m in outgoing if isinstance(m, SyringeInfo)]
    assert (info.name, info.bore_um, info.travel_um) == ("", 0, 59_500)
    assert rig.arm().state == State.ARMED  # the 7.29 mm plan bore is accepted again


# -- zero and span ------------------------------------------------------------------------------------
def held_line(pressure_pa: float, noise_pa: float = 10_000.0) -> Rig:
    """A session in IDLE whose line holds `pressure_pa` (an occluded line: no outflow), filter settled."""
    rig = Rig(plant=FakePlant(occluded=True, pressure_pa=pressure_pa, noise_pa=noise_pa))
    rig.hello()
    rig.run(0.2)
    return rig


def calibration(outgoing: list[Message]) -> CalibrationInfo:
    (info,) = [m for m in outgoing if isinstance(m, CalibrationInfo)]
    return info


def test_zero_tares_the_reading_and_is_dated() -> None:
    rig = held_line(30_000.0)
    assert abs(rig.c.pressure_pa - 30_000) < 10_000
    info = calibration(rig.ok(lambda i: Zero(i, UTC)))
    assert abs(info.zero_offset_pa - 30_000) < 10_000
    assert info.zero_utc_s == UTC
    rig.run(0.2)
    assert abs(rig.c.pressure_pa) < 10_000, "the same line now reads zero"


def test_zero_beyond_its_bound_is_a_sensor_fault_not_a_correction() -> None:
    rig = held_line(150_000.0)
    before = rig.c.setup
    answer, _outgoing = rig.command(lambda i: Zero(i, UTC))
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.SENSOR_FAULT
    assert 140_000 < answer.detail < 160_000, "the NAK carries the reading"
    assert rig.c.setup == before
    assert abs(rig.c.pressure_pa - 150_000) < 10_000, "still reads the truth"


def test_zero_refuses_a_host_clock_that_was_never_set() -> None:
    rig = held_line(0.0)
    answer, _ = rig.command(lambda i: Zero(i, 0))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (
        NakCode.BAD_PARAM,
        1,
        ControllerConfig().utc_s_min,
    )


def test_span_scales_the_reading_to_the_reference() -> None:
    rig = held_line(2_000_000.0, noise_pa=0.0)
    info = calibration(rig.ok(lambda i: CalibrateSpan(i, 2_040_000, UTC)))
    assert abs(info.span_gain_ppm - 1_020_000) <= 200
    assert (info.span_reference_pa, info.span_utc_s) == (2_040_000, UTC)
    rig.run(0.1)
    assert abs(rig.c.pressure_pa - 2_040_000) < 2_000


def test_span_beyond_its_bound_is_refused_with_the_gain() -> None:
    rig = held_line(2_000_000.0, noise_pa=0.0)
    before = rig.c.setup
    answer, _ = rig.command(lambda i: CalibrateSpan(i, 2_500_000, UTC))
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.CALIBRATION_OUT_OF_RANGE
    assert abs(answer.detail - 1_250_000) < 2_000
    assert rig.c.setup == before
    answer, _ = rig.command(lambda i: CalibrateSpan(i, 100_000, UTC))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (
        NakCode.BAD_PARAM,
        1,
        500_000,
    )


# -- zero check at ARM ------------------------------------------------------------------------------
def test_arm_refused_while_the_zero_has_drifted_then_accepted_after_zero() -> None:
    rig = held_line(80_000.0)
    answer, _ = rig.command(arm_msg)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.ZERO_DRIFT
    assert 70_000 < answer.detail < 90_000, "the NAK carries the reading"
    assert rig.c.state == State.IDLE
    rig.ok(lambda i: Zero(i, UTC))
    rig.run(0.05)
    assert rig.arm().state == State.ARMED


def test_zero_check_bound_is_reported() -> None:
    rig = Rig()
    info = calibration(rig.hello())
    assert info.zero_check_pa == ControllerConfig().arm_zero_check_pa


# -- volume calibration ------------------------------------------------------------------------------
def test_volume_factor_is_exact_and_applied_to_delivered_volume() -> None:
    rig = rig_in(State.IDLE)
    # 1.000 mL counted, 1.0200 g of water weighed: 1.02185... mL; k = 1 021 836 ppm
    info = calibration(rig.ok(lambda i: CalibrateVolume(i, 1_000_000, 1_020_000, 998_203, UTC)))
    assert info.volume_factor_ppm == (2 * 1_000_000 * 1_020_000 * 10**6 + 998_203 * 10**6) // (
        2 * 998_203 * 10**6
    )
    assert info.volume_factor_ppm == 1_021_836
    rig.arm(volume_limit_nl=300_000)
    rig.ok(Start)
    rig.run_until_state(State.DONE)
    rig.run(0.2)
    a0 = fl_per_count(REFERENCE_RIG, 3.141592653589793 * 7_290e-6**2 / 4)
    a = corrected_fl_per_count(a0, 1_021_836)
    high = round((rig.plant.max_position_m - 0.010) / REFERENCE_RIG.encoder_m_per_count)
    assert rig.c.delivered_nl in {h * a // 1_000_000 for h in (high - 1, high, high + 1)}
    assert 300_000 <= rig.c.delivered_nl < 300_000 + 2 * 100_000 * 0.001 + 2 * a / 1e6 + 1


def test_volume_factor_compounds_on_the_factor_in_force_and_is_bounded() -> None:
    """The nominal volume is what the device counted with the factor in force: two +4 % weighings
    compound to +8.16 %, a third (+12.49 %) is beyond the +-10 % bound and refused with the factor."""
    rig = rig_in(State.IDLE)
    weigh = lambda i: CalibrateVolume(i, 1_000_000, 1_040_000, 1_000_000, UTC)  # noqa: E731
    assert calibration(rig.ok(weigh)).volume_factor_ppm == 1_040_000
    assert calibration(rig.ok(weigh)).volume_factor_ppm == 1_081_600
    before = rig.c.setup
    answer, _ = rig.command(weigh)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.detail) == (
        NakCode.CALIBRATION_OUT_OF_RANGE,
        1_124_864,
    )
    assert rig.c.setup == before


@pytest.mark.parametrize(
    ("fields", "index", "bound"),
    [
        ((99_999, 1, 998_203), 1, 100_000),
        ((100_000_001, 1, 998_203), 1, 100_000_000),
        ((1_000_000, 0, 998_203), 2, 1),
        ((1_000_000, 1_000_000, 499_999), 3, 500_000),
        ((1_000_000, 1_000_000, 3_000_001), 3, 3_000_000),
    ],
)
def test_volume_calibration_input_refused_naming_field_and_bound(
    fields: tuple[int, int, int], index: int, bound: int
) -> None:
    rig = rig_in(State.IDLE)
    answer, _ = rig.command(lambda i: CalibrateVolume(i, *fields, UTC))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (
        NakCode.BAD_PARAM,
        index,
        bound,
    )


# -- cache, power cycle ----------------------------------------------------------------------------
def test_retried_zero_is_answered_from_the_cache_with_fresh_replies_and_not_applied_again() -> None:
    rig = held_line(20_000.0)
    cmd = Zero(rig.next_id(), UTC)
    first = rig.send(cmd)
    version = rig.c.setup_version
    rig.plant.pressure_pa = 40_000.0
    rig.run(0.2)
    again = rig.send(cmd)
    assert answer_of(again, cmd.cmd_id) == answer_of(first, cmd.cmd_id)
    assert rig.c.setup_version == version, "not applied again"
    assert calibration(again).zero_offset_pa == calibration(first).zero_offset_pa


def test_setup_survives_a_power_cycle() -> None:
    rig = held_line(25_000.0)
    rig.ok(lambda i: syringe(i))
    rig.ok(lambda i: Zero(i, UTC))
    rig.ok(lambda i: CalibrateVolume(i, 1_000_000, 1_010_000, 1_000_000, UTC + 60))
    stored = rig.c.setup
    reborn = Controller(ControllerConfig(), REFERENCE_RIG, rig.identity, setup=stored)
    rig.c = reborn
    outgoing = rig.hello()
    (mounted,) = [m for m in outgoing if isinstance(m, SyringeInfo)]
    info = calibration(outgoing)
    assert (mounted.name, mounted.bore_um, mounted.travel_um) == ("5ml", 12_060, 43_300)
    assert (info.zero_offset_pa, info.zero_utc_s) == (stored.calibration.zero_offset_pa, UTC)
    assert (info.volume_factor_ppm, info.volume_utc_s) == (1_010_000, UTC + 60)
    rig.run(0.2)
    assert abs(rig.c.pressure_pa) < 10_000, "the stored zero is in force after the reset"


def test_factory_setup_is_the_identity() -> None:
    setup = DeviceSetup()
    assert setup.syringe is None
    assert dataclasses.astuple(setup.calibration) == dataclasses.astuple(
        Calibration(0, 0, 1_000_000, 0, 0, 1_000_000, 0)
    )


def test_zero_check_only_on_a_line_presumed_open() -> None:
    """After an injection the line holds cement: re-ARM after CLEAR is not checked; a new ZERO (or a
    syringe) presumes the line open again, and its first ARM is."""
    rig = held_line(0.0)
    rig.plant.occluded = False
    rig.arm(volume_limit_nl=20_000)
    rig.ok(Start)
    rig.run_until_state(State.DONE)
    rig.run(0.1)
    rig.ok(Clear)
    rig.plant.occluded = True
    rig.plant.pressure_pa = 300_000.0  # cement under pressure in the line
    rig.run(0.2)
    assert rig.arm(volume_limit_nl=20_000).state == State.ARMED
    rig.ok(Clear)
    rig.ok(lambda i: syringe(i, bore_um=7_290, stroke_um=59_000))  # a new syringe: the line is open
    answer, _ = rig.command(lambda i: arm_msg(i, volume_limit_nl=20_000))
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.ZERO_DRIFT


def test_a_prime_fills_the_line_so_the_next_arm_is_not_zero_checked() -> None:
    rig = held_line(0.0)
    rig.ok(prime(volume_nl=20_000))
    rig.run_until_state(State.IDLE)
    rig.plant.pressure_pa = 300_000.0  # the primed cement still under pressure
    rig.run(0.2)
    assert rig.arm(volume_limit_nl=20_000).state == State.ARMED


def test_prime_names_the_selected_bore_and_counts_with_the_volume_factor() -> None:
    """The gravimetric dispense is a PRIME: its volume is counted as an injection's (the selected
    bore, the calibrated volume per count), so CALIBRATE_VOLUME's nominal is what the device counted."""
    rig = rig_in(State.IDLE)
    rig.ok(lambda i: syringe(i))
    answer, _ = rig.command(prime(volume_nl=20_000))  # the test plan's 7.29 mm bore: not the 5 mL's
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 1, 12_060)
    rig.ok(lambda i: CalibrateVolume(i, 1_000_000, 1_050_000, 1_000_000, UTC))
    rig.ok(lambda i: Prime(i, 12_060, 20_000, 100_000))
    rig.run_until_state(State.IDLE)
    rig.run(0.1)
    outgoing = rig.ok(GetMotion)
    (status,) = [m for m in outgoing if isinstance(m, MotionStatus)]
    a = corrected_fl_per_count(fl_per_count(REFERENCE_RIG, 3.141592653589793 * 12_060e-6**2 / 4), 1_050_000)
    assert status.primed_nl == status.moved_um * a // 1_000_000
    assert 100_000 <= status.primed_nl < 100_000 + 2 * a // 1_000 + 1
