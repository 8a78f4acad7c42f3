"""The receiving side under hostile input: arbitrary bytes, garbage between frames, bit flips, lost
bytes, overlong runs, sequence gaps. Nothing may raise, memory stays bounded, every error is counted,
and the receiver is back in step at the next delimiter.

The guarantee COBS gives, which these tests rely on and state precisely: an encoded frame contains no
0x00, so every 0x00 on the wire is a frame boundary. The receiver judges each run of bytes between two
0x00 on its own (COBS structure, length bound, CRC), so damage is confined to the run it falls in.
It does not protect a frame whose run was not opened by a 0x00: bytes that arrive after the last
delimiter and before a frame (garbage, the tail of a truncated frame) merge with that frame's run and
the frame is lost (the CRC rejects the merged run, except with probability 2^-16). Hence: garbage
must be followed by at least one 0x00 for the next frame to survive, and a sender that may have been
cut off mid-frame (reset, reconnect) should send a 0x00 before its next frame.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from cobs import cobs
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import framing
from protocol._crc import crc16
from protocol.codec import (
    HEADER,
    PROTOCOL_VERSION,
    SEQ_MODULO,
    Frame,
    MessageStream,
    Rejected,
    RejectReason,
    encode_frame,
)
from protocol.enums import MsgType, State
from protocol.framing import MAX_ENCODED, FrameDecoder
from protocol.messages import REGISTRY, Heartbeat, Message, Start, TelemetryBatch
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_SIZE, empty_samples
from tests.protocol.helpers import message_from_json, messages, same_message, vectors

VECTOR_FRAMES: list[tuple[str, bytes, Message]] = [
    (v["name"], bytes.fromhex(v["frame_hex"]), message_from_json(v)) for v in vectors()
]
ERROR_COUNTERS = ("crc_errors", "cobs_errors", "overlong", "runts")


def _errors(stream: MessageStream) -> int:
    return sum(getattr(stream.counters.framing, n) for n in ERROR_COUNTERS)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def _feed_all(stream: MessageStream, chunks: list[bytes]) -> list[Frame | Rejected]:
    out: list[Frame | Rejected] = []
    for chunk in chunks:
        out.extend(stream.feed(chunk))
        assert len(stream._framer._buf) <= MAX_ENCODED
    return out


def _heartbeat(seq: int) -> bytes:
    return encode_frame(Heartbeat(uptime_ms=seq, state=State.IDLE), seq)


# ---------------------------------------------------------------------------------------------
# Arbitrary input
# ---------------------------------------------------------------------------------------------

_nonzero = st.binary(min_size=MAX_ENCODED - 4, max_size=MAX_ENCODED + 40).map(
    lambda b: b.replace(b"\x00", b"\x5a")
)


@st.composite
def _flipped_frame(draw: st.DrawFn) -> bytes:
    frame = bytearray(encode_frame(draw(messages()), draw(st.integers(0, SEQ_MODULO - 1))))
    i = draw(st.integers(0, len(frame) - 1))
    frame[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(frame)


def _lie_about_count(n: int) -> bytes:
    """A batch header claiming n samples, more than TelemetryBatch would encode."""
    one, two = (
        list(BATCH_HEADER.unpack_from(TelemetryBatch(0, 1000, empty_samples(k)).pack_body())) for k in (1, 2)
    )
    (index,) = (i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b)
    one[index] = n
    return BATCH_HEADER.pack(*one)


@st.composite
def _crc_good_frame(draw: st.DrawFn) -> bytes:
    """A frame that passes framing and CRC with a plausible header (mostly this version, a known type)
    and a body of the right length give or take one byte, its bytes arbitrary: what reaches the
    message decoder from a buggy or newer peer."""
    version = draw(st.sampled_from([PROTOCOL_VERSION, PROTOCOL_VERSION, PROTOCOL_VERSION, 0, 2, 255]))
    msg_type = draw(st.one_of(st.sampled_from(list(MsgType)), st.integers(0, 255)))
    if msg_type == MsgType.TELEMETRY_BATCH:
        n = draw(st.integers(0, MAX_BATCH_SAMPLES + 1))
        size = BATCH_HEADER.size + n * SAMPLE_SIZE
        if n <= MAX_BATCH_SAMPLES:
            first_index = draw(st.integers(0, 0xFFFF_FFFF))
            head = TelemetryBatch(first_index, 1000, empty_samples(n)).pack_body()[: BATCH_HEADER.size]
        else:
            head = _lie_about_count(n)
    elif msg_type in REGISTRY:
        size, head = REGISTRY[MsgType(msg_type)].body_size(), b""
    else:
        size, head = draw(st.integers(0, 64)), b""
    size = max(len(head), size + draw(st.sampled_from([0, 0, 0, 0, -1, 1])))
    # A header claiming one sample more than the maximum may describe a body that no frame can carry
    # (v2: 12 + 26 x 40 > MAX_PAYLOAD - 4): such a frame is cut to what fits, still lying about count.
    size = min(size, framing.MAX_PAYLOAD - HEADER.size)
    body = head + draw(st.binary(min_size=size - len(head), max_size=size - len(head)))
    seq = draw(st.integers(0, SEQ_MODULO - 1))
    return framing.encode(HEADER.pack(version, msg_type, seq) + body)


_piece = st.one_of(
    st.binary(max_size=300),  # raw garbage, zeros included
    messages().map(lambda m: encode_frame(m, 0)),  # valid frames
    st.binary(max_size=framing.MAX_PAYLOAD).map(framing.encode),  # CRC-good, arbitrary header and body
    _flipped_frame(),  # a valid frame with one bit flipped
    _crc_good_frame(),  # CRC-good, plausible header, arbitrary body
    _nonzero,  # runs around the length bound
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_piece, max_size=12), st.lists(st.integers(0, 1 << 16), max_size=30))
def test_arbitrary_bytes_in_any_chunking_never_raise_and_stay_bounded(
    pieces: list[bytes], cuts: list[int]
) -> None:
    data = b"".join(pieces)
    chunks = _split(data, cuts)

    decoder = FrameDecoder()
    payloads: list[bytes] = []
    for chunk in chunks:
        payloads.extend(decoder.feed(chunk))
        assert len(decoder._buf) <= MAX_ENCODED
    assert decoder.counters.bytes_in == len(data)
    assert all(len(p) <= framing.MAX_PAYLOAD for p in payloads)

    stream = MessageStream()
    out = _feed_all(stream, chunks)
    assert len(out) == len(payloads) == stream.counters.framing.frames
    rejects = [r for r in out if isinstance(r, Rejected)]
    c = stream.counters
    assert len(rejects) == c.version_mismatches + c.unknown_types + c.bad_lengths + c.bad_values
    assert len(stream.recent_rejects) == min(len(rejects), 16)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4000), st.lists(st.integers(1, 700), min_size=1, max_size=10))
def test_feeding_memoryview_bytearray_and_bytes_is_the_same(data: bytes, sizes: list[int]) -> None:
    results = []
    for kind in (bytes, bytearray, memoryview):
        stream = MessageStream()
        out: list[Any] = []
        pos = i = 0
        while pos < len(data):
            n = sizes[i % len(sizes)]
            out.extend(stream.feed(kind(data[pos : pos + n])))
            pos, i = pos + n, i + 1
        results.append((repr(out), repr(stream.counters)))
    assert results[0] == results[1] == results[2]


# ---------------------------------------------------------------------------------------------
# Frames in garbage
# ---------------------------------------------------------------------------------------------

_garbage = st.one_of(st.binary(max_size=200), _nonzero)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(_garbage, messages()), min_size=1, max_size=10),
    _garbage,
    st.lists(st.integers(0, 1 << 16), max_size=40),
)
def test_frames_embedded_in_garbage_are_all_recovered_in_order(
    items: list[tuple[bytes, Message]], tail: bytes, cuts: list[int]
) -> None:
    """Garbage (any bytes, zeros included, overlong runs included) then 0x00 then a frame, repeated,
    then unterminated garbage; split at random points. Every frame comes out, in order, and nothing
    else does. The 0x00 after the garbage is what COBS needs (module docstring)."""
    wire = b"".join(garbage + b"\x00" + encode_frame(m, seq) for seq, (garbage, m) in enumerate(items)) + tail
    stream = MessageStream()
    out = _feed_all(stream, _split(wire, cuts))
    frames = [f for f in out if isinstance(f, Frame)]
    assert len(frames) == len(items)
    for seq, (frame, (_, message)) in enumerate(zip(frames, items, strict=True)):
        assert frame.header.seq == seq
        assert same_message(frame.message, message)
    assert stream.counters.lost_frames == 0


def test_garbage_without_a_delimiter_costs_exactly_the_next_frame() -> None:
    """The limit of the COBS guarantee: garbage glued to a frame's start takes that frame with it."""
    stream = MessageStream()
    out = stream.feed(b"\x07\x41\x42" + _heartbeat(0) + _heartbeat(1))
    assert [f.header.seq for f in out if isinstance(f, Frame)] == [1]
    assert _errors(stream) == 1
    assert stream.counters.lost_frames == 0  # seq 0 was never seen: nothing to compare a gap with
    # With a leading delimiter from the sender, the same garbage costs nothing.
    stream = MessageStream()
    out = stream.feed(b"\x07\x41\x42" + b"\x00" + _heartbeat(0) + _heartbeat(1))
    assert [f.header.seq for f in out if isinstance(f, Frame)] == [0, 1]


