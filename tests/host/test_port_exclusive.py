"""A session's port is closed to programs that are not cementguard sessions (TIOCEXCL, host.tty_exclusive),
and `cementguard stop` still writes STOP beside a frozen holder (it borrows the holder's descriptor).

On real ptys: the test holds the master side (the "device"), a session opens the slave. The openers
that must be refused run without CAP_SYS_ADMIN (the kernel lets that capability through TIOCEXCL):
under root, through `setpriv --bounding-set=-sys_admin`.
"""

from __future__ import annotations

import asyncio
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import tty
from collections.abc import Iterator
from pathlib import Path

import pytest

from host.link import Link, LinkOptions
from host.port_lock import lock_path, read_holder
from protocol import Stop, StopSource, encode_frame
from tests.support.wire_client import REPO

PYSERIAL_OPEN = (
    "import sys, serial\n"
    "try:\n"
    "    serial.Serial(sys.argv[1], 115200).close()\n"
    "except serial.SerialException as exc:\n"
    "    print('REFUSED', exc)\n"
    "else:\n"
    "    print('OPENED')\n"
)
HOLDER = (
    "import asyncio, sys\n"
    "from host.link import Link, LinkOptions\n"
    "async def main():\n"
    "    link = Link(sys.argv[1], LinkOptions(reconnect=False))\n"
    "    await link.open(handshake=False)\n"
    "    print('READY', flush=True)\n"
    "    await asyncio.sleep(3600)\n"
    "asyncio.run(main())\n"
)


def unprivileged(argv: list[str]) -> list[str]:
    """`argv` without CAP_SYS_ADMIN (what a bench engineer's minicom or script has)."""
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    assert setpriv is not None, "util-linux setpriv is needed to drop CAP_SYS_ADMIN under root"
    return [setpriv, "--inh-caps=-sys_admin", "--bounding-set=-sys_admin", *argv]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    base = tempfile.mkdtemp(prefix="cg-")
    os.chmod(base, 0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", base)
    yield dict(os.environ, PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=base)
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def pty_device() -> Iterator[tuple[int, str]]:
    """A pty: the master (the device's side, kept by the test) and the slave's path (the port)."""
    master, slave = os.openpty()
    tty.setraw(slave)
    path = os.ttyname(slave)
    os.close(slave)
    yield master, path
    os.close(master)


def other_program_opens(port: str, env: dict[str, str]) -> str:
    argv = unprivileged([sys.executable, "-c", PYSERIAL_OPEN, port])
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30).stdout.strip()


def test_a_plain_pyserial_program_cannot_open_a_port_a_session_holds(
    pty_device: tuple[int, str], env: dict[str, str]
) -> None:
    _master, port = pty_device

    async def scenario() -> tuple[str, str]:
        link = Link(port, LinkOptions(reconnect=False))
        await link.open(handshake=False)
        try:
            while_held = await asyncio.to_thread(other_program_opens, port, env)
        finally:
            await link.close()
        after = await asyncio.to_thread(other_program_opens, port, env)
        return while_held, after

    while_held, after = asyncio.run(scenario())
    assert while_held.startswith("REFUSED"), while_held
    assert "Device or resource busy" in while_held, while_held
    assert after == "OPENED", "the session clears the mark when it closes: a pty keeps it otherwise"


def read_until(fd: int, wanted: bytes, timeout_s: float) -> bytes:
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([fd], [], [], timeout_s)
        if not ready:
            break
        seen += os.read(fd, 4096)
    return seen


def test_stop_writes_stop_beside_a_frozen_holder_of_an_exclusive_port(
    pty_device: tuple[int, str], env: dict[str, str]
) -> None:
    master, port = pty_device
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, port], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "READY"
        record = read_holder(lock_path(port))
        assert record is not None
        assert record.pid == holder.pid
        assert record.tty_fd is not None
        read_until(master, b"\x00", 0.5)  # the holder's opening delimiter
        os.kill(holder.pid, signal.SIGSTOP)
        assert other_program_opens(port, env).startswith("REFUSED")
        stop = subprocess.run(
            unprivileged([sys.executable, "-m", "host.cli", "stop", "--port", port]),
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=60,
        )
        frame = encode_frame(Stop(cmd_id=0, source=StopSource.OPERATOR), 0)
        assert frame in read_until(master, frame, 5.0), stop.stdout + stop.stderr
        assert "STOP written onto" in stop.stdout + stop.stderr
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(10)


def test_the_borrowed_descriptor_must_be_the_port(
    pty_device: tuple[int, str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale record naming another file never gets STOP bytes written into that file."""
    from host import device_cmds

    _master, port = pty_device
    other = Path(env["XDG_RUNTIME_DIR"]) / "not-the-port"
    with open(other, "wb") as f:
        record_fd = f.fileno()
        real_open = os.open

        def busy_open(path: str, flags: int, mode: int = 0o777) -> int:
            if path == port:
                raise OSError(16, "Device or resource busy")
            return real_open(path, flags, mode)

        lock = lock_path(port)
        lock.write_text(
            f'{{"pid": {os.getpid()}, "program": "x", "command_line": "x", "started": "x", '
            f'"port": "{port}", "tty_fd": {record_fd}}}'
        )
        monkeypatch.setattr(device_cmds.os, "open", busy_open)
        with pytest.raises(OSError, match="is not"):
            device_cmds._open_beside(port)
        monkeypatch.undo()
    assert other.read_bytes() == b""
