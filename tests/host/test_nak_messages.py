"""A BUSY refusal says which transient condition refused it (NAK detail, SPEC §6.5 BusyDetail)."""

from __future__ import annotations

import pytest

from host.errors import describe_nak
from protocol import BusyDetail, Clear, MsgType, Nak, NakCode, State


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
