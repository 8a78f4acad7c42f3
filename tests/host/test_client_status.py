"""`arm()` (and the other commands answered with STATUS) never return a STATUS from before the
command (issue 12, item 11): when the reply is lost on the line while its ACK arrives, the client
reads STATUS again, and says so clearly when that is lost too."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from host.client import DeviceClient
from host.errors import CementguardError, StatusUnavailable
from protocol import MsgType, State
from tests.host.conftest import FakeDevice, incremental_arm
from tests.host.test_link_fake_device import FAST


async def test_arm_whose_status_is_lost_reads_it_again(
    fake_device: Callable[..., FakeDevice],
) -> None:
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        before = await ctl.get_status()
        assert before.state == State.IDLE
        dev.lose_status = 1  # the STATUS before ARM's ACK is lost; the ACK arrives
        status = await ctl.arm(incremental_arm())
        assert status.state == State.ARMED, "the STATUS from before the ARM was returned"
        assert [h.msg_type for h, _m in dev.received][-2:] == [MsgType.ARM, MsgType.GET_STATUS]


async def test_arm_says_so_when_status_cannot_be_read(
    fake_device: Callable[..., FakeDevice],
) -> None:
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        await ctl.get_status()
        dev.lose_status = 2
        with pytest.raises(StatusUnavailable) as info:
            await ctl.arm(incremental_arm())
    assert isinstance(info.value, CementguardError)
    assert "ARM was acknowledged" in str(info.value)
    assert dev.applied[MsgType.ARM] == 1, "the ARM itself took effect once"
