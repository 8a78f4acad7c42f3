"""Command handling at the protocol level (protocol/SPEC.md §4.4, §7): one answer per command,
replies, sessions, the command-id cache, malformed frames, parameter checks and clamping."""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

import pytest

from firmware_sim.controller import FirmwareIdentity
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    AlarmCode,
    Capabilities,
    Clear,
    Command,
    DeviceInfo,
    EventKind,
    GetStatus,
    Heartbeat,
    Hello,
    Mode,
    MsgType,
    Nak,
    NakCode,
    Pause,
    PlanFlags,
    Resume,
    SetLimits,
    SetTelemetry,
    Start,
    State,
    Status,
    Stop,
    StopReason,
    StopSource,
    TelemetryBatch,
    encode_frame,
    framing,
)
from protocol.codec import HEADER, Frame, MessageStream, Rejected
from protocol.messages import CalibrationInfo, Message, SyringeInfo
from protocol.telemetry import MAX_BATCH_SAMPLES
from tests.controller.harness import Rig, arm_msg, frame, rejected, started


def answers(outgoing: list[Any]) -> list[Ack | Nak]:
    return [m for m in outgoing if isinstance(m, Ack | Nak)]


# -- sessions --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda i: arm_msg(i),
        Start,
        Pause,
        Resume,
        Clear,
        lambda i: SetLimits(i),
        lambda i: SetTelemetry(i, 1, 20),
    ],
    ids=["ARM", "START", "PAUSE", "RESUME", "CLEAR", "SET_LIMITS", "SET_TELEMETRY"],
)
def test_no_session_before_hello(make: Callable[[int], Command]) -> None:
    rig = Rig()
    answer, _ = rig.command(make)
    assert isinstance(answer, Nak)
    assert (answer.code, answer.state) == (NakCode.NO_SESSION, State.IDLE)


def test_get_status_and_stop_need_no_session_and_heartbeat_is_never_answered() -> None:
    rig = Rig()
    _, outgoing = rig.command(GetStatus)
    assert [type(m) for m in outgoing if isinstance(m, Status | Ack)] == [Status, Ack]
    assert isinstance(rig.command(lambda i: Stop(i, StopSource.OPERATOR))[0], Ack)
    assert answers(rig.send(Heartbeat(uptime_ms=5))) == []


def test_hello_opens_a_session_with_device_info_then_ack() -> None:
    """With capability SETUP the syringe and calibration in force follow DEVICE_INFO, before the ACK
    (SPEC §7.2); a host that does not know them drops them, and still sees DEVICE_INFO, then ACK."""
    rig = Rig()
    outgoing = rig.hello()
    info, ack = [m for m in outgoing if isinstance(m, DeviceInfo | Ack)]
    assert isinstance(info, DeviceInfo)
    assert info.cmd_id == ack.cmd_id
    at = outgoing.index(info)
    assert [type(m) for m in outgoing[at : outgoing.index(ack) + 1]] == [
        DeviceInfo,
        SyringeInfo,
        CalibrationInfo,
        Ack,
    ]
    assert all(m.cmd_id == ack.cmd_id for m in outgoing[at : at + 3])  # type: ignore[attr-defined]
    assert (info.protocol_version, info.serial, info.sample_rate_hz, info.watchdog_ms) == (
        PROTOCOL_VERSION,
        "TEST-1",
        1000,
        500,
    )
    assert (info.max_pressure_pa, info.max_flow_nl_s, info.travel_um, info.max_batch_samples) == (
        8_000_000,
        166_667,
        59_500,
        MAX_BATCH_SAMPLES,
    )
    assert info.capabilities & Capabilities.SIMULATOR
    assert rig.c.session_open


def test_hello_of_another_version_is_refused() -> None:
    rig = Rig()
    answer, _ = rig.command(lambda i: Hello(i, PROTOCOL_VERSION + 1))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.detail) == (NakCode.VERSION_MISMATCH, PROTOCOL_VERSION)
    assert not rig.c.session_open


