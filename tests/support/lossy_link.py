"""A lossy serial line between the host and `cementguard sim --pty`, for fault tests.

`LossyRelay` owns a new pseudo-terminal: the host opens `relay.port` as it would the simulator's pty,
and a thread copies bytes between it and the simulator's pty, damaging them on the way:

- per byte and per direction, at set rates: flip one bit, drop the byte, send it twice, or insert a
  random byte before it (`Noise`);
- one chosen device frame (`damage_next(predicate)`): the first frame from the device whose decoded
  message satisfies the predicate gets one byte flipped, so exactly that frame fails its CRC;
- `freeze()` / `thaw()`: hold everything the device sends (a frozen host's input buffer fills);
- `cut()` / `restore()`: drop everything both ways (a pulled cable).

The relay also decodes the device's clean stream (before any damage) as the truth of what the
device did: `relay.truth.violations` lists each stretch where the plunger moved forward outside
INJECTING, beyond the braking allowance right after a stop.
"""

from __future__ import annotations

import contextlib
import os
import random
import select
import threading
import tty
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from protocol import Event, EventKind, Frame, MessageStream, State, StopReason, TelemetryBatch
from protocol.messages import Message

BRAKE_ALLOWANCE_US = 150_000
"""Forward motion allowed after leaving INJECTING: the controller brakes within 80 ms (SPEC §9.1)."""


@dataclass(frozen=True)
class Noise:
    """Per-byte fault probabilities for one direction."""

    flip: float = 0.0
    drop: float = 0.0
    duplicate: float = 0.0
    insert: float = 0.0

    @classmethod
    def uniform(cls, rate: float) -> Noise:
        """`rate` per byte in total, split evenly between the four kinds of damage."""
        return cls(rate / 4, rate / 4, rate / 4, rate / 4)


@dataclass
class Truth:
    """What the device really sent, decoded from the undamaged stream."""

    events: list[Event] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    injecting: threading.Event = field(default_factory=threading.Event)
    """Set once a sample shows INJECTING."""
    stopped: threading.Event = field(default_factory=threading.Event)
    """Set once the device sends a STOP event."""
    samples: int = 0
    _stream: MessageStream = field(default_factory=MessageStream)
    _left_injecting_us: int | None = None
    _plunger_at_rest_um: int | None = None

    def feed(self, data: bytes) -> None:
        for item in self._stream.feed(data):
            if not isinstance(item, Frame):
                continue
            msg = item.message
            if isinstance(msg, Event):
                self.events.append(msg)
                if msg.kind == EventKind.STOP:
                    self.stopped.set()
            elif isinstance(msg, TelemetryBatch):
                self._check(msg)

    def _check(self, batch: TelemetryBatch) -> None:
        samples = batch.samples
        self.samples += len(samples)
        # The plunger's position, not the delivered volume: a forward creep after a relief back-off
        # stays below the delivered high-water mark but is still forward motion outside INJECTING.
        for state, t_us, plunger_um in zip(
            samples["state"].tolist(), samples["t_us"].tolist(), samples["plunger_um"].tolist(), strict=True
        ):
            if state == State.INJECTING:
                self.injecting.set()
                self._left_injecting_us = None
                self._plunger_at_rest_um = None
                continue
            if self._left_injecting_us is None:
                self._left_injecting_us = t_us
                continue
            if t_us - self._left_injecting_us < BRAKE_ALLOWANCE_US:
                continue
            if self._plunger_at_rest_um is None or plunger_um < self._plunger_at_rest_um:
                self._plunger_at_rest_um = plunger_um  # at rest, or backing off for relief
            elif plunger_um > self._plunger_at_rest_um + 8:  # 8 um (~0.5 uL): more than encoder jitter
                self.violations.append(
                    f"t={t_us / 1e6:.3f} s: plunger {plunger_um} um > {self._plunger_at_rest_um} um "
                    f"in state {state}"
                )
                self._plunger_at_rest_um = plunger_um


