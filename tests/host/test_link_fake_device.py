"""The link against a scripted fake device over a real pty pair: the cases a real controller does not
produce on demand (a lost ACK, a silent controller, another protocol version, garbage on the line)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import itertools
import weakref
from collections.abc import Callable
from types import SimpleNamespace

import pytest

from host.client import DeviceClient
from host.errors import (
    CementguardError,
    CommandRefused,
    CommandTimeout,
    DeviceNotResponding,
    LinkClosed,
    LinkLost,
    PortNotFound,
    ProtocolVersionError,
)
from host.link import HEARTBEATS_PER_WATCHDOG, Link, LinkOptions, LinkState
from protocol import (
    PROTOCOL_VERSION,
    Arm,
    Event,
    EventKind,
    GetStatus,
    Heartbeat,
    MsgType,
    NakCode,
    ResetCause,
    State,
    Stop,
    encode_frame,
)
from tests.host.conftest import FakeDevice, batch_message, event_message, incremental_arm, status_message

FAST = LinkOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1)
HANDSHAKE = {MsgType.HELLO, MsgType.GET_STATUS}


async def test_handshake_sends_a_delimiter_first_then_hello_and_reads_status(
    fake_device: Callable[..., FakeDevice],
):
    async with fake_device(serial="FAKE-42") as dev, DeviceClient.open(dev.path, FAST) as ctl:
        assert dev.raw[0] == 0x00, "SPEC §3.1: a single 0x00 before the first frame"
        assert [m.TYPE for _h, m in dev.commands()] == [MsgType.HELLO, MsgType.GET_STATUS]
        hello = dev.commands(MsgType.HELLO)[0][1]
        assert hello.protocol_version == PROTOCOL_VERSION  # type: ignore[attr-defined]
        assert ctl.link_state is LinkState.CONNECTED
        assert ctl.device.serial == "FAKE-42"
        assert ctl.state == State.IDLE
        assert ctl.status is not None
        assert ctl.status.state == State.IDLE


@pytest.mark.parametrize("time_scale", [1.0, 3.0])
async def test_heartbeats_keep_the_device_watchdog_fed(
    fake_device: Callable[..., FakeDevice], time_scale: float
):
    """An idle host sends a HEARTBEAT about every watchdog_ms / 5 of wall time (SPEC §9.2 asks for
    watchdog_ms / 2 at least; the rest is margin for a stalled event loop), divided by the time scale
    of a simulator that runs faster: the device's watchdog never goes watchdog_ms unfed."""
    watchdog_ms = 600
    async with (
        fake_device(watchdog_ms=watchdog_ms, time_scale=time_scale) as dev,
        DeviceClient.open(dev.path, LinkOptions(time_scale=time_scale)) as ctl,
    ):
        start = len(dev.received)
        await dev.until(lambda: sum(isinstance(m, Heartbeat) for _h, m in dev.received[start:]) >= 4, 10)
        assert ctl.link_state is LinkState.CONNECTED
        assert ctl.counters.link_losses == 0
    times = dev.received_at[start - 1 :]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    watchdog_s = watchdog_ms / 1000 / time_scale
    period = watchdog_s / HEARTBEATS_PER_WATCHDOG
    assert max(gaps) < watchdog_s / 2, (
        f"a gap of {max(gaps) * 1000:.1f} ms breaks SPEC §9.2 (a frame every {watchdog_s * 500:.0f} ms)"
    )
    assert sum(gaps) / len(gaps) > 0.5 * period, "heartbeats are not sent much faster than needed"


