"""One session owns a port (host.port_lock) and serves a control endpoint (host.control), through
which `cementguard stop`, `status` and `clear` reach the device from any other terminal.

In-process against the scripted fake device: the lock, the endpoint's answers and its defences.
End to end against `cementguard sim --pty` with `cementguard run` holding the port: test_stop_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from host import control, device_cmds
from host.client import DeviceClient
from host.control import serve_control
from host.link import LinkOptions
from host.port_lock import (
    Holder,
    PortBusy,
    PortLock,
    RuntimeDirError,
    lock_path,
    read_holder,
    runtime_dir,
    socket_path,
)
from protocol import MsgType, NakCode, State
from tests.host.conftest import FakeDevice, incremental_arm
from tests.support.wire_client import REPO

FAST = LinkOptions(reconnect_initial_s=0.02, reconnect_max_s=0.1)


def holder_program() -> str:
    return Holder.of_this_process("x").program


@pytest.fixture(autouse=True)
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A runtime directory of the test's own (short: a Unix socket path has at most 107 bytes)."""
    base = Path(tempfile.mkdtemp(prefix="cg-"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(base))
    yield base / "cementguard"
    shutil.rmtree(base, ignore_errors=True)


# -- the lock ------------------------------------------------------------------------------------------


async def test_a_second_opener_is_told_which_program_and_process_holds_the_port(
    fake_device: Callable[..., FakeDevice],
):
    async with fake_device() as dev:
        async with DeviceClient.open(dev.path, FAST) as first:
            with pytest.raises(PortBusy) as info:
                async with DeviceClient.open(dev.path, FAST):
                    pass
            text = str(info.value)
            assert f"PID {os.getpid()}" in text
            assert dev.path in text
            holder = info.value.holder
            assert holder is not None
            assert holder.pid == os.getpid()
            assert first.link_state.value == "connected", "the refused opener did not disturb the holder"
            assert len(dev.commands(MsgType.HELLO)) == 1, "the second opener sent nothing"
        # closed: the port is free again, and the record is gone with the lock
        assert read_holder(lock_path(dev.path)) is None
        async with DeviceClient.open(dev.path, FAST):
            pass


async def test_one_device_under_two_names_is_one_port(fake_device: Callable[..., FakeDevice], runtime: Path):
    """/dev/serial/by-id/... is a symlink to the device: both names take the same lock."""
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST):
        alias = runtime.parent / "by-id-link"
        alias.symlink_to(dev.path)
        with pytest.raises(PortBusy):
            async with DeviceClient.open(str(alias), FAST):
                pass


async def test_two_local_sessions_on_one_socket_url_are_refused(sim_tcp: tuple[object, int]):
    """A socket:// URL has no device to lock, but two local sessions on it would still fight over
    the device's session (a second HELLO takes it over): the second is refused alike."""
    url = f"socket://127.0.0.1:{sim_tcp[1]}"
    async with DeviceClient.open(url, FAST) as first:
        with pytest.raises(PortBusy) as info:
            async with DeviceClient.open(url, FAST):
                pass
        assert f"PID {os.getpid()}" in str(info.value)
        assert first.link_state.value == "connected"


def test_a_lock_left_by_a_dead_process_is_taken_over(runtime: Path):
    port = "/dev/cementguard-test-port"
    path = lock_path(port)
    record = {
        "pid": 2**22 + 17,
        "program": "cementguard run",
        "command_line": "x",
        "started": "t",
        "port": port,
    }
    path.write_text(json.dumps(record))  # what a killed holder leaves: a record, no flock
    lock = PortLock(port)
    lock.acquire()
    try:
        holder = read_holder(path)
        assert holder is not None
        assert holder.pid == os.getpid()
    finally:
        lock.release()


def test_the_lock_of_a_killed_holder_is_taken_over(runtime: Path, caplog: pytest.LogCaptureFixture):
    """A holder killed with SIGKILL cleans nothing up; the kernel drops its flock, and the next
    opener takes the port over, naming the dead holder in the log."""
    port = "/dev/cementguard-test-killed"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from host.port_lock import PortLock\n"
            f"PortLock({port!r}).acquire(); print('LOCKED', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "LOCKED"
        with pytest.raises(PortBusy) as busy:
            PortLock(port).acquire()
        assert f"PID {holder.pid}" in str(busy.value)
    finally:
        holder.kill()
        holder.wait()
    lock = PortLock(port)
    with caplog.at_level(logging.INFO, logger="host.port_lock"):
        lock.acquire()
    try:
        assert f"PID {holder.pid}" in caplog.text
        assert "no longer running" in caplog.text
    finally:
        lock.release()


