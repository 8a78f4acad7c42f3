"""The frame stream's codec (protocol/fluoro_stream.py): what is encoded is decoded, in any chunks;
what cannot be trusted is refused naming the field."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from protocol.fluoro_stream import (
    HEADER,
    FluoroStreamDecoder,
    FluoroStreamError,
    encode_end,
    encode_streamed_frame,
)


@pytest.mark.parametrize(("dtype", "depth"), [(np.uint8, 8), (np.uint16, 12), (np.uint16, 16)])
def test_a_frame_round_trips(dtype: type, depth: int) -> None:
    px = (np.arange(40 * 30).reshape(40, 30) % (1 << depth)).astype(dtype)
    data = encode_streamed_frame(7, 123_456_789_000, "ap", depth, 0.2, px)
    assert len(data) == HEADER.size + px.nbytes
    (frame,) = FluoroStreamDecoder().feed(data)
    assert (frame.index, frame.t_us, frame.view, frame.bit_depth) == (7, 123_456_789_000, "ap", depth)
    assert frame.pixel_mm == pytest.approx(0.2)
    assert frame.pixels.dtype == dtype
    assert np.array_equal(frame.pixels, px)


def test_frames_split_anywhere_are_decoded_whole_and_in_order() -> None:
    px = np.arange(256, dtype=np.uint8).reshape(16, 16)
    data = b"".join(encode_streamed_frame(i, i * 100, "lateral", 8, 0.3, px) for i in range(3)) + encode_end()
    decoder = FluoroStreamDecoder()
    got = []
    for k in range(0, len(data), 37):
        got += decoder.feed(data[k : k + 37])
    assert [f.index for f in got] == [0, 1, 2]
    assert decoder.ended


def _header(**changes: int) -> bytes:
    fields = {
        "magic": b"CGFS",
        "version": 1,
        "kind": 1,
        "header_len": HEADER.size,
        "index": 0,
        "t_us": 0,
        "view": 0,
        "depth": 8,
        "bpp": 1,
        "res": 0,
        "h": 16,
        "w": 16,
        "pixel_um": 200,
        "length": 256,
        "crc": zlib.crc32(bytes(256)),
    }
    fields.update(changes)
    return HEADER.pack(*fields.values())


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"version": 2}, "version 2 is not allowed; allowed 1"),
        ({"kind": 9}, "kind 9 is not allowed"),
        ({"view": 3}, "view 3 is not allowed"),
        ({"depth": 12}, "bit_depth 12 is not allowed; allowed 8..8"),
        ({"bpp": 3}, "bytes_per_px 3"),
        ({"h": 0}, "size 0x16"),
        ({"length": 100}, "payload_len 100 is not allowed; allowed height \\* width \\* bytes_per_px = 256"),
        ({"pixel_um": 0}, "pixel_um 0"),
        ({"crc": 1}, "payload crc32"),
    ],
)
def test_an_untrustworthy_message_is_refused_naming_the_field(changes: dict, match: str) -> None:
    with pytest.raises(FluoroStreamError, match=match):
        FluoroStreamDecoder().feed(_header(**changes) + bytes(256))


def test_bad_magic_is_refused() -> None:
    with pytest.raises(FluoroStreamError, match="magic"):
        FluoroStreamDecoder().feed(b"GARBAGE!" * 8)


def test_a_huge_announced_payload_is_refused_before_it_is_buffered() -> None:
    decoder = FluoroStreamDecoder()
    with pytest.raises(FluoroStreamError, match="size 65535x65535"):
        decoder.feed(_header(h=65535, w=65535, length=(65535 * 65535) & 0xFFFFFFFF))
    assert struct.calcsize("<4sBBHIQBBBBHHIII") == 40
