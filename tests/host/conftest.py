"""Fixtures for the host link and client tests: a scripted fake device on a pty pair, the simulator
(`cementguard sim`) in a subprocess, and socat bridges from the simulator's TCP port to a new pty.

Every wait here is on something arriving (a frame, a line of output, a file appearing through a
process's own report), bounded by a timeout: no sleep is used to synchronise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import tty
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from host.link import Subscription
from protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    Capabilities,
    Command,
    DeviceInfo,
    Event,
    EventKind,
    Flags,
    Frame,
    Header,
    Heartbeat,
    Message,
    MessageStream,
    Mode,
    MsgType,
    Nak,
    NakCode,
    PlanFlags,
    Rejected,
    State,
    Status,
    StopReason,
    StopSource,
    TelemetryBatch,
    encode_frame,
)
from protocol.telemetry import SAMPLE_DTYPE
from tests.support.wire_client import simulator

# --------------------------------------------------------------------------------------------------
# plans the simulator accepts (its default plant: 11G cannula, 2.5 mL syringe)
# --------------------------------------------------------------------------------------------------

T = TypeVar("T")

INCREMENT_NL = 50_000  # 0.05 mL: one increment takes about half a second at 6 mL/min


def incremental_arm(**overrides: object) -> Arm:
    fields: dict[str, object] = {
        "cmd_id": 0,
        "mode": Mode.INCREMENTAL,
        "plan_flags": PlanFlags.RELIEF,
        "flow_nl_s": 100_000,
        "increment_nl": INCREMENT_NL,
        "volume_limit_nl": 1_000_000,
        "soft_limit_pa": 2_500_000,
        "hard_limit_pa": 4_000_000,
        "relief_pa": 200_000,
        "mixed_ago_ms": 300_000,
        "working_time_ms": 1_200_000,
        "viscosity_min_pas": 1.0,
        "viscosity_max_pas": 100_000.0,
        "cannula_length_um": 125_000,
        "cannula_id_um": 2388,
        "syringe_bore_um": 7290,
    }
    fields.update(overrides)
    return Arm(**fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# a scripted device on a pty pair
# --------------------------------------------------------------------------------------------------


def status_message(cmd_id: int, state: State, stop_reason: StopReason = StopReason.NONE) -> Status:
    return Status(
        cmd_id=cmd_id,
        state=state,
        stop_reason=stop_reason,
        stop_source=StopSource.NONE,
        mode=Mode.CONTINUOUS,
        flags=Flags.HOST_LINK_OK,
        t_us=0,
        pressure_pa=0,
        delivered_nl=0,
        plunger_um=0,
        flow_nl_s=0,
        flow_setpoint_nl_s=0,
        volume_limit_nl=0,
        increment_nl=0,
        increments_done=0,
        soft_limit_pa=0,
        hard_limit_pa=0,
        relief_pa=0,
        viscosity_pas=float("nan"),
        mixed_age_ms=0,
        working_time_ms=0,
        event_count=1,
    )


def event_message(index: int, kind: EventKind, state: State, detail: int = 0) -> Event:
    return Event(
        t_us=0,
        event_index=index,
        kind=kind,
        state=state,
        prev_state=state,
        reason=StopReason.NONE,
        source=StopSource.NONE,
        alarm=0,  # type: ignore[arg-type]
        flags=Flags.HOST_LINK_OK,
        pressure_pa=0,
        delivered_nl=0,
        plunger_um=0,
        detail=detail,
    )


def batch_message(first_index: int, count: int, state: State = State.IDLE) -> TelemetryBatch:
    samples = np.zeros(count, dtype=SAMPLE_DTYPE)
    samples["t_us"] = (np.arange(count) + first_index) * 1000
    samples["state"] = int(state)
    return TelemetryBatch(first_index=first_index, period_us=1000, samples=samples)


_TRANSITIONS: dict[MsgType, State] = {
    MsgType.ARM: State.ARMED,
    MsgType.START: State.INJECTING,
    MsgType.PAUSE: State.PAUSED,
    MsgType.RESUME: State.INJECTING,
    MsgType.STOP: State.STOPPED,
    MsgType.CLEAR: State.IDLE,
}
_WITH_STATUS = {MsgType.ARM, MsgType.SET_LIMITS, MsgType.GET_STATUS}


@dataclass
class FakeDevice:
    """A tiny device on the master side of a pty; the host opens `path` like any serial port.

    It answers like the real one where it matters to the link (DEVICE_INFO + ACK for HELLO, STATUS
    before the ACK of GET_STATUS / ARM / SET_LIMITS, a 16-entry answer cache so that a retried
    cmd_id is answered again but not applied again, heartbeats every watchdog_ms / 2), and can be
    told to misbehave: drop the first answer to a command type, never answer some types, fall
    silent, speak another protocol version, refuse a type with a NAK.

    The fake holds the slave side open itself, so the host can close and reopen the port (a
    reconnect) without the master seeing a hang-up.
    """

    watchdog_ms: int = 500
    time_scale: float = 1.0
    """Heartbeat every watchdog_ms / 2 / time_scale of wall time, as a simulator run faster does."""
    header_version: int = PROTOCOL_VERSION
    """Version in the header of every frame the fake sends."""
    info_version: int = PROTOCOL_VERSION
    """protocol_version field of DEVICE_INFO."""
    version_nak: bool = False
    """Answer every command with NAK VERSION_MISMATCH (detail = header_version), as a device of
    another version does."""
    serial: str = "FAKE-0001"
    heartbeats: bool = True
    silent: bool = False
    """Send nothing at all and answer nothing (a hung controller or a cut receive line)."""
    mute: set[MsgType] = field(default_factory=set)
    """Command types never answered (as if every answer were lost)."""
    drop_first_answer: set[MsgType] = field(default_factory=set)
    """Command types whose first answer is lost on the way (applied, cached, never delivered)."""
    refuse: dict[MsgType, tuple[NakCode, int, int]] = field(default_factory=dict)
    """Command type -> (NAK code, field, detail)."""
    lose_status: int = 0
    """The first this-many STATUS replies to commands are lost on the line (their ACKs arrive)."""
    damage_info: int = 0
    """The first this-many DEVICE_INFO replies go out with one byte flipped (a CRC error on the host's
    side); their ACKs arrive intact, as after a burst of line noise."""

    state: State = State.IDLE
    applied: Counter[MsgType] = field(default_factory=Counter)
    received: list[tuple[Header, Message]] = field(default_factory=list)
    received_at: list[float] = field(default_factory=list)
    """time.monotonic() at which each entry of `received` was read."""
    raw: bytearray = field(default_factory=bytearray)
    dropped_answers: list[Message] = field(default_factory=list)

    device_end: str | None = None
    """None: a new pty pair from os.openpty(), the fake on its master. A path: the fake opens that tty
    (one end of a socat pty pair) and the host is given `host_end`."""
    host_end: str | None = None

    def __post_init__(self) -> None:
        if self.device_end is None:
            self.master, self._slave = os.openpty()
            tty.setraw(self._slave)
            self.path = os.ttyname(self._slave)
        else:
            assert self.host_end is not None
            self.master = os.open(self.device_end, os.O_RDWR | os.O_NOCTTY)
            tty.setraw(self.master)
            self._slave = os.open(self.device_end, os.O_RDWR | os.O_NOCTTY)  # held open, as above
            self.path = self.host_end
        os.set_blocking(self.master, False)
        self._stream = MessageStream()
        self._cache: OrderedDict[int, list[Message]] = OrderedDict()
        self._seq = 0
        self._arrived = asyncio.Event()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._t0 = time.monotonic()

    # -- life -------------------------------------------------------------------------------------
    async def __aenter__(self) -> FakeDevice:
        loop = asyncio.get_running_loop()
        loop.add_reader(self.master, self._readable)
        self._heartbeat_task = loop.create_task(self._beat())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self.master < 0:
            return
        if self._heartbeat_task is not None:
            asyncio.get_running_loop().remove_reader(self.master)
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        os.close(self.master)
        os.close(self._slave)
        self.master = self._slave = -1

    # -- what the test looks at ------------------------------------------------------------------
    def commands(self, msg_type: MsgType | None = None) -> list[tuple[Header, Command]]:
        return [
            (h, m)  # type: ignore[misc]
            for h, m in self.received
            if m.TYPE != MsgType.HEARTBEAT and (msg_type is None or msg_type == m.TYPE)
        ]

    def types_received(self, since: int = 0) -> list[MsgType]:
        return [m.TYPE for _h, m in self.received[since:]]

    async def until(self, condition: Callable[[], bool], within_s: float = 5.0) -> None:
        """Wait until `condition()` holds, re-checked on every frame from the host."""
        async with asyncio.timeout(within_s):
            while not condition():
                self._arrived.clear()
                await self._arrived.wait()

    # -- sending ----------------------------------------------------------------------------------
    def send(self, message: Message, version: int | None = None) -> None:
        self.send_raw(encode_frame(message, self._seq, self.header_version if version is None else version))
        self._seq = (self._seq + 1) & 0xFFFF

    def send_raw(self, data: bytes) -> None:
        with contextlib.suppress(BlockingIOError):  # nobody reads: lost, as on a wire
            os.write(self.master, data)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self.watchdog_ms / 2000 / self.time_scale)
            if self.heartbeats and not self.silent:
                uptime = int((time.monotonic() - self._t0) * 1000)
                self.send(Heartbeat(uptime_ms=uptime, state=self.state))

    # -- receiving --------------------------------------------------------------------------------
    def _readable(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                break
            if not data:
                break
            self.raw += data
            now = time.monotonic()
            for item in self._stream.feed(data):
                if isinstance(item, Rejected):
                    continue
                assert isinstance(item, Frame)
                self.received.append((item.header, item.message))
                self.received_at.append(now)
                if isinstance(item.message, Command):
                    self._on_command(item.message)
            self._arrived.set()

    def _on_command(self, cmd: Command) -> None:
        if self.silent or cmd.TYPE in self.mute:
            return
        if self.version_nak:
            self.send(
                Nak(
                    cmd.cmd_id, int(cmd.TYPE), NakCode.VERSION_MISMATCH, State.IDLE, 0xFF, self.header_version
                )
            )
            return
        if cmd.TYPE == MsgType.HELLO:
            self._cache.clear()
            if self.damage_info > 0:
                self.damage_info -= 1
                frame = bytearray(encode_frame(self._device_info(cmd.cmd_id), self._seq, self.header_version))
                self._seq = (self._seq + 1) & 0xFFFF
                frame[len(frame) // 2] ^= 0x01 if frame[len(frame) // 2] != 0x01 else 0x02  # never a 0x00
                self.send_raw(bytes(frame))
            else:
                self.send(self._device_info(cmd.cmd_id))
            self.send(Ack(cmd.cmd_id, MsgType.HELLO, self.state))
            return
        answers = self._cache.get(cmd.cmd_id)
        if answers is None:
            answers = self._apply(cmd)
            self._cache[cmd.cmd_id] = answers
            while len(self._cache) > 16:
                self._cache.popitem(last=False)
            if cmd.TYPE in self.drop_first_answer:
                self.drop_first_answer.discard(cmd.TYPE)
                self.dropped_answers.extend(answers)
                return
        for answer in answers:
            if isinstance(answer, Status) and self.lose_status > 0:
                self.lose_status -= 1
                continue
            self.send(answer)

    def _apply(self, cmd: Command) -> list[Message]:
        kind = MsgType(cmd.TYPE)
        if kind in self.refuse:
            code, fld, detail = self.refuse[kind]
            return [Nak(cmd.cmd_id, int(kind), code, self.state, fld, detail)]
        self.applied[kind] += 1
        self.state = _TRANSITIONS.get(kind, self.state)
        out: list[Message] = []
        if kind in _WITH_STATUS:
            out.append(status_message(cmd.cmd_id, self.state))
        out.append(Ack(cmd.cmd_id, kind, self.state))
        return out

    def _device_info(self, cmd_id: int) -> DeviceInfo:
        return DeviceInfo(
            cmd_id=cmd_id,
            protocol_version=self.info_version,
            fw_major=0,
            fw_minor=0,
            fw_patch=1,
            serial=self.serial,
            capabilities=Capabilities.TELEMETRY_CONFIG,
            sample_rate_hz=1000,
            watchdog_ms=self.watchdog_ms,
            max_pressure_pa=8_000_000,
            max_flow_nl_s=166_667,
            travel_um=60_000,
            max_batch_samples=30,
        )


@pytest.fixture
async def fake_device() -> AsyncIterator[Callable[..., FakeDevice]]:
    """A factory: ``async with fake_device(watchdog_ms=100, mute={MsgType.START}) as dev: ...``;
    whatever the test leaves open is closed at teardown."""
    made: list[FakeDevice] = []

    def make(**kwargs: object) -> FakeDevice:
        dev = FakeDevice(**kwargs)  # type: ignore[arg-type]
        made.append(dev)
        return dev

    yield make
    for dev in made:
        await dev.aclose()


# --------------------------------------------------------------------------------------------------
# the simulator and socat
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def sim_pty() -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`cementguard sim --pty` in a subprocess: (process, pty path)."""
    with simulator("--pty", "--serial", "HOST-TEST") as (proc, address):
        yield proc, address


