"""The real-time tick loop when the simulator's process is descheduled (a busy machine), on an
injected wall clock: a host that kept its pace must not be stopped with HOST_LOST because the
simulator fell behind, and a host that really went silent still is."""

from __future__ import annotations

from firmware_sim.device.runtime import MAX_CATCH_UP_US
from firmware_sim.virtual_rig import VirtualRig
from protocol import Ack, EventKind, Heartbeat, StopReason

HOST_PERIOD_S = 0.09
"""The host's heartbeat: 0.9 x watchdog / 5 (host.link)."""


class DescheduledWall:
    """A wall clock for `run_realtime`: every read costs `read_cost_s` (the tick's own work), a sleep
    advances it, and at `stall_at_s` the process is away for `stall_s`. A host on the same wall clock
    sends a HEARTBEAT every HOST_PERIOD_S until `host_until_s`: what it sends while the simulator is
    away waits in the pty and is read by the first tick after."""

    def __init__(
        self, rig: VirtualRig, stall_at_s: float, stall_s: float, host_until_s: float, end_s: float
    ) -> None:
        self.rig = rig
        self.t_ns = 0
        self.read_cost_ns = 20_000
        self.stall_at_ns = round(stall_at_s * 1e9)
        self.stall_ns = round(stall_s * 1e9)
        self.host_until_ns = round(host_until_s * 1e9)
        self.end_ns = round(end_s * 1e9)
        self.next_beat_ns = 0

    def now(self) -> int:
        self.t_ns += self.read_cost_ns
        if self.stall_ns and self.t_ns >= self.stall_at_ns:
            self.t_ns += self.stall_ns
            self.stall_ns = 0
        while self.next_beat_ns <= min(self.t_ns, self.host_until_ns):
            self.rig._send(Heartbeat(uptime_ms=self.next_beat_ns // 1_000_000))
            self.next_beat_ns += round(HOST_PERIOD_S * 1e9)
        return self.t_ns

    def sleep(self, seconds: float) -> None:
        self.t_ns += round(seconds * 1e9)

    def done(self) -> bool:
        return self.t_ns >= self.end_ns


def _armed_rig() -> VirtualRig:
    rig = VirtualRig(heartbeats=False)
    rig.connect()
    assert isinstance(rig.arm(), Ack)
    rig.events.clear()
    return rig


def _run(stall_at_s: float, stall_s: float, host_until_s: float, end_s: float) -> tuple[VirtualRig, int]:
    """Real-time ticks on the injected clock; returns the rig (events read) and its start time."""
    rig = _armed_rig()
    start_us = rig.now_us
    wall = DescheduledWall(rig, stall_at_s, stall_s, host_until_s, end_s)
    rig.runtime.run_realtime(wall.done, clock_ns=wall.now, sleep=wall.sleep)
    rig.run(0.001)  # read what the device sent meanwhile
    return rig, start_us


def _host_lost(rig: VirtualRig) -> bool:
    return any(e.kind == EventKind.STOP and e.reason == StopReason.HOST_LOST for e in rig.events)


def test_a_descheduled_simulator_does_not_stop_a_host_that_kept_its_pace():
    """Away 530 ms, back 80 ms before the host's next beat: the beats sent meanwhile are read in the
    first tick after (simulated 0.2 s); catching up in a burst then ran the watchdog through the
    530 ms missed before that next beat could arrive (HOST_LOST at simulated 0.7 s). Slipping
    resumes simulated time where it stopped: the next beat comes 80 ms of simulated time later."""
    rig, start_us = _run(stall_at_s=0.2, stall_s=0.53, host_until_s=1.5, end_s=1.5)
    assert not _host_lost(rig), [e for e in rig.events if e.kind == EventKind.STOP]
    assert rig.runtime.stats.slips == 1
    ran_s = (rig.now_us - start_us) / 1e6
    assert 0.92 < ran_s < 1.02, f"{ran_s} s simulated: 1.5 s of wall time less the 0.53 s away"


def test_a_short_lateness_is_caught_up_so_the_tick_rate_stays_exact():
    rig, start_us = _run(stall_at_s=0.2, stall_s=MAX_CATCH_UP_US / 2e6, host_until_s=1.0, end_s=1.0)
    assert rig.runtime.stats.slips == 0
    assert abs((rig.now_us - start_us) - 1_000_000) <= 2_000, "every tick of the wall second ran"
    assert not _host_lost(rig)


def test_a_silent_host_still_stops_the_device_when_the_simulator_was_away_too():
    rig, _ = _run(stall_at_s=0.3, stall_s=0.6, host_until_s=0.2, end_s=2.0)
    assert _host_lost(rig), "the watchdog keeps its meaning: 500 ms of simulated silence stops"