def test_the_runtime_directory_is_private(runtime: Path):
    base = runtime_dir()
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    base.chmod(0o755)
    with pytest.raises(RuntimeDirError, match="0700"):
        runtime_dir()


# -- the endpoint --------------------------------------------------------------------------------------


async def test_stop_through_the_endpoint_reaches_the_device_at_once(fake_device: Callable[..., FakeDevice]):
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl, serve_control(ctl) as server:
        assert stat.S_IMODE(os.stat(server.path).st_mode) == 0o600
        holder = read_holder(lock_path(dev.path))
        assert holder is not None
        assert holder.socket == str(socket_path(dev.path))
        await ctl.arm(incremental_arm())
        await ctl.start()
        code = await device_cmds.stop(dev.path, "operator")
        assert code == device_cmds.EXIT_OK
        assert dev.state == State.STOPPED
        stops = dev.commands(MsgType.STOP)
        assert len(stops) == 1
        answer = await control.request(dev.path, "status")
        assert answer["ok"]
        assert answer["state"] == "STOPPED"
    assert not socket_path(dev.path).exists(), "the socket goes with the session"


async def test_clear_refused_by_the_device_is_reported_with_its_reason(
    fake_device: Callable[..., FakeDevice],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
):
    """A device that stays BUSY: the clear is asked again for CLEAR_SETTLE_S (shortened here), then the
    refusal is reported with its reason, through the endpoint and directly."""
    monkeypatch.setattr("host.client.CLEAR_SETTLE_S", 0.3)
    dev = fake_device(refuse={MsgType.CLEAR: (NakCode.BUSY, 0xFF, 0)})
    async with dev, DeviceClient.open(dev.path, FAST) as ctl, serve_control(ctl):
        answer = await control.request(dev.path, "clear")
        assert len(dev.commands(MsgType.CLEAR)) > 1, "BUSY is transient: asked again with new commands"
        assert not answer["ok"]
        assert answer["code"] == "BUSY"
        assert answer["session"] == f"{holder_program()} (PID {os.getpid()})"
        assert "relief" in answer["error"]
        assert await device_cmds.clear(dev.path) == device_cmds.EXIT_REFUSED
        out = capsys.readouterr().out
        assert "CLEAR refused: BUSY" in out
        assert f"PID {os.getpid()}" in out


async def test_clear_without_a_session_opens_the_port(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str]
):
    dev = fake_device(refuse={MsgType.CLEAR: (NakCode.SENSOR_FAULT, 0xFF, 0)})
    async with dev:
        assert await device_cmds.clear(dev.path) == device_cmds.EXIT_REFUSED
        assert "SENSOR_FAULT" in capsys.readouterr().out


async def test_a_holder_without_an_endpoint_is_named_and_the_stop_still_gets_out(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str]
):
    """A program holding the port through the library, without an endpoint, does not answer: stop
    writes one STOP (cmd_id 0) onto the port beside it, says it is not confirmed, exits non-zero."""
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl:
        await ctl.arm(incremental_arm())
        await ctl.start()
        assert await device_cmds.stop(dev.path, "fluoro") == device_cmds.EXIT_LINK
        out = capsys.readouterr().out
        assert f"PID {os.getpid()}" in out
        assert "serves no control endpoint" in out
        assert "NOT confirmed" in out
        await dev.until(lambda: dev.state == State.STOPPED)
        ((_h, stop),) = dev.commands(MsgType.STOP)
        assert stop.cmd_id == 0, "cmd_id 0: never one of the holder's commands"
        assert stop.source.name == "FLUORO_OPERATOR"  # type: ignore[attr-defined]
        assert not dev.commands(MsgType.HELLO)[1:], "the holder's session was not taken over"
        assert ctl.link_state.value == "connected"


async def test_a_hung_endpoint_is_stopped_beside(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str], runtime: Path
):
    """A socket that accepts and never answers (a hung session): after the answer timeout the STOP is
    written onto the port directly."""
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST):
        hung = await asyncio.start_unix_server(lambda r, w: None, path=str(socket_path(dev.path)))
        try:
            code = await device_cmds.stop(dev.path, "operator", answer_timeout_s=0.2)
        finally:
            hung.close()
        assert code == device_cmds.EXIT_LINK
        out = capsys.readouterr().out
        assert "did not answer" in out
        assert "STOP written onto" in out
        await dev.until(lambda: dev.state == State.STOPPED)


