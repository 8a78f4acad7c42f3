"""A whole simulated rig in one process, in virtual time: benchmarks, integration tests, sweeps.

The rig plays the host's part through the real codec over a loopback byte stream, so nothing is
short-circuited: commands are framed, decoded and answered exactly as over a pty, only without a
wall clock. Heartbeats are sent on simulated time so the watchdog is fed as a live host would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from firmware_sim.controller import Controller, ControllerConfig, FirmwareIdentity
from firmware_sim.device.loopback import LoopbackTransport
from firmware_sim.device.runtime import DeviceRuntime
from firmware_sim.hal import REFERENCE_RIG, Hardware
from firmware_sim.plant import Plant, PlantConfig
from firmware_sim.plant.cannula import GAUGE_ID_M
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    Command,
    Event,
    EventKind,
    Frame,
    Heartbeat,
    Hello,
    MessageStream,
    Mode,
    Nak,
    PlanFlags,
    Start,
    State,
    TelemetryBatch,
    encode_frame,
)
from protocol.messages import Message
from protocol.telemetry import SampleArray, concat_samples, empty_samples

HEARTBEAT_PERIOD_US = 100_000

NOMINAL_PLAN: dict[str, Any] = {
    "mode": Mode.CONTINUOUS,
    "plan_flags": PlanFlags.RELIEF,
    "flow_nl_s": 50_000,  # 3 mL/min
    "increment_nl": 0,
    "volume_limit_nl": 2_000_000,
    "soft_limit_pa": 2_500_000,
    "hard_limit_pa": 4_000_000,
    "relief_pa": 200_000,
    "mixed_ago_ms": 300_000,
    "working_time_ms": 900_000,
    "viscosity_min_pas": 1.0,
    "viscosity_max_pas": 100_000.0,
    "cannula_length_um": 125_000,
    "cannula_id_um": 2388,
    "syringe_bore_um": 7290,
}
"""A continuous 2 mL plan at 3 mL/min through an 11G, 125 mm cannula from a 2.5 mL syringe: it
matches the plant's default configuration, so it runs to VOLUME_LIMIT without a stop."""


class CommandTimeoutError(AssertionError):
    pass


