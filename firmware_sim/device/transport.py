"""Byte streams the simulated device serves on, as firmware sits on a UART.

Each transport is polled once per tick, never blocks, and reports whether a host is attached, so
the controller sees a vanished host (pty closed, TCP reset) at once and trips HOST_LOST.
"""

from __future__ import annotations

import errno
import os
import socket
import termios
import tty
from typing import Protocol

READ_CHUNK = 4096
MAX_PENDING_OUT = 1 << 20
"""Bytes queued for a host that does not read; beyond this the oldest output is dropped (counted)."""


class Transport(Protocol):
    @property
    def address(self) -> str:
        """What a host opens: a device path or a pyserial socket:// URL."""
        ...

    def poll(self) -> tuple[bytes, bool]:
        """Bytes received since the last poll, and whether a host is attached now."""
        ...

    def write(self, data: bytes) -> None: ...

    def fileno(self) -> int:
        """A descriptor that becomes readable when `poll` has something new (for select)."""
        ...

    def close(self) -> None: ...


class _OutQueue:
    """Non-blocking writer: what the fd does not take now waits, bounded, for the next tick."""

    __slots__ = ("dropped", "pending")

    def __init__(self) -> None:
        self.pending = bytearray()
        self.dropped = 0

    def push(self, data: bytes) -> None:
        self.pending += data
        overflow = len(self.pending) - MAX_PENDING_OUT
        if overflow > 0:
            del self.pending[:overflow]
            self.dropped += overflow

    def clear(self) -> None:
        self.pending.clear()


class PtyTransport:
    """A pseudo-terminal in raw mode. Hosts open `address` like any serial port.

    We hold only the master side: while no process has the slave open, reading the master fails
    with EIO, which is exactly the "host gone" signal (cable pulled, host crashed).
    """

    def __init__(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave, termios.TCSANOW)
        self._path = os.ttyname(slave)
        os.set_blocking(master, False)
        os.close(slave)
        self._fd = master
        self._out = _OutQueue()
        self._attached = False

    @property
    def address(self) -> str:
        return self._path

    @property
    def dropped_out(self) -> int:
        return self._out.dropped

    def fileno(self) -> int:
        return self._fd

    def poll(self) -> tuple[bytes, bool]:
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(self._fd, READ_CHUNK)
            except BlockingIOError:
                self._attached = True
                break
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                self._attached = False
                self._out.clear()
                break
            if not data:
                break
            chunks.append(data)
            if len(data) < READ_CHUNK:
                self._attached = True
                break
        if self._attached:
            self._flush()
        return b"".join(chunks), self._attached

    def write(self, data: bytes) -> None:
        if self._attached:
            self._out.push(data)
            self._flush()

    def _flush(self) -> None:
        pending = self._out.pending
        while pending:
            try:
                n = os.write(self._fd, pending)
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno != errno.EIO:
                    raise
                self._attached = False
                self._out.clear()
                return
            del pending[:n]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class TcpTransport:
    """One host at a time over TCP, for pyserial's socket:// URLs. Loopback unless told otherwise."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(1)
        self._listener.setblocking(False)
        self._host, self._port = self._listener.getsockname()[:2]
        self._client: socket.socket | None = None
        self._out = _OutQueue()

    @property
    def address(self) -> str:
        return f"socket://{self._host}:{self._port}"

    @property
    def port(self) -> int:
        return int(self._port)

    def fileno(self) -> int:
        return (self._client or self._listener).fileno()

    def poll(self) -> tuple[bytes, bool]:
        if self._client is None:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return b"", False
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            self._out.clear()
        chunks: list[bytes] = []
        while self._client is not None:
            try:
                data = self._client.recv(READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                self._drop_client()
                break
            if not data:
                self._drop_client()
                break
            chunks.append(data)
        self._flush()
        return b"".join(chunks), self._client is not None

    def write(self, data: bytes) -> None:
        if self._client is not None:
            self._out.push(data)
            self._flush()

    def _flush(self) -> None:
        pending = self._out.pending
        while pending and self._client is not None:
            try:
                n = self._client.send(pending)
            except BlockingIOError:
                return
            except OSError:
                self._drop_client()
                return
            del pending[:n]

    def _drop_client(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._out.clear()

    def close(self) -> None:
        self._drop_client()
        self._listener.close()
