"""The telemetry batch's byte layout without numpy: sizes and the batch header, for the parts of the
protocol that never touch a sample array (a STOP, its ACK, STATUS, events). `cementguard stop` imports
the protocol on its path and must not pay numpy's import (docs/performance.md); protocol.telemetry
builds the numpy dtype on top of these and checks that the two agree.
"""

from __future__ import annotations

import struct

from protocol.framing import MAX_PAYLOAD

SAMPLE_SIZE = 40
"""Bytes per sample (protocol version 2): protocol.telemetry.SAMPLE_DTYPE.itemsize."""
BATCH_HEADER = struct.Struct("<IIHH")  # first_index u32, period_us u32, count u16, reserved u16
MAX_BATCH_SAMPLES = (MAX_PAYLOAD - 4 - BATCH_HEADER.size) // SAMPLE_SIZE
"""The most samples that fit in framing.MAX_PAYLOAD after the 4-byte frame header and the batch header:
4 + 12 + 25 x 40 = 1016 bytes. Fixed for a protocol version (SPEC 11.2): a receiver rejects more."""
assert MAX_BATCH_SAMPLES == 25
