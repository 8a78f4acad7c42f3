"""Telemetry sample layout, shared by the C struct, the wire and the host's numpy arrays.

One sample is 40 bytes (protocol version 2), little-endian, naturally aligned; a TELEMETRY_BATCH body
is a 12-byte batch header followed by `count` samples. The host decodes a batch with one
`np.frombuffer` call.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from protocol.batch_layout import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_SIZE

__all__ = [
    "BATCH_HEADER",
    "MAX_BATCH_SAMPLES",
    "MAX_DIVIDER",
    "SAMPLE_DTYPE",
    "SAMPLE_SIZE",
    "SAMPLE_STRUCT",
    "SampleArray",
    "concat_samples",
    "empty_samples",
    "pack_sample",
]

SAMPLE_DTYPE: np.dtype[Any] = np.dtype(
    [
        ("t_us", "<u8"),  # controller time since power-up, microseconds
        ("pressure_pa", "<i4"),  # syringe pressure, Pa (gauge); invalid while flags has SENSOR_FAULT
        ("delivered_nl", "<i4"),  # cement delivered since ARM, nL (1 nL = 1e-12 m^3); never decreases
        ("plunger_um", "<i4"),  # plunger position from home, um, forward positive
        ("flow_nl_s", "<i4"),  # measured flow (plunger speed x bore area), nL/s
        ("flow_setpoint_nl_s", "<u4"),  # flow the controller commands (throttled); 0 outside INJECTING
        ("motor_um_s", "<i4"),  # commanded plunger speed, um/s, forward positive
        ("viscosity_pas", "<f4"),  # online apparent viscosity estimate, Pa s; NaN when not valid
        ("flags", "<u2"),  # protocol.enums.Flags
        ("state", "u1"),  # protocol.enums.State
        ("stop_reason", "u1"),  # protocol.enums.StopReason of the latched stop, else NONE
    ]
)
assert SAMPLE_DTYPE.itemsize == SAMPLE_SIZE
MAX_DIVIDER = 1000
"""SET_TELEMETRY.divider range is 0 (off) or 1..MAX_DIVIDER: 1 kHz down to 1 Hz."""

SampleArray = npt.NDArray[Any]


def empty_samples(n: int = 0) -> SampleArray:
    return np.zeros(n, dtype=SAMPLE_DTYPE)


def pack_sample(
    t_us: int,
    pressure_pa: int,
    delivered_nl: int,
    plunger_um: int,
    flow_nl_s: int,
    flow_setpoint_nl_s: int,
    motor_um_s: int,
    viscosity_pas: float,
    flags: int,
    state: int,
    stop_reason: int,
) -> bytes:
    """One sample as bytes: what firmware appends to its batch buffer each sample period."""
    return SAMPLE_STRUCT.pack(
        t_us,
        pressure_pa,
        delivered_nl,
        plunger_um,
        flow_nl_s,
        flow_setpoint_nl_s,
        motor_um_s,
        viscosity_pas,
        flags,
        state,
        stop_reason,
    )


SAMPLE_STRUCT = struct.Struct("<QiiiiIifHBB")
"""The sample as a struct, for firmware that packs samples into a preallocated batch buffer."""
assert SAMPLE_STRUCT.size == SAMPLE_SIZE


def concat_samples(arrays: list[SampleArray]) -> SampleArray:
    """Join sample arrays. np.concatenate walks structured dtypes field by field in Python (slow for
    thousands of batches); joining the raw bytes is about 100x faster."""
    if not arrays:
        return empty_samples()
    return np.frombuffer(bytearray().join(a.data for a in arrays), dtype=SAMPLE_DTYPE)