# ---------------------------------------------------------------------------------------------
# Corrupted frames: bit flips, lost bytes, truncation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "frame", "message"), VECTOR_FRAMES, ids=[v[0] for v in VECTOR_FRAMES])
def test_every_single_bit_flip_is_rejected(name: str, frame: bytes, message: Message) -> None:
    """Flip each bit of the frame, delimiter included (a 0x00 is appended so the run still ends).
    No flip may yield a frame, and the next frame is received intact."""
    follow = _heartbeat(9)
    for i in range(len(frame)):
        for bit in range(8):
            bad = bytearray(frame)
            bad[i] ^= 1 << bit
            stream = MessageStream()
            out = stream.feed(bytes(bad) + b"\x00")
            assert out == [], (name, i, bit, out)
            assert _errors(stream) >= 1, (name, i, bit)
            after = stream.feed(follow)
            assert len(after) == 1
            assert isinstance(after[0], Frame)
            assert after[0].header.seq == 9


@pytest.mark.parametrize(("name", "frame", "message"), VECTOR_FRAMES, ids=[v[0] for v in VECTOR_FRAMES])
def test_every_lost_byte_is_rejected(name: str, frame: bytes, message: Message) -> None:
    """A UART overrun drops one byte anywhere before the delimiter: the frame is rejected, the next
    one is received."""
    for i in range(len(frame) - 1):
        stream = MessageStream()
        out = stream.feed(frame[:i] + frame[i + 1 :] + _heartbeat(3))
        assert len(out) == 1, (name, i, out)
        assert isinstance(out[0], Frame)
        assert out[0].header.seq == 3
        assert _errors(stream) == 1