def test_watchdog_fed_by_any_valid_frame() -> None:
    rig = Rig(heartbeats=False)
    rig.hello()
    rig.arm()
    for _ in range(10):
        rig.run(0.3)
        rig.command(GetStatus)
    assert rig.c.state == State.ARMED
    rig.run(0.501)
    assert (rig.c.state, rig.c.stop_reason) == (State.STOPPED, StopReason.HOST_LOST)
    answer, _ = rig.command(GetStatus)
    assert isinstance(answer, Ack)
    answer, _ = rig.command(Clear)
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.NO_SESSION


# -- cmd_id and the cache ----------------------------------------------------------------------------
def test_cmd_id_zero_is_refused_uncached() -> None:
    rig = Rig()
    rig.hello()
    answer, _ = rig.command(arm_msg(0))
    assert isinstance(answer, Nak)
    assert (answer.cmd_id, answer.code, answer.field, answer.detail) == (0, NakCode.BAD_PARAM, 0, 1)
    assert rig.c.state == State.IDLE


def test_stop_with_cmd_id_zero_is_executed() -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    answer, _ = rig.command(Stop(0, StopSource.OPERATOR))
    assert isinstance(answer, Ack)
    assert (answer.cmd_id, rig.c.state) == (0, State.STOPPED)


def test_retried_query_gets_a_fresh_status_then_the_cached_ack() -> None:
    rig = Rig()
    rig.hello()
    arm = arm_msg(77)
    _, first = rig.command(arm)
    rig.run(0.05)
    _, again = rig.command(arm)
    s1 = next(m for m in first if isinstance(m, Status))
    s2, ack2 = [m for m in again if isinstance(m, Status | Ack)]
    assert isinstance(s2, Status)
    assert s2.cmd_id == 77
    assert s2.t_us > s1.t_us, "built at the time of the retry"
    assert ack2 == next(m for m in first if isinstance(m, Ack))
    assert len([e for e in rig.events if e.kind == EventKind.STATE_CHANGE]) == 1, "ARM applied once"


def test_hello_clears_the_cache() -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    clear = Clear(9)
    rig.ok(clear)
    rig.arm()
    rig.hello()  # outside an injection a HELLO changes no state (SPEC §7.6)
    rig.ok(clear)
    assert rig.c.state == State.IDLE, "after HELLO the same id is a new command"


def test_nak_busy_is_cached_retry_needs_a_new_id() -> None:
    rig = Rig()
    rig.hello()
    rig.arm(plan_flags=PlanFlags.RELIEF)
    rig.ok(Start)
    rig.run(2.0)
    rig.ok(lambda i: Stop(i, StopSource.OPERATOR))
    clear = Clear(500)
    first, _ = rig.command(clear)
    assert isinstance(first, Nak)
    assert first.code == NakCode.BUSY
    rig.run(3.0)
    again, _ = rig.command(clear)
    assert again == first
    assert isinstance(rig.command(Clear(501))[0], Ack)


# -- frames the codec could not decode ------------------------------------------------------------------
def test_version_mismatch_is_answered_and_nothing_applied_not_even_stop() -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    rej = rejected(struct.pack("<HBx", 31, StopSource.OPERATOR), MsgType.STOP, version=PROTOCOL_VERSION + 1)
    (nak,) = answers(rig.tick([rej]))
    assert isinstance(nak, Nak)
    assert (nak.cmd_id, nak.cmd_type, nak.code, nak.detail) == (
        31,
        MsgType.STOP,
        NakCode.VERSION_MISMATCH,
        PROTOCOL_VERSION,
    )
    assert rig.c.state == State.ARMED


def test_unknown_command_type() -> None:
    rig = Rig()
    (nak,) = answers(rig.tick([rejected(struct.pack("<H", 12), 0x3E)]))
    assert isinstance(nak, Nak)
    assert (nak.cmd_id, nak.cmd_type, nak.code, nak.field) == (12, 0x3E, NakCode.UNKNOWN_COMMAND, 0xFF)