@pytest.fixture
def sim_tcp() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """`cementguard sim --tcp 127.0.0.1:0`: (process, TCP port)."""
    with simulator("--tcp", "127.0.0.1:0", "--serial", "HOST-TEST") as (proc, address):
        yield proc, int(address.rsplit(":", 1)[1])


@dataclass
class SocatBridge:
    """`socat pty,raw,echo=0,link=PATH tcp:127.0.0.1:PORT`, optionally with a hex dump (-x) of what
    crosses it. `host_to_device()` is what went from the pty (the host) to TCP (the device)."""

    proc: subprocess.Popen[bytes]
    link: Path
    lines: list[str] = field(default_factory=list)
    ready: threading.Event = field(default_factory=threading.Event)
    ended: threading.Event = field(default_factory=threading.Event)

    def drain(self) -> None:
        """Reader thread: keeps socat's stderr (log and dump) flowing and flags readiness."""
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            if "starting data transfer loop" in line:
                self.ready.set()
        self.ended.set()
        self.ready.set()  # wake a waiter if socat exits before bridging

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=5)
        self.ended.wait(5)

    def host_to_device(self) -> bytes:
        """The bytes socat's dump shows crossing from the pty to TCP. Read once socat has ended (the
        dump of the last chunk is complete only then)."""
        out = bytearray()
        direction = None
        for line in self.lines:
            if line.startswith(("> ", "< ")):
                direction = line[0]
            elif line.startswith(" ") and direction == ">":
                out += bytes.fromhex(line.strip())
        return bytes(out)