class LossyRelay:
    """Copies bytes between a new pty (`port`, for the host) and the simulator's pty, damaging them."""

    def __init__(
        self,
        device_port: str,
        *,
        to_host: Noise | None = None,
        to_device: Noise | None = None,
        seed: int = 1,
    ) -> None:
        self.to_host = to_host or Noise()
        self.to_device = to_device or Noise()
        self.truth = Truth()
        self.damaged: list[Message] = []
        self.bytes_damaged = {"to_host": 0, "to_device": 0}
        self._rng = random.Random(seed)
        self._target: Callable[[Message], bool] | None = None
        self._frozen = threading.Event()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._pending = bytearray()  # device bytes of the frame being assembled
        self._held = bytearray()  # device bytes held while frozen
        self._master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(self._master, False)
        self.port = os.ttyname(slave)
        self._slave = slave  # kept open so the pty survives the host closing and reopening it
        self._device = os.open(device_port, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self._device)
        self._thread = threading.Thread(target=self._run, name="lossy-relay", daemon=True)
        self._thread.start()

    # -- controls -------------------------------------------------------------------------------------

    def damage_next(self, predicate: Callable[[Message], bool]) -> None:
        """Damage the next device frame whose message satisfies `predicate` (once)."""
        self._target = predicate

    def cut(self) -> None:
        """Drop every byte both ways, as a pulled cable (the device's watchdog then trips)."""
        self._cut.set()

    def restore(self) -> None:
        self._cut.clear()

    def freeze(self) -> None:
        """Hold the device's bytes (as a stopped host process does not read its port)."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self._master, self._slave, self._device):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the copying thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self._master, self._device], [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""  # the host closed its side (EIO on a pty master): wait for it to reopen
                if not data:
                    continue
                if fd == self._master:
                    if not self._cut.is_set():
                        self._write(self._device, self._noisy(data, self.to_device, "to_device"))
                else:
                    self.truth.feed(data)
                    if not self._cut.is_set():
                        self._from_device(data)
            if not self._frozen.is_set() and self._held:
                held, self._held = bytes(self._held), bytearray()
                self._write(self._master, held)

    def _from_device(self, data: bytes) -> None:
        out = bytearray()
        for byte in data:
            self._pending.append(byte)
            if byte == 0:
                out += self._frame(bytes(self._pending))
                self._pending.clear()
        out = bytearray(self._noisy(bytes(out), self.to_host, "to_host"))
        if self._frozen.is_set() or self._held:
            self._held += out
        else:
            self._write(self._master, bytes(out))

    def _frame(self, frame: bytes) -> bytes:
        target = self._target
        if target is None or len(frame) < 3:
            return frame
        decoded = [i.message for i in MessageStream().feed(frame) if isinstance(i, Frame)]
        if not decoded or not target(decoded[0]):
            return frame
        self._target = None
        self.damaged.append(decoded[0])
        damaged = bytearray(frame)
        middle = len(frame) // 2
        damaged[middle] = damaged[middle] ^ 0x10 or 0x01  # never a new delimiter
        return bytes(damaged)

    def _noisy(self, data: bytes, noise: Noise, direction: str) -> bytes:
        if not (noise.flip or noise.drop or noise.duplicate or noise.insert):
            return data
        rng = self._rng
        out = bytearray()
        for byte in data:
            r = rng.random()
            if r < noise.flip:
                out.append(byte ^ (1 << rng.randrange(8)))
            elif r < noise.flip + noise.drop:
                pass
            elif r < noise.flip + noise.drop + noise.duplicate:
                out += bytes((byte, byte))
            elif r < noise.flip + noise.drop + noise.duplicate + noise.insert:
                out += bytes((rng.randrange(256), byte))
            else:
                out.append(byte)
                continue
            self.bytes_damaged[direction] += 1
        return bytes(out)

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        view = memoryview(data)
        stalls = 0
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                stalls += 1
                if stalls > 20:
                    return  # nobody reads this side for a second: the bytes are lost
                select.select([], [fd], [], 0.05)
                continue
            except OSError:
                return  # the other side is gone: the bytes are lost, as on a pulled cable
            view = view[n:]


@contextlib.contextmanager
def lossy_relay(device_port: str, **kwargs: object) -> Iterator[LossyRelay]:
    relay = LossyRelay(device_port, **kwargs)  # type: ignore[arg-type]
    try:
        yield relay
    finally:
        relay.close()


@dataclass
class LossyRun:
    """One `run_plan` through a `LossyRelay`: how it ended, and what the device really did."""

    rate: float
    seed: int
    code: int | None
    """The exit code; None: the run did not end within the bound (hung)."""
    text: str
    truth_stops: list[StopReason]
    violations: list[str]
    bytes_damaged: dict[str, int]
    recording_complete: bool | None

    @property
    def last_words(self) -> str:
        """The run's verdict lines (plan completed, safety stop, link lost, device: ...)."""
        keys = ("plan completed", "safety stop", "stopped", "link lost", "link failure", "device", "refused")
        return " | ".join(line.strip() for line in self.text.splitlines() if line.strip().startswith(keys))

    @property
    def outcome(self) -> str:
        return {None: "hung", 0: "completed", 3: "stopped", 4: "link lost"}.get(
            self.code, f"exit {self.code}"
        )

    def problems(self) -> list[str]:
        """Everything wrong with this run: a hang, an exit code that disagrees with its message or
        with what the device did, forward motion outside INJECTING, a damaged recording."""
        out = list(self.violations)
        text = self.text
        if self.code is None:
            return [*out, "hung"]
        expected = {0: ("plan completed",), 3: ("safety stop", "stopped"), 4: ("link lost", "link failure")}
        words = expected.get(self.code)
        if words is None:
            out.append(f"unexpected exit code {self.code}")
        elif not any(w in text for w in words):
            out.append(f"exit {self.code} without saying {' or '.join(words)}")
        completed = StopReason.VOLUME_LIMIT in self.truth_stops
        if self.code == 0 and not completed:
            out.append("exit 0 but the device never reached VOLUME_LIMIT")
        if self.code == 3 and completed and "completed" not in text:
            out.append("exit 3 for a plan the device completed")
        if self.recording_complete is False:
            out.append("recording incomplete")
        return out


