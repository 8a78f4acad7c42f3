"""The link over a socat bridge (`socat pty,... tcp:...`) to `cementguard sim --tcp`, cut mid-injection.

Killing the bridge is a cable pulled out: the host sees its port hang up, the simulator sees its TCP
connection close (link down = HOST_LOST at once, SPEC §9.2). A new bridge on the same path is the
cable plugged back in: the host reconnects by itself, re-reads STATUS, and finds the pump stopped by
HOST_LOST. What the host sent over the new bridge is read back from socat's own hex dump (-x), an
independent witness that it sent no START or RESUME.
"""

from __future__ import annotations

import gc
import subprocess
import weakref
from collections.abc import Callable
from pathlib import Path

import pytest

from host.client import DeviceClient
from host.errors import LinkLost
from host.link import LinkOptions, LinkState
from protocol import Frame, MessageStream, MsgType, State, StopReason, StopSource
from tests.host.conftest import SocatBridge, continuous_arm, next_matching

SimTcp = tuple[subprocess.Popen[str], int]
MOTION = {MsgType.ARM, MsgType.START, MsgType.RESUME}


def _sent_types(data: bytes) -> list[MsgType]:
    stream = MessageStream()
    frames = [item for item in stream.feed(data) if isinstance(item, Frame)]
    assert stream.counters.framing.crc_errors == 0
    return [MsgType(f.header.msg_type) for f in frames]


async def test_bridge_cut_mid_injection_stops_the_pump_and_the_host_does_not_restart_it(
    sim_tcp: SimTcp, socat_bridge: Callable[..., SocatBridge], tmp_path: Path
):
    _proc, port = sim_tcp
    tty = tmp_path / "cementguard-tty"
    bridge = socat_bridge(port, tty)
    options = LinkOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1)
    async with DeviceClient.open(str(tty), options) as ctl:
        changes, telemetry = ctl.link_changes(), ctl.telemetry()
        await ctl.set_telemetry(divider=2, batch=10)
        await ctl.arm(continuous_arm())
        await ctl.start()
        # Injecting for real: wait until the plunger has delivered something.
        await next_matching(telemetry, lambda b: int(b.samples["delivered_nl"][-1]) > 5_000, within_s=5)
        assert ctl.state == State.INJECTING
        assert ctl.link._conn is not None
        old_transport = weakref.ref(ctl.link._conn.transport)

        bridge.kill()  # the cable is cut
        lost = await changes.get(timeout=2)
        assert lost.state is LinkState.LOST
        with pytest.raises(LinkLost):
            await ctl.get_status()  # nothing is queued while the link is down

        witness = socat_bridge(port, tty, dump=True)  # the cable is back
        back = await next_matching(changes, lambda c: c.state is LinkState.CONNECTED, within_s=10)
        assert back.status is not None
        assert (back.status.state, back.status.stop_reason, back.status.stop_source) == (
            State.STOPPED,
            StopReason.HOST_LOST,
            StopSource.CONTROLLER,
        ), back.status
        assert "HOST_LOST" in back.reason
        assert ctl.state == State.STOPPED
        status = await ctl.get_status()
        assert status.state == State.STOPPED, "nothing resumed after the reconnect"
        assert status.stop_reason == StopReason.HOST_LOST
        counters = ctl.counters
        assert counters.link_losses == 1
        assert counters.reconnects == 1
        gc.collect()
        assert old_transport() is None, "the port of before the cut must not survive the reconnect"

    witness.kill()
    wire = witness.host_to_device()
    assert wire[0] == 0x00, "SPEC §3.1: a single 0x00 before the first frame after a reconnect"
    sent = _sent_types(wire)
    assert sent[:2] == [MsgType.HELLO, MsgType.GET_STATUS], sent
    assert MsgType.SET_TELEMETRY in sent, "the telemetry the caller configured is restored"
    assert not MOTION & set(sent), f"the host sent {sorted(MOTION & set(sent))} after the reconnect"
    assert set(sent) <= {MsgType.HELLO, MsgType.GET_STATUS, MsgType.SET_TELEMETRY, MsgType.HEARTBEAT}
