"""The guard beside a real link (a pty to a fake device): frames judged on the guard's thread, the stop
sent as STOP source FLUORO_IMAGE with the rule in its detail byte, recorded with the frame and its
latency; a lost feed stops a moving plunger; and the only command the guard ever sends is STOP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from host.client import DeviceClient
from host.frames.memory import PushFrameSource
from host.guard import Guard, GuardConfig, GuardStep
from host.guard.worker import GuardWorker
from host.pump import Consumer, StreamPump
from host.stops import StopRequests
from protocol import Event, EventKind, MsgType, State, StopDetail, StopSource
from protocol.messages import Stop
from tests.guard.phantom import Phantom
from tests.host.conftest import FakeDevice, event_message
from tests.host.test_link_fake_device import FAST


class _States(Consumer):
    """Tells the test when the pump has delivered a state change to the consumers (the guard's too)."""

    def __init__(self) -> None:
        self.seen = {s: asyncio.Event() for s in State}

    def on_event(self, event: Event, notes: dict[str, Any], received_at: float | None) -> None:
        self.seen[State(event.state)].set()


async def test_the_guard_stops_an_injection_over_the_wire_naming_the_rule(
    fake_device: Callable[..., FakeDevice],
) -> None:
    ph = Phantom(seed=3)
    source = PushFrameSource("mem://guard-test", expect_shape=(256, 256))
    steps: list[GuardStep] = []
    async with (
        fake_device(state=State.INJECTING) as device,
        DeviceClient.open(device.path, FAST) as ctl,
    ):
        sent_before = len(device.commands())
        stops = StopRequests()
        worker = GuardWorker(Guard(GuardConfig()), source, ctl, stops, on_step=steps.append)
        states = _States()
        async with StreamPump(ctl, [worker, states], stops=stops) as pump:
            pump.supervisor.spawn(worker.run(), "guard")
            # a moving plunger and no baseline yet would stop it: the test's device is armed for this
            device.state = State.ARMED
            device.send(event_message(1, EventKind.STATE_CHANGE, State.ARMED))
            await asyncio.wait_for(states.seen[State.ARMED].wait(), 5.0)
            for _ in range(8):
                source.push(ph.frame())
            assert await worker.watching(5.0)
            device.state = State.INJECTING
            device.send(event_message(2, EventKind.STATE_CHANGE, State.INJECTING))
            await asyncio.wait_for(states.seen[State.INJECTING].wait(), 5.0)
            ph.bolus(0.85)
            for _ in range(2):
                source.push(ph.frame())
            await device.until(lambda: bool(device.commands(MsgType.STOP)))
        (_h, stop), *_ = device.commands(MsgType.STOP)
        assert isinstance(stop, Stop)
        assert (stop.source, stop.detail) == (StopSource.FLUORO_IMAGE, StopDetail.POSTERIOR_QUARTER)
        assert worker.stops_sent == [(StopDetail.POSTERIOR_QUARTER, 10)]
        assert worker.status.label == "STOPPED(POSTERIOR_QUARTER)"
        (request,) = stops._pending
        assert request.notes["guard_frame"] == 10
        assert request.origin == "fluoroscopic guard: POSTERIOR_QUARTER, frame 10"
        kinds = {MsgType(h.msg_type) for h, _m in device.commands()[sent_before:]}
        assert kinds <= {MsgType.STOP}, "the guard never starts, resumes or clears anything"
        assert any(s.frame_index == 10 and s.measures is not None for s in steps)


async def test_a_lost_feed_stops_a_moving_plunger_at_once(fake_device: Callable[..., FakeDevice]) -> None:
    source = PushFrameSource("mem://lost")
    async with (
        fake_device(state=State.INJECTING) as device,
        DeviceClient.open(device.path, FAST) as ctl,
    ):
        stops = StopRequests()
        worker = GuardWorker(Guard(GuardConfig()), source, ctl, stops)
        async with StreamPump(ctl, [worker], stops=stops) as pump:
            pump.supervisor.spawn(worker.run(), "guard")
            source.lose("grabber unplugged")
            await device.until(lambda: bool(device.commands(MsgType.STOP)))
        (_h, stop), *_ = device.commands(MsgType.STOP)
        assert (stop.source, stop.detail) == (StopSource.FLUORO_IMAGE, StopDetail.IMAGE_LOST)  # type: ignore[attr-defined]
        assert worker.status.label == "BLIND(feed lost: grabber unplugged)"
