"""The tick loop: transport -> decoder -> controller -> plant -> encoder -> transport.

Real-time mode keeps a 1 kHz tick against the monotonic clock (optionally scaled); virtual-time mode
runs ticks back to back. Either way the controller only ever sees `now_us` from here, so a run is
reproducible from its seed and the bytes it was sent.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from firmware_sim.controller import Controller, TickOutput
from firmware_sim.controller.calibration import DeviceSetup
from firmware_sim.device.transport import Transport
from firmware_sim.plant import Plant
from protocol import MessageStream, encode_frame
from protocol.framing import DELIMITER

TICK_US = 1000
JITTER_RING = 1 << 16
MAX_CATCH_UP_US = 20_000
"""A real-time run late by more than this much simulated time slips its schedule instead of running
the missed ticks back to back. The bytes that arrived while this process was descheduled are all
read in the first late tick; catching up a long stall in a burst would then run the watchdog through
simulated time in which the host's later frames could not have arrived yet, and stop a host that
kept its pace (HOST_LOST): a real controller is never descheduled. Up to this bound, catching up
keeps the tick rate exact."""


@dataclass(slots=True)
class TickStats:
    """Lateness of each real-time tick against its schedule, in a bounded ring (for the jitter figure)."""

    ticks: int = 0
    overruns: int = 0
    """Ticks that started more than one period late."""
    slips: int = 0
    """Times the schedule slipped (late by more than MAX_CATCH_UP_US of simulated time)."""
    lateness_us: list[int] = field(default_factory=list)
    _next: int = 0

    def record(self, late_us: int) -> None:
        self.ticks += 1
        if late_us > TICK_US:
            self.overruns += 1
        if len(self.lateness_us) < JITTER_RING:
            self.lateness_us.append(late_us)
        else:
            self.lateness_us[self._next] = late_us
            self._next = (self._next + 1) % JITTER_RING


class DeviceRuntime:
    def __init__(
        self,
        controller: Controller,
        plant: Plant,
        transport: Transport,
        tick_us: int = TICK_US,
        on_link_change: Callable[[bool, int], None] | None = None,
        on_tick: Callable[[int, TickOutput], None] | None = None,
        on_setup_change: Callable[[DeviceSetup], None] | None = None,
    ) -> None:
        self.controller = controller
        self.plant = plant
        self.transport = transport
        self.tick_us = tick_us
        self._dt_s = tick_us / 1e6
        self.now_us = 0
        self.stream = MessageStream()
        self._seq = 0
        self.stats = TickStats()
        self._was_connected = False
        self._early = b""
        self._on_link_change = on_link_change
        """Told (attached, now_us) when a host attaches or goes away: the simulator's console log."""
        self._on_tick = on_tick
        """Told (now_us, output) after each controller tick, before the plant steps: the simulator's
        `--trace` log (plant events, STOP events, truth) that HIL reports read. None costs nothing."""
        self._on_setup_change = on_setup_change
        """Told the syringe and calibration whenever a command changed them: the non-volatile store."""
        self._setup_version = controller.setup_version

    def wait_for_host(self, should_stop: Callable[[], bool], poll_s: float = 0.001) -> bool:
        """Hold power-up until a host attaches, like a USB-powered pump: its POWER_UP event is then
        the first thing the host reads. Bytes that arrive meanwhile go to the first tick."""
        while not should_stop():
            data, connected = self.transport.poll()
            self._early += data
            if connected:
                return True
            time.sleep(poll_s)
        return False

    def step(self) -> None:
        """One controller tick at `now_us`, then advance the plant and the clock by one period."""
        data, connected = self.transport.poll()
        if self._early:
            data, self._early = self._early + data, b""
        if connected != self._was_connected:
            self.stream.reset()  # a new host starts a new byte stream
            self._was_connected = connected
            if connected:
                # A delimiter first: whatever partial frame the host's receiver holds ends here,
                # so our first frame is not lost with it.
                self.transport.write(DELIMITER)
            if self._on_link_change is not None:
                self._on_link_change(connected, self.now_us)
        received = self.stream.feed(data) if data else []
        out = self.controller.tick(self.now_us, self.plant.sense(), received, connected)
        if self._on_setup_change is not None and self.controller.setup_version != self._setup_version:
            # handed to the store before the ACK leaves (the simulator writes it from its own thread)
            self._setup_version = self.controller.setup_version
            self._on_setup_change(self.controller.setup)
        if out.outgoing:
            seq = self._seq
            chunks = []
            for message in out.outgoing:
                chunks.append(encode_frame(message, seq))
                seq = (seq + 1) & 0xFFFF
            self._seq = seq
            self.transport.write(b"".join(chunks))
        if self._on_tick is not None:
            self._on_tick(self.now_us, out)

        self.plant.step(out.motor, self._dt_s)
        self.now_us += self.tick_us

    def run_virtual(self, duration_s: float, until: Callable[[], bool] | None = None) -> None:
        """As fast as the CPU goes: for benchmarks and in-process scenario sweeps."""
        end_us = self.now_us + round(duration_s * 1e6)
        while self.now_us < end_us:
            self.step()
            if until is not None and until():
                return

    def run_realtime(
        self,
        should_stop: Callable[[], bool],
        time_scale: float = 1.0,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Tick on the monotonic clock (`clock_ns`, `sleep`: injected by tests); `time_scale` > 1 runs
        the simulation faster than wall time.

        A late tick is run at once rather than skipped, so simulated time never jumps; lateness is
        recorded in `stats`. Late by more than MAX_CATCH_UP_US of simulated time (this process was
        descheduled), the schedule slips: simulated time resumes from now instead of catching up.
        """
        period_ns = round(self.tick_us * 1000 / time_scale)
        max_late_ns = max(MAX_CATCH_UP_US // self.tick_us, 1) * period_ns
        start = clock_ns()
        k = 0
        while not should_stop():
            due = start + k * period_ns
            now = clock_ns()
            if now < due:
                sleep((due - now) / 1e9)
                now = clock_ns()
            late_ns = now - due
            self.stats.record(late_ns // 1000)
            if late_ns > max_late_ns:
                start += late_ns
                self.stats.slips += 1
            self.step()
            k += 1