@pytest.fixture
def socat_pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """`socat -d -d pty,raw,echo=0,link=A pty,raw,echo=0,link=B`: (A, B), two ptys joined by socat."""
    socat = shutil.which("socat")
    assert socat, "socat is required (make system-deps installs it)"
    a, b = tmp_path / "pty-host", tmp_path / "pty-device"
    proc = subprocess.Popen(
        [socat, "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"], stderr=subprocess.PIPE
    )
    bridge = SocatBridge(proc, a)
    threading.Thread(target=bridge.drain, daemon=True).start()
    try:
        assert bridge.ready.wait(10), "socat did not report its bridge within 10 s"
        assert not bridge.ended.is_set(), "socat exited: " + "\n".join(bridge.lines)
        yield str(a), str(b)
    finally:
        bridge.kill()


@pytest.fixture
def socat_bridge() -> Iterator[Callable[..., SocatBridge]]:
    """A factory: ``bridge = socat_bridge(tcp_port, link_path, dump=False)``; returns once socat has
    created the pty and connected to the simulator (it says so on stderr)."""
    socat = shutil.which("socat")
    assert socat, "socat is required (make system-deps installs it)"
    bridges: list[SocatBridge] = []

    def start(port: int, link: Path, dump: bool = False) -> SocatBridge:
        link.unlink(missing_ok=True)  # a bridge killed with SIGKILL leaves its symlink behind
        args = [socat, "-d", "-d", *(["-x"] if dump else []), f"pty,raw,echo=0,link={link}"]
        proc = subprocess.Popen([*args, f"tcp:127.0.0.1:{port}"], stderr=subprocess.PIPE)
        bridge = SocatBridge(proc, link)
        bridges.append(bridge)
        threading.Thread(target=bridge.drain, daemon=True).start()
        assert bridge.ready.wait(10), "socat did not report its bridge within 10 s"
        assert not bridge.ended.is_set(), "socat exited before bridging: " + "\n".join(bridge.lines)
        assert link.exists(), f"socat did not create {link}"
        return bridge

    yield start
    for bridge in bridges:
        bridge.kill()
        bridge.link.unlink(missing_ok=True)


async def next_matching(subscription: Subscription[T], predicate: Callable[[T], bool], within_s: float) -> T:
    """The next item of `subscription` that satisfies `predicate` (earlier ones are consumed)."""
    async with asyncio.timeout(within_s):
        while True:
            item = await subscription.get()
            if predicate(item):
                return item


def continuous_arm(**overrides: object) -> Arm:
    """1 mL at 6 mL/min without relief: injects for about 10 s unless stopped."""
    fields: dict[str, object] = {
        "mode": Mode.CONTINUOUS,
        "plan_flags": PlanFlags.NONE,
        "increment_nl": 0,
        "volume_limit_nl": 1_000_000,
    }
    fields.update(overrides)
    return incremental_arm(**fields)
