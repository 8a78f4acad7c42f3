"""Stop requests matched to the STOP events that answer them: the source and latency every stop is
recorded with."""

from __future__ import annotations

from host.stops import StopRequests, source_label
from protocol import AlarmCode, Event, EventKind, Flags, State, StopReason, StopSource


def _stop(source: StopSource, detail: int = 0, kind: EventKind = EventKind.STOP) -> Event:
    return Event(
        t_us=1_000_000,
        event_index=7,
        kind=kind,
        state=State.STOPPED,
        prev_state=State.INJECTING,
        reason=StopReason.FLUORO_STOP,
        source=source,
        alarm=AlarmCode.NONE,
        flags=Flags.HOST_LINK_OK,
        pressure_pa=2_000_000,
        delivered_nl=1_500_000,
        plunger_um=0,
        detail=detail,
    )


def test_a_request_is_matched_with_its_latency() -> None:
    stops = StopRequests()
    stops.requested(StopSource.FLUORO_OPERATOR, "dashboard key f", t=10.0)
    notes = stops.match(_stop(StopSource.FLUORO_OPERATOR), received_at=10.0123)
    assert notes == {
        "stop_source": "fluoroscopy (dashboard key)",
        "stop_origin": "dashboard key f",
        "stop_latency_ms": 12.3,
    }
    assert len(stops) == 0


def test_only_the_same_source_matches_and_the_oldest_first() -> None:
    stops = StopRequests()
    stops.requested(StopSource.OPERATOR, "key x", t=1.0)
    stops.requested(StopSource.FLUORO_REMOTE, "mqtt a", t=1.1)
    stops.requested(StopSource.FLUORO_REMOTE, "mqtt b", t=1.2)
    notes = stops.match(_stop(StopSource.FLUORO_REMOTE), received_at=1.3)
    assert notes["stop_origin"] == "mqtt a"
    assert len(stops) == 2


def test_an_unanswered_request_expires_and_never_matches_a_later_stop() -> None:
    stops = StopRequests(window_s=5.0)
    stops.requested(StopSource.OPERATOR, "key x", t=0.0)
    notes = stops.match(_stop(StopSource.OPERATOR), received_at=6.0)
    assert "stop_latency_ms" not in notes
    assert len(stops) == 0


def test_the_footswitch_line_latency_comes_from_the_controller() -> None:
    notes = StopRequests().match(_stop(StopSource.FLUORO_LINE, detail=5000), received_at=None)
    assert notes == {"stop_source": "fluoroscopy (footswitch line)", "line_latency_ms": 5.0}


def test_events_other_than_stops_get_no_annotations() -> None:
    stops = StopRequests()
    stops.requested(StopSource.OPERATOR, "key x", t=0.0)
    assert stops.match(_stop(StopSource.OPERATOR, kind=EventKind.STATE_CHANGE), received_at=0.1) == {}
    assert len(stops) == 1


def test_unknown_sources_still_get_a_label() -> None:
    assert source_label(99) == "source 99"
    assert source_label(StopSource.CONTROLLER) == "controller"


def test_an_image_stop_is_recorded_with_its_rule_frame_and_latency_from_the_frame() -> None:
    """The guard's request is stamped when its frame was read; the event names the rule (detail)."""
    stops = StopRequests()
    stops.requested(
        StopSource.FLUORO_IMAGE,
        "fluoroscopic guard: frame 42",
        t=20.0,
        notes={"guard_frame": 42, "guard_frame_t_us": 4_200_000},
    )
    notes = stops.match(_stop(StopSource.FLUORO_IMAGE, detail=3), received_at=20.031)
    assert notes == {
        "stop_source": "fluoroscopy (image guard)",
        "image_rule": "POSTERIOR_QUARTER",
        "stop_origin": "fluoroscopic guard: frame 42",
        "stop_latency_ms": 31.0,
        "guard_frame": 42,
        "guard_frame_t_us": 4_200_000,
    }


def test_an_image_stop_with_an_unknown_rule_shows_it_raw() -> None:
    notes = StopRequests().match(_stop(StopSource.FLUORO_IMAGE, detail=99), received_at=None)
    assert notes["image_rule"] == "99"