def test_bad_length_names_the_expected_length() -> None:
    rig = Rig()
    rig.hello()
    (nak,) = answers(rig.tick([rejected(struct.pack("<HB", 13, 0), MsgType.START)]))
    assert isinstance(nak, Nak)
    assert (nak.cmd_id, nak.code, nak.detail) == (13, NakCode.BAD_LENGTH, Start.body_size())


def test_undefined_enum_value_is_bad_param_with_field_and_largest_value() -> None:
    rig = Rig()
    rig.hello()
    body = bytearray(arm_msg(14).pack_body())
    body[2] = 7  # mode
    (nak,) = answers(rig.tick([rejected(bytes(body), MsgType.ARM)]))
    assert isinstance(nak, Nak)
    assert (nak.cmd_id, nak.code, nak.field, nak.detail) == (14, NakCode.BAD_PARAM, 1, max(Mode))
    assert rig.c.state == State.IDLE


def test_stop_with_an_undefined_source_still_stops() -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    (ack,) = answers(rig.tick([rejected(struct.pack("<HBx", 15, 9), MsgType.STOP)]))
    assert isinstance(ack, Ack)
    assert (ack.cmd_id, ack.state) == (15, State.STOPPED)
    assert (rig.c.stop_reason, rig.c.stop_source) == (StopReason.OPERATOR_STOP, StopSource.OPERATOR)


def test_a_stop_with_a_body_of_the_wrong_length_still_stops() -> None:
    rig = started(seconds=1.0)
    (ack,) = answers(rig.tick([rejected(struct.pack("<HBxxx", 16, 1), MsgType.STOP)]))
    assert isinstance(ack, Ack)
    assert (ack.cmd_id, ack.state) == (16, State.STOPPED)
    assert rig.c.stop_reason == StopReason.OPERATOR_STOP


def test_a_corrected_stop_after_a_malformed_one_with_the_same_id_is_executed() -> None:
    """The NAK-then-retry case: a STOP answer must never come from the cache."""
    rig = Rig()
    rig.hello()
    (first,) = answers(rig.tick([rejected(struct.pack("<H", 21), MsgType.STOP)]))  # runt body
    assert isinstance(first, Ack)  # in IDLE a stop changes nothing
    rig.arm()
    rig.ok(Start)
    rig.run(1.0)
    assert rig.c.state == State.INJECTING
    answer, _ = rig.command(Stop(21, StopSource.OPERATOR))
    assert isinstance(answer, Ack)
    assert rig.c.state == State.STOPPED


def test_a_stop_id_reused_from_an_earlier_stop_is_executed_again() -> None:
    rig = Rig()
    rig.hello()
    answer, _ = rig.command(Stop(7, StopSource.OPERATOR))  # in IDLE: ACK, no change
    assert (answer.state, rig.c.state) == (State.IDLE, State.IDLE)
    rig.arm()
    rig.ok(Start)
    rig.run(1.0)
    answer, _ = rig.command(Stop(7, StopSource.OPERATOR))
    assert isinstance(answer, Ack)
    assert (answer.state, rig.c.state) == (State.STOPPED, State.STOPPED)


def test_malformed_heartbeat_and_foreign_types_are_dropped() -> None:
    rig = Rig()
    assert answers(rig.tick([rejected(b"\x00\x01", MsgType.HEARTBEAT)])) == []
    assert answers(rig.tick([rejected(b"\x00\x01", 0x7D)])) == []


def test_valid_device_messages_from_the_host_are_ignored() -> None:
    rig = Rig()
    assert answers(rig.tick([frame(Ack(cmd_id=1, cmd_type=MsgType.START, state=State.IDLE))])) == []