@pytest.mark.parametrize(("name", "frame", "message"), VECTOR_FRAMES, ids=[v[0] for v in VECTOR_FRAMES])
def test_truncated_frame_then_valid_frames(name: str, frame: bytes, message: Message) -> None:
    """Truncated at every point. If the delimiter still arrives (bytes lost at the tail), only the
    truncated frame is lost; if the delimiter was lost too, the truncated tail merges with the next
    frame's run, which is lost as well, and the frame after it is received."""
    for k in range(1, len(frame) - 1):
        stream = MessageStream()
        out = stream.feed(frame[:k] + b"\x00" + _heartbeat(5))
        assert [f.header.seq for f in out if isinstance(f, Frame)] == [5], (name, k)
        assert len(out) == 1

        stream = MessageStream()
        out = stream.feed(frame[:k] + _heartbeat(5) + _heartbeat(6))
        assert [f.header.seq for f in out if isinstance(f, Frame)] == [6], (name, k)
        assert len(out) == 1
        assert _errors(stream) == 1


# ---------------------------------------------------------------------------------------------
# Length bound
# ---------------------------------------------------------------------------------------------


def _largest_legal_frame() -> bytes:
    """A MAX_PAYLOAD payload with no zero byte anywhere, CRC included: its COBS form is exactly
    MAX_ENCODED long, the worst case the length bound must admit."""
    for filler in range(1, 256):
        payload = HEADER.pack(PROTOCOL_VERSION, 0x55, 0x0101) + bytes([filler]) * (framing.MAX_PAYLOAD - 4)
        crc = crc16(payload).to_bytes(2, "little")
        if 0 not in crc:
            return framing.encode(payload)
    raise AssertionError("no zero-free CRC found")


