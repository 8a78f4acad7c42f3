"""cementguard wire protocol: pure encoding and decoding, no I/O. Both host and firmware import it.

See `protocol/SPEC.md` for the byte-level specification and `protocol/vectors.json` for golden frames.
"""

from typing import TYPE_CHECKING

from protocol.batch_layout import MAX_BATCH_SAMPLES, SAMPLE_SIZE
from protocol.codec import (
    HEADER_SIZE,
    PROTOCOL_VERSION,
    DecodeError,
    Frame,
    Header,
    MessageStream,
    Rejected,
    RejectReason,
    StreamCounters,
    decode_payload,
    encode_frame,
    encode_payload,
)
from protocol.enums import (
    COMMAND_TYPES,
    AlarmCode,
    BusyDetail,
    Capabilities,
    EventKind,
    Flags,
    Mode,
    MsgType,
    NakCode,
    PlanFlags,
    ResetCause,
    State,
    StopDetail,
    StopReason,
    StopSource,
)
from protocol.framing import MAX_PAYLOAD, FrameDecoder, FramingCounters
from protocol.messages import (
    REGISTRY,
    Ack,
    Arm,
    BodyError,
    CalibrateSpan,
    CalibrateVolume,
    CalibrationInfo,
    Clear,
    Command,
    DeviceInfo,
    EncodeError,
    Event,
    FieldValueError,
    GetCalibration,
    GetStatus,
    Heartbeat,
    Hello,
    Message,
    Nak,
    Pause,
    Resume,
    SetLimits,
    SetSyringe,
    SetTelemetry,
    Start,
    Status,
    Stop,
    SyringeInfo,
    TelemetryBatch,
    Zero,
)

if TYPE_CHECKING:
    from protocol.telemetry import SAMPLE_DTYPE


def __getattr__(name: str) -> object:
    """SAMPLE_DTYPE is numpy's: imported on first use, so that a STOP's path never loads numpy."""
    if name == "SAMPLE_DTYPE":
        from protocol.telemetry import SAMPLE_DTYPE

        return SAMPLE_DTYPE
    raise AttributeError(f"module 'protocol' has no attribute {name!r}")


__all__ = [
    "COMMAND_TYPES",
    "HEADER_SIZE",
    "MAX_BATCH_SAMPLES",
    "MAX_PAYLOAD",
    "PROTOCOL_VERSION",
    "REGISTRY",
    "SAMPLE_DTYPE",
    "SAMPLE_SIZE",
    "Ack",
    "AlarmCode",
    "Arm",
    "BodyError",
    "BusyDetail",
    "CalibrateSpan",
    "CalibrateVolume",
    "CalibrationInfo",
    "Capabilities",
    "Clear",
    "Command",
    "DecodeError",
    "DeviceInfo",
    "EncodeError",
    "Event",
    "EventKind",
    "FieldValueError",
    "Flags",
    "Frame",
    "FrameDecoder",
    "FramingCounters",
    "GetCalibration",
    "GetStatus",
    "Header",
    "Heartbeat",
    "Hello",
    "Message",
    "MessageStream",
    "Mode",
    "MsgType",
    "Nak",
    "NakCode",
    "Pause",
    "PlanFlags",
    "RejectReason",
    "Rejected",
    "ResetCause",
    "Resume",
    "SetLimits",
    "SetSyringe",
    "SetTelemetry",
    "Start",
    "State",
    "Status",
    "Stop",
    "StopDetail",
    "StopReason",
    "StopSource",
    "StreamCounters",
    "SyringeInfo",
    "TelemetryBatch",
    "Zero",
    "decode_payload",
    "encode_frame",
    "encode_payload",
]
