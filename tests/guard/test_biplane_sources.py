"""Biplane on the bench: a source per view (`--frames` lateral, `--frames-ap`), each view judged by its
own guard over a real link (a pty to a fake device). A stop from either view goes out and names the
view; a lost or miswired source blinds its own view only, and the blindness fail-safe acts as for one
view."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from host.client import DeviceClient
from host.frames.memory import PushFrameSource
from host.guard import GuardConfig
from host.guard.biplane import BiplaneGuard
from host.guard.worker import GuardWorker, Judged
from host.pump import StreamPump
from host.stops import StopRequests
from protocol import EventKind, MsgType, State, StopDetail, StopSource
from tests.guard.phantom import Phantom
from tests.guard.test_guard_worker import _States
from tests.host.conftest import FakeDevice, event_message
from tests.host.test_link_fake_device import FAST


class _Rig:
    def __init__(self, device: FakeDevice, worker: GuardWorker, states: _States) -> None:
        self.device, self.worker, self.states = device, worker, states
        self.lateral, self.ap = Phantom(seed=1), Phantom(seed=2)
        self.judged: list[Judged] = []
        self.changed = asyncio.Event()

    def on_judged(self, judged: Judged) -> None:
        self.judged.append(judged)
        self.changed.set()

    async def until(self, done: Callable[[], bool], timeout_s: float = 20.0) -> None:
        async with asyncio.timeout(timeout_s):
            while not done():
                self.changed.clear()
                await self.changed.wait()

    async def enter(self, state: State, n: int) -> None:
        self.device.state = state
        self.device.send(event_message(n, EventKind.STATE_CHANGE, state))
        await asyncio.wait_for(self.states.seen[state].wait(), 5.0)


@asynccontextmanager
async def biplane_rig(
    fake_device: Callable[..., FakeDevice], **config: Any
) -> AsyncIterator[tuple[_Rig, PushFrameSource, PushFrameSource, StopRequests]]:
    lateral = PushFrameSource("mem://lateral", expect_shape=(256, 256))
    ap = PushFrameSource("mem://ap", expect_shape=(256, 256))
    async with (
        fake_device(state=State.IDLE) as device,
        DeviceClient.open(device.path, FAST) as ctl,
    ):
        stops = StopRequests()
        # no frame-gap blindness while the test thinks (a loaded machine can take seconds between
        # two pushes): these tests are about a lost or miswired source, not a silent one
        guard = BiplaneGuard(GuardConfig(**{"max_frame_gap_s": 60.0, **config}))
        rig: _Rig | None = None
        worker = GuardWorker(
            guard, {"lateral": lateral, "ap": ap}, ctl, stops, on_judged=lambda j: rig and rig.on_judged(j)
        )
        states = _States()
        rig = _Rig(device, worker, states)
        async with StreamPump(ctl, [worker, states], stops=stops) as pump:
            pump.supervisor.spawn(worker.run(), "guard")
            await rig.enter(State.ARMED, 1)
            for _ in range(8):
                lateral.push(rig.lateral.frame())
                ap.push(rig.ap.frame(view="ap"))
            await rig.until(lambda: worker.status.label == "WATCHING")  # both views, as the loop saw it
            yield rig, lateral, ap, stops


async def test_cement_outside_the_body_in_the_ap_view_stops_and_the_stop_names_the_view(
    fake_device: Callable[..., FakeDevice],
) -> None:
    async with biplane_rig(fake_device) as (rig, lateral, ap, stops):
        await rig.enter(State.INJECTING, 2)
        rig.ap.bolus(0.5)
        rig.ap.blob(120, 70, 8)  # outside the AP outline; the lateral view sees no leak
        for _ in range(3):
            lateral.push(rig.lateral.frame())
            ap.push(rig.ap.frame(view="ap"))
        await rig.device.until(lambda: bool(rig.device.commands(MsgType.STOP)))
        guard = rig.worker.guard
        assert isinstance(guard, BiplaneGuard)
        lateral_state = guard.status_of("lateral").label
    (_h, stop), *_ = rig.device.commands(MsgType.STOP)
    assert (stop.source, stop.detail) == (StopSource.FLUORO_IMAGE, StopDetail.EXTRAVASATION)  # type: ignore[attr-defined]
    assert rig.worker.stop_views == ["ap"]
    (request,) = stops._pending
    assert request.notes["guard_view"] == "ap"
    assert request.origin.startswith("fluoroscopic guard: EXTRAVASATION, ap view, frame ")
    assert lateral_state == "WATCHING"
    stopped = [j for j in rig.judged if j.step.stop is not None]
    assert [(j.view, j.stop_view, j.view_status.label) for j in stopped] == [
        ("ap", "ap", "STOPPED(EXTRAVASATION)")
    ]


@pytest.mark.parametrize(("policy", "stops_it"), [("injecting", True), ("never", False)])
async def test_one_lost_source_blinds_its_view_only_and_stops_as_configured(
    fake_device: Callable[..., FakeDevice], policy: str, stops_it: bool
) -> None:
    async with biplane_rig(fake_device, blind_stop=policy) as (rig, lateral, ap, _stops):
        await rig.enter(State.INJECTING, 2)
        ap.lose("AP grabber unplugged")
        guard = rig.worker.guard
        assert isinstance(guard, BiplaneGuard)
        await rig.until(lambda: rig.worker.status.label.startswith("BLIND(ap: feed lost"))
        if stops_it:
            await rig.device.until(lambda: bool(rig.device.commands(MsgType.STOP)))
        for _ in range(3):  # the lateral view still sees, and is still judged
            lateral.push(rig.lateral.frame())
        await rig.until(lambda: sum(1 for j in rig.judged if j.view == "lateral" and j.frame) >= 3)
        assert rig.worker.status.label == "BLIND(ap: feed lost: AP grabber unplugged)"
        assert guard.status_of("lateral").label == "WATCHING"
        stops = rig.device.commands(MsgType.STOP)
    if stops_it:
        (_h, stop), *_ = stops
        assert stop.detail == StopDetail.IMAGE_LOST  # type: ignore[attr-defined]
        assert rig.worker.stop_views == ["ap"]
    else:
        assert stops == []


async def test_a_lateral_frame_on_the_ap_source_is_refused_for_the_ap_view(
    fake_device: Callable[..., FakeDevice],
) -> None:
    async with biplane_rig(fake_device) as (rig, lateral, ap, _stops):
        for _ in range(3):  # a miswired grabber: the lateral picture on the AP input
            ap.push(rig.ap.frame(view="lateral"))
            lateral.push(rig.lateral.frame())
        guard = rig.worker.guard
        assert isinstance(guard, BiplaneGuard)

        def refused() -> list[Judged]:
            return [j for j in rig.judged if j.view == "ap" and "view's source" in j.view_status.reason]

        await rig.until(lambda: bool(refused()))
        assert guard.status_of("lateral").label == "WATCHING"
        assert refused()[0].frame is None
        assert "is a 'lateral' view on the ap view's source" in refused()[0].view_status.reason
        assert rig.device.commands(MsgType.STOP) == []  # ARMED: a blind guard only shows it (default)


def test_two_sources_must_match_the_guards_views() -> None:
    with pytest.raises(ValueError, match="sources for views lateral; the guard watches lateral, ap"):
        GuardWorker(BiplaneGuard(), {"lateral": PushFrameSource()}, None, StopRequests())  # type: ignore[arg-type]


async def test_a_one_view_guard_refuses_the_other_views_frames_naming_them(
    fake_device: Callable[..., FakeDevice], caplog: pytest.LogCaptureFixture
) -> None:
    """A stream with both views read by one guard (`--frames` alone on `sim --frames-view both`): the
    AP frames are refused, never learned into the lateral baseline; the log says what to do."""
    from host.guard import Guard

    source = PushFrameSource("mem://both", expect_shape=(256, 256))
    ph = Phantom(seed=1)  # one stream: one index sequence and clock over both views
    async with (
        fake_device(state=State.ARMED) as device,
        DeviceClient.open(device.path, FAST) as ctl,
    ):
        worker = GuardWorker(Guard(GuardConfig()), source, ctl, StopRequests())
        async with StreamPump(ctl, [worker]) as pump:
            pump.supervisor.spawn(worker.run(), "guard")
            for _ in range(8):
                source.push(ph.frame())
                source.push(ph.frame(view="ap"))
            assert await worker.watching(5.0)  # the eight lateral frames made its baseline
    assert worker.frames == 8  # only the lateral frames were judged
    said = [r.getMessage() for r in caplog.records if "allowed one view per source" in r.getMessage()]
    assert said, [r.getMessage() for r in caplog.records]
    assert "is a 'ap' view on a lateral stream" in said[0]
    assert "(--frames-ap)" in said[0]