@pytest.mark.parametrize("chunk", [1, 5, 500, 4096])
def test_largest_legal_frame_passes_the_length_bound(chunk: int) -> None:
    frame = _largest_legal_frame()
    assert len(frame) == MAX_ENCODED + 1
    stream = MessageStream()
    out = _feed_all(stream, [frame[i : i + chunk] for i in range(0, len(frame), chunk)])
    assert len(out) == 1
    assert isinstance(out[0], Rejected)
    assert out[0].reason == RejectReason.UNKNOWN_TYPE  # 0x55: got through framing and the CRC
    assert stream.counters.overlong == 0


@pytest.mark.parametrize("chunk", [1, 7, 1000, 1032, 5000])
@pytest.mark.parametrize("run", [MAX_ENCODED + 1, MAX_ENCODED + 2, 3 * MAX_ENCODED, 10_000])
def test_overlong_runs_are_counted_once_and_dropped(chunk: int, run: int) -> None:
    wire = _heartbeat(0) + b"\x33" * run + b"\x00" + _heartbeat(1) + b"\x44" * run + b"\x00" + _heartbeat(2)
    stream = MessageStream()
    out = _feed_all(stream, [wire[i : i + chunk] for i in range(0, len(wire), chunk)])
    assert [f.header.seq for f in out if isinstance(f, Frame)] == [0, 1, 2]
    assert stream.counters.overlong == 2
    assert stream.counters.framing.cobs_errors + stream.counters.crc_errors == 0
    assert stream.counters.framing.bytes_dropped == 2 * run


def test_a_run_of_exactly_max_encoded_is_judged_not_dropped_as_overlong() -> None:
    stream = MessageStream()
    assert stream.feed(b"\x33" * MAX_ENCODED + b"\x00") == []
    assert stream.counters.overlong == 0
    assert stream.counters.framing.cobs_errors == 1


def test_reset_drops_a_partial_frame() -> None:
    frame = _heartbeat(0)
    stream = MessageStream()
    assert stream.feed(frame[:5]) == []
    stream.reset()
    out = stream.feed(frame)
    assert len(out) == 1
    assert _errors(stream) == 0


# ---------------------------------------------------------------------------------------------
# Counters
# ---------------------------------------------------------------------------------------------


def test_crc_errors_are_counted_one_per_frame() -> None:
    good = _heartbeat(0)
    payload = HEADER.pack(PROTOCOL_VERSION, MsgType.HEARTBEAT, 0) + bytes(8)
    bad = cobs.encode(payload + (crc16(payload) ^ 0x8000).to_bytes(2, "little")) + b"\x00"
    stream = MessageStream()
    out = stream.feed(bad + good + bad + bad)
    assert len(out) == 1
    assert stream.counters.crc_errors == 3
    assert stream.counters.framing.bytes_dropped == 3 * (len(bad) - 1)


