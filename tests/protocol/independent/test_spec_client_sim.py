"""The SPEC-only client (spec_client) against the real simulator over a real pty.

Every expectation below is read from protocol/SPEC.md, cited by section, never from the simulator's
code: the movement commands (§5.16, §8.6) in every state this client can reach, their NAKs with
code, field and detail (§7.8), several commands in one write, cached retries (§7.2, §7.4), STOP's
source and detail (§5.6, §7.6) and the session rules in a movement (§7.6, §8.4).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.protocol.independent import spec_wire as w
from tests.protocol.independent.spec_client import Exchange, SpecClient, simulator

BORE = 14_500
TOP_SPEED = 5_000
JOG_FWD_MAX = 250
ALARM_LIMIT_CLAMPED = 6  # §6.7
FLOW_TRAIL_US = 60_000  # §5.10: measured flow is the mean over 50 ms, updated every 10 ms
ARM_PLAN: dict[str, Any] = {
    "mode": 0,
    "plan_flags": 0,
    "flow_nl_s": 100_000,
    "increment_nl": 0,
    "volume_limit_nl": 20_000,
    "soft_limit_pa": 1_500_000,
    "hard_limit_pa": 3_000_000,
    "relief_pa": 100_000,
    "mixed_ago_ms": 60_000,
    "working_time_ms": 600_000,
    "viscosity_min_pas": 0.0,
    "viscosity_max_pas": 1e6,
    "cannula_length_um": 100_000,
    "cannula_id_um": 2_000,
    "syringe_bore_um": BORE,
}
MOVES: dict[str, dict[str, int]] = {
    "PRIME": {"syringe_bore_um": BORE, "flow_nl_s": 1, "volume_nl": 1},
    "JOG": {"hold_ms": 100, "speed_um_s": 10},
    "WITHDRAW": {"syringe_bore_um": BORE, "flow_nl_s": 1, "volume_nl": 1},
    "HOME": {"speed_um_s": 1},
}
PLAN_CMDS: dict[str, dict[str, Any]] = {"ARM": ARM_PLAN, "START": {}, "PAUSE": {}, "RESUME": {}, "CLEAR": {}}
SETUP_CMDS: dict[str, dict[str, Any]] = {
    "SET_SYRINGE": {
        "name": "t",
        "bore_um": BORE,
        "stroke_um": 50_000,
        "dead_volume_nl": 0,
        "max_pressure_pa": 1_000_000,
    },
    "ZERO": {"utc_s": 1_780_000_000},
    "CALIBRATE_SPAN": {"reference_pa": 1_000_000, "utc_s": 1_780_000_000},
    "CALIBRATE_VOLUME": {
        "nominal_nl": 1_000_000,
        "mass_ug": 1_000_000,
        "density_mg_l": 1_000_000,
        "utc_s": 1_780_000_000,
    },
}


def _area_fl_per_um(bore_um: int) -> int:
    """§8.5: A = round(π × (bore / 2)²) fL per µm of travel (no volume calibration)."""
    import math

    return math.floor(math.pi * (bore_um / 2) ** 2 + 0.5)


def _nak(ex: Exchange, code: str, fld: int = w.NO_FIELD, detail: int = 0, state: str | None = None) -> None:
    assert not ex.replies, f"§7.2: a NAK is never preceded by a reply: {ex.replies}"
    assert ex.nak == (w.NAK_CODE[code], fld, detail), (ex.answer.fields, code, fld, detail)
    if state is not None:
        assert ex.answer.fields["state"] == w.STATE[state]


def _ack(ex: Exchange, state: str, replies: list[str] | None = None) -> None:
    assert ex.ok, ex.answer.fields
    assert ex.answer.fields["state"] == w.STATE[state], ex.answer.fields
    if replies is not None:
        assert [r.name for r in ex.replies] == replies
        # §7.2: replies and their ACK back to back, nothing between them
        assert ex.before[len(ex.before) - len(replies) :] == replies


def _hello(c: SpecClient) -> dict[str, Any]:
    ex = c.command("HELLO", protocol_version=w.VERSION)
    _ack(ex, "IDLE", ["DEVICE_INFO", "SYRINGE_INFO", "CALIBRATION_INFO"])
    info = ex.replies[0].fields
    assert info["capabilities"] & w.CAP_MOTION
    assert info["capabilities"] & w.CAP_SETUP
    return info


def _prime(c: SpecClient, volume_nl: int) -> w.Msg:
    """PRIME from IDLE at the top flow; returns its MOTION_DONE (§6.6) once the plunger is at rest."""
    ex = c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=166_667, volume_nl=volume_nl)
    _ack(ex, "PRIMING", ["MOTION_STATUS"])
    return c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])


def test_idle_refusals_retries_and_setup_bounds() -> None:
    """§7.6 sessions, §8.6 order of checks, §7.8 every movement and setup parameter bound, at
    power-up (plunger at home); a cached retry's replies (§7.2)."""
    with simulator() as c:
        # §7.6 / §6.5 NO_SESSION: every movement command, GET_MOTION included (§5.1 "needs session")
        for name, fields in {**MOVES, "GET_MOTION": {}}.items():
            _nak(c.command(name, **fields), "NO_SESSION")
        info = _hello(c)
        m = c.motion()
        assert m["state"] == m["last_motion"] == w.STATE["IDLE"]  # §5.16: IDLE if none since power-up
        assert m["travel_um"] == info["travel_um"]
        assert m["flags"] & w.FLAG_AT_HOME
        assert m["plunger_um"] <= m["home_um"] + 20
        # §8.6 order: position (AT_HOME) before parameters, so broken parameters still get AT_HOME
        _nak(c.command("WITHDRAW", syringe_bore_um=1, flow_nl_s=0, volume_nl=0), "AT_HOME", state="IDLE")
        _nak(c.command("HOME", speed_um_s=0), "AT_HOME")
        # ... but JOG checks its parameters first, then its position (its direction is a parameter)
        _nak(c.command("JOG", hold_ms=0, speed_um_s=-100), "BAD_PARAM", 1, 1)
        _nak(c.command("JOG", hold_ms=100, speed_um_s=-100), "AT_HOME")
        # §7.8 PRIME: bore range, flow, volume >= 1, volume <= the stroke left (as ARM check 9)
        _nak(c.command("PRIME", syringe_bore_um=1_999, flow_nl_s=1, volume_nl=1), "BAD_PARAM", 1, 2_000)
        _nak(c.command("PRIME", syringe_bore_um=40_001, flow_nl_s=1, volume_nl=1), "BAD_PARAM", 1, 40_000)
        _nak(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=0, volume_nl=1), "BAD_PARAM", 2, 1)
        _nak(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=1, volume_nl=0), "BAD_PARAM", 3, 1)
        left = (info["travel_um"] - m["plunger_um"]) * _area_fl_per_um(BORE) // 10**6
        _nak(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=1, volume_nl=left + 1), "BAD_PARAM", 3, left)
        # §7.8 JOG: hold 1..watchdog_ms, speed != 0, forward <= 250, backward >= -5000 (signed detail)
        wd = info["watchdog_ms"]
        _nak(c.command("JOG", hold_ms=wd + 1, speed_um_s=100), "BAD_PARAM", 1, wd)
        _nak(c.command("JOG", hold_ms=100, speed_um_s=0), "BAD_PARAM", 2, 1)
        _nak(c.command("JOG", hold_ms=100, speed_um_s=JOG_FWD_MAX + 1), "BAD_PARAM", 2, JOG_FWD_MAX)
        _nak(c.command("JOG", hold_ms=100, speed_um_s=-TOP_SPEED - 1), "BAD_PARAM", 2, -TOP_SPEED)
        # §7.3 cmd_id 0, §7.9 wrong length (detail = expected body length)
        _nak(c.command("PRIME", cmd_id=0, syringe_bore_um=BORE, flow_nl_s=1, volume_nl=1), "BAD_PARAM", 0, 1)
        cid = c.next_id()
        c.write(w.frame(w.HEADER.pack(w.VERSION, w.BY_NAME["HOME"].type, 0) + cid.to_bytes(2, "little")))
        _nak(c.take_answer(cid, w.BY_NAME["HOME"].type), "BAD_LENGTH", detail=w.BY_NAME["HOME"].size)
        assert c.status()["state"] == w.STATE["IDLE"]  # §7.1: a NAK changed nothing
        _check_cached_retry(c)
        c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])
        c.wait_at_rest()
        _check_prime_flow_clamp(c)
        _check_setup_bounds(c, info)
        _check_stop_always_honoured_in_a_jog(c)


