"""An in-memory byte stream between a host and the simulated device, for runs in virtual time.

Bytes still go through the full codec both ways, so what runs in-process is what runs over a pty.
"""

from __future__ import annotations


class LoopbackTransport:
    """Device side of an in-memory link; the host side is `to_device` / `take_from_device`."""

    address = "loop://"

    def __init__(self) -> None:
        self._to_device = bytearray()
        self._from_device = bytearray()
        self.connected = True

    # device side (the Transport protocol)
    def poll(self) -> tuple[bytes, bool]:
        if not self._to_device:
            return b"", self.connected
        data = bytes(self._to_device)
        self._to_device.clear()
        return data, self.connected

    def write(self, data: bytes) -> None:
        if self.connected:
            self._from_device += data

    def fileno(self) -> int:
        raise OSError("the loopback transport has no file descriptor")

    def close(self) -> None:
        self.connected = False

    # host side
    def to_device(self, data: bytes) -> None:
        if self.connected:
            self._to_device += data

    def take_from_device(self) -> bytes:
        data = bytes(self._from_device)
        self._from_device.clear()
        return data
