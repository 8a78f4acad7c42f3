"""The SPEC-only client (spec_client) at the limits of the stroke, with the fluoroscopy line held,
and against a device built without the movements. Every expectation is read from protocol/SPEC.md
and cited by section, never from the simulator's code:

- END_OF_TRAVEL (§6.5 NakCode 9, §8.6): with the plunger at the usable end `E` (flag END_OF_TRAVEL,
  §6.11, §8.5), PRIME and a forward JOG are refused; PRIME's position check comes before its
  parameters, a JOG's direction checks after them (§7.7 step 9, §8.6 order of checks);
- the line (§8.6 second table, order of checks): away from home WITHDRAW and HOME are refused with
  BAD_STATE while the line is asserted, after their parameters; at home they get AT_HOME first;
- capability MOTION (§5.16, §6.12, §7.7 step 3): a device without it answers every movement
  command UNKNOWN_COMMAND, before length, `cmd_id`, session and parameters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.protocol.independent import spec_wire as w
from tests.protocol.independent.spec_client import SpecClient, SpecClientError, simulator
from tests.protocol.independent.test_spec_client_sim import BORE, MOVES, _ack, _area_fl_per_um, _hello, _nak

SHORT_BORE = 2_000
SHORT_STROKE = 5_000  # §7.8 SET_SYRINGE: the shortest stroke; §8.5 E = stroke - 0.5 mm margin
TOP_FLOW_2MM = 15_707  # §7.8 / §5.16: 5 000 um/s through round(pi x 1000^2) fL/um, nL/s
JOG_FWD_MAX = 250
MOVEMENTS = ("PRIME", "JOG", "WITHDRAW", "HOME", "GET_MOTION")


def _wait_flags(c: SpecClient, mask: int, present: bool, timeout: float = 8.0) -> dict[str, Any]:
    """Poll STATUS until `mask` is set (or clear); the device's own clock decides when (§5.10)."""
    deadline = time.monotonic() + timeout
    while True:
        st = c.status()
        if bool(st["flags"] & mask) == present:
            return st
        if time.monotonic() > deadline:
            raise SpecClientError(
                f"flags {st['flags']:#06x}: {mask:#06x} never {'set' if present else 'clear'}"
            )
        c.pump(0.02)


