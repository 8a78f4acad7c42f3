"""What `cementguard status` prints for the device's STATUS: the readings a bench engineer must not
misread (a dead sensor's pressure, the last run's volume after CLEAR, a negative zero)."""

from __future__ import annotations

import dataclasses

import pytest

from host import device_cmds
from protocol import Flags, State, StopReason
from protocol.models import StatusRecord
from tests.host.conftest import status_message

DEVICE = {"serial": "T", "firmware": "1.0.0", "protocol_version": 2}


def _printed(capsys: pytest.CaptureFixture[str], **fields: object) -> str:
    status = dataclasses.replace(status_message(0, State.IDLE), **fields)
    device_cmds._print_status(DEVICE, StatusRecord.from_message(status), None)
    return capsys.readouterr().out


def test_a_faulty_sensors_reading_is_not_shown_as_a_pressure(capsys: pytest.CaptureFixture[str]):
    out = _printed(
        capsys,
        state=State.STOPPED,
        stop_reason=StopReason.SENSOR_FAULT,
        flags=Flags.SENSOR_FAULT,
        pressure_pa=812_000,
    )
    assert "pressure  invalid (sensor fault)" in out
    assert "812" not in out


def test_a_small_negative_reading_is_not_minus_zero(capsys: pytest.CaptureFixture[str]):
    out = _printed(capsys, pressure_pa=-300)
    assert "pressure  0 kPa" in out


def test_after_clear_the_volume_is_the_last_runs_not_a_fraction_of_nothing(
    capsys: pytest.CaptureFixture[str],
):
    out = _printed(capsys, delivered_nl=2_000_000, volume_limit_nl=0, plunger_um=12_340)
    assert "delivered 2.000 mL (last run; no plan loaded)" in out
    assert "/ 0.000" not in out
    assert "plunger   12.34 mm from home" in out


def test_with_a_plan_the_volume_is_shown_against_it(capsys: pytest.CaptureFixture[str]):
    out = _printed(capsys, state=State.INJECTING, delivered_nl=250_000, volume_limit_nl=1_000_000)
    assert "delivered 0.250 of 1.000 mL planned" in out


def test_status_names_the_syringe_calibration_and_last_movement_directly_and_through_a_session(
    sim_pty: tuple[object, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """`cementguard status` on a free port, then through the endpoint of a session holding it."""
    import asyncio

    from host import cli, control
    from host.client import DeviceClient
    from host.syringes import find

    _proc, port = sim_pty
    assert cli.main(["status", "--port", port]) == 0
    out = capsys.readouterr().out
    assert "syringe   no syringe selected" in out, out
    assert "calib     zero:   offset +0.0 kPa, never (factory value)" in out, out
    assert "last move none since power-up" in out, out

    async def session() -> str:
        async with DeviceClient.open(port) as ctl, control.serve_control(ctl):
            await ctl.set_syringe(find("2.5ml").to_wire(1))
            await ctl.prime(syringe_bore_um=7290, flow_nl_s=100_000, volume_nl=20_000)
            await ctl.wait_for_motion_end(timeout=5)
            code = await asyncio.to_thread(cli.main, ["status", "--port", port])
            assert code == 0
            return capsys.readouterr().out

    out = asyncio.run(session())
    assert "session   " in out, "answered through the session's endpoint"
    assert "syringe   syringe 2.5ml: bore 7.29 mm" in out, out
    assert "last move PRIMING: 0.02" in out, out
    assert "mL primed" in out, out


def test_in_force_lines_leave_out_what_the_device_does_not_report() -> None:
    from host.setup_cmds import in_force_lines

    assert in_force_lines(None, None, None) == []