@pytest.mark.parametrize("pair", ["openpty", "socat"])
async def test_retried_command_whose_ack_was_lost_is_applied_once(
    fake_device: Callable[..., FakeDevice], request: pytest.FixtureRequest, pair: str
):
    """SPEC §10.8: the first ACK of START is lost; the link retries with the same cmd_id, the device
    answers from its cache and does not start twice. Over a pty pair of our own, and over a socat pty
    pair (socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B)."""
    ends = {}
    if pair == "socat":
        host_end, device_end = request.getfixturevalue("socat_pty_pair")
        ends = {"host_end": host_end, "device_end": device_end}
    dev = fake_device(drop_first_answer={MsgType.START}, **ends)
    async with dev, DeviceClient.open(dev.path, FAST) as ctl:
        await ctl.arm(incremental_arm())
        ack = await ctl.start()
        assert ack.cmd_type == MsgType.START
        assert ack.state == State.INJECTING
        starts = dev.commands(MsgType.START)
        assert len(starts) == 2, "one retry after the lost ACK"
        (h1, first), (h2, retry) = starts
        assert first.cmd_id == retry.cmd_id, "a retry reuses the cmd_id"
        assert h2.seq != h1.seq, "every frame gets a new sequence number"
        assert dev.applied[MsgType.START] == 1, "the retry was answered from the cache, not applied"
        assert dev.dropped_answers
        assert dev.dropped_answers[0].cmd_id == first.cmd_id
        c = ctl.counters
        assert (c.retries, c.timeouts, c.link_losses) == (1, 0, 0)
        assert ctl.link_state is LinkState.CONNECTED


async def test_no_answer_after_the_retries_is_a_timeout_then_a_reconnect_without_resending(
    fake_device: Callable[..., FakeDevice],
):
    """START never answered: 4 attempts with one cmd_id, CommandTimeout, link lost; the link reconnects
    (HELLO, GET_STATUS) and never sends START again by itself."""
    async with fake_device(mute={MsgType.START}) as dev, DeviceClient.open(dev.path, FAST) as ctl:
        await ctl.arm(incremental_arm())
        changes = ctl.link_changes()
        with pytest.raises(CommandTimeout) as info:
            await ctl.start()
        assert isinstance(info.value, LinkLost)
        assert "START" in str(info.value)
        assert "4 attempts" in str(info.value)
        starts = dev.commands(MsgType.START)
        assert len(starts) == 4
        assert len({m.cmd_id for _h, m in starts}) == 1
        lost = await changes.get(timeout=1)
        assert lost.state is LinkState.LOST
        assert "START" in lost.reason
        mark = len(dev.received)
        await ctl.wait_for_link(LinkState.CONNECTED, timeout=5)
        after = {t for t in dev.types_received(mark) if t != MsgType.HEARTBEAT}
        assert after == HANDSHAKE, after
        c = ctl.counters
        assert (c.retries, c.timeouts, c.link_losses, c.reconnects) == (3, 1, 1, 1)
        assert len(dev.commands(MsgType.START)) == 4


async def test_silent_controller_is_link_lost_then_reconnects_and_drops_the_old_port(
    fake_device: Callable[..., FakeDevice],
):
    """No valid frame for watchdog_ms: LOST at once, the waiting command fails with LinkLost, the port
    is closed and forgotten; once the device talks again the link reconnects by itself."""
    # The fake device beats on this test's own event loop, so the gc.collect() below stalls its
    # heartbeats too: a watchdog of 1 s keeps that stall (tens to hundreds of ms in a full suite)
    # from reading as a second silence, and 4 x 0.5 s of command attempts outlast the 1 s silence.
    options = dataclasses.replace(FAST, command_timeout_s=0.5)
    async with fake_device(watchdog_ms=1000) as dev, DeviceClient.open(dev.path, options) as ctl:
        link = ctl.link
        assert link._conn is not None
        old_transport = weakref.ref(link._conn.transport)
        old_serial = weakref.ref(link._conn.transport.serial)  # type: ignore[attr-defined]
        changes = ctl.link_changes()
        dev.silent = True
        with pytest.raises(LinkLost) as info:
            await ctl.get_status()  # no answer: the silence is noticed before the retries run out
        assert not isinstance(info.value, CommandTimeout)
        lost = await changes.get(timeout=1)
        assert lost.state is LinkState.LOST
        assert "no valid frame" in lost.reason
        assert ctl.link_state in (LinkState.LOST, LinkState.CONNECTING)
        with pytest.raises(LinkLost):
            await ctl.start()  # nothing is queued for later while the link is down
        mark = len(dev.received)
        dev.silent = False
        await ctl.wait_for_link(LinkState.CONNECTED, timeout=5)
        assert {t for t in dev.types_received(mark) if t != MsgType.HEARTBEAT} <= HANDSHAKE
        assert ctl.counters.reconnects == 1
        gc.collect()
        assert old_transport() is None, "the old transport must not survive a reconnect"
        assert old_serial() is None, "the old serial port object must not survive a reconnect"
        await ctl.get_status()


