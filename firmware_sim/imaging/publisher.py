"""Publishing the simulator's frames on a socket (`cementguard sim --frames-out`).

The controller ticks at 1 kHz in real time; a 512 x 512 frame takes tens of milliseconds to render.
So the tick only notes which pulse is due and copies the body's cement (`scene_of`, well under a
millisecond); a render thread draws the frame, sends it to every connected reader and writes its
truth to the sidecar file. If the render thread is still busy when a pulse comes (a loaded machine,
or `--time-scale` far above 1), that pulse is dropped: its index is skipped, so the reader sees the
gap, and `dropped` counts it. The tick never waits for the renderer or a reader.

Readers connect to a Unix socket path or a TCP address (several may, e.g. the guard and a
recorder); each gets the stream of protocol/fluoro_stream.py from the next frame on. A reader that
cannot take a frame within `SEND_TIMEOUT_S` (its socket buffer full: it stopped reading) is dropped
and logged, so a stalled reader cannot hold up the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from pathlib import Path

from firmware_sim.imaging.camera import FluoroCamera, Pulse
from firmware_sim.imaging.scene import CementScene, scene_of
from firmware_sim.imaging.truth import TruthWriter
from protocol.fluoro_stream import encode_end, encode_streamed_frame

__all__ = ["SEND_TIMEOUT_S", "FrameListener", "FrameStreamer", "parse_frames_address"]

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 0.5


def parse_frames_address(text: str) -> tuple[str, str | tuple[str, int]]:
    """("unix", path) for a path (anything with a '/'), ("tcp", (host, port)) for HOST:PORT.
    ValueError naming the value and what is allowed otherwise."""
    allowed = "allowed a Unix socket path (containing '/') or HOST:PORT (port 0..65535)"
    if "/" in text:
        return "unix", text.removeprefix("unix:")
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--frames-out {text!r} is not an address; {allowed}")
    return "tcp", (host or "127.0.0.1", int(port))


class FrameListener:
    """The listening socket and the connected readers."""

    def __init__(self, address: str) -> None:
        kind, where = parse_frames_address(address)
        self._path: str | None = None
        if kind == "unix":
            assert isinstance(where, str)
            if os.path.exists(where):
                raise ValueError(
                    f"--frames-out {where}: already exists; allowed a path that does not exist yet"
                )
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(where)
            self._path = where
            self.url = f"sim://{where}"
        else:
            assert isinstance(where, tuple)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(where)
            host, port = sock.getsockname()[:2]
            self.url = f"sim://{host}:{port}"
        sock.listen(4)
        self._sock = sock
        self._clients: list[socket.socket] = []
        self._lock = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, name="frames-accept", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            conn.settimeout(SEND_TIMEOUT_S)
            with self._lock:
                self._clients.append(conn)
                self._lock.notify_all()
            log.info("frames: reader connected (%d)", len(self._clients))

    @property
    def readers(self) -> int:
        with self._lock:
            return len(self._clients)

    def wait_for_readers(self, count: int, timeout_s: float) -> bool:
        """True once `count` readers are connected (within `timeout_s`)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self._clients) >= count, timeout_s)

    def send(self, data: bytes) -> None:
        with self._lock:
            clients = list(self._clients)
        for conn in clients:
            try:
                conn.sendall(data)
            except OSError as exc:  # timeout (stalled reader), reset, broken pipe
                log.warning("frames: dropping a reader: %s", exc)
                with self._lock:
                    self._clients.remove(conn)
                conn.close()

    def close(self) -> None:
        if self._closed:
            return
        self.send(encode_end())
        self._closed = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            for conn in self._clients:
                conn.close()
            self._clients.clear()
        if self._path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._path)
        self._thread.join(timeout=1.0)


class FrameStreamer:
    """Pulses on the device clock (`on_tick`), rendering in a thread, out to the listener and the
    truth file."""

    def __init__(self, camera: FluoroCamera, listener: FrameListener, truth_path: Path | None = None) -> None:
        self.camera = camera
        self.listener = listener
        self.truth = TruthWriter(truth_path) if truth_path is not None else None
        self.dropped = 0
        self.sent = 0
        self._job: tuple[CementScene, Pulse] | None = None
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="frames-render", daemon=True)
        self._thread.start()

    def on_tick(self, now_us: int) -> None:
        """Called every controller tick: cheap unless a pulse is due."""
        pulses = self.camera.schedule.due(now_us)
        if not pulses:
            return
        *missed, pulse = pulses
        self.dropped += len(missed)
        if self.listener.readers == 0 and self.truth is None:
            return  # nobody looks: the pulse still counts, nothing is drawn
        with self._cond:
            if self._job is not None:
                self.dropped += 1  # the renderer has not taken the previous one: it is replaced
            self._job = (scene_of(self.camera.vertebra, pulse.t_us), pulse)
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stopping:
                    self._cond.wait()
                if self._job is None:
                    return
                scene, pulse = self._job
                self._job = None
            frame, truth = self.camera.render(scene, pulse.index, pulse.view)
            data = encode_streamed_frame(
                frame.index, frame.t_us, frame.view, frame.bit_depth, frame.pixel_mm, frame.pixels
            )
            self.listener.send(data)
            if self.truth is not None:
                self.truth.write(truth)
            self.sent += 1

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=5.0)
        self.listener.close()
        if self.truth is not None:
            self.truth.close()