def _check_prime_flow_clamp(c: SpecClient) -> None:
    """§5.16 / §7.8: PRIME's flow is clamped as ARM's, to what the top speed delivers through its
    bore (5 000 um/s x round(pi x 1000^2) fL/um = 15 707 nL/s for 2 mm), with one LIMIT_CLAMPED."""
    c.events.clear()
    _ack(c.command("PRIME", syringe_bore_um=2_000, flow_nl_s=166_667, volume_nl=2_000), "PRIMING")
    assert c.status()["flow_setpoint_nl_s"] == TOP_SPEED * _area_fl_per_um(2_000) // 10**6
    c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])
    alarms = [e.fields for e in c.events if e.fields["kind"] == w.EVENT_KIND["ALARM"]]
    assert [(a["alarm"], a["detail"]) for a in alarms] == [(ALARM_LIMIT_CLAMPED, 15_707)]
    c.wait_at_rest()


def _check_stop_always_honoured_in_a_jog(c: SpecClient) -> None:
    """§7.6: a STOP with a body of the wrong length, and one with an undefined source and a rule,
    both stop a movement as a STOP from OPERATOR, detail 0, and are ACKed."""
    stop_type = w.BY_NAME["STOP"].type
    for body in (b"\x01", b"\x08\x03"):  # 3-byte body (source 1, no detail); source 8, detail 3
        _ack(c.command("JOG", hold_ms=300, speed_um_s=200), "JOGGING")
        cid = c.next_id()
        c.write(w.frame(w.HEADER.pack(w.VERSION, stop_type, 0) + cid.to_bytes(2, "little") + body))
        _ack(c.take_answer(cid, stop_type), "STOPPED")
        ev = c.wait_event("STOP", prev_state=w.STATE["JOGGING"])
        assert (ev.fields["reason"], ev.fields["source"], ev.fields["detail"]) == (
            w.STOP_REASON["OPERATOR_STOP"],
            w.STOP_SOURCE["OPERATOR"],
            0,
        )
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")