async def test_device_reset_mid_session_is_a_new_handshake(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        events, changes = ctl.events(), ctl.link_changes()
        mark = len(dev.received)
        dev.send(event_message(0, EventKind.POWER_UP, State.IDLE, detail=int(ResetCause.BROWNOUT)))
        ev = await events.get(timeout=2)
        assert ev.kind == EventKind.POWER_UP, "the reset is reported to event subscribers first"
        lost = await changes.get(timeout=2)
        assert lost.state is LinkState.LOST
        assert "BROWNOUT" in lost.reason
        await ctl.wait_for_link(LinkState.CONNECTED, timeout=5)
        assert {t for t in dev.types_received(mark) if t != MsgType.HEARTBEAT} <= HANDSHAKE


async def test_no_session_nak_refuses_and_rehandshakes(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        dev.refuse[MsgType.PAUSE] = (NakCode.NO_SESSION, 0xFF, 0)
        with pytest.raises(CommandRefused) as info:
            await ctl.pause()
        assert info.value.code == NakCode.NO_SESSION
        await ctl.wait_for_link(LinkState.CONNECTED, timeout=5)
        assert ctl.counters.link_losses == 1
        assert ctl.counters.reconnects == 1


@pytest.mark.parametrize(
    ("kwargs", "device_version"),
    [
        ({"version_nak": True, "header_version": 1}, 1),  # an old device: NAK VERSION_MISMATCH, §10.9
        ({"version_nak": True, "header_version": 3}, 3),  # a newer device's NAK VERSION_MISMATCH
        ({"header_version": 1, "info_version": 1}, 1),  # every frame says version 1
        ({"info_version": 3}, 3),  # our header version, but DEVICE_INFO names version 3
    ],
    ids=["nak-version-mismatch-v1-device", "nak-version-mismatch-v3-device", "v1-frames", "device-info-v3"],
)
async def test_another_protocol_version_is_named_and_nothing_more_is_sent(
    fake_device: Callable[..., FakeDevice], kwargs: dict[str, object], device_version: int
):
    async with fake_device(**kwargs) as dev:
        link = Link(dev.path, FAST)
        with pytest.raises(ProtocolVersionError) as info:
            await link.open()
        err = info.value
        assert (err.device_version, err.host_version) == (device_version, PROTOCOL_VERSION)
        assert f"device speaks protocol version {device_version}" in str(err)
        assert f"this host speaks version {PROTOCOL_VERSION}" in str(err)
        assert [m.TYPE for _h, m in dev.commands()] == [MsgType.HELLO], "nothing after HELLO"
        assert link.link_state is LinkState.FAILED
        with pytest.raises(ProtocolVersionError):
            await link.command(GetStatus)
        await link.close()
        assert [m.TYPE for _h, m in dev.received] == [MsgType.HELLO]


async def test_a_device_that_never_answers(fake_device: Callable[..., FakeDevice]):
    async with fake_device(silent=True) as dev:
        with pytest.raises(DeviceNotResponding) as info:
            async with DeviceClient.open(dev.path, FAST):
                pass
        assert dev.path in str(info.value)
        assert info.value.attempts == 4
        hellos = dev.commands(MsgType.HELLO)
        assert len(hellos) == 4
        assert len({m.cmd_id for _h, m in hellos}) == 1
        assert "nothing was received" in str(info.value)
        assert "powered" in str(info.value)


async def test_a_damaged_device_info_is_retried(fake_device: Callable[..., FakeDevice]):
    """Issue 13 item 4: the first DEVICE_INFO arrives damaged (CRC error), its ACK intact. The link
    sends the same HELLO again (SPEC §7.5 retry policy; HELLO is never cached, §7.4) and connects."""
    async with fake_device(damage_info=1) as dev, DeviceClient.open(dev.path, FAST) as ctl:
        assert ctl.link_state is LinkState.CONNECTED
        assert ctl.device.serial == dev.serial
        hellos = dev.commands(MsgType.HELLO)
        assert len(hellos) == 2, "one retry after the damaged DEVICE_INFO"
        assert len({m.cmd_id for _h, m in hellos}) == 1
        assert (ctl.counters.crc_errors, ctl.counters.retries) == (1, 1)


async def test_every_device_info_damaged_names_what_arrived(fake_device: Callable[..., FakeDevice]):
    """When every attempt's DEVICE_INFO is damaged the error says so (frames arrived, CRC errors),
    instead of asking whether the controller is powered."""
    async with fake_device(damage_info=10, heartbeats=False) as dev:
        with pytest.raises(DeviceNotResponding) as info:
            async with DeviceClient.open(dev.path, FAST):
                pass
        text = str(info.value)
        assert len(dev.commands(MsgType.HELLO)) == 4
        assert "none was a valid DEVICE_INFO" in text
        assert "4 CRC errors" in text
        assert "4 HELLO ACKs without their DEVICE_INFO" in text
        assert "powered" not in text


@pytest.mark.parametrize("url", ["/dev/cementguard-no-such-port", "socket://127.0.0.1:1"])
async def test_a_port_that_does_not_exist(url: str):
    with pytest.raises(PortNotFound) as info:
        async with DeviceClient.open(url):
            pass
    assert url in str(info.value)
    assert "cementguard ports" in str(info.value)
    assert info.value.port == url


async def test_garbage_on_the_line_is_counted_and_survived(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        dev.send_raw(bytes(range(1, 200)) + b"\x00")  # noise
        dev.send_raw(b"\x05\x11\x22\x00")  # a COBS code pointing past the end of its run
        good = encode_frame(status_message(0, State.IDLE), 999)
        damaged = bytearray(good)
        damaged[5] ^= 0x40  # CRC error
        dev.send_raw(bytes(damaged))
        dev.send_raw(b"\xff" * 2000 + b"\x00")  # longer than any frame: overlong
        dev.send_raw(b"\x02\x01\x00")  # a runt
        dev.send_raw(good[: len(good) // 2])  # a frame cut off, then the next frame
        status = await ctl.get_status()
        assert status.state == State.IDLE
        c = ctl.counters
        assert c.crc_errors >= 1
        assert c.overlong >= 1
        assert c.runts >= 1
        assert c.cobs_errors >= 1
        assert c.framing_errors == c.crc_errors + c.cobs_errors + c.overlong + c.runts
        assert ctl.link_state is LinkState.CONNECTED
        assert c.link_losses == 0


async def test_telemetry_gaps_and_slow_consumers_are_counted(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        slow = ctl.telemetry(maxsize=2)
        events = ctl.events()
        for first in (0, 20, 40, 70, 90):  # after 40 + 20 samples, 60 is next: 70 means 10 lost
            dev.send(batch_message(first, 20))
        dev.send(event_message(5, EventKind.STATE_CHANGE, State.IDLE))
        await events.get(timeout=2)
        c = ctl.counters
        assert c.lost_samples == 10  # 40 + 20 = 60 expected, 70 came
        assert c.dropped_batches == 3
        assert slow.dropped == 3
        kept = [slow.get_nowait(), slow.get_nowait()]
        assert [b.first_index for b in kept if b is not None] == [70, 90]
        assert slow.get_nowait() is None


async def test_refusals_read_as_sentences(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        dev.state = State.STOPPED
        dev.refuse[MsgType.START] = (NakCode.STOP_LATCHED, 0xFF, 0)
        with pytest.raises(CommandRefused) as info:
            await ctl.start()
        assert str(info.value) == "START refused: STOP_LATCHED (the controller is STOPPED: CLEAR first)"
        assert info.value.nak.code == NakCode.STOP_LATCHED
        dev.refuse[MsgType.ARM] = (NakCode.BAD_PARAM, 4, 1_000_000)
        with pytest.raises(CommandRefused) as info:
            await ctl.arm(incremental_arm(increment_nl=2_000_000))
        assert (
            str(info.value) == "ARM refused: BAD_PARAM (increment_nl (field 4) = 2000000 nL is out of range: "
            "allowed 1 nL to 1000000 nL (bound broken: 1000000))"
        )


async def test_stop_is_sent_while_another_command_waits(fake_device: Callable[..., FakeDevice]):
    """SPEC §7.5: STOP may be sent at any time, even while another command is outstanding."""
    async with fake_device(mute={MsgType.PAUSE}) as dev, DeviceClient.open(dev.path, FAST) as ctl:
        pause = asyncio.create_task(ctl.pause())
        await dev.until(lambda: len(dev.commands(MsgType.PAUSE)) >= 1)
        ack = await ctl.stop()
        assert ack.cmd_type == MsgType.STOP
        assert ack.state == State.STOPPED
        assert not pause.done(), "STOP did not wait for the PAUSE in flight"
        with pytest.raises(CementguardError):
            await pause
        stop = dev.commands(MsgType.STOP)[0][1]
        assert isinstance(stop, Stop)


async def test_close_ends_subscriptions_and_refuses_commands(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev:
        ctl = await DeviceClient.connect(dev.path, FAST)
        events = ctl.events()
        await ctl.close()
        assert ctl.link_state is LinkState.CLOSED
        assert [e async for e in events] == []
        with pytest.raises(LinkClosed):
            await ctl.get_status()
        assert MsgType.STOP not in dev.types_received(), "closing sends no STOP"


async def test_event_index_gaps_are_missed_events(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        events = ctl.events()
        for index in (1, 2, 5):
            dev.send(event_message(index, EventKind.ALARM, State.IDLE))
        got: list[Event] = [await events.get(timeout=2) for _ in range(3)]
        assert [e.event_index for e in got] == [1, 2, 5]
        assert ctl.counters.missed_events == 2


async def test_arm_takes_a_plan_object_and_passes_the_cement_age(fake_device: Callable[..., FakeDevice]):
    """`arm(plan, mixed_ago_s=...)` calls plan.to_arm(cmd_id, mixed_ago_s) with the link's cmd_id."""
    calls: list[tuple[int, float | None]] = []

    class Plan:
        def to_arm(self, cmd_id: int, mixed_ago_s: float | None) -> Arm:
            calls.append((cmd_id, mixed_ago_s))
            return incremental_arm(cmd_id=cmd_id, mixed_ago_ms=round((mixed_ago_s or 0) * 1000))

    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        status = await ctl.arm(Plan(), mixed_ago_s=240.5)
        assert status.state == State.ARMED
        ((_h, sent),) = dev.commands(MsgType.ARM)
        assert calls == [(sent.cmd_id, 240.5)]
        assert sent.mixed_ago_ms == 240_500  # type: ignore[attr-defined]
        await ctl.arm(**{k: v for k, v in dataclasses.asdict(incremental_arm()).items() if k != "cmd_id"})
        assert len(dev.commands(MsgType.ARM)) == 2


def test_options_from_host_settings():
    """`LinkOptions.from_settings` reads host.settings.HostSettings (or its link section) by name."""
    link = SimpleNamespace(
        command_timeout_ms=300,
        retries=5,
        heartbeat_period_ms=None,
        reconnect_backoff_min_s=0.5,
        reconnect_backoff_max_s=8.0,
    )
    options = LinkOptions.from_settings(SimpleNamespace(link=link, baud=115_200), time_scale=10)
    assert options.command_timeout_s == pytest.approx(0.3)
    assert (options.retries, options.heartbeat_period_s, options.baudrate) == (5, None, 115_200)
    assert (options.reconnect_initial_s, options.reconnect_max_s, options.time_scale) == (0.5, 8.0, 10)