@dataclass
class VirtualRig:
    plant_config: PlantConfig = field(default_factory=PlantConfig)
    controller_config: ControllerConfig = field(default_factory=ControllerConfig)
    hardware: Hardware = REFERENCE_RIG
    heartbeats: bool = True
    """Set False to play a host that went silent (watchdog tests)."""
    real: Callable[[float], float] = float
    """The controller core's real numbers (`Controller(real=...)`): numpy.float32 runs it in single
    precision, as on a microcontroller."""

    def __post_init__(self) -> None:
        self.link = LoopbackTransport()
        self.controller = Controller(
            self.controller_config, self.hardware, FirmwareIdentity.simulator("VIRTUAL-1"), real=self.real
        )
        self.plant = Plant(self.plant_config, self.hardware)
        self.runtime = DeviceRuntime(self.controller, self.plant, self.link)
        self.stream = MessageStream()
        self.events: list[Event] = []
        self._batches: list[SampleArray] = []
        self.replies: list[Message] = []
        self._seq = 0
        self._cmd_id = 0
        self._last_heartbeat_us = 0
        self.info: Message | None = None

    # -- time ------------------------------------------------------------------------------
    @property
    def now_us(self) -> int:
        return self.runtime.now_us

    @property
    def last_heartbeat_us(self) -> int:
        """When the rig last sent a heartbeat: where a host's silence starts."""
        return self._last_heartbeat_us

    def step(self) -> None:
        if self.heartbeats and self.now_us - self._last_heartbeat_us >= HEARTBEAT_PERIOD_US:
            self._send(Heartbeat(uptime_ms=self.now_us // 1000))
            self._last_heartbeat_us = self.now_us
        self.runtime.step()
        data = self.link.take_from_device()
        if data:
            for item in self.stream.feed(data):
                if isinstance(item, Frame):
                    self._receive(item.message)

    def run(self, seconds: float, until: Callable[[VirtualRig], bool] | None = None) -> bool:
        """Advance simulated time; returns True if `until` became true first."""
        end = self.now_us + round(seconds * 1e6)
        while self.now_us < end:
            self.step()
            if until is not None and until(self):
                return True
        return False

    # -- host side ---------------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        self.link.to_device(encode_frame(message, self._seq))
        self._seq = (self._seq + 1) & 0xFFFF

    def _receive(self, message: Message) -> None:
        if isinstance(message, TelemetryBatch):
            self._batches.append(message.samples.copy())
        elif isinstance(message, Event):
            self.events.append(message)
        else:
            self.replies.append(message)

    def command(self, make: Callable[[int], Command], timeout_s: float = 0.5) -> Ack | Nak:
        """Send a command and run until its ACK or NAK arrives."""
        self._cmd_id = self._cmd_id % 0xFFFF + 1
        cmd_id = self._cmd_id
        self._send(make(cmd_id))
        end = self.now_us + round(timeout_s * 1e6)
        while self.now_us < end:
            self.step()
            for reply in self.replies:
                if isinstance(reply, Ack | Nak) and reply.cmd_id == cmd_id:
                    return reply
        raise CommandTimeoutError(f"no answer to command {cmd_id} within {timeout_s} s of simulated time")

    def send_together(self, *makes: Callable[[int], Command]) -> list[int]:
        """Several commands in one write (one byte chunk, as a host that queues them back to back):
        the device decodes them all in the same tick. Returns their command ids; `answer()` finds
        each answer once the rig has run."""
        ids = []
        chunk = b""
        for make in makes:
            self._cmd_id = self._cmd_id % 0xFFFF + 1
            ids.append(self._cmd_id)
            chunk += encode_frame(make(self._cmd_id), self._seq)
            self._seq = (self._seq + 1) & 0xFFFF
        self.link.to_device(chunk)
        return ids

    def answer(self, cmd_id: int) -> Ack | Nak | None:
        """The ACK or NAK received for `cmd_id`, if any yet."""
        return next((r for r in self.replies if isinstance(r, Ack | Nak) and r.cmd_id == cmd_id), None)

    def connect(self) -> Message:
        reply = self.command(lambda i: Hello(i, PROTOCOL_VERSION))
        if not isinstance(reply, Ack):
            raise AssertionError(f"HELLO refused: {reply}")
        self.info = next(m for m in self.replies if getattr(m, "cmd_id", None) == reply.cmd_id)
        return self.info

    def plan_for_plant(self) -> dict[str, Any]:
        """NOMINAL_PLAN with what the plan must know of the rig taken from the plant: the cement's
        age now, the cannula and the syringe (a bench engineer copies these from the setup)."""
        c = self.plant_config
        return {
            **NOMINAL_PLAN,
            "mixed_ago_ms": round(c.mixed_ago_s * 1000) + self.now_us // 1000,
            "cannula_length_um": round(c.cannula_length_mm * 1000),
            "cannula_id_um": round(GAUGE_ID_M[c.cannula_gauge] * 1e6),
            "syringe_bore_um": round(c.syringe_bore_mm * 1000),
        }

    def arm(self, **overrides: Any) -> Ack | Nak:
        """ARM with the plan for this plant (`plan_for_plant`), any field overridden by keyword."""
        fields = {**self.plan_for_plant(), **overrides}
        return self.command(lambda i: Arm(cmd_id=i, **fields))

    def start(self) -> Ack | Nak:
        return self.command(Start)

    # -- what came back ----------------------------------------------------------------------
    @property
    def samples(self) -> SampleArray:
        if not self._batches:
            return empty_samples()
        if len(self._batches) > 1:
            self._batches = [concat_samples(self._batches)]
        return self._batches[0]

    def stop_events(self) -> list[Event]:
        return [e for e in self.events if e.kind == EventKind.STOP]

    def state_is(self, *states: State) -> Callable[[VirtualRig], bool]:
        return lambda rig: rig.controller.state in states