def test_version_and_type_rejects_are_counted_and_kept() -> None:
    v2 = encode_frame(Start(cmd_id=5), 0, version=PROTOCOL_VERSION + 1)
    unknown = framing.encode(HEADER.pack(PROTOCOL_VERSION, 0x3E, 1) + b"\x06\x00\x00\x00")
    stream = MessageStream()
    out = stream.feed(v2 + unknown + unknown + v2 + _heartbeat(4))
    assert [r.reason for r in out if isinstance(r, Rejected)] == [
        RejectReason.VERSION_MISMATCH,
        RejectReason.UNKNOWN_TYPE,
        RejectReason.UNKNOWN_TYPE,
        RejectReason.VERSION_MISMATCH,
    ]
    assert [r.cmd_id for r in out if isinstance(r, Rejected)] == [5, 6, 6, 5]
    assert stream.counters.version_mismatches == 2
    assert stream.counters.unknown_types == 2
    assert isinstance(out[-1], Frame)


def test_recent_rejects_are_bounded() -> None:
    unknown = framing.encode(HEADER.pack(PROTOCOL_VERSION, 0x3E, 0) + b"\x06\x00\x00\x00")
    stream = MessageStream()
    stream.feed(unknown * 100)
    assert stream.counters.unknown_types == 100
    assert len(stream.recent_rejects) == 16


@pytest.mark.parametrize(
    ("seqs", "lost"),
    [
        ([0, 1, 2, 3], 0),
        ([7], 0),  # the first frame sets the reference
        ([0, 1, 2, 5, 6], 2),
        ([65534, 65535, 0, 1], 0),  # wrap at 65536 is not a gap
        ([65535, 2], 2),  # 0 and 1 lost across the wrap
        ([65533, 1], 3),
        ([10, 12, 15, 16, 20], 1 + 2 + 3),
    ],
)
def test_lost_frames_from_sequence_gaps(seqs: list[int], lost: int) -> None:
    stream = MessageStream()
    stream.feed(b"".join(_heartbeat(s) for s in seqs))
    assert stream.counters.lost_frames == lost


@settings(max_examples=200, deadline=None)
@given(st.integers(0, SEQ_MODULO - 1), st.lists(st.integers(1, 300), max_size=40), st.integers(1, 64))
def test_lost_frames_equals_the_sum_of_gaps(start: int, steps: list[int], chunk: int) -> None:
    seqs = [start]
    for step in steps:
        seqs.append((seqs[-1] + step) % SEQ_MODULO)
    wire = b"".join(_heartbeat(s) for s in seqs)
    stream = MessageStream()
    _feed_all(stream, [wire[i : i + chunk] for i in range(0, len(wire), chunk)])
    assert stream.counters.lost_frames == sum(step - 1 for step in steps)


def test_rejected_frames_count_as_received_and_dropped_frames_as_lost() -> None:
    unknown = framing.encode(HEADER.pack(PROTOCOL_VERSION, 0x3E, 1) + b"\x06\x00\x00\x00")
    corrupt = bytearray(_heartbeat(3))
    corrupt[3] ^= 0x10
    stream = MessageStream()
    stream.feed(_heartbeat(0) + unknown + _heartbeat(2) + bytes(corrupt) + _heartbeat(4))
    assert stream.counters.unknown_types == 1
    assert _errors(stream) == 1
    assert stream.counters.lost_frames == 1  # seq 3, dropped as corrupt, shows up as a gap


def test_reset_forgets_the_sequence() -> None:
    stream = MessageStream()
    stream.feed(_heartbeat(100))
    stream.reset()
    stream.feed(_heartbeat(0))
    assert stream.counters.lost_frames == 0
