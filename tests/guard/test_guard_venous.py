"""The VENOUS rule watches a vein fill (an opacity leaving the body that grows), not one frame's thin
shape; the biplane guard sees in the AP view what the lateral view cannot, and its stop alone stops
the pump. Phantom frames put the opacity exactly where the test says; the renderer's frames check
the same on the simulator's own physics (256 px, fast)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np
import pytest

from firmware_sim.imaging.fluoro import FluoroConfig, FluoroRenderer
from firmware_sim.imaging.scene import CementScene, SceneTruth
from firmware_sim.plant.spatial import SpatialVertebra
from host.client import DeviceClient
from host.frames import FluoroFrame
from host.frames.memory import PushFrameSource
from host.guard import Guard, GuardConfig, GuardStep
from host.guard.biplane import BiplaneGuard
from host.guard.worker import GuardWorker
from host.pump import StreamPump
from host.stops import StopRequests
from protocol import EventKind, MsgType, State, StopDetail, StopSource
from protocol.messages import Stop
from tests.guard.phantom import BODY, Phantom
from tests.guard.test_guard_worker import _States
from tests.host.conftest import FakeDevice, event_message
from tests.host.test_link_fake_device import FAST

X0, Y0, X1, Y1 = BODY
MID_Y = (Y0 + Y1) // 2


def learned(ph: Phantom, guard: Guard | BiplaneGuard, views: tuple[str, ...] = ("lateral",)) -> None:
    for i in range(guard.config.baseline_frames):
        for view in views:
            step = guard.frame(ph.frame(view=view), i * 0.1, State.ARMED)
    assert step.status.label == "WATCHING"


@pytest.mark.parametrize("photons", [300.0, 4000.0])
@pytest.mark.parametrize(
    "sliver",
    [
        (85, 160, 118, 172),  # inside the body, along the bolus (the cannula's shadow cuts such slivers)
        (X1, MID_Y, X1 + 25, MID_Y - 4),  # out of a lateral wall at a vein's exit, 7.5 mm: static
    ],
    ids=["inside", "at-the-exit"],
)
def test_a_static_thin_opacity_never_stops_as_a_vein(photons: float, sliver: tuple[int, ...]) -> None:
    ph = Phantom(seed=4, photons=photons)
    guard = Guard(GuardConfig())
    learned(ph, guard, ("ap",))
    ph.bolus(0.5)
    ph.vein(*sliver, width_px=4)
    steps = [guard.frame(ph.frame(view="ap"), 1 + i * 0.1, State.INJECTING) for i in range(40)]
    assert [s.stop for s in steps if s.stop] == [], [s.measures for s in steps[:3]]


@pytest.mark.parametrize("photons", [300.0, 4000.0])
def test_a_vein_growing_out_of_the_body_stops_as_venous(photons: float) -> None:
    ph = Phantom(seed=5, photons=photons)
    guard = Guard(GuardConfig())
    learned(ph, guard, ("ap",))
    ph.bolus(0.5)
    steps = [guard.frame(ph.frame(view="ap"), 1 + i * 0.1, State.INJECTING) for i in range(3)]
    for n in range(1, 30):  # AP view: 0.3 mm a frame (3 mm/s) out of a lateral wall at mid-height
        ph.vein(X1 - 5, MID_Y, X1 + n, MID_Y - n // 4, width_px=4)
        steps.append(guard.frame(ph.frame(view="ap"), 1.3 + n * 0.1, State.INJECTING))
    stops = [(i, s.stop) for i, s in enumerate(steps) if s.stop]
    assert [d for _i, d in stops] == [StopDetail.VENOUS_FILLING], [s.measures for s in steps]
    at = stops[0][0] - 3  # the vein's frames
    assert at <= 20, "a vein 3 mm past the margin is a vein"
    assert steps[stops[0][0]].measures.vein_length_mm >= GuardConfig().vein_min_length_mm


# -- the renderer: a segmental vein seen in the AP view ------------------------------------------

SIZE = {"width_px": 256, "height_px": 256, "pixel_mm": 0.4}


def segmental_scene(vertebra: SpatialVertebra, depth_cells: int, leak_cells: int) -> CementScene:
    """A bolus from the anterior cortex back `depth_cells` cells over the body's whole width (it
    reaches the lateral cortices, as bipedicular cement does), and `leak_cells` cells of the left
    segmental vein's path full."""
    truth = vertebra.frame()
    nx, ny, nz = truth.grid.flow_shape
    body = np.zeros((nx, ny, nz), np.float32)
    body[:, :depth_cells, nz // 3 : 2 * nz // 3] = 0.8
    body *= (vertebra.body.porosity * vertebra.body.inside).astype(np.float32)
    cells = np.asarray(truth.leak_path("segmental_left").cells[:leak_cells], np.int64).reshape(-1, 3)
    return CementScene(0, body, truth.grid, cells, np.ones(len(cells), np.float32), SceneTruth.of(truth))


def test_a_segmental_vein_filling_in_the_ap_view_stops_as_venous(vertebra: SpatialVertebra) -> None:
    config = FluoroConfig.model_validate(SIZE)
    r = FluoroRenderer(vertebra.body, config)
    guard = Guard(GuardConfig())
    index = 0

    def shot(scene: CementScene) -> FluoroFrame:
        nonlocal index
        index += 1
        px = r.render(scene, "ap", index)
        return FluoroFrame(index, index * 200_000, "ap", px, config.bit_depth, config.pixel_mm, "render")

    empty = segmental_scene(vertebra, 0, 0)
    for _ in range(8):
        step = guard.frame(shot(empty), index * 0.2, State.ARMED)
    assert step.status.label == "WATCHING", "the AP outline is found with the cannula across the body"
    depth = vertebra.frame().grid.flow_shape[1] // 2
    bolus = [
        guard.frame(shot(segmental_scene(vertebra, depth, 0)), 2 + i * 0.2, State.INJECTING)
        for i in range(10)
    ]
    assert [s.stop for s in bolus if s.stop] == []
    vein = [
        guard.frame(shot(segmental_scene(vertebra, depth, n)), 5 + n * 0.2, State.INJECTING)
        for n in range(1, 16)
    ]
    assert [s.stop for s in vein if s.stop] == [StopDetail.VENOUS_FILLING], [s.measures for s in vein]


# -- biplane -----------------------------------------------------------------------------------


def test_the_biplane_state_is_the_worst_of_the_views_and_either_view_stops() -> None:
    ph = Phantom(seed=6)
    guard = BiplaneGuard(GuardConfig())
    assert guard.status.state == "BLIND"
    learned(ph, guard, ("lateral", "ap"))
    assert guard.status.label == "WATCHING"
    ph.bolus(0.5)
    lateral = ph.pixels  # the lateral view keeps the bolus alone
    base = ph.cement.copy()
    steps = []
    for n in range(1, 30):
        ph.cement = base
        steps.append(guard.frame(ph.frame(lateral(), view="lateral"), 2 + n * 0.1, State.INJECTING))
        ph.vein(X1 - 5, MID_Y, X1 + n, MID_Y, width_px=4)
        base_with_vein = ph.cement.copy()
        steps.append(guard.frame(ph.frame(view="ap"), 2.05 + n * 0.1, State.INJECTING))
        ph.cement = base_with_vein
        if any(s.stop for s in steps):
            break
    assert guard.guards["lateral"].status.label == "WATCHING", "the lateral view never saw it"
    assert guard.guards["ap"].status.label == "STOPPED(VENOUS_FILLING)"
    assert [s.stop for s in steps if s.stop] == [StopDetail.VENOUS_FILLING]
    assert guard.status.label == "STOPPED(VENOUS_FILLING)"


def test_a_biplane_guard_missing_one_view_is_blind() -> None:
    ph = Phantom(seed=7)
    guard = BiplaneGuard(GuardConfig())
    learned(ph, guard, ("lateral", "ap"))
    steps = []
    for i in range(30):  # lateral frames only, for 3 s: the AP feed is gone
        steps.append(guard.frame(ph.frame(view="lateral"), 1 + i * 0.1, State.INJECTING))
    assert steps[-1].status.state == "BLIND"
    assert steps[-1].status.reason.startswith("ap: no frame for")
    assert [s.stop for s in steps if s.stop] == [StopDetail.IMAGE_LOST]


def test_biplane_refuses_unknown_views() -> None:
    with pytest.raises(ValueError, match=r"views: .*allowed 'lateral', 'ap'"):
        BiplaneGuard(GuardConfig(), views=("oblique",))


async def test_a_stop_from_the_ap_guard_alone_stops_the_pump(fake_device: Callable[..., FakeDevice]) -> None:
    ph = Phantom(seed=8)
    source = PushFrameSource("mem://biplane", expect_shape=(256, 256))
    async with (
        fake_device(state=State.ARMED) as device,
        DeviceClient.open(device.path, FAST) as ctl,
    ):
        sent_before = len(device.commands())
        stops = StopRequests()
        judged = asyncio.Event()

        def on_step(step: GuardStep) -> None:
            if step.frame_index is not None:
                judged.set()

        worker = GuardWorker(BiplaneGuard(GuardConfig()), source, ctl, stops, on_step=on_step)
        states = _States()
        async with StreamPump(ctl, [worker, states], stops=stops) as pump:
            pump.supervisor.spawn(worker.run(), "guard")
            device.send(event_message(1, EventKind.STATE_CHANGE, State.ARMED))
            await asyncio.wait_for(states.seen[State.ARMED].wait(), 5.0)
            for _ in range(8):
                source.push(ph.frame(view="lateral"))
                source.push(ph.frame(view="ap"))
            assert await worker.watching(5.0)
            device.state = State.INJECTING
            device.send(event_message(2, EventKind.STATE_CHANGE, State.INJECTING))
            await asyncio.wait_for(states.seen[State.INJECTING].wait(), 5.0)
            ph.bolus(0.5)
            lateral = ph.cement.copy()
            for n in range(1, 30):
                if worker.stops_sent:
                    break
                vein = ph.cement.copy()
                ph.cement = lateral
                source.push(ph.frame(view="lateral"))
                ph.cement = vein
                ph.vein(X1 - 5, MID_Y, X1 + 2 * n, MID_Y, width_px=4)
                source.push(ph.frame(view="ap"))
                async with asyncio.timeout(5.0):  # one pair at a time: the link's heartbeats go on
                    while worker.frames < 16 + 2 * n:
                        judged.clear()
                        await judged.wait()
            await device.until(lambda: bool(device.commands(MsgType.STOP)))
        (_h, stop), *_ = device.commands(MsgType.STOP)
        assert isinstance(stop, Stop)
        assert (stop.source, stop.detail) == (StopSource.FLUORO_IMAGE, StopDetail.VENOUS_FILLING)
        assert worker.guard.guards["lateral"].status.label == "WATCHING"  # type: ignore[union-attr]
        kinds = {MsgType(h.msg_type) for h, _m in device.commands()[sent_before:]}
        assert kinds <= {MsgType.STOP}
