"""COBS framing with a zero delimiter and a CRC-16 trailer.

Wire form of one frame: ``COBS(payload || crc16_le(payload)) || 0x00``. COBS removes every zero
from the frame body, so a zero byte always marks a frame boundary: after garbage, a truncated frame
or a dropped byte the decoder loses at most the frame in progress and is back in step at the next
zero.
"""

from __future__ import annotations

from dataclasses import dataclass

from cobs import cobs

from protocol._crc import crc16

DELIMITER = b"\x00"
CRC_SIZE = 2
MAX_PAYLOAD = 1024
"""Largest payload (header + body), excluding the CRC. Bounds every buffer on both sides."""
MAX_ENCODED = MAX_PAYLOAD + CRC_SIZE + (MAX_PAYLOAD + CRC_SIZE) // 254 + 1
"""Largest COBS-encoded frame, excluding the delimiter."""


class FrameTooLongError(ValueError):
    pass


def encode(payload: bytes) -> bytes:
    """Frame one payload for the wire."""
    if len(payload) > MAX_PAYLOAD:
        raise FrameTooLongError(f"payload length {len(payload)} exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    body = payload + crc16(payload).to_bytes(2, "little")
    return bytes(cobs.encode(body)) + DELIMITER


@dataclass(slots=True)
class FramingCounters:
    frames: int = 0
    crc_errors: int = 0
    cobs_errors: int = 0
    """Bytes between delimiters that are not valid COBS (garbage, a lost byte)."""
    overlong: int = 0
    """Runs longer than MAX_ENCODED without a delimiter; dropped up to the next delimiter."""
    runts: int = 0
    """Decoded frames too short to hold a header and a CRC."""
    bytes_in: int = 0
    bytes_dropped: int = 0


RUNT_SIZE = 4 + CRC_SIZE  # header (version, type, seq) + CRC


class FrameDecoder:
    """Reassembles frames from bytes in any chunking; yields CRC-checked payloads.

    Memory is bounded by MAX_ENCODED whatever the input: an overlong run is discarded and counted.
    """

    __slots__ = ("_buf", "_discarding", "counters")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._discarding = False
        self.counters = FramingCounters()

    def reset(self) -> None:
        """Drop any partial frame (e.g. after a reconnect)."""
        self._buf.clear()
        self._discarding = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[bytes]:
        c = self.counters
        c.bytes_in += len(data)
        out: list[bytes] = []
        parts = bytes(data).split(DELIMITER)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i == last:
                # Unterminated tail: keep it, unless the run already exceeds any legal frame.
                if self._discarding:
                    c.bytes_dropped += len(part)
                elif len(self._buf) + len(part) > MAX_ENCODED:
                    c.overlong += 1
                    c.bytes_dropped += len(self._buf) + len(part)
                    self._buf.clear()
                    self._discarding = True
                else:
                    self._buf += part
                break
            if self._discarding:
                c.bytes_dropped += len(part)
                self._discarding = False
                continue
            if self._buf:
                self._buf += part
                encoded = bytes(self._buf)
                self._buf.clear()
            else:
                encoded = part
            if not encoded:
                continue  # back-to-back delimiters are idle fill, not errors
            if len(encoded) > MAX_ENCODED:
                c.overlong += 1
                c.bytes_dropped += len(encoded)
                continue
            payload = self._unframe(encoded)
            if payload is not None:
                out.append(payload)
        return out

    def _unframe(self, encoded: bytes) -> bytes | None:
        c = self.counters
        try:
            body = cobs.decode(encoded)
        except cobs.DecodeError:
            c.cobs_errors += 1
            c.bytes_dropped += len(encoded)
            return None
        if len(body) > MAX_PAYLOAD + CRC_SIZE:
            c.overlong += 1  # COBS slack lets a few more bytes through than any legal payload
            c.bytes_dropped += len(encoded)
            return None
        if len(body) < RUNT_SIZE:
            c.runts += 1
            c.bytes_dropped += len(encoded)
            return None
        payload = body[:-CRC_SIZE]
        if crc16(payload) != int.from_bytes(body[-CRC_SIZE:], "little"):
            c.crc_errors += 1
            c.bytes_dropped += len(encoded)
            return None
        c.frames += 1
        return bytes(payload)
