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
