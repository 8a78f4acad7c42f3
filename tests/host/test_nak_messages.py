"""A BUSY refusal says which transient condition refused it (NAK detail, SPEC §6.5 BusyDetail)."""

from __future__ import annotations

import pytest

from host.errors import describe_nak
from protocol import (
    BusyDetail,
    CalibrateSpan,
    CalibrateVolume,
    Clear,
    Command,
    MsgType,
    Nak,
    NakCode,
    SetSyringe,
    State,
    Zero,
)


@pytest.mark.parametrize(
    ("detail", "says"),
    [
        (BusyDetail.RELIEF_ACTIVE, "pressure relief is still running"),
        (BusyDetail.PLUNGER_MOVING, "the plunger is still braking"),
    ],
)
def test_busy_names_its_reason(detail: BusyDetail, says: str) -> None:
    nak = Nak(
        cmd_id=3, cmd_type=MsgType.CLEAR, code=NakCode.BUSY, state=State.STOPPED, field=0xFF, detail=detail
    )
    text = describe_nak(Clear(3), nak)
    assert text.startswith("CLEAR refused: BUSY (")
    assert says in text


def test_setup_refusals_say_what_to_do_with_the_reading() -> None:
    """ZERO beyond its bound, a volume factor out of range and the zero check at ARM: the sentence
    carries the measured value and the operator's next step (SPEC §5.18, §5.20, §5.23)."""
    zero = Nak(cmd_id=4, cmd_type=MsgType.ZERO, code=NakCode.SENSOR_FAULT, state=State.IDLE, detail=152_000)
    text = describe_nak(Zero(4, 1_780_000_000), zero)
    assert "152 kPa" in text
    assert "open the line to the air" in text
    vol = Nak(
        cmd_id=5,
        cmd_type=MsgType.CALIBRATE_VOLUME,
        code=NakCode.CALIBRATION_OUT_OF_RANGE,
        state=State.IDLE,
        detail=1_124_864,
    )
    text = describe_nak(CalibrateVolume(5, 1_000_000, 1_040_000, 1_000_000, 1_780_000_000), vol)
    assert "1.124864" in text
    assert "+12.49 %" in text
    drift = Nak(cmd_id=6, cmd_type=MsgType.ARM, code=NakCode.ZERO_DRIFT, state=State.IDLE, detail=-73_500)
    text = describe_nak(Clear(6), drift)  # only the NAK is read for this code
    assert "-73.5 kPa" in text
    assert "cementguard zero" in text


def test_a_bore_other_than_the_selected_syringe_is_named_as_such() -> None:
    """ARM check 5a (SPEC §5.17): the detail is the selected syringe's bore, not a range bound."""
    from tests.controller.harness import arm_msg

    nak = Nak(
        cmd_id=8, cmd_type=MsgType.ARM, code=NakCode.BAD_PARAM, state=State.IDLE, field=15, detail=12_060
    )
    text = describe_nak(arm_msg(8), nak)
    assert (
        "syringe_bore_um (field 15) = 7290 is not the bore of the syringe selected on the device, 12060 um"
        in text
    )
    bound = Nak(
        cmd_id=8, cmd_type=MsgType.ARM, code=NakCode.BAD_PARAM, state=State.IDLE, field=15, detail=40_000
    )
    assert "= 7290 um is out of range: allowed 2000 um to 40000 um" in describe_nak(arm_msg(8), bound)


@pytest.mark.parametrize(
    ("command", "field", "bound", "says"),
    [
        (
            SetSyringe(7, "long", 8_660, 70_000, 0, 4_000_000),
            3,
            60_000,
            "stroke_um (field 3) = 70000 um is out of range: allowed 5000 um to 60000 um "
            "(bound broken: 60000)",
        ),
        (
            SetSyringe(7, "short", 8_660, 4_000, 0, 4_000_000),
            3,
            5_000,
            "stroke_um (field 3) = 4000 um is out of range: allowed 5000 um to the drive's physical travel",
        ),
        (
            SetSyringe(7, "dead", 8_660, 50_000, 3_000_000, 4_000_000),
            4,
            2_945_000,
            "dead_volume_nl (field 4) = 3000000 nL is out of range: allowed 0 nL to less than 2945000 nL",
        ),
        (
            SetSyringe(7, "", 8_660, 50_000, 0, 4_000_000),
            1,
            16,
            "name (field 1) = '' is out of range: allowed 1..16 printable ASCII characters",
        ),
        (
            CalibrateSpan(7, 9_000_000, 1_780_000_000),
            1,
            8_000_000,
            "reference_pa (field 1) = 9000000 Pa is out of range: allowed 500000 Pa to 8000000 Pa",
        ),
        (
            CalibrateVolume(7, 1_000_000, 1_000_000, 400_000, 1_780_000_000),
            3,
            500_000,
            "density_mg_l (field 3) = 400000 mg/L is out of range: allowed 500000 mg/L to 3000000 mg/L",
        ),
        (
            Zero(7, 1_000),
            1,
            1_577_836_800,
            "utc_s (field 1) = 1000 s is out of range: allowed 1577836800 s to no upper bound",
        ),
    ],
)
def test_a_setup_refusal_names_the_field_the_value_sent_and_the_allowed_range(
    command: Command, field: int, bound: int, says: str
) -> None:
    """SPEC §7.8: BAD_PARAM carries the field index and the bound broken; the host knows what it
    sent, so the sentence names the field, the value sent and the allowed range."""
    nak = Nak(
        cmd_id=7, cmd_type=command.TYPE, code=NakCode.BAD_PARAM, state=State.IDLE, field=field, detail=bound
    )
    text = describe_nak(command, nak)
    assert text.startswith(f"{command.TYPE.name} refused: BAD_PARAM (")
    assert says in text, text