# -- ARM parameters ------------------------------------------------------------------------------------
BAD_ARMS: list[tuple[str, dict[str, Any], int, int]] = [
    ("flow zero", {"flow_nl_s": 0}, 3, 1),
    ("incremental without increment", {"mode": Mode.INCREMENTAL, "increment_nl": 0}, 4, 1),
    ("increment above volume", {"mode": Mode.INCREMENTAL, "increment_nl": 2_000_000}, 4, 1_000_000),
    ("volume zero", {"volume_limit_nl": 0}, 5, 1),
    (
        "volume beyond the stroke",
        {"volume_limit_nl": 3_000_000},
        5,
        # the stroke left: usable end (59.5 mm) less the fake plant's plunger (10 mm), x bore area
        49_500 * round(math.pi * 7.29e-3**2 / 4 * 1e12) // 1_000_000,
    ),
    ("soft zero", {"soft_limit_pa": 0}, 6, 1),
    ("soft above hard", {"soft_limit_pa": 4_500_000}, 6, 4_000_000),
    ("relief not below soft", {"relief_pa": 2_500_000}, 8, 2_500_000),
    ("working time zero", {"working_time_ms": 0}, 10, 1),
    ("viscosity min negative", {"viscosity_min_pas": -1.0}, 11, 0),
    ("viscosity min NaN", {"viscosity_min_pas": math.nan}, 11, 0),
    ("viscosity max below min", {"viscosity_min_pas": 50.0, "viscosity_max_pas": 10.0}, 12, 50),
    ("viscosity max infinite", {"viscosity_max_pas": math.inf}, 12, 1),
    ("cannula too short", {"cannula_length_um": 1}, 13, 20_000),
    ("cannula bore too wide", {"cannula_id_um": 7_000}, 14, 6_000),
    ("syringe bore too small", {"syringe_bore_um": 1}, 15, 2_000),
    ("cannula wider than syringe", {"cannula_id_um": 5_000, "syringe_bore_um": 4_000}, 14, 4_000),
    ("undefined plan flag", {"plan_flags": PlanFlags(0x80)}, 2, 0x01),
]


@pytest.mark.parametrize(
    ("overrides", "field", "detail"), [b[1:] for b in BAD_ARMS], ids=[b[0] for b in BAD_ARMS]
)
def test_arm_bad_param(overrides: dict[str, Any], field: int, detail: int) -> None:
    rig = Rig()
    rig.hello()
    answer, outgoing = rig.command(lambda i: arm_msg(i, **overrides))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, field, detail)
    assert not [m for m in outgoing if isinstance(m, Status)], "a NAK is never preceded by a reply"
    assert rig.c.state == State.IDLE


def test_arm_needs_the_capabilities_it_uses() -> None:
    rig = Rig(identity=FirmwareIdentity("BARE-1", 1, 0, 0, Capabilities.FLUORO_LINE))
    rig.hello()
    answer, _ = rig.command(lambda i: arm_msg(i, mode=Mode.INCREMENTAL, increment_nl=1000))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 1, 1)
    answer, _ = rig.command(lambda i: arm_msg(i, plan_flags=PlanFlags.RELIEF))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, 2, 0)
    answer, _ = rig.command(lambda i: SetTelemetry(i, 1, 20))
    assert isinstance(answer, Nak)
    assert answer.code == NakCode.UNKNOWN_COMMAND


def test_arm_clamps_limits_to_the_device_and_reports_them() -> None:
    rig = Rig()
    rig.hello()
    status = rig.arm(hard_limit_pa=9_000_000, soft_limit_pa=8_500_000, relief_pa=300_000, flow_nl_s=500_000)
    clamped = [
        e.detail for e in rig.events if e.kind == EventKind.ALARM and e.alarm == AlarmCode.LIMIT_CLAMPED
    ]
    assert sorted(clamped) == [166_667, 8_000_000, 8_000_000]
    assert (status.hard_limit_pa, status.soft_limit_pa, status.relief_pa) == (8_000_000, 8_000_000, 300_000)
    rig.ok(Start)
    rig.run(0.3)
    status = next(m for m in rig.command(GetStatus)[1] if isinstance(m, Status))
    assert status.flow_setpoint_nl_s == 166_667


