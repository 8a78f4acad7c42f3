"""A deliberately small synchronous client built on `protocol/` alone.

It proves that the wire protocol is enough to drive the device: no host package, no asyncio. Waits
are on data arriving (serial read timeouts), never on sleeps.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import serial

from protocol import (
    Ack,
    Command,
    Event,
    Frame,
    Heartbeat,
    MessageStream,
    Nak,
    Rejected,
    TelemetryBatch,
    encode_frame,
)
from protocol.messages import Message

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WireClient:
    port: serial.Serial
    stream: MessageStream = field(default_factory=MessageStream)
    events: list[Event] = field(default_factory=list)
    batches: list[TelemetryBatch] = field(default_factory=list)
    inbox: list[Message] = field(default_factory=list)
    _seq: int = 0
    _cmd_id: int = 0
    _last_tx: float = 0.0

    def send(self, message: Message) -> None:
        self.port.write(encode_frame(message, self._seq))
        self._seq = (self._seq + 1) & 0xFFFF
        self._last_tx = time.monotonic()

    def next_cmd_id(self) -> int:
        self._cmd_id = self._cmd_id % 0xFFFF + 1
        return self._cmd_id

    def pump(self) -> list[Message]:
        """Read what has arrived (up to the port timeout) and keep the host heartbeat going."""
        if time.monotonic() - self._last_tx > 0.1:
            self.send(Heartbeat(uptime_ms=0))
        data = self.port.read(max(1, self.port.in_waiting))
        out: list[Message] = []
        for item in self.stream.feed(data):
            if isinstance(item, Rejected):
                raise AssertionError(f"device sent an undecodable frame: {item}")
            assert isinstance(item, Frame)
            msg = item.message
            if isinstance(msg, Event):
                self.events.append(msg)
            elif isinstance(msg, TelemetryBatch):
                self.batches.append(msg)
            out.append(msg)
        self.inbox.extend(out)
        return out

    def wait_for(self, predicate: Callable[[Message], bool], reads: int = 400) -> Message:
        """The first message (already received or arriving) that satisfies `predicate`."""
        for i, msg in enumerate(self.inbox):
            if predicate(msg):
                del self.inbox[: i + 1]
                return msg
        for _ in range(reads):
            for msg in self.pump():
                if predicate(msg):
                    idx = self.inbox.index(msg)
                    del self.inbox[: idx + 1]
                    return msg
        raise AssertionError("expected message never arrived")

    def command(self, make: Callable[[int], Command]) -> tuple[Ack | Nak, list[Message]]:
        """Send a command; return its ACK/NAK and the messages that came with the same cmd_id."""
        cmd_id = self.next_cmd_id()
        self.inbox.clear()
        self.send(make(cmd_id))
        replies: list[Message] = []
        for _ in range(400):
            for msg in self.pump():
                if getattr(msg, "cmd_id", None) == cmd_id:
                    if isinstance(msg, Ack | Nak):
                        return msg, replies
                    replies.append(msg)
        raise AssertionError(f"no ACK/NAK for cmd_id {cmd_id}")


class SimulatorLog:
    """The simulator's stderr console, drained by a thread so the pipe never fills and blocks it."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)
        self.lines.put("")  # end of stream: the simulator exited

    def wait_for(self, text: str, timeout_s: float = 10.0) -> str:
        """The next console line containing `text`; waits on the line queue, never on a sleep."""
        while True:
            try:
                line = self.lines.get(timeout=timeout_s)
            except queue.Empty:
                raise AssertionError(f"simulator never logged {text!r}; saw {self.seen}") from None
            if not line:
                raise AssertionError(f"simulator exited before logging {text!r}; saw {self.seen}")
            self.seen.append(line)
            if text in line:
                return line

    def text(self) -> str:
        while not self.lines.empty():
            self.seen.append(self.lines.get_nowait())
        return "".join(self.seen)


@contextmanager
def simulator(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """`cementguard sim` in a subprocess; yields the process and the address from its PORT line.

    The process carries `.log` (a SimulatorLog) with its stderr console lines."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "host.cli", "sim", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        assert proc.stderr is not None
        log = SimulatorLog(proc.stderr)
        proc.log = log  # type: ignore[attr-defined]
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            proc.wait(timeout=10)
            raise AssertionError(f"simulator did not print its PORT line: {line!r} {log.text()}")
        yield proc, line.split(" ", 1)[1].strip()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