async def test_a_frozen_endpoint_does_not_hold_the_stop_back_until_the_answer_timeout(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str], runtime: Path
):
    """A frozen session (its socket accepts, nothing answers): the STOP reaches the device after the
    short deadline, while `stop` still waits for the session's answer (30 s here)."""
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST):
        hung = await asyncio.start_unix_server(lambda r, w: None, path=str(socket_path(dev.path)))
        stopping = asyncio.create_task(device_cmds.stop(dev.path, "operator", answer_timeout_s=30.0))
        try:
            await dev.until(lambda: dev.state == State.STOPPED)
            assert not stopping.done(), "the STOP went out before the answer timeout, not after it"
            said = capsys.readouterr().out
            assert f"did not answer within {device_cmds.control.STOP_DEADLINE_S:g} s" in said
        finally:
            hung.close()
            stopping.cancel()
            await asyncio.gather(stopping, return_exceptions=True)


async def test_stop_on_a_port_that_does_not_exist(capsys: pytest.CaptureFixture[str]):
    assert await device_cmds.stop("/dev/cementguard-no-such-port", "operator") == device_cmds.EXIT_LINK
    assert "no such port /dev/cementguard-no-such-port" in capsys.readouterr().out


async def test_stop_where_no_device_answers(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str]
):
    async with fake_device(silent=True) as dev:
        assert await device_cmds.stop(dev.path, "operator") == device_cmds.EXIT_LINK
        out = capsys.readouterr().out
        assert "no cementguard device answered STOP" in out
        assert len(dev.commands(MsgType.STOP)) == 4, "STOP retried with the SPEC's policy"
        assert not dev.commands(MsgType.HELLO), "no handshake before STOP"


async def _raw(path: Path, data: bytes, *, close_write: bool = True) -> bytes:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(data)
    await writer.drain()
    if close_write:
        writer.write_eof()
    try:
        async with asyncio.timeout(5):
            return await reader.read()
    finally:
        writer.close()


async def test_hostile_input_is_refused_and_the_session_goes_on(
    fake_device: Callable[..., FakeDevice], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(control, "REQUEST_TIMEOUT_S", 0.2)
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl, serve_control(ctl) as server:
        path = server.path
        too_long = json.loads(await _raw(path, b'{"op": "' + b"x" * 100_000 + b'"}\n'))
        assert not too_long["ok"]
        assert "too long" in too_long["error"]
        assert "not a JSON object" in json.loads(await _raw(path, b"\xff\xfe garbage\n"))["error"]
        assert "not a JSON object" in json.loads(await _raw(path, b"[1, 2]\n"))["error"]
        unknown = json.loads(await _raw(path, b'{"op": "start"}\n'))
        assert not unknown["ok"]
        assert "unknown request" in unknown["error"]
        assert "incomplete" in json.loads(await _raw(path, b'{"op": "stop"}'))["error"]
        silent = json.loads(await _raw(path, b"", close_write=False))
        assert "no complete request" in silent["error"]
        assert server.refused == 6
        assert not dev.commands(MsgType.STOP), "none of that was taken for a stop"
        assert MsgType.START not in dev.types_received()
        answer = await control.request(dev.path, "status")
        assert answer["ok"], "the endpoint still serves"
        assert ctl.link_state.value == "connected"


async def test_a_stop_with_an_unknown_source_still_stops(fake_device: Callable[..., FakeDevice]):
    """As the device does with a malformed STOP (SPEC §7.6): executed, as OPERATOR."""
    async with fake_device() as dev, DeviceClient.open(dev.path, FAST) as ctl, serve_control(ctl):
        answer = await control.request(dev.path, "stop", source="imaging-room")
        assert answer["ok"]
        assert answer["state"] == "STOPPED"
        assert "OPERATOR" in answer["warning"]
        assert len(dev.commands(MsgType.STOP)) == 1


async def test_a_stop_while_the_session_has_lost_its_link_says_what_the_device_does(
    fake_device: Callable[..., FakeDevice], monkeypatch: pytest.MonkeyPatch
):
    """The session's link is down and does not come back (a silent device): the stop cannot be
    confirmed, and the answer says that the controller stops by itself (HOST_LOST)."""
    monkeypatch.setattr(control, "RECONNECT_WAIT_S", 0.1)
    async with (
        fake_device(watchdog_ms=200) as dev,
        DeviceClient.open(dev.path, FAST) as ctl,
        serve_control(ctl),
    ):
        lost = ctl.link_changes()
        dev.silent = True
        while (await lost.get(timeout=5)).state.value != "lost":
            pass
        answer = await control.request(dev.path, "stop")
        assert not answer["ok"]
        assert "HOST_LOST" in answer["error"]
