"""A host written from protocol/SPEC.md alone, driving the real simulator over a real pty.

It starts `cementguard sim --pty` as a subprocess (the only thing it takes from the repository is
that command line), opens the pty raw, and speaks the protocol through `spec_wire`: leading
delimiter (§3.1), heartbeats from a thread every 100 ms (§9.2: at most `watchdog_ms / 2`), one
command outstanding at a time (§7.5), or several in one write where a test asks for it.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.protocol.independent import spec_wire as w

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 2.0  # generous: the CPU is shared; SPEC recommends 200 ms (§7.5)
HEARTBEAT_PERIOD_S = 0.1


class SpecClientError(AssertionError):
    """The device did not answer as SPEC says it must (a finding, not a test-harness fault)."""


@dataclass
class Exchange:
    """What one command got back: replies with its `cmd_id` before the answer, and the answer."""

    replies: list[w.Msg]
    answer: w.Msg
    # names of the messages (EVENTs included) received just before the answer since it was sent
    before: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.answer.name == "ACK"

    @property
    def nak(self) -> tuple[int, int, int]:
        """(code, field, detail) of a NAK."""
        f = self.answer.fields
        assert self.answer.name == "NAK", self.answer
        return f["code"], f["field"], f["detail"]


@dataclass
class SpecClient:
    fd: int
    rx: w.Receiver = field(default_factory=w.Receiver)
    seq: int = 0
    cmd_id: int = 0
    inbox: list[w.Msg | w.Reject] = field(default_factory=list)
    events: list[w.Msg] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    # cleared to let the device's watchdog expire (§9.2); set by default
    heartbeats_on: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.heartbeats_on.set()

    # --- sending ---------------------------------------------------------------------------------
    def next_id(self) -> int:
        self.cmd_id = self.cmd_id % 65535 + 1
        return self.cmd_id

    def _payload(self, msg_name: str, /, **fields: Any) -> bytes:
        with self._lock:
            seq = self.seq
            self.seq = (self.seq + 1) % 65536
        return w.encode(msg_name, seq, **fields)

    def write(self, data: bytes) -> None:
        with self._lock:
            view = memoryview(data)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]

    def heartbeat(self) -> None:
        self.write(w.frame(self._payload("HEARTBEAT", uptime_ms=0, state=0)))

    def build(self, msg_name: str, /, **fields: Any) -> tuple[bytes, int]:
        """A framed command; `cmd_id` is a fresh one unless given."""
        cid = fields.pop("cmd_id", None)
        cid = self.next_id() if cid is None else cid
        lay = w.BY_NAME[msg_name]
        full = dict.fromkeys(lay.fields, 0) | fields | {"cmd_id": cid}
        if "name" in lay.fields and full["name"] == 0:
            full["name"] = ""
        return w.frame(self._payload(msg_name, **full)), cid

    # --- receiving -------------------------------------------------------------------------------
    def pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return
        for payload in self.rx.feed(data):
            msg = w.decode(payload)
            if isinstance(msg, w.Msg) and msg.name == "EVENT":
                if msg.fields["kind"] not in w.EVENT_KIND.values():  # §6.6: 7, 8 reserved, never sent
                    raise SpecClientError(f"EVENT of a kind §6.6 does not define: {msg.fields}")
                if msg.fields["alarm"] not in w.ALARM_CODE.values():
                    raise SpecClientError(f"EVENT with an alarm §6.7 does not define: {msg.fields}")
                self.events.append(msg)
            if isinstance(msg, w.Msg) and msg.name in ("HEARTBEAT", "TELEMETRY_BATCH"):
                continue
            self.inbox.append(msg)

    def take_answer(self, cid: int, mtype: int) -> Exchange:
        """Wait for the ACK/NAK of (`cid`, `mtype`); the replies are what came with its id."""
        deadline = time.monotonic() + ANSWER_TIMEOUT_S
        while True:
            for i, m in enumerate(self.inbox):
                if (
                    isinstance(m, w.Msg)
                    and m.name in ("ACK", "NAK")
                    and m.fields["cmd_id"] == cid
                    and m.fields["cmd_type"] == mtype
                ):
                    before = self.inbox[:i]
                    del self.inbox[: i + 1]
                    replies = [
                        r
                        for r in before
                        if isinstance(r, w.Msg)
                        and r.name not in ("EVENT", "ACK", "NAK")
                        and r.fields["cmd_id"] == cid
                    ]
                    rest = [r for r in before if not (isinstance(r, w.Msg) and r in replies)]
                    self.inbox[:0] = [r for r in rest if not (isinstance(r, w.Msg) and r.name == "EVENT")]
                    names = [r.name for r in before if isinstance(r, w.Msg)]
                    return Exchange(replies, m, names)
            left = deadline - time.monotonic()
            if left <= 0:
                raise SpecClientError(f"no answer to cmd_id {cid} type {mtype:#04x}; inbox {self.inbox}")
            self.pump(min(left, 0.05))

    def command(self, msg_name: str, /, **fields: Any) -> Exchange:
        data, cid = self.build(msg_name, **fields)
        self.write(data)
        return self.take_answer(cid, w.BY_NAME[msg_name].type)

    def many(self, *cmds: tuple[str, dict[str, Any]]) -> list[Exchange]:
        """Several commands in one write; their answers in order."""
        built = [(self.build(n, **dict(f)), n) for n, f in cmds]
        self.write(b"".join(data for (data, _), _ in built))
        return [self.take_answer(cid, w.BY_NAME[n].type) for (_, cid), n in built]

    def wait_event(self, kind: str, timeout: float = 5.0, **match: int) -> w.Msg:
        deadline = time.monotonic() + timeout
        while True:
            for ev in self.events:
                if ev.fields["kind"] == w.EVENT_KIND[kind] and all(
                    ev.fields[k] == v for k, v in match.items()
                ):
                    self.events.remove(ev)
                    return ev
            left = deadline - time.monotonic()
            if left <= 0:
                raise SpecClientError(f"no EVENT {kind} {match}; events {self.events}")
            self.pump(min(left, 0.05))

    def status(self) -> dict[str, Any]:
        ex = self.command("GET_STATUS")
        assert ex.ok, ex
        assert [r.name for r in ex.replies] == ["STATUS"], ex
        return ex.replies[0].fields

    def motion(self) -> dict[str, Any]:
        ex = self.command("GET_MOTION")
        assert ex.ok, ex
        assert [r.name for r in ex.replies] == ["MOTION_STATUS"], ex
        return ex.replies[0].fields

    def wait_state(self, state: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st["state"] == w.STATE[state]:
                return st
            if time.monotonic() > deadline:
                raise SpecClientError(f"state {st['state']} never became {state}")
            self.pump(0.02)

    def wait_at_rest(self, timeout: float = 3.0) -> dict[str, Any]:
        """Until neither MOTOR_MOVING nor RELIEF_ACTIVE is set: CLEAR is then not BUSY (§8.2)."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if not st["flags"] & (w.FLAG_MOTOR_MOVING | w.FLAG_RELIEF_ACTIVE):
                return st
            if time.monotonic() > deadline:
                raise SpecClientError("plunger never came to rest")
            self.pump(0.02)


def _cementguard() -> str:
    exe = Path(sys.executable).with_name("cementguard")
    return str(exe) if exe.exists() else "cementguard"


@contextmanager
def simulator(*extra: str) -> Iterator[SpecClient]:
    """`cementguard sim --pty`, a raw pty open on it, a heartbeat thread; all ended on exit."""
    proc = subprocess.Popen(
        [_cementguard(), "sim", "--pty", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    stop = threading.Event()
    fd = -1
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().split()
        if line[:1] != ["PORT"]:
            raise SpecClientError(f"simulator printed {line!r}")
        log.debug("simulator pid %d on %s", proc.pid, line[1])
        fd = os.open(line[1], os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd)
        attrs = termios.tcgetattr(fd)
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        client = SpecClient(fd)
        client.write(b"\x00")  # §3.1 leading delimiter

        def beat() -> None:
            while not stop.wait(HEARTBEAT_PERIOD_S):
                if not client.heartbeats_on.is_set():
                    continue
                try:
                    client.heartbeat()
                except OSError:
                    return

        threading.Thread(target=beat, daemon=True).start()
        yield client
    finally:
        stop.set()
        if fd >= 0:
            os.close(fd)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
