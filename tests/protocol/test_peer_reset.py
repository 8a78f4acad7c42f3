"""Sequence tracking across a peer reset, and joining telemetry arrays."""

from __future__ import annotations

import numpy as np

from protocol import (
    AlarmCode,
    Event,
    EventKind,
    Flags,
    Heartbeat,
    MessageStream,
    ResetCause,
    State,
    StopReason,
    StopSource,
    encode_frame,
)
from protocol.telemetry import SAMPLE_DTYPE, concat_samples


def _event(kind: EventKind, index: int) -> Event:
    return Event(
        t_us=0,
        event_index=index,
        kind=kind,
        state=State.IDLE,
        prev_state=State.IDLE,
        reason=StopReason.NONE,
        source=StopSource.NONE,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK,
        pressure_pa=0,
        delivered_nl=0,
        plunger_um=0,
        detail=int(ResetCause.WATCHDOG),
    )


def test_a_power_up_event_restarts_sequence_tracking_without_counting_a_loss() -> None:
    s = MessageStream()
    s.feed(encode_frame(Heartbeat(1), 500) + encode_frame(Heartbeat(2), 501))
    s.feed(encode_frame(_event(EventKind.POWER_UP, 0), 0) + encode_frame(Heartbeat(3), 1))
    assert s.counters.lost_frames == 0


def test_any_other_restart_of_the_sequence_is_counted_as_loss() -> None:
    s = MessageStream()
    s.feed(encode_frame(Heartbeat(1), 500))
    s.feed(encode_frame(_event(EventKind.STATE_CHANGE, 3), 0))
    assert s.counters.lost_frames == (0 - 501) % 65536


def test_concat_samples_keeps_order_and_values() -> None:
    a = np.zeros(3, SAMPLE_DTYPE)
    a["t_us"] = [1, 2, 3]
    a["pressure_pa"] = [-5, 0, 7]
    b = np.zeros(2, SAMPLE_DTYPE)
    b["t_us"] = [4, 5]
    b["viscosity_pas"] = [np.nan, 2.5]
    joined = concat_samples([a, b])
    assert joined.dtype == SAMPLE_DTYPE
    assert joined["t_us"].tolist() == [1, 2, 3, 4, 5]
    assert joined["pressure_pa"].tolist() == [-5, 0, 7, 0, 0]
    assert np.isnan(joined["viscosity_pas"][3])
    assert joined["viscosity_pas"][4] == 2.5
    assert len(concat_samples([])) == 0
