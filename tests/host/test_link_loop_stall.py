"""A stalled host event loop against the real simulator's watchdog (SPEC §9.2), over a pty.

The stall is injected at the worst moment: a callback that blocks the loop is scheduled just before
the keeper's next HEARTBEAT is due, so the device hears nothing for the heartbeat period plus the
stall. A busy machine stalls a loop for a few hundred milliseconds (CPU starvation, a first-time
import, a widget tree built at once); the session must survive that, and must still be lost when
the host is truly hung for longer than the watchdog: the watchdog keeps its meaning.
"""

from __future__ import annotations

import asyncio
import subprocess
import time

from host.client import DeviceClient
from protocol import Event, EventKind, State, StopReason, StopSource
from tests.host.conftest import continuous_arm, next_matching

SimPty = tuple[subprocess.Popen[str], str]

SURVIVABLE_STALL_S = 0.3
"""A loop stall a busy bench PC produces: with a heartbeat every watchdog / 2 (SPEC's minimum, 0.9 x
250 ms) the device heard nothing for 525 ms and stopped; with watchdog / 5 it hears a gap of 390 ms."""
HUNG_S = 1.0
"""Twice the 500 ms watchdog: a host hung this long has lost its session, whatever the heartbeat."""


async def _stall_before_the_next_heartbeat(ctl: DeviceClient, stall_s: float) -> None:
    """Block the event loop for `stall_s` from just before the next HEARTBEAT is due (earlier timers
    run first, so the keeper cannot slip its beat in before the stall)."""
    due = ctl.link.next_heartbeat_at
    assert due is not None, "a session with heartbeats"
    loop = asyncio.get_running_loop()
    stalled: asyncio.Future[None] = loop.create_future()

    def hang() -> None:
        time.sleep(stall_s)  # the stall itself: the loop runs nothing else meanwhile
        stalled.set_result(None)

    loop.call_at(due - 0.005, hang)
    await stalled


def _is_stop(event: Event) -> bool:
    return event.kind == EventKind.STOP


async def test_a_session_survives_a_loop_stall_shorter_than_the_watchdog_margin(sim_pty: SimPty):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, ctl.events() as events:
        await ctl.arm(continuous_arm())
        for _ in range(2):  # twice: a stall right after the first one's recovery beat, too
            await _stall_before_the_next_heartbeat(ctl, SURVIVABLE_STALL_S)
        status = await ctl.get_status()
        assert (status.state, status.stop_reason) == (State.ARMED, StopReason.NONE), (
            f"the device stopped: {status.state!r} {status.stop_reason!r}"
        )
        arrived = []
        while (event := events.get_nowait()) is not None:
            arrived.append(event)
        assert not [e for e in arrived if _is_stop(e)], "the device's watchdog never expired"
        assert ctl.counters.link_losses == 0


async def test_a_host_hung_longer_than_the_watchdog_loses_its_session(sim_pty: SimPty):
    _proc, port = sim_pty
    async with DeviceClient.open(port) as ctl, ctl.events() as events:
        await ctl.arm(continuous_arm())
        await _stall_before_the_next_heartbeat(ctl, HUNG_S)
        stop = await next_matching(events, _is_stop, within_s=5)
        assert (stop.state, stop.reason, stop.source) == (
            State.STOPPED,
            StopReason.HOST_LOST,
            StopSource.CONTROLLER,
        )