def _check_setup_bounds(c: SpecClient, info: dict[str, Any]) -> None:
    """§7.8 'Other commands': SET_SYRINGE, ZERO, CALIBRATE_SPAN, CALIBRATE_VOLUME, in order, with
    field and detail; §5.20 the factor bound; §5.17 a selected bore binds PRIME (field 1)."""
    utc = 1_780_000_000
    utc_min = 1_577_836_800
    syr = {"name": "a", "bore_um": BORE, "stroke_um": 50_000, "dead_volume_nl": 0, "max_pressure_pa": 1}
    vol = {"nominal_nl": 1_000_000, "mass_ug": 1, "density_mg_l": 1_000_000, "utc_s": utc}
    stroke_volume = _area_fl_per_um(BORE) * 50_000 // 10**6
    cases: list[tuple[str, dict[str, Any], int, int]] = [
        ("SET_SYRINGE", syr | {"name": ""}, 1, 16),
        ("SET_SYRINGE", syr | {"name": "a\x01"}, 1, 16),
        ("SET_SYRINGE", syr | {"bore_um": 1_999}, 2, 2_000),
        ("SET_SYRINGE", syr | {"bore_um": 40_001}, 2, 40_000),
        ("SET_SYRINGE", syr | {"stroke_um": 4_999}, 3, 5_000),
        ("SET_SYRINGE", syr | {"dead_volume_nl": stroke_volume}, 4, stroke_volume),
        ("SET_SYRINGE", syr | {"max_pressure_pa": 0}, 5, 1),
        (
            "SET_SYRINGE",
            syr | {"max_pressure_pa": info["max_pressure_pa"] + 1},
            5,
            info["max_pressure_pa"],
        ),
        ("ZERO", {"utc_s": utc_min - 1}, 1, utc_min),
        ("CALIBRATE_SPAN", {"reference_pa": 499_999, "utc_s": utc}, 1, 500_000),
        (
            "CALIBRATE_SPAN",
            {"reference_pa": info["max_pressure_pa"] + 1, "utc_s": utc},
            1,
            info["max_pressure_pa"],
        ),
        ("CALIBRATE_SPAN", {"reference_pa": 1_000_000, "utc_s": utc_min - 1}, 2, utc_min),
        ("CALIBRATE_VOLUME", vol | {"nominal_nl": 99_999}, 1, 100_000),
        ("CALIBRATE_VOLUME", vol | {"nominal_nl": 100_000_001}, 1, 100_000_000),
        ("CALIBRATE_VOLUME", vol | {"mass_ug": 0}, 2, 1),
        ("CALIBRATE_VOLUME", vol | {"density_mg_l": 499_999}, 3, 500_000),
        ("CALIBRATE_VOLUME", vol | {"density_mg_l": 3_000_001}, 3, 3_000_000),
        ("CALIBRATE_VOLUME", vol | {"utc_s": utc_min - 1}, 4, utc_min),
    ]
    for name, fields, fld, detail in cases:
        _nak(c.command(name, **fields), "BAD_PARAM", fld, detail, state="IDLE")
    # k' = round(k x mass x 1e6 / (density x nominal)) = 1.25e6 ppm: beyond ±10 %, never applied
    ex = c.command("CALIBRATE_VOLUME", **vol | {"mass_ug": 1_000_000, "density_mg_l": 800_000})
    _nak(ex, "CALIBRATION_OUT_OF_RANGE", detail=1_250_000)
    ex = c.command(
        "SET_SYRINGE",
        name="2.5ml",
        bore_um=7_290,
        stroke_um=59_900,
        dead_volume_nl=80_000,
        max_pressure_pa=2_000_000,
    )
    _ack(ex, "IDLE", ["SYRINGE_INFO"])
    assert ex.replies[0].fields["travel_um"] == min(info["travel_um"], 59_900 - 500)  # §8.5 E
    assert c.motion()["travel_um"] == ex.replies[0].fields["travel_um"]  # §5.16: E in force
    _nak(c.command("PRIME", **MOVES["PRIME"]), "BAD_PARAM", 1, 7_290)
    st = c.status()  # §5.17 pressure: every limit in force clamped to the syringe's 2 MPa
    assert max(st["soft_limit_pa"], st["hard_limit_pa"]) <= 2_000_000
    assert st["relief_pa"] < st["soft_limit_pa"]
    # §5.23 zero check: push cement into the line, select the syringe again (the line is then
    # presumed open), and the first ARM is refused ZERO_DRIFT with the reading while it is high
    _ack(c.command("PRIME", syringe_bore_um=7_290, flow_nl_s=166_667, volume_nl=40_000), "PRIMING")
    c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])
    c.wait_at_rest()
    ex = c.command(
        "SET_SYRINGE",
        name="2.5ml",
        bore_um=7_290,
        stroke_um=59_900,
        dead_volume_nl=80_000,
        max_pressure_pa=2_000_000,
    )
    _ack(ex, "IDLE", ["SYRINGE_INFO"])
    zero_check = c.command("GET_CALIBRATION").replies[1].fields["zero_check_pa"]
    reading = c.status()["pressure_pa"]
    assert reading > zero_check, "the prime must leave the line above the zero check for this test"
    ex = c.command(
        "ARM", **ARM_PLAN | {"syringe_bore_um": 7_290, "soft_limit_pa": 1_500_000, "hard_limit_pa": 2_000_000}
    )
    assert ex.nak[:2] == (w.NAK_CODE["ZERO_DRIFT"], w.NO_FIELD)
    assert abs(ex.nak[2] - reading) < 50_000  # the filtered reading, Pa


