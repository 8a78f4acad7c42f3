"""The controller on an injected clock, driven like the device runtime drives it, with the fake
plant and a minimal host: commands are handed over as decoded `Frame`s (or, for malformed input,
through the real codec), answers are collected per tick."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from firmware_sim.controller import Controller, ControllerConfig, FirmwareIdentity
from firmware_sim.hal import REFERENCE_RIG
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
    Rejected,
    Resume,
    Start,
    State,
    Status,
    TelemetryBatch,
    framing,
)
from protocol.codec import HEADER, Header
from protocol.messages import Message
from tests.controller.fakeplant import FakePlant

TICK_US = 1000
DT = TICK_US / 1e6
HOST_HEARTBEAT_US = 100_000
DV = REFERENCE_RIG.max_step_accel_hz_s * DT
"""Largest step-rate change per tick."""


def arm_msg(cmd_id: int = 0, **overrides: Any) -> Arm:
    """A clinically plausible plan on the fake plant's syringe and cannula (2.5 mL, 11G 125 mm)."""
    fields: dict[str, Any] = {
        "cmd_id": cmd_id,
        "mode": Mode.CONTINUOUS,
        "plan_flags": PlanFlags.NONE,
        "flow_nl_s": 100_000,
        "increment_nl": 0,
        "volume_limit_nl": 1_000_000,
        "soft_limit_pa": 2_500_000,
        "hard_limit_pa": 4_000_000,
        "relief_pa": 200_000,
        "mixed_ago_ms": 300_000,
        "working_time_ms": 1_200_000,
        "viscosity_min_pas": 1.0,
        "viscosity_max_pas": 100_000.0,
        "cannula_length_um": 125_000,
        "cannula_id_um": 2_388,
        "syringe_bore_um": 7_290,
    }
    fields.update(overrides)
    return Arm(**fields)


def frame(message: Message, version: int = PROTOCOL_VERSION) -> Frame:
    return Frame(Header(version, message.TYPE, 0), message)


def rejected(payload_body: bytes, msg_type: int, version: int = PROTOCOL_VERSION) -> Rejected:
    """What the real codec makes of an undecodable command: header + raw body through MessageStream."""
    stream = MessageStream()
    items = stream.feed(framing.encode(HEADER.pack(version, msg_type, 0) + payload_body))
    assert len(items) == 1, items
    item = items[0]
    assert isinstance(item, Rejected), item
    return item