def test_flow_clamped_to_what_the_plunger_can_do_with_a_small_bore() -> None:
    rig = Rig()
    rig.hello()
    rig.arm(syringe_bore_um=4_600, flow_nl_s=160_000, cannula_id_um=1_803, volume_limit_nl=500_000)
    clamped = [e.detail for e in rig.events if e.alarm == AlarmCode.LIMIT_CLAMPED]
    area = math.pi * (4.6e-3) ** 2 / 4
    assert clamped == [int(16_000 * 1e-3 / 3200 * area * 1e12)]


# -- SET_LIMITS -------------------------------------------------------------------------------------------
def test_set_limits_changes_only_given_fields_and_clamps() -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    _, outgoing = rig.command(lambda i: SetLimits(i, hard_limit_pa=9_000_000, max_flow_nl_s=50_000))
    status = next(m for m in outgoing if isinstance(m, Status))
    assert (status.soft_limit_pa, status.hard_limit_pa, status.relief_pa) == (2_500_000, 8_000_000, 200_000)
    assert [e.detail for e in rig.events if e.alarm == AlarmCode.LIMIT_CLAMPED] == [8_000_000]
    rig.ok(Start)
    rig.run(1.0)
    status = next(m for m in rig.command(GetStatus)[1] if isinstance(m, Status))
    assert status.flow_setpoint_nl_s == 50_000, "max_flow caps the flow setpoint"
    assert status.flow_nl_s == pytest.approx(50_000, rel=0.05)


@pytest.mark.parametrize(
    ("request_", "field", "detail"),
    [
        ({"soft_limit_pa": 4_500_000}, 1, 4_000_000),
        ({"hard_limit_pa": 1_000_000}, 2, 2_500_000),
        ({"relief_pa": 2_600_000}, 3, 2_500_000),
        ({"soft_limit_pa": 150_000}, 1, 200_001),
    ],
    ids=["soft above hard", "hard below soft", "relief not below soft", "soft not above relief"],
)
def test_set_limits_refused_changes_nothing(request_: dict[str, int], field: int, detail: int) -> None:
    rig = Rig()
    rig.hello()
    rig.arm()
    answer, _ = rig.command(lambda i: SetLimits(i, **request_))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, field, detail)
    limits = rig.c.limits
    assert (limits.soft_limit_pa, limits.hard_limit_pa, limits.relief_pa) == (2_500_000, 4_000_000, 200_000)


# -- SET_TELEMETRY ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("divider", "batch", "field", "detail"),
    [(1001, 20, 1, 1000), (1, MAX_BATCH_SAMPLES + 1, 2, MAX_BATCH_SAMPLES), (1, 0, 2, 1)],
    ids=["divider", "batch too big", "batch zero"],
)
def test_set_telemetry_bad_param(divider: int, batch: int, field: int, detail: int) -> None:
    rig = Rig()
    rig.hello()
    answer, _ = rig.command(lambda i: SetTelemetry(i, divider, batch))
    assert isinstance(answer, Nak)
    assert (answer.code, answer.field, answer.detail) == (NakCode.BAD_PARAM, field, detail)


def test_set_telemetry_accepts_the_slowest_divider_and_stamps_its_period() -> None:
    rig = Rig()
    rig.hello()
    answer, _ = rig.command(lambda i: SetTelemetry(i, 1000, 1))
    assert isinstance(answer, Ack)
    batches = []
    for _ in range(2500):
        batches += [m for m in rig.tick() if isinstance(m, TelemetryBatch)]
    assert len(batches) == 2  # one sample a second
    assert {b.period_us for b in batches} == {1_000_000}
    assert batches[1].first_index == batches[0].first_index + 1