def test_movements_state_table_and_answers() -> None:
    """§8.6 both tables for PRIMING, JOGGING, WITHDRAWING, HOMING, STOPPED; replies, retries, STOP."""
    with simulator() as c:
        _hello(c)
        ex = c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=166_667, volume_nl=60_000)
        _ack(ex, "PRIMING", ["MOTION_STATUS"])
        ms = ex.replies[0].fields
        assert (ms["state"], ms["last_motion"], ms["syringe_bore_um"]) == (7, 7, BORE)  # §5.16
        # §8.6 first table, PRIMING column; §8.2 setup commands get BAD_STATE in movement states
        for name, fields in {**PLAN_CMDS, **MOVES, **SETUP_CMDS}.items():
            _nak(c.command(name, **fields), "BAD_STATE", state="PRIMING")
        _ack(c.command("GET_CALIBRATION"), "PRIMING", ["SYRINGE_INFO", "CALIBRATION_INFO"])
        # §8.6: SET_LIMITS is accepted; a running prime keeps the flow it was clamped to at its command
        _ack(c.command("SET_LIMITS", max_flow_nl_s=10_000), "PRIMING", ["STATUS"])
        assert c.status()["flow_setpoint_nl_s"] > 10_000
        _ack(c.command("SET_LIMITS", max_flow_nl_s=166_667), "PRIMING", ["STATUS"])
        _ack(c.command("SET_TELEMETRY", divider=0), "PRIMING", [])
        _ack(c.command("GET_MOTION"), "PRIMING", ["MOTION_STATUS"])
        st = c.status()
        # §8.6 what STATUS reports in a movement: no plan, delivered unchanged, prime's setpoint
        assert (st["state"], st["stop_reason"], st["delivered_nl"]) == (7, 0, 0)
        assert (st["volume_limit_nl"], st["increment_nl"], st["mixed_age_ms"], st["working_time_ms"]) == (
            0,
            0,
            0,
            0,
        )
        assert 0 < st["flow_setpoint_nl_s"] <= 166_667
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])
        m = c.motion()
        # §6.6 MOTION_DONE: IDLE / PRIMING, detail = primed_nl; §8.5 accuracy: at least the target
        assert done.fields["state"] == w.STATE["IDLE"]
        assert done.fields["detail"] == m["primed_nl"]
        assert 60_000 <= m["primed_nl"] < 60_000 + 2_000  # §8.5: max(1 %, 2 uL) over the target
        assert c.status()["delivered_nl"] == 0  # §8.6: the primed volume is counted apart
        # §5.10 flow_nl_s: a 50 ms mean, so it reads 0 at the latest 60 ms after the plunger rests
        while (st := c.status())["flow_nl_s"] != 0:
            assert st["t_us"] - done.fields["t_us"] <= FLOW_TRAIL_US, st

        # JOGGING: same direction renews, the other direction BUSY PLUNGER_MOVING (§8.6)
        _ack(c.command("JOG", hold_ms=300, speed_um_s=-TOP_SPEED), "JOGGING", [])
        _nak(
            c.command("JOG", hold_ms=300, speed_um_s=100),
            "BUSY",
            detail=w.BUSY_PLUNGER_MOVING,
            state="JOGGING",
        )
        # §8.6 order: a JOG's direction checks come after its parameters
        _nak(c.command("JOG", hold_ms=0, speed_um_s=100), "BAD_PARAM", 1, 1, state="JOGGING")
        for name, fields in {
            **PLAN_CMDS,
            "PRIME": MOVES["PRIME"],
            "WITHDRAW": MOVES["WITHDRAW"],
            "HOME": MOVES["HOME"],
        }.items():
            _nak(c.command(name, **fields), "BAD_STATE", state="JOGGING")
        mj = c.motion()
        assert mj["state"] == mj["last_motion"] == w.STATE["JOGGING"]
        assert 0 < mj["grant_ms"] <= 300
        assert (mj["primed_nl"], mj["syringe_bore_um"]) == (0, 0)
        # backward at top speed: it ends at home (normal end), resting on or in front of it (§8.6 Home)
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["JOGGING"])
        m = c.motion()
        assert done.fields["detail"] == m["moved_um"] < 0
        # ... less than two periods' travel (2 x 5 um at 5 mm/s) plus two counts in front of it
        assert m["home_um"] <= m["plunger_um"] < m["home_um"] + 2 * TOP_SPEED // 1000 + 2
        assert m["flags"] & w.FLAG_AT_HOME
        _nak(c.command("JOG", hold_ms=300, speed_um_s=-100), "AT_HOME", state="IDLE")
        # hold-to-move (§5.16): at rest at most hold_ms after the JOG arrived, host silent meanwhile
        c.events.clear()  # every event of the jog before has arrived (its MOTION_DONE did)
        _ack(c.command("JOG", hold_ms=80, speed_um_s=JOG_FWD_MAX), "JOGGING")
        start = c.wait_event("STATE_CHANGE", state=w.STATE["JOGGING"])
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["JOGGING"])
        assert 0 < done.fields["t_us"] - start.fields["t_us"] <= 80_000

        # several commands in one write (§8.2): each answered in order, each by its own rules
        done = _prime(c, 60_000)
        m = c.motion()
        room = (m["plunger_um"] - m["home_um"]) * _area_fl_per_um(BORE) // 10**6  # §5.16 WITHDRAW
        ex = c.command("WITHDRAW", syringe_bore_um=BORE, flow_nl_s=1, volume_nl=room + 1)
        _nak(ex, "BAD_PARAM", 3, room)
        res = c.many(
            ("GET_MOTION", {}),
            ("WITHDRAW", {"syringe_bore_um": BORE, "flow_nl_s": 0, "volume_nl": 1}),
            ("WITHDRAW", {"syringe_bore_um": BORE, "flow_nl_s": 100_000, "volume_nl": 30_000}),
            ("HOME", {"speed_um_s": 100}),
            ("GET_STATUS", {}),
        )
        _ack(res[0], "IDLE", ["MOTION_STATUS"])
        _nak(res[1], "BAD_PARAM", 2, 1)
        _ack(res[2], "WITHDRAWING", ["MOTION_STATUS"])
        _nak(res[3], "BAD_STATE", state="WITHDRAWING")
        _ack(res[4], "WITHDRAWING", ["STATUS"])
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["WITHDRAWING"])
        m = c.motion()
        assert done.fields["detail"] == -m["withdrawn_nl"]
        assert m["withdrawn_nl"] >= 30_000

        # HOMING to its normal end: MOTION_DONE detail = the travel (§6.6), at rest in front of home
        _ack(c.command("HOME", speed_um_s=2_000), "HOMING", ["MOTION_STATUS"])
        _nak(c.command("JOG", **MOVES["JOG"]), "BAD_STATE", state="HOMING")
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["HOMING"])
        m = c.motion()
        assert done.fields["detail"] == m["moved_um"] < 0
        assert m["home_um"] <= m["plunger_um"] < m["home_um"] + 2 * 2 + 2
        _nak(c.command("HOME", speed_um_s=2_000), "AT_HOME", state="IDLE")
        # a forward JOG, then STOP with FLUORO_IMAGE and a rule: §5.6 the detail goes to the EVENT
        _ack(c.command("JOG", hold_ms=300, speed_um_s=JOG_FWD_MAX), "JOGGING")
        _ack(c.command("STOP", source=w.STOP_SOURCE["FLUORO_IMAGE"], detail=4), "STOPPED")
        ev = c.wait_event("STOP")
        assert (ev.fields["prev_state"], ev.fields["reason"], ev.fields["source"], ev.fields["detail"]) == (
            w.STATE["JOGGING"],
            w.STOP_REASON["FLUORO_STOP"],
            w.STOP_SOURCE["FLUORO_IMAGE"],
            4,
        )
        # STOPPED: movements STOP_LATCHED, GET_MOTION answered (§8.6 second table)
        for name, fields in {**MOVES, **SETUP_CMDS}.items():
            _nak(c.command(name, **fields), "STOP_LATCHED", state="STOPPED")
        _ack(c.command("GET_MOTION"), "STOPPED", ["MOTION_STATUS"])
        # a second STOP keeps the first reason (§8.4)
        _ack(c.command("STOP", source=w.STOP_SOURCE["OPERATOR"], detail=0), "STOPPED")
        assert c.status()["stop_source"] == w.STOP_SOURCE["FLUORO_IMAGE"]