async def run_through_relay(
    plan_path: str,
    record_root: str,
    *,
    rate: float,
    seed: int,
    time_scale: float = 5.0,
    bound_s: float = 60.0,
) -> LossyRun:
    """`cementguard sim --pty --time-scale X` behind a relay with `rate` noise per byte in both
    directions, and `run_plan` (auto-resume 0.2 s) through it."""
    import asyncio
    import io

    from rich.console import Console

    from host.client import LinkOptions
    from host.plan import load_plan
    from host.run import run_plan
    from tests.support.wire_client import simulator

    out = io.StringIO()
    noise = Noise.uniform(rate)
    with (
        simulator("--pty", "--time-scale", f"{time_scale:g}") as (_proc, device_port),
        lossy_relay(device_port, to_host=noise, to_device=noise, seed=seed) as relay,
    ):
        try:
            code: int | None = await asyncio.wait_for(
                run_plan(
                    relay.port,
                    load_plan(Path(plan_path)),
                    mixed_ago_s=240.0,
                    record_root=Path(record_root),
                    auto_resume_s=0.2,
                    options=LinkOptions(time_scale=time_scale),
                    console=Console(file=out, width=200),
                ),
                bound_s,
            )
        except TimeoutError:
            code = None
        truth_stops = [e.reason for e in relay.truth.events if e.kind == EventKind.STOP]
        violations = list(relay.truth.violations)
        damaged = dict(relay.bytes_damaged)
    return LossyRun(
        rate,
        seed,
        code,
        out.getvalue(),
        truth_stops,
        violations,
        damaged,
        _recording_complete(Path(record_root)),
    )


def _recording_complete(root: Path) -> bool | None:
    from host.recording import Recording, RecordingError

    runs = sorted(root.iterdir()) if root.exists() else []
    if not runs:
        return None
    try:
        return Recording.open(runs[-1]).is_complete
    except RecordingError:
        return False