def test_end_of_travel_refuses_prime_and_a_forward_jog() -> None:
    with simulator() as c:
        info = _hello(c)
        # §5.17: a short syringe brings the usable end E close (§8.5: its stroke less 0.5 mm)
        ex = c.command(
            "SET_SYRINGE",
            name="short",
            bore_um=SHORT_BORE,
            stroke_um=SHORT_STROKE,
            dead_volume_nl=0,
            max_pressure_pa=2_000_000,
        )
        _ack(ex, "IDLE", ["SYRINGE_INFO"])
        end = ex.replies[0].fields["travel_um"]
        assert end == min(info["travel_um"], SHORT_STROKE - 500)
        m = c.motion()
        assert m["travel_um"] == end  # §5.16: E in force
        area = _area_fl_per_um(SHORT_BORE)
        left = (end - m["plunger_um"]) * area // 10**6  # §7.8 ARM check 9, PRIME's bound
        # prime all but ~50 um of the stroke (§8.5 accuracy: at rest on or just past its mark) ...
        ex = c.command("PRIME", syringe_bore_um=SHORT_BORE, flow_nl_s=TOP_FLOW_2MM, volume_nl=left - 160)
        _ack(ex, "PRIMING", ["MOTION_STATUS"])
        c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"], timeout=8.0)
        c.wait_at_rest()
        m = c.motion()
        assert end - 60 <= m["plunger_um"] < end, m
        assert not m["flags"] & w.FLAG_END_OF_TRAVEL
        # ... then a forward JOG: its normal end is E, at rest on or just past it (§8.6 first table)
        _ack(c.command("JOG", hold_ms=450, speed_um_s=JOG_FWD_MAX), "JOGGING", [])
        done = c.wait_event("MOTION_DONE", prev_state=w.STATE["JOGGING"])
        st = c.wait_at_rest()
        m = c.motion()
        assert m["plunger_um"] >= end, (m, end)
        assert done.fields["detail"] == m["moved_um"] > 0  # §6.6: the jog's travel, forward positive
        assert st["flags"] & w.FLAG_END_OF_TRAVEL  # §6.11 / §8.5: p >= E
        assert m["flags"] & w.FLAG_END_OF_TRAVEL

        # PRIME: position (END_OF_TRAVEL) before parameters (§7.7 step 9, §8.6 order of checks)
        _nak(c.command("PRIME", syringe_bore_um=1, flow_nl_s=0, volume_nl=0), "END_OF_TRAVEL", state="IDLE")
        ex = c.command("PRIME", syringe_bore_um=SHORT_BORE, flow_nl_s=1_000, volume_nl=1)
        _nak(ex, "END_OF_TRAVEL", state="IDLE")
        # JOG forward: parameters first (its direction is a parameter), then the limit
        _nak(c.command("JOG", hold_ms=0, speed_um_s=JOG_FWD_MAX), "BAD_PARAM", 1, 1, state="IDLE")
        _nak(c.command("JOG", hold_ms=300, speed_um_s=JOG_FWD_MAX + 1), "BAD_PARAM", 2, JOG_FWD_MAX)
        _nak(c.command("JOG", hold_ms=300, speed_um_s=JOG_FWD_MAX), "END_OF_TRAVEL", state="IDLE")
        _nak(c.command("JOG", hold_ms=300, speed_um_s=1), "END_OF_TRAVEL", state="IDLE")
        # §7.1: the refusals changed nothing
        st = c.status()
        assert (st["state"], st["plunger_um"]) == (w.STATE["IDLE"], m["plunger_um"])
        # backward is not refused at the end of travel: the plunger leaves it
        _ack(c.command("JOG", hold_ms=200, speed_um_s=-1_000), "JOGGING", [])
        c.wait_event("MOTION_DONE", prev_state=w.STATE["JOGGING"])
        st = c.wait_at_rest()
        assert st["plunger_um"] < end
        assert not st["flags"] & w.FLAG_END_OF_TRAVEL
        _ack(c.command("PRIME", syringe_bore_um=SHORT_BORE, flow_nl_s=1_000, volume_nl=10), "PRIMING")
        c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])


LINE_TWICE = """
[[plant.events]]
kind = "fluoro_stop_line"
at_s = 0.3
duration_s = 1.5

[[plant.events]]
kind = "fluoro_stop_line"
at_s = 4.5
duration_s = 60.0
"""