def _check_cached_retry(c: SpecClient) -> None:
    """§7.2: a retry answered from the cache gets *its* replies built afresh: MOTION_STATUS for
    PRIME, WITHDRAW, HOME and GET_MOTION, not a STATUS."""
    for name, fields in {
        "GET_MOTION": {},
        "PRIME": {"syringe_bore_um": BORE, "flow_nl_s": 50_000, "volume_nl": 5_000},
    }.items():
        data, cid = c.build(name, **fields)
        c.write(data)
        first = c.take_answer(cid, w.BY_NAME[name].type)
        c.write(data)
        again = c.take_answer(cid, w.BY_NAME[name].type)
        assert again.answer.fields == first.answer.fields  # the cached ACK, same body (§7.4)
        assert [r.name for r in again.replies] == ["MOTION_STATUS"], (name, again.replies)
        assert again.replies[0].fields["t_us"] >= first.replies[0].fields["t_us"]


def test_plan_states_refuse_movements_and_hello_takes_a_movement() -> None:
    """§8.6 second table (ARMED, INJECTING, DONE: BAD_STATE) and §7.6 / §8.4 HELLO in a movement."""
    with simulator() as c:
        _hello(c)
        # the line is then no longer presumed open (§5.23): no zero check at the ARM below
        _ack(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=166_667, volume_nl=200_000), "PRIMING")
        c.pump(0.15)
        # §8.2: commands queued behind a STOP in one write cannot start anything over a plunger
        # that still moves: CLEAR gets BUSY (the stopped prime relieves, §8.6), the rest STOP_LATCHED
        stop, clear, prime, jog = c.many(
            ("STOP", {"source": w.STOP_SOURCE["OPERATOR"]}),
            ("CLEAR", {}),
            ("PRIME", MOVES["PRIME"]),
            ("JOG", MOVES["JOG"]),
        )
        _ack(stop, "STOPPED")
        _nak(clear, "BUSY", detail=w.BUSY_RELIEF_ACTIVE, state="STOPPED")
        _nak(prime, "STOP_LATCHED")
        _nak(jog, "STOP_LATCHED")
        c.wait_event("RELIEF_DONE")
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")
        _prime(c, 60_000)  # off home again (the relief backed off toward it), for HOME below
        _ack(c.command("ARM", **ARM_PLAN), "ARMED", ["STATUS"])
        for name, fields in {**MOVES, **SETUP_CMDS}.items():  # §8.2 setup row, §8.6 second table
            _nak(c.command(name, **fields), "BAD_STATE", state="ARMED")
        _ack(c.command("GET_MOTION"), "ARMED", ["MOTION_STATUS"])
        _ack(c.command("START"), "INJECTING")
        for name, fields in MOVES.items():
            _nak(c.command(name, **fields), "BAD_STATE", state="INJECTING")
        _ack(c.command("GET_MOTION"), "INJECTING", ["MOTION_STATUS"])
        c.wait_state("DONE")
        for name, fields in {**MOVES, **SETUP_CMDS}.items():
            _nak(c.command(name, **fields), "BAD_STATE", state="DONE")
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")
        # HELLO while HOMING: stop first (HOST_LOST, CONTROLLER, SESSION_TAKEN), EVENT before DEVICE_INFO
        _ack(c.command("HOME", speed_um_s=1_000), "HOMING", ["MOTION_STATUS"])
        ex = c.command("HELLO", protocol_version=w.VERSION)
        _ack(ex, "STOPPED", ["DEVICE_INFO", "SYRINGE_INFO", "CALIBRATION_INFO"])
        assert ex.before[-4] == "EVENT"
        ev = c.wait_event("STOP", prev_state=w.STATE["HOMING"])
        assert (ev.fields["prev_state"], ev.fields["reason"], ev.fields["source"], ev.fields["detail"]) == (
            w.STATE["HOMING"],
            w.STOP_REASON["HOST_LOST"],
            w.STOP_SOURCE["CONTROLLER"],
            w.STOP_DETAIL_SESSION_TAKEN,
        )
        # STOP from a device-only source with a rule: recorded OPERATOR, detail 0 (§5.6, §7.6)
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")
        _ack(c.command("JOG", hold_ms=400, speed_um_s=200), "JOGGING")
        c.pump(0.1)
        stop, clear = c.many(("STOP", {"source": w.STOP_SOURCE["CONTROLLER"], "detail": 3}), ("CLEAR", {}))
        _ack(stop, "STOPPED")
        # §8.6 relief after a stopped forward movement: RELIEF_ACTIVE from the transition on
        _nak(clear, "BUSY", detail=w.BUSY_RELIEF_ACTIVE, state="STOPPED")
        c.wait_event("RELIEF_DONE")
        ev = c.wait_event("STOP", prev_state=w.STATE["JOGGING"])
        assert (ev.fields["prev_state"], ev.fields["reason"], ev.fields["source"], ev.fields["detail"]) == (
            w.STATE["JOGGING"],
            w.STOP_REASON["OPERATOR_STOP"],
            w.STOP_SOURCE["OPERATOR"],
            0,
        )
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")
        # §9.2: a silent host stops a movement (HOST_LOST, detail 0) and loses its session
        c.events.clear()
        _ack(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=50_000, volume_nl=200_000), "PRIMING")
        c.heartbeats_on.clear()
        ev = c.wait_event("STOP", prev_state=w.STATE["PRIMING"])
        assert (ev.fields["reason"], ev.fields["source"], ev.fields["detail"]) == (
            w.STOP_REASON["HOST_LOST"],
            w.STOP_SOURCE["CONTROLLER"],
            0,
        )
        assert c.status()["state"] == w.STATE["STOPPED"]  # GET_STATUS needs no session
        _nak(c.command("GET_MOTION"), "NO_SESSION", state="STOPPED")


