"""The client against the real simulator (`cementguard sim --pty` in a subprocess) over a real pty."""

from __future__ import annotations

import asyncio
import signal
import subprocess

import numpy as np
import pytest

from host.client import CLEAR_SETTLE_S, DeviceClient
from host.errors import CommandRefused, LinkLost, PortNotFound
from host.link import LinkOptions, LinkState
from protocol import (
    PROTOCOL_VERSION,
    SAMPLE_DTYPE,
    Capabilities,
    Event,
    EventKind,
    Flags,
    NakCode,
    PlanFlags,
    State,
    StopReason,
    StopSource,
    TelemetryBatch,
)
from tests.host.conftest import INCREMENT_NL, continuous_arm, incremental_arm, next_matching

SimPty = tuple[subprocess.Popen[str], str]


def _is_stop(event: Event) -> bool:
    return event.kind == EventKind.STOP


async def test_arm_start_increment_resume_stop_clear(sim_pty: SimPty):
    """The whole operator cycle through the typed API, with telemetry and events flowing."""
    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        info = ctl.device
        assert (info.serial, info.protocol_version) == ("HOST-TEST", PROTOCOL_VERSION)
        assert Capabilities.SIMULATOR in info.capabilities
        assert ctl.state == State.IDLE
        telemetry, events = ctl.telemetry(), ctl.events()

        status = await ctl.arm(incremental_arm())
        assert status.state == State.ARMED
        assert status.increment_nl == INCREMENT_NL
        assert ctl.state == State.ARMED

        assert (await ctl.start()).state == State.INJECTING
        done = await next_matching(events, _is_stop, within_s=10)
        assert done.reason == StopReason.INCREMENT_DONE
        assert done.state == State.PAUSED
        assert INCREMENT_NL * 0.9 <= done.delivered_nl <= INCREMENT_NL * 1.2
        assert await ctl.wait_for_state(State.PAUSED, timeout=1) == State.PAUSED

        assert (await ctl.resume()).state == State.INJECTING
        ack = await ctl.stop()
        assert ack.state == State.STOPPED
        stopped = await next_matching(events, _is_stop, within_s=2)
        assert (stopped.reason, stopped.source, stopped.state) == (
            StopReason.OPERATOR_STOP,
            StopSource.OPERATOR,
            State.STOPPED,
        )

        with pytest.raises(CommandRefused) as refused:
            await ctl.start()
        assert str(refused.value) == "START refused: STOP_LATCHED (the controller is STOPPED: CLEAR first)"

        await next_matching(events, lambda e: e.kind == EventKind.RELIEF_DONE, within_s=10)
        assert (await ctl.clear()).state == State.IDLE
        assert (await ctl.get_status()).state == State.IDLE

        with pytest.raises(CommandRefused) as refused:
            await ctl.arm(incremental_arm(increment_nl=2_000_000))  # larger than the planned volume
        assert refused.value.nak.code == NakCode.BAD_PARAM
        # the field, the value sent and the allowed range (the increment may not exceed the plan)
        assert "increment_nl (field 4) = 2000000 nL is out of range: allowed 1 nL to 1000000 nL" in str(
            refused.value
        )

        batches: list[TelemetryBatch] = []
        while (batch := telemetry.get_nowait()) is not None:
            batches.append(batch)
        counters = ctl.counters

    assert len(batches) > 20
    assert all(b.samples.dtype == SAMPLE_DTYPE for b in batches)
    firsts = [b.first_index for b in batches]
    ends = [b.first_index + len(b.samples) for b in batches]
    assert firsts[1:] == ends[:-1], "telemetry samples lost between batches"
    samples = np.frombuffer(b"".join(b.samples.tobytes() for b in batches), dtype=SAMPLE_DTYPE)
    assert np.all(np.diff(samples["t_us"].astype(np.int64)) == 1000)
    assert State.INJECTING in set(samples["state"].tolist())
    assert samples["pressure_pa"].max() > 50_000
    assert counters.lost_samples == 0
    assert counters.lost_frames == 0
    assert counters.framing_errors == 0
    assert counters.dropped_batches == 0
    assert counters.retries == 0
    assert counters.link_losses == 0


async def test_simulator_killed_mid_injection_is_reported_as_link_lost(sim_pty: SimPty):
    """SIGKILL the simulator while it injects: the link reports the loss at once, a waiting call fails
    with LinkLost, and reconnect attempts name the port that is gone."""
    proc, path = sim_pty
    options = LinkOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1)
    async with DeviceClient.open(path, options) as ctl:
        changes = ctl.link_changes()
        await ctl.arm(continuous_arm())
        await ctl.start()
        waiting = asyncio.create_task(ctl.wait_for_state(State.DONE, timeout=30))
        proc.send_signal(signal.SIGKILL)
        lost = await changes.get(timeout=2)
        assert lost.state is LinkState.LOST
        assert "port closed" in lost.reason  # the pty hung up: seen at once, before any silence
        with pytest.raises(LinkLost):
            await waiting
        with pytest.raises(LinkLost):
            await ctl.get_status()
        retry = await next_matching(
            changes, lambda c: c.state is LinkState.LOST and isinstance(c.error, PortNotFound), within_s=5
        )
        assert path in retry.reason
        assert ctl.counters.link_losses == 1
    proc.wait(timeout=5)
    assert ctl.link_state is LinkState.CLOSED


async def test_a_clear_right_after_a_stop_waits_for_the_plunger_to_rest(sim_pty: SimPty):
    """The device refuses CLEAR (BUSY) while the plunger brakes or backs off for relief; an operator's
    clear with `settle_s` asks again with new commands until the device accepts it, and never
    clears over a moving plunger."""
    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        telemetry = ctl.telemetry()
        await ctl.arm(continuous_arm(plan_flags=PlanFlags.RELIEF))
        await ctl.start()
        # under way at full flow, with pressure built up for the relief to back off
        await next_matching(telemetry, lambda b: int(b.samples["delivered_nl"].max(initial=0)) > 50_000, 15)
        await ctl.stop()
        with pytest.raises(CommandRefused) as refused:
            await ctl.clear()  # at once, without settling: the device's own refusal
        assert refused.value.code == NakCode.BUSY

        ack = await ctl.clear(settle_s=CLEAR_SETTLE_S)
        assert ack.state == State.IDLE
        status = await ctl.get_status()
        assert status.state == State.IDLE
        assert not status.flags & (Flags.MOTOR_MOVING | Flags.RELIEF_ACTIVE)


async def test_a_clear_refused_for_another_reason_is_not_retried(
    sim_pty: SimPty, monkeypatch: pytest.MonkeyPatch
):
    _proc, path = sim_pty
    async with DeviceClient.open(path) as ctl:
        await ctl.arm(continuous_arm())
        await ctl.start()
        sent: list[object] = []
        command = ctl._link.command

        async def counted(make: object) -> object:
            sent.append(make)
            return await command(make)  # type: ignore[arg-type]

        monkeypatch.setattr(ctl._link, "command", counted)
        with pytest.raises(CommandRefused) as refused:
            await ctl.clear(settle_s=CLEAR_SETTLE_S)
        assert refused.value.code == NakCode.BAD_STATE
        assert len(sent) == 1, "BAD_STATE is final: CLEAR is not asked again"
        monkeypatch.undo()
        await ctl.stop()
