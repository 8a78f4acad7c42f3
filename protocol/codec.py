"""Messages to wire bytes and back: header, framing and message layouts put together.

Payload layout: ``version u8 | type u8 | seq u16 | body``. The header layout is frozen for every
protocol version, so that a peer can always read the version of a frame it cannot decode and answer
with a clear VERSION_MISMATCH.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field

from protocol import framing
from protocol.enums import EventKind, MsgType
from protocol.messages import REGISTRY, BodyError, FieldValueError, Message

PROTOCOL_VERSION = 2
"""Version 2: STATUS, EVENT and the telemetry sample carry delivered_nl and plunger_um (SPEC 11.5)."""
HEADER = struct.Struct("<BBH")
HEADER_SIZE = HEADER.size
SEQ_MODULO = 1 << 16


@dataclass(frozen=True, slots=True)
class Header:
    version: int
    msg_type: int
    seq: int


@dataclass(frozen=True, slots=True)
class Frame:
    header: Header
    message: Message


class RejectReason:
    VERSION_MISMATCH = "version_mismatch"
    UNKNOWN_TYPE = "unknown_type"
    BAD_LENGTH = "bad_length"
    BAD_VALUE = "bad_value"
    """Right length, but a field holds an undefined enum value; `Rejected.field_index` names it."""


@dataclass(frozen=True, slots=True)
class Rejected:
    """A frame that arrived intact (CRC good) but cannot be decoded here.

    Kept so the receiver can answer it: a device NAKs a command it cannot read (every command body
    starts with its cmd_id, so `cmd_id` is known whenever the body has two bytes).
    """

    header: Header
    reason: str
    body: bytes
    detail: str
    field_index: int | None = None
    """Layout index of the offending field for BAD_VALUE (what a NAK BAD_PARAM reports), else None."""

    @property
    def cmd_id(self) -> int | None:
        return int.from_bytes(self.body[:2], "little") if len(self.body) >= 2 else None


class DecodeError(ValueError):
    def __init__(self, rejected: Rejected) -> None:
        super().__init__(rejected.detail)
        self.rejected = rejected


def encode_payload(message: Message, seq: int, version: int = PROTOCOL_VERSION) -> bytes:
    return HEADER.pack(version, message.TYPE, seq % SEQ_MODULO) + message.pack_body()


def encode_frame(message: Message, seq: int, version: int = PROTOCOL_VERSION) -> bytes:
    """Wire bytes of one message: COBS frame with CRC and delimiter."""
    return framing.encode(encode_payload(message, seq, version))


def decode_payload(payload: bytes, version: int = PROTOCOL_VERSION) -> Frame:
    """Decode one CRC-checked payload; raises DecodeError with the reason it cannot."""
    if len(payload) < HEADER_SIZE:
        short = Rejected(Header(0, 0, 0), RejectReason.BAD_LENGTH, b"", "payload shorter than header")
        raise DecodeError(short)
    header = Header(*HEADER.unpack_from(payload))
    body = payload[HEADER_SIZE:]
    if header.version != version:
        raise DecodeError(
            Rejected(
                header,
                RejectReason.VERSION_MISMATCH,
                body,
                f"frame has protocol version {header.version}, this side speaks version {version}",
            )
        )
    try:
        cls = REGISTRY[MsgType(header.msg_type)]
    except (ValueError, KeyError):
        raise DecodeError(
            Rejected(header, RejectReason.UNKNOWN_TYPE, body, f"unknown message type 0x{header.msg_type:02X}")
        ) from None
    try:
        message = cls.unpack_body(body)
    except BodyError as exc:
        raise DecodeError(Rejected(header, RejectReason.BAD_LENGTH, body, str(exc))) from None
    except FieldValueError as exc:
        raise DecodeError(Rejected(header, RejectReason.BAD_VALUE, body, str(exc), exc.index)) from None
    return Frame(header, message)


def is_command_type(msg_type: int) -> bool:
    """True for the host-to-device command range, known or not: such frames always get ACK or NAK."""
    return 0x01 <= msg_type <= 0x3F and msg_type != MsgType.HEARTBEAT


@dataclass(slots=True)
class StreamCounters:
    """Framing counters plus what the message layer rejected."""

    framing: framing.FramingCounters
    version_mismatches: int = 0
    unknown_types: int = 0
    bad_lengths: int = 0
    bad_values: int = 0
    lost_frames: int = 0
    """Gaps in the peer's sequence numbers."""

    @property
    def crc_errors(self) -> int:
        return self.framing.crc_errors

    @property
    def overlong(self) -> int:
        return self.framing.overlong


@dataclass(slots=True)
class MessageStream:
    """Bytes in, decoded frames out; resynchronises on its own and counts everything it drops.

    `feed` returns Frame and Rejected items in arrival order. The last few rejects are also kept in
    `recent_rejects` (bounded) for diagnostics.
    """

    version: int = PROTOCOL_VERSION
    _framer: framing.FrameDecoder = field(default_factory=framing.FrameDecoder)
    counters: StreamCounters = field(init=False)
    recent_rejects: deque[Rejected] = field(default_factory=lambda: deque(maxlen=16))
    _expected_seq: int | None = None

    def __post_init__(self) -> None:
        self.counters = StreamCounters(self._framer.counters)

    def reset(self) -> None:
        """Forget partial input and sequence history (a new connection)."""
        self._framer.reset()
        self._expected_seq = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Frame | Rejected]:
        out: list[Frame | Rejected] = []
        for payload in self._framer.feed(data):
            try:
                frame = decode_payload(payload, self.version)
            except DecodeError as exc:
                rej = exc.rejected
                if rej.reason == RejectReason.VERSION_MISMATCH:
                    self.counters.version_mismatches += 1
                elif rej.reason == RejectReason.UNKNOWN_TYPE:
                    self.counters.unknown_types += 1
                elif rej.reason == RejectReason.BAD_VALUE:
                    self.counters.bad_values += 1
                else:
                    self.counters.bad_lengths += 1
                self._track_seq(rej.header.seq)
                self.recent_rejects.append(rej)
                out.append(rej)
                continue
            if frame.header.msg_type == MsgType.EVENT and frame.message.kind == EventKind.POWER_UP:  # type: ignore[attr-defined]
                self._expected_seq = None  # the peer restarted its sequence: not a loss
            self._track_seq(frame.header.seq)
            out.append(frame)
        return out

    def _track_seq(self, seq: int) -> None:
        if self._expected_seq is not None and seq != self._expected_seq:
            self.counters.lost_frames += (seq - self._expected_seq) % SEQ_MODULO
        self._expected_seq = (seq + 1) % SEQ_MODULO