LINE_SCENARIO = """
[[plant.events]]
kind = "fluoro_stop_line"
at_s = 0.6
duration_s = 2.5
"""


def test_fluoroscopy_line_stops_a_prime_and_refuses_movements(tmp_path: Path) -> None:
    """§8.6: the line's edge stops a movement (FLUORO_STOP, FLUORO_LINE); while it is asserted
    every movement is refused with BAD_STATE, checked last (after position and parameters)."""
    scenario = tmp_path / "line.toml"
    scenario.write_text(LINE_SCENARIO)
    with simulator("--scenario", str(scenario)) as c:
        _hello(c)
        _ack(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=166_667, volume_nl=300_000), "PRIMING")
        ev = c.wait_event("STOP", prev_state=w.STATE["PRIMING"])
        assert (ev.fields["reason"], ev.fields["source"]) == (
            w.STOP_REASON["FLUORO_STOP"],
            w.STOP_SOURCE["FLUORO_LINE"],
        )
        assert ev.fields["detail"] > 0  # §6.13: the line's debounce latency, µs
        c.wait_at_rest()
        _ack(c.command("CLEAR"), "IDLE")
        st = c.status()
        assert st["flags"] & w.FLAG_FLUORO_LINE, "the line must still be asserted for this check"
        # parameters before the line, the line last (§8.6 order of checks)
        _nak(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=0, volume_nl=1), "BAD_PARAM", 2, 1)
        _nak(c.command("JOG", hold_ms=0, speed_um_s=10), "BAD_PARAM", 1, 1)
        for name in ("PRIME", "JOG"):
            _nak(c.command(name, **MOVES[name]), "BAD_STATE", state="IDLE")
        # the backward ones: position (AT_HOME) comes before the line, so which one depends on
        # where the relief of the stopped prime left the plunger (§8.6 relief)
        backward = "AT_HOME" if st["flags"] & w.FLAG_AT_HOME else "BAD_STATE"
        for name in ("WITHDRAW", "HOME"):
            _nak(c.command(name, **MOVES[name]), backward, state="IDLE")
        assert c.status()["flags"] & w.FLAG_FLUORO_LINE
