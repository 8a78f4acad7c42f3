"""The two small hooks HIL needs outside hil/: a host that goes silent, and the simulator's trace."""

from __future__ import annotations

import pytest

from firmware_sim.cli import _tracer
from firmware_sim.controller import TickOutput
from firmware_sim.hal import MotorCommand
from firmware_sim.plant import Plant, PlantConfig
from host.client import DeviceClient
from protocol import AlarmCode, Event, EventKind, Flags, State, StopReason, StopSource
from tests.host.conftest import continuous_arm
from tests.support.wire_client import simulator


async def test_suspended_heartbeats_let_the_device_watchdog_stop_with_host_lost() -> None:
    with simulator("--pty") as (_proc, port):
        async with DeviceClient.open(port) as ctl, ctl.events() as events:
            await ctl.arm(continuous_arm())
            sent = ctl.counters.frames_tx
            ctl.link.suspend_heartbeats()
            event = await events.get(timeout=3.0)
            while event.kind != EventKind.STOP:
                event = await events.get(timeout=3.0)
            assert (event.reason, event.state) == (StopReason.HOST_LOST, State.STOPPED)
            assert ctl.counters.frames_tx == sent  # nothing at all went out meanwhile
            ctl.link.resume_heartbeats()


def test_the_trace_logs_fired_plant_events_stops_with_truth_and_periodic_truth(
    capsys: pytest.CaptureFixture[str],
) -> None:
    plant = Plant(PlantConfig.model_validate({"events": [{"kind": "occlusion", "at_s": 0.0015}]}))
    trace = _tracer(plant)
    stop = Event(
        t_us=2000,
        event_index=0,
        kind=EventKind.STOP,
        state=State.STOPPED,
        prev_state=State.INJECTING,
        reason=StopReason.PRESSURE_RISE,
        source=StopSource.CONTROLLER,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK,
        pressure_pa=1_000_000,
        delivered_nl=500_000,
        plunger_um=0,
        detail=0,
    )
    for now_us in range(0, 60_000, 1000):
        out = TickOutput(MotorCommand(0.0), [stop] if now_us == 2000 else [])
        trace(now_us, out)
        plant.step(out.motor, 1e-3)
    lines = capsys.readouterr().err.splitlines()
    assert [x.split()[1] for x in lines if x.split()[1] != "truth"] == ["plant", "stop"]
    plant_line = next(x for x in lines if x.startswith("TRACE plant"))
    assert plant_line.endswith("start occlusion")
    assert 0.0015 <= float(plant_line.split()[2]) <= 0.003
    assert next(x for x in lines if x.startswith("TRACE stop")).startswith("TRACE stop 0.0020 2 6 ")
    truth_times = [float(x.split()[2]) for x in lines if x.startswith("TRACE truth")]
    assert truth_times == [0.0, 0.05]  # every 50 ms of simulated time
