"""A pty's lock names the pty instance, not only its number (host.port_lock.port_key): the kernel gives a
freed pty's number to the next pty, and a session still reconnecting to a dead simulator's /dev/pts/N
must neither block a new simulator's /dev/pts/N nor take it from the session that opened it.

On real ptys. The number is reused only once every descriptor of the old pty is closed; the new pty
is then allocated at once (the kernel hands out the lowest free number). Another process on the
machine may take that number first: the scenario is then built again, a bounded number of times.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

import pytest

from host import device_cmds
from host.client import DeviceClient
from host.control import serve_control
from host.link import Link, LinkOptions, LinkState
from host.port_lock import PortBusy, PortLock, socket_path
from protocol import MsgType
from tests.host.conftest import FakeDevice

TRIES = 5


@pytest.fixture(autouse=True)
def runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    base = tempfile.mkdtemp(prefix="cg-")
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    yield
    shutil.rmtree(base, ignore_errors=True)


def reopened_pty(path: str) -> tuple[int, int] | None:
    """A new pty (master, slave) at `path`, a freed pty's name; None when another took it."""
    master, slave = os.openpty()
    if os.ttyname(slave) == path:
        return master, slave
    os.close(master)
    os.close(slave)
    return None


def test_a_dead_ptys_lock_does_not_hold_the_new_pty_with_its_number() -> None:
    for _ in range(TRIES):
        master, slave = os.openpty()
        path = os.ttyname(slave)
        old = PortLock(path)
        old.acquire()
        os.close(slave)
        os.close(master)  # the simulator is gone; its session still holds the lock, reconnecting
        again = reopened_pty(path)
        if again is None:
            old.release()
            continue
        try:
            new = PortLock(path)
            new.acquire()  # a new session on the new simulator: refused with PortBusy on main
            assert new.held
            new.release()
            assert not old.current, "the old lock must know that another pty answers to its name"
        finally:
            old.release()
            os.close(again[0])
            os.close(again[1])
        return
    pytest.fail(f"the pty number was taken by another process {TRIES} times in a row")


async def test_a_reconnecting_session_does_not_take_the_new_pty_another_session_holds(
    fake_device: Callable[..., FakeDevice],
) -> None:
    options = LinkOptions(reconnect_initial_s=0.05, reconnect_max_s=0.05)
    for _ in range(TRIES):
        dev1 = fake_device()
        await dev1.__aenter__()
        path = dev1.path
        first = Link(path, options)
        await first.open()
        changes = first.link_changes()
        await dev1.aclose()
        async with asyncio.timeout(10):  # the first session notices, closes its port, retries
            while "reconnect attempt" not in (change := await changes.get()).reason:
                pass
        assert change.state is LinkState.LOST
        dev2 = fake_device()
        if dev2.path != path:  # another process took the number meanwhile: build it again
            await first.close()
            continue
        await dev2.__aenter__()
        second = Link(path, options)
        await second.open()  # refused with PortBusy on main: the first session's lock held the name
        try:
            async with asyncio.timeout(10):
                while not isinstance((change := await changes.get()).error, PortBusy):
                    assert change.state is not LinkState.CONNECTED, "it took the other session's device"
            assert second.link_state is LinkState.CONNECTED
        finally:
            await second.close()
            await first.close()
        return
    pytest.fail(f"the pty number was taken by another process {TRIES} times in a row")


async def test_stop_reaches_a_session_that_followed_its_pty_to_a_new_instance(
    fake_device: Callable[..., FakeDevice], capsys: pytest.CaptureFixture[str]
) -> None:
    """A session whose simulator was replaced at the same pty path follows it (a replugged cable):
    it then holds the new instance's lock while serving the socket it opened first. `stop` finds that
    socket through the lock's record and is answered by the session, not written beside it."""
    options = LinkOptions(reconnect_initial_s=0.05, reconnect_max_s=0.05)
    for _ in range(TRIES):
        dev1 = fake_device()
        await dev1.__aenter__()
        path = dev1.path
        async with DeviceClient.open(path, options) as ctl, serve_control(ctl):
            changes = ctl.link.link_changes()
            await dev1.aclose()
            async with asyncio.timeout(10):
                while "reconnect attempt" not in (await changes.get()).reason:
                    pass
            dev2 = fake_device()
            if dev2.path != path:
                continue
            await dev2.__aenter__()
            await ctl.wait_for_link(LinkState.CONNECTED, timeout=10)
            assert not socket_path(path).exists(), "the new instance's key names another socket file"
            code = await device_cmds.stop(path, "operator")
            said = capsys.readouterr().out
            assert code == device_cmds.EXIT_OK, said
            assert "STOP acknowledged through" in said, said
            assert "written onto" not in said, said
            assert dev2.commands(MsgType.STOP), "the session sent it on its link"
        return
    pytest.fail(f"the pty number was taken by another process {TRIES} times in a row")