def test_the_line_refuses_withdraw_and_home_away_from_home_and_at_home_they_get_at_home(
    tmp_path: Path,
) -> None:
    """§8.6 second table, IDLE column: WITHDRAW / HOME 'AT_HOME at home ... BAD_STATE while the line
    is asserted'; order of checks: state, BUSY, position (AT_HOME), parameters, the line last. The
    line's edge in IDLE stops nothing (§8.3 'others': no change)."""
    scenario = tmp_path / "line.toml"
    scenario.write_text(LINE_TWICE)
    with simulator("--scenario", str(scenario)) as c:
        _hello(c)
        # first window: the plunger at home (power-up, §5.16 home_um)
        st = _wait_flags(c, w.FLAG_FLUORO_LINE, present=True)
        assert st["flags"] & w.FLAG_AT_HOME
        assert st["state"] == w.STATE["IDLE"]
        _nak(c.command("WITHDRAW", **MOVES["WITHDRAW"]), "AT_HOME", state="IDLE")
        _nak(c.command("HOME", **MOVES["HOME"]), "AT_HOME", state="IDLE")
        _nak(c.command("JOG", hold_ms=100, speed_um_s=-100), "AT_HOME", state="IDLE")  # direction, then line
        _nak(c.command("PRIME", **MOVES["PRIME"]), "BAD_STATE", state="IDLE")
        _nak(c.command("JOG", hold_ms=100, speed_um_s=100), "BAD_STATE", state="IDLE")
        # released: push the plunger off home
        _wait_flags(c, w.FLAG_FLUORO_LINE, present=False)
        _ack(c.command("PRIME", syringe_bore_um=BORE, flow_nl_s=166_667, volume_nl=60_000), "PRIMING")
        c.wait_event("MOTION_DONE", prev_state=w.STATE["PRIMING"])
        c.wait_at_rest()
        # second window: away from home, the line refuses every movement, after its parameters
        st = _wait_flags(c, w.FLAG_FLUORO_LINE, present=True)
        assert not st["flags"] & w.FLAG_AT_HOME, "the prime must have left home for this check"
        assert st["state"] == w.STATE["IDLE"], "the line's edge stops nothing in IDLE"
        _nak(c.command("WITHDRAW", syringe_bore_um=BORE, flow_nl_s=0, volume_nl=1), "BAD_PARAM", 2, 1)
        _nak(c.command("HOME", speed_um_s=0), "BAD_PARAM", 1, 1)
        _nak(c.command("HOME", speed_um_s=5_001), "BAD_PARAM", 1, 5_000)
        _nak(c.command("WITHDRAW", syringe_bore_um=BORE, flow_nl_s=100_000, volume_nl=1_000), "BAD_STATE")
        _nak(c.command("HOME", speed_um_s=1_000), "BAD_STATE", state="IDLE")
        _nak(c.command("JOG", hold_ms=100, speed_um_s=-100), "BAD_STATE", state="IDLE")
        _nak(c.command("PRIME", **MOVES["PRIME"]), "BAD_STATE", state="IDLE")
        after = c.status()
        assert (after["state"], after["plunger_um"]) == (w.STATE["IDLE"], st["plunger_um"])  # §7.1
        assert after["flags"] & w.FLAG_FLUORO_LINE


def test_a_device_without_motion_knows_no_movement_command() -> None:
    """§5.16 'A device implements all of them or none (capability MOTION); without it every one is
    UNKNOWN_COMMAND'; §7.7 step 3 comes before the length (4), `cmd_id` (6) and session (8) checks;
    §6.5 UNKNOWN_COMMAND: field 0xFF, detail 0; §7.9: `cmd_type` as received."""
    with simulator("--without", "MOTION") as c:
        for name in MOVEMENTS:  # no session yet: still UNKNOWN_COMMAND, not NO_SESSION
            ex = c.command(name, **MOVES.get(name, {}))
            _nak(ex, "UNKNOWN_COMMAND", state="IDLE")
            assert ex.answer.fields["cmd_type"] == w.BY_NAME[name].type
        ex = c.command("HELLO", protocol_version=w.VERSION)
        _ack(ex, "IDLE", ["DEVICE_INFO", "SYRINGE_INFO", "CALIBRATION_INFO"])
        caps = ex.replies[0].fields["capabilities"]
        assert not caps & w.CAP_MOTION
        assert caps & w.CAP_SETUP
        for name in MOVEMENTS:
            ex = c.command(name, **MOVES.get(name, {}))
            _nak(ex, "UNKNOWN_COMMAND", state="IDLE")
            assert ex.answer.fields["cmd_type"] == w.BY_NAME[name].type
        # a wrong length and cmd_id 0 change nothing: the type is unknown first
        home = w.BY_NAME["HOME"].type
        cid = c.next_id()
        c.write(w.frame(w.HEADER.pack(w.VERSION, home, 0) + cid.to_bytes(2, "little")))
        _nak(c.take_answer(cid, home), "UNKNOWN_COMMAND")
        _nak(c.command("PRIME", cmd_id=0, **MOVES["PRIME"]), "UNKNOWN_COMMAND")
        # the rest of the device works as before (§8.2); the position flags still describe the
        # plunger, at home after power-up (§6.12 MOTION: "the flags ... still describe the plunger")
        st = c.status()
        assert st["state"] == w.STATE["IDLE"]
        assert st["flags"] & w.FLAG_HOST_LINK_OK
        assert st["flags"] & w.FLAG_AT_HOME
