"""A lossy serial line between the host and `cementguard sim --pty`, for fault tests.

`LossyRelay` owns a new pseudo-terminal: the host opens `relay.port` as it would the simulator's pty,
and a thread copies bytes between it and the simulator's pty, damaging them on the way:

- per byte and per direction, at set rates: flip one bit, drop the byte, send it twice, or insert a
  random byte before it (`Noise`);
- one chosen device frame (`damage_next(predicate)`): the first frame from the device whose decoded
  message satisfies the predicate gets one byte flipped, so exactly that frame fails its CRC;
- `freeze()` / `thaw()`: hold everything the device sends (a frozen host's input buffer fills).

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

from protocol import Event, Frame, MessageStream, State, TelemetryBatch
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
                    self._write(self._device, self._noisy(data, self.to_device, "to_device"))
                else:
                    self.truth.feed(data)
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