@dataclass
class Rig:
    config: ControllerConfig = field(default_factory=ControllerConfig)
    plant: FakePlant = field(default_factory=FakePlant)
    identity: FirmwareIdentity = field(default_factory=lambda: FirmwareIdentity.simulator("TEST-1"))
    heartbeats: bool = True
    """The host heartbeats every 100 ms while True (a silent host when False)."""
    connected: bool = True

    def __post_init__(self) -> None:
        self.c = Controller(self.config, REFERENCE_RIG, self.identity)
        self.now_us = 0
        self.cmd_id = 0
        self.events: list[Event] = []
        self.batches: list[TelemetryBatch] = []
        self.heartbeats_rx: list[Heartbeat] = []
        self.replies: list[Message] = []
        self.rates: list[float] = []
        self.states: list[State] = []
        self._last_hb = -HOST_HEARTBEAT_US

    # -- time --------------------------------------------------------------------------------
    def tick(self, received: Sequence[Frame | Rejected] = ()) -> list[Message]:
        items = list(received)
        if self.heartbeats and self.connected and self.now_us - self._last_hb >= HOST_HEARTBEAT_US:
            items.append(frame(Heartbeat(uptime_ms=0)))
            self._last_hb = self.now_us
        out = self.c.tick(self.now_us, self.plant.sense(), items, self.connected)
        outgoing = list(out.outgoing)
        for m in outgoing:
            if isinstance(m, Event):
                self.events.append(m)
            elif isinstance(m, TelemetryBatch):
                self.batches.append(m)
            elif isinstance(m, Heartbeat):
                self.heartbeats_rx.append(m)
            else:
                self.replies.append(m)
        self.rates.append(out.motor.step_rate_hz)
        self.states.append(self.c.state)
        self.plant.step(out.motor, DT)
        self.now_us += TICK_US
        return outgoing

    def run(self, seconds: float, until: Callable[[Rig], bool] | None = None) -> bool:
        """Advance; True as soon as `until` holds (checked after every tick)."""
        for _ in range(round(seconds * 1e6 / TICK_US)):
            self.tick()
            if until is not None and until(self):
                return True
        return False

    def run_until_state(self, *states: State, seconds: float = 10.0) -> None:
        assert self.run(seconds, lambda r: r.c.state in states), (self.c.state, self.c.stop_reason)

    # -- host --------------------------------------------------------------------------------
    def next_id(self) -> int:
        self.cmd_id = self.cmd_id % 0xFFFF + 1
        return self.cmd_id

    def send(self, message: Message) -> list[Message]:
        return self.tick([frame(message)])

    def command(self, make: Callable[[int], Command] | Command) -> tuple[Ack | Nak, list[Message]]:
        """One command, answered in the same tick: (its ACK or NAK, everything sent that tick)."""
        message = make if isinstance(make, Command) else make(self.next_id())
        outgoing = self.send(message)
        answers = [m for m in outgoing if isinstance(m, Ack | Nak) and m.cmd_id == message.cmd_id]
        assert len(answers) == 1, outgoing
        return answers[0], outgoing

    def ok(self, make: Callable[[int], Command] | Command) -> list[Message]:
        answer, outgoing = self.command(make)
        assert isinstance(answer, Ack), answer
        return outgoing

    def hello(self) -> list[Message]:
        return self.ok(lambda i: Hello(i, PROTOCOL_VERSION))

    def arm(self, **overrides: Any) -> Status:
        outgoing = self.ok(lambda i: arm_msg(i, **overrides))
        status = [m for m in outgoing if isinstance(m, Status)]
        assert len(status) == 1
        return status[0]

    # -- what came back --------------------------------------------------------------------
    def transitions(self) -> list[Event]:
        return [e for e in self.events if e.kind in (EventKind.STATE_CHANGE, EventKind.STOP)]

    def stops(self) -> list[Event]:
        return [e for e in self.events if e.kind == EventKind.STOP]

    def kinds(self, kind: EventKind) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def started(
    config: ControllerConfig | None = None, plant: FakePlant | None = None, seconds: float = 0.0, **arm: Any
) -> Rig:
    """A rig with a session, an armed plan and START accepted, run for `seconds`."""
    rig = Rig(config or ControllerConfig(), plant or FakePlant())
    rig.hello()
    rig.arm(**arm)
    rig.ok(Start)
    if seconds:
        rig.run(seconds)
    return rig


def with_config(**changes: Any) -> ControllerConfig:
    return replace(ControllerConfig(), **changes)


def nominal_run(seed: int, max_ticks: int = 40_000) -> Rig:
    """One random clinical plan on a random healthy line with 10 kPa sensor noise, slow cement
    creep, increments with relief and resumes, run until DONE, STOPPED or `max_ticks`."""
    rnd = random.Random(seed)
    plant = FakePlant(
        seed=seed,
        viscosity_pas=rnd.uniform(30, 250),
        viscosity_rate_per_s=rnd.choice([0.0, 0.005, 0.02]),
        compliance_m3_pa=rnd.uniform(0.5e-14, 6e-14),
        position_m=0.002,
    )
    incremental = rnd.random() < 0.6
    rig = started(
        plant=plant,
        flow_nl_s=rnd.choice([20_000, 50_000, 100_000, 150_000]),
        plan_flags=PlanFlags.RELIEF if rnd.random() < 0.7 else PlanFlags.NONE,
        volume_limit_nl=rnd.choice([600_000, 2_000_000]),
        soft_limit_pa=5_000_000,
        hard_limit_pa=7_000_000,
        mode=Mode.INCREMENTAL if incremental else Mode.CONTINUOUS,
        increment_nl=rnd.choice([50_000, 100_000, 250_000]) if incremental else 0,
    )
    for _ in range(max_ticks):
        rig.tick()
        if rig.c.state == State.PAUSED and not rig.c.relief_active and rnd.random() < 0.02:
            rig.ok(Resume)
        if rig.c.state in (State.STOPPED, State.DONE):
            break
    return rig
