"""Publishing the simulator's frames on a socket (`cementguard sim --frames-out`).

The controller ticks at 1 kHz in real time; a 512 x 512 frame takes tens of milliseconds to render.
So the tick only notes which pulse is due and copies the body's cement (`scene_of`, ~0.1 ms); a
child process draws the frame, and a thread here sends it to every connected reader and writes its
truth to the sidecar file. If the renderer is behind when a pulse comes (a loaded machine, or
`--time-scale` far above 1), that pulse is dropped: its index is skipped, so the reader sees the gap,
and `dropped` counts it. The tick never waits for the renderer or a reader.

Readers connect to a Unix socket path or a TCP address (several may, e.g. the guard and a
recorder); each gets the stream of protocol/fluoro_stream.py from the next frame on. With a second
listener for the AP view (`--frames-out-ap`), each view goes out on its own socket, as a biplane
C-arm's two video outputs reach two frame grabbers; without it, both views alternate on one. A reader that
cannot take a frame within `SEND_TIMEOUT_S` (its socket buffer full: it stopped reading) is dropped
and logged, so a stalled reader cannot hold up the others.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import queue
import signal
import socket
import stat
import threading
from multiprocessing.connection import Connection
from typing import Any

from firmware_sim.imaging.camera import FluoroCamera
from firmware_sim.imaging.fluoro import FluoroConfig, FluoroRenderer
from firmware_sim.imaging.scene import scene_of
from firmware_sim.imaging.truth import TruthWriter, truth_of
from firmware_sim.plant.body import Body
from protocol.fluoro_stream import encode_end, encode_streamed_frame

__all__ = ["SEND_TIMEOUT_S", "FrameListener", "FrameStreamer", "parse_frames_address"]

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 0.5
READY_TIMEOUT_S = 60.0
"""The render process starts a fresh interpreter and imports numpy and scipy: seconds on a loaded
machine."""


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


def _clear_stale_socket(path: str) -> None:
    """A socket file left by a simulator that died is removed (nothing answers on it); anything else
    at `path` (a live simulator's socket, a regular file) is refused naming it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ValueError(f"--frames-out {path}: already exists and is not a socket; allowed a new path")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)  # stale: its simulator is gone
        log.info("frames: removed the stale socket %s", path)
        return
    except OSError as exc:
        raise ValueError(f"--frames-out {path}: already exists ({exc.strerror})") from None
    finally:
        probe.close()
    raise ValueError(f"--frames-out {path}: another simulator serves frames there; allowed a free path")


class FrameListener:
    """The listening socket and the connected readers."""

    def __init__(self, address: str) -> None:
        kind, where = parse_frames_address(address)
        self._path: str | None = None
        if kind == "unix":
            assert isinstance(where, str)
            _clear_stale_socket(where)
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

    def close(self, clean: bool = True) -> None:
        """Stop listening and close every reader: after the END message if `clean`, else cut (the
        readers report their source lost)."""
        if self._closed:
            return
        if clean:
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
    """Pulses on the device clock (`on_tick`), rendering in a child process, out to the listener and
    the truth file.

    Why a process: the render's numpy and scipy calls hold the interpreter lock in parts, and a
    render thread beside the 1 kHz tick made the tick late (at 30 frames/s on a loaded machine, most
    ticks overran). The tick thread only copies the cement (`scene_of`, ~0.1 ms) and hands it over;
    the child draws and encodes the frame; a forwarding thread here, which waits on pipes and sockets
    (the lock released), sends it to the readers and writes the truth."""

    def __init__(
        self,
        camera: FluoroCamera,
        listener: FrameListener,
        truth: TruthWriter | None = None,
        ap_listener: FrameListener | None = None,
    ) -> None:
        self.camera = camera
        self.listener = listener
        self.ap_listener = ap_listener
        """The AP view's own output (None: every view on `listener`)."""
        self.truth = truth
        self.dropped = 0
        self.sent = 0
        context = multiprocessing.get_context("spawn")  # never fork a process that has threads
        self._jobs: Any = context.Queue(maxsize=1)
        receive, send = context.Pipe(duplex=False)
        self._results: Connection = receive
        self._child = context.Process(
            target=render_worker,
            args=(camera.renderer.body, camera.config, self._jobs, send, os.getpid()),
            name="frames-render",
            daemon=True,
        )
        self._child.start()
        send.close()
        # wait until the child has built its renderer (a second or two): pulses before that would
        # all be dropped, and a child that cannot start is an error now, not a silent stream later
        try:
            ready = self._results.poll(READY_TIMEOUT_S) and self._results.recv() == "ready"
        except EOFError:  # it died first
            ready = False
        if not ready:
            self._child.terminate()
            raise OSError(f"the frame renderer did not start within {READY_TIMEOUT_S:g} s")
        self._in_flight = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._forward, name="frames-forward", daemon=True)
        self._thread.start()

    @property
    def render_pid(self) -> int | None:
        """The render process's id (for the operator's `ps`, and the tests)."""
        return self._child.pid

    def on_tick(self, now_us: int) -> None:
        """Called every controller tick: cheap unless a pulse is due."""
        pulses = self.camera.schedule.due(now_us)
        if not pulses:
            return
        *missed, pulse = pulses
        self.dropped += len(missed)
        if self._readers() == 0 and self.truth is None:
            return  # nobody looks: the pulse still counts, nothing is drawn
        with self._lock:
            if self._in_flight >= 2:  # one rendering, one waiting: the renderer is behind
                self.dropped += 1
                return
            self._in_flight += 1
        try:
            self._jobs.put_nowait((scene_of(self.camera.vertebra, pulse.t_us), pulse))
        except queue.Full:
            with self._lock:
                self._in_flight -= 1
            self.dropped += 1

    def _readers(self) -> int:
        return self.listener.readers + (self.ap_listener.readers if self.ap_listener is not None else 0)

    def _listener_of(self, view: str) -> FrameListener:
        return self.ap_listener if self.ap_listener is not None and view == "ap" else self.listener

    def _forward(self) -> None:
        while True:
            try:
                item = self._results.recv()
            except (EOFError, OSError):
                # the render process died: the readers must see the stream cut (their source lost),
                # not a stream that just goes quiet
                log.error("frames: the render process ended unexpectedly; closing the frame stream")
                self.listener.close(clean=False)
                if self.ap_listener is not None:
                    self.ap_listener.close(clean=False)
                return
            if item is None:
                return
            data, truth = item
            with self._lock:
                self._in_flight -= 1
            self._listener_of(truth.view).send(data)
            if self.truth is not None:
                self.truth.write(truth)
            self.sent += 1

    def close(self) -> None:
        try:
            self._jobs.put(None, timeout=2.0)
        except (queue.Full, ValueError, OSError):
            self._child.terminate()  # it is not taking jobs: it is stuck or gone
        self._child.join(timeout=5.0)
        if self._child.is_alive():
            self._child.terminate()
            self._child.join(timeout=5.0)
        self._thread.join(timeout=5.0)
        self._jobs.close()
        self._results.close()
        self.listener.close()
        if self.ap_listener is not None:
            self.ap_listener.close()
        if self.truth is not None:
            self.truth.close()


def render_worker(body: Body, config: FluoroConfig, jobs: Any, results: Connection, parent: int) -> None:
    """The child process: render each (scene, pulse) from `jobs`, send (stream bytes, truth) back;
    None ends it (and is sent back). Signals are the parent's to handle (Ctrl-C and `timeout` signal
    the whole process group): the child ignores SIGINT and SIGTERM, ends on None from the parent, and
    on its own if the parent is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    renderer = FluoroRenderer(body, config)
    try:
        results.send("ready")
        while True:
            try:
                job = jobs.get(timeout=1.0)
            except queue.Empty:
                if os.getppid() != parent:
                    break  # orphaned: the simulator died without closing
                continue
            if job is None:
                break
            scene, pulse = job
            pixels = renderer.render(scene, pulse.view, pulse.index)
            data = encode_streamed_frame(
                pulse.index, scene.t_us, pulse.view, config.bit_depth, config.pixel_mm, pixels
            )
            results.send((data, truth_of(scene, pulse.index, pulse.view, renderer.geometry(pulse.view))))
        results.send(None)
    except (EOFError, OSError):
        pass  # the parent went away: just end
    finally:
        results.close()