def test_set_telemetry_sends_the_partial_batch_then_applies() -> None:
    rig = Rig()
    rig.hello()
    rig.run(0.025)
    _, outgoing = rig.command(lambda i: SetTelemetry(i, 5, 10))
    (partial,) = [m for m in outgoing if isinstance(m, TelemetryBatch)]
    rig.run(0.2)
    batches = rig.batches
    assert batches[-2] is partial or partial in batches
    after = batches[batches.index(partial) + 1 :]
    assert all(b.period_us == 5000 and len(b.samples) == 10 for b in after)
    assert all((b.samples["t_us"][1:] - b.samples["t_us"][:-1] == 5000).all() for b in after)
    firsts = [b.first_index for b in batches]
    counts = [len(b.samples) for b in batches]
    assert all(a + n == b for a, n, b in zip(firsts, counts, firsts[1:], strict=False)), (
        "no gap in first_index"
    )


def test_telemetry_off_with_divider_zero_and_without_a_session() -> None:
    rig = Rig()
    rig.run(0.1)
    assert rig.batches == [], "no telemetry without a session"
    rig.hello()
    rig.ok(lambda i: SetTelemetry(i, 0, 0))
    n = len(rig.batches)
    rig.run(0.2)
    assert len(rig.batches) == n


def test_every_command_gets_exactly_one_answer_even_in_a_burst() -> None:
    rig = Rig()
    cmds: list[Command] = [
        Hello(1, PROTOCOL_VERSION),
        arm_msg(2),
        Start(3),
        GetStatus(4),
        Pause(5),
        Pause(5),
        Resume(6),
        SetLimits(7, soft_limit_pa=2_000_000),
        Stop(8, StopSource.OPERATOR),
        Clear(9),
    ]
    outgoing = rig.tick([frame(c) for c in cmds])
    got = [(a.cmd_id, a.cmd_type) for a in answers(outgoing)]
    assert got == [(c.cmd_id, c.TYPE) for c in cmds]


# -- SET_TELEMETRY without the capability: one conforming answer (SPEC §7.7 step 3) -------------------
def _through_codec(*messages: Message, body: bytes | None = None) -> list[Frame | Rejected]:
    data = b"".join(encode_frame(m, i) for i, m in enumerate(messages))
    if body is not None:  # a SET_TELEMETRY frame with a body of the wrong length
        data += framing.encode(HEADER.pack(PROTOCOL_VERSION, MsgType.SET_TELEMETRY, 9) + body)
    return MessageStream().feed(data)


@pytest.mark.parametrize(
    ("session", "items"),
    [
        (False, lambda: _through_codec(SetTelemetry(7, 1, 20))),
        (True, lambda: _through_codec(SetTelemetry(7, 1, 20))),
        (True, lambda: _through_codec(SetTelemetry(0, 1, 20))),
        (True, lambda: _through_codec(SetTelemetry(7, 5000, 0))),
        (True, lambda: _through_codec(body=b"\x07\x00\x01")),
    ],
    ids=["no session", "session", "cmd_id 0", "out of range", "bad length"],
)
def test_set_telemetry_without_the_capability_is_an_unknown_command_whatever_else_is_wrong(
    session: bool, items: Callable[[], list[Frame | Rejected]]
) -> None:
    bare = FirmwareIdentity("BARE-1", 1, 0, 0, Capabilities.FLUORO_LINE | Capabilities.RELIEF_BACKOFF)
    rig = Rig(identity=bare)
    if session:
        rig.hello()
    received = items()
    out = rig.tick(received)
    naks = [m for m in out if isinstance(m, Nak | Ack)]
    assert len(naks) == 1
    (nak,) = naks
    assert isinstance(nak, Nak)
    assert (nak.code, nak.cmd_type, nak.field, nak.detail) == (
        NakCode.UNKNOWN_COMMAND,
        MsgType.SET_TELEMETRY,
        0xFF,
        0,
    )
    assert nak.cmd_id in (0, 7)
