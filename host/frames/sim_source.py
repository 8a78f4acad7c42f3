"""`sim://`: the simulator's frame stream (protocol/fluoro_stream.py) on a Unix socket or TCP.

    sim:///run/user/1000/cg-frames.sock    the socket `cementguard sim --frames-out PATH` made
    sim://127.0.0.1:5600                   ... or `--frames-out HOST:PORT`

Timestamps are the simulator's device clock (the controller's), as the simulator stamped each pulse.
A stream that cannot be trusted (bad header, CRC failure), a closed connection or a reset is the
source lost (`FrameSourceLost` naming why); the simulator's END message is `FrameStreamEnded`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import select
import socket
import time
from typing import Any

from host.frames.checks import FrameChecks, SourceOptions, read_timeout
from host.frames.frame import FluoroFrame, FrameSourceError, FrameSourceLost, FrameStreamEnded
from protocol.fluoro_stream import FluoroStreamDecoder, FluoroStreamError, StreamedFrame

__all__ = ["SimFrameSource", "parse_sim_url"]

log = logging.getLogger(__name__)

_RECV = 1 << 20


def parse_sim_url(url: str) -> tuple[int, str | tuple[str, int]]:
    """(AF_UNIX, path) or (AF_INET, (host, port)); FrameSourceError naming what is allowed."""
    rest = url.removeprefix("sim://")
    if rest.startswith("/"):
        return socket.AF_UNIX, rest
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise FrameSourceError(url, "allowed sim:///path/to/socket or sim://HOST:PORT (port 1..65535)")
    return socket.AF_INET, (host, int(port))


class SimFrameSource:
    """A FrameSource reading the simulator's stream."""

    def __init__(self, url: str, connect_timeout_s: float = 2.0, **options: Any) -> None:
        self.url = url
        self.checks = FrameChecks(url, SourceOptions.parse(options))
        family, where = parse_sim_url(url)
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(connect_timeout_s)
        try:
            sock.connect(where)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise FrameSourceError(
                url, f"nothing serves frames there ({exc.strerror}); start `cementguard sim --frames-out ...`"
            ) from None
        except OSError as exc:
            sock.close()
            raise FrameSourceError(url, f"cannot connect: {exc}") from None
        sock.setblocking(False)
        self._sock: socket.socket | None = sock
        self._decoder = FluoroStreamDecoder()
        self._pending: collections.deque[StreamedFrame] = collections.deque()
        self._lost: FrameSourceLost | None = None

    def read(self, timeout_s: float) -> FluoroFrame | None:
        deadline = time.monotonic() + read_timeout(timeout_s)
        while not self._pending:
            if self._lost is not None:
                raise self._lost
            remaining = deadline - time.monotonic()
            self._receive(max(remaining, 0.0))
            if not self._pending and time.monotonic() >= deadline and self._lost is None:
                return None
        item = self._pending.popleft()
        frame = FluoroFrame(
            index=item.index,
            t_us=item.t_us,
            view=item.view,
            pixels=item.pixels,
            bit_depth=item.bit_depth,
            pixel_mm=item.pixel_mm,
            source=self.url,
        )
        return self.checks.check(frame)

    def _receive(self, wait_s: float) -> None:
        sock = self._sock
        if sock is None:
            self._lost = FrameStreamEnded(self.url, "closed by the reader")
            return
        ready, _, _ = select.select([sock], [], [], wait_s)
        if not ready:
            return
        try:
            data = sock.recv(_RECV)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lose(FrameSourceLost(self.url, f"read failed: {exc}"))
            return
        if not data:
            self._lose(FrameSourceLost(self.url, "the simulator closed the stream without END (it stopped?)"))
            return
        try:
            self._pending.extend(self._decoder.feed(data))
        except FluoroStreamError as exc:
            self._lose(FrameSourceLost(self.url, f"the stream is corrupt: {exc}"))
            return
        if self._decoder.ended:
            self._lose(FrameStreamEnded(self.url, "the simulator ended the stream"))

    def _lose(self, error: FrameSourceLost) -> None:
        log.warning("%s", error)
        self._lost = error
        self._close_socket()

    def _close_socket(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None

    def close(self) -> None:
        self._close_socket()
        if self._lost is None:
            self._lost = FrameStreamEnded(self.url, "closed by the reader")
            self._pending.clear()
