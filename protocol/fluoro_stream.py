"""The fluoroscopy frame stream: the simulator's frames to the host (docs/fluoroscopy.md, "Stream").

Not part of the serial wire protocol (SPEC.md): a second, one-way byte stream on its own socket
(`cementguard sim --frames-out`), read by the host's `sim://` frame source. Pure encoding and
decoding, no I/O, so both sides share one definition.

Every message is a fixed 40-byte header, little-endian, then `payload_len` bytes:

    offset size field
     0     4   magic        b"CGFS"
     4     1   version      1
     5     1   kind         1 = FRAME, 2 = END (the sender closes the stream cleanly)
     6     2   header_len   40 (a reader skips a longer header of a later minor version)
     8     4   index        frame number, strictly increasing (gaps = frames the renderer dropped)
    12     8   t_us         device clock of the pulse, microseconds
    20     1   view         0 = lateral, 1 = AP
    21     1   bit_depth    8..16
    22     1   bytes_per_px 1 (uint8) or 2 (uint16, little-endian)
    23     1   reserved     0
    24     2   height       rows
    26     2   width        columns
    28     4   pixel_um     pixel spacing at the vertebral body, micrometres
    32     4   payload_len  height * width * bytes_per_px (0 for END)
    36     4   crc32        zlib CRC-32 of the payload

Pixels row-major, row 0 at the top (superior), intensity (bright = more X-rays through). A reader
refuses a header it cannot trust (bad magic, unknown version, sizes that disagree, a payload larger
than `MAX_PAYLOAD`) and a payload whose CRC fails: the stream is then out of step and is dropped
(the host reports the source lost), never resynchronised by guessing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

__all__ = [
    "HEADER",
    "KIND_END",
    "KIND_FRAME",
    "MAGIC",
    "MAX_PAYLOAD",
    "STREAM_VERSION",
    "FluoroStreamDecoder",
    "FluoroStreamError",
    "StreamedFrame",
    "encode_end",
    "encode_streamed_frame",
]

MAGIC = b"CGFS"
STREAM_VERSION = 1
KIND_FRAME = 1
KIND_END = 2
HEADER = struct.Struct("<4sBBHIQBBBBHHIII")
MAX_SIDE = 4096
MAX_PAYLOAD = MAX_SIDE * MAX_SIDE * 2
"""A 4096 x 4096 16-bit frame: 32 MiB, the largest a reader buffers."""
_VIEWS = ("lateral", "ap")


class FluoroStreamError(ValueError):
    """The stream cannot be trusted any more; the message names the field, the value and the allowed."""


@dataclass(frozen=True, slots=True)
class StreamedFrame:
    index: int
    t_us: int
    view: str
    bit_depth: int
    pixel_mm: float
    pixels: np.ndarray


def encode_streamed_frame(
    index: int, t_us: int, view: str, bit_depth: int, pixel_mm: float, pixels: np.ndarray
) -> bytes:
    """Header and pixels of one frame."""
    if pixels.ndim != 2 or pixels.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"pixels: {pixels.dtype} {pixels.shape}; allowed a 2-D uint8 or uint16 array")
    h, w = pixels.shape
    data = np.ascontiguousarray(pixels, dtype=pixels.dtype.newbyteorder("<")).tobytes()
    header = HEADER.pack(
        MAGIC,
        STREAM_VERSION,
        KIND_FRAME,
        HEADER.size,
        index,
        t_us,
        _VIEWS.index(view),
        bit_depth,
        pixels.dtype.itemsize,
        0,
        h,
        w,
        round(pixel_mm * 1000),
        len(data),
        zlib.crc32(data),
    )
    return header + data


def encode_end() -> bytes:
    return HEADER.pack(MAGIC, STREAM_VERSION, KIND_END, HEADER.size, 0, 0, 0, 8, 1, 0, 0, 0, 0, 0, 0)


class FluoroStreamDecoder:
    """Incremental decoder: `feed(bytes)` returns the frames completed so far and whether the END
    message came; raises FluoroStreamError on anything it cannot trust (then the stream is over)."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self.ended = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[StreamedFrame]:
        self._buf += data
        out: list[StreamedFrame] = []
        while not self.ended and len(self._buf) >= HEADER.size:
            fields = HEADER.unpack_from(self._buf)
            magic, version, kind, header_len = fields[:4]
            if magic != MAGIC:
                raise FluoroStreamError(f"magic {bytes(magic)!r} is not allowed; allowed {MAGIC!r}")
            if version != STREAM_VERSION:
                raise FluoroStreamError(f"version {version} is not allowed; allowed {STREAM_VERSION}")
            if header_len < HEADER.size:
                raise FluoroStreamError(f"header_len {header_len} is not allowed; allowed >= {HEADER.size}")
            index, t_us, view, depth, bpp, _, h, w, pixel_um, length, crc = fields[4:]
            if kind == KIND_END:
                self.ended = True
                del self._buf[:header_len]
                break
            if kind != KIND_FRAME:
                raise FluoroStreamError(f"kind {kind} is not allowed; allowed {KIND_FRAME} or {KIND_END}")
            _check_frame_header(view, depth, bpp, h, w, pixel_um, length)
            if len(self._buf) < header_len + length:
                break
            data = bytes(self._buf[header_len : header_len + length])
            del self._buf[: header_len + length]
            if zlib.crc32(data) != crc:
                raise FluoroStreamError(
                    f"frame {index}: payload crc32 {zlib.crc32(data):#010x} != {crc:#010x}"
                )
            dtype = np.dtype("<u2") if bpp == 2 else np.dtype(np.uint8)
            pixels = np.frombuffer(data, dtype=dtype).reshape(h, w).astype(dtype.newbyteorder("="))
            out.append(StreamedFrame(index, t_us, _VIEWS[view], depth, pixel_um / 1000.0, pixels))
        return out


def _check_frame_header(view: int, depth: int, bpp: int, h: int, w: int, pixel_um: int, length: int) -> None:
    def bad(field: str, value: object, allowed: str) -> FluoroStreamError:
        return FluoroStreamError(f"{field} {value} is not allowed; allowed {allowed}")

    if view >= len(_VIEWS):
        raise bad("view", view, "0 (lateral) or 1 (AP)")
    if bpp not in (1, 2):
        raise bad("bytes_per_px", bpp, "1 or 2")
    if not 8 <= depth <= 8 * bpp:
        raise bad("bit_depth", depth, f"8..{8 * bpp} for {bpp} byte(s) per pixel")
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        raise bad("size", f"{h}x{w}", f"1..{MAX_SIDE} a side")
    if pixel_um == 0:
        raise bad("pixel_um", pixel_um, "> 0")
    if length != h * w * bpp:
        raise bad("payload_len", length, f"height * width * bytes_per_px = {h * w * bpp}")
