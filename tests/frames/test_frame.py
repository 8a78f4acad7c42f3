"""The frame contract: a `FluoroFrame` is always well-formed, and every source holds its frames to the
same promises (size, depth, rate, strictly increasing index and time) with messages that name the
field, the value and what is allowed."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from host.errors import CementguardError
from host.frames import (
    FluoroFrame,
    FrameRejected,
    FrameSource,
    FrameSourceError,
    FrameSourceLost,
    FrameStreamEnded,
    open_frame_source,
)
from host.frames.memory import PushFrameSource


def frame(
    index: int = 0, t_us: int = 0, shape: tuple[int, int] = (64, 64), depth: int = 12, **kw: object
) -> FluoroFrame:
    dtype = np.uint8 if depth == 8 else np.uint16
    fields: dict[str, object] = {
        "index": index,
        "t_us": t_us,
        "view": "lateral",
        "pixels": np.full(shape, (1 << depth) - 1, dtype=dtype),
        "bit_depth": depth,
        "pixel_mm": 0.3,
        "source": "mem://t",
    }
    fields.update(kw)
    return FluoroFrame(**fields)  # type: ignore[arg-type]


def test_a_good_frame_is_accepted_and_reports_its_range() -> None:
    f = frame(depth=12)
    assert f.shape == (64, 64)
    assert f.max_value == 4095


@pytest.mark.parametrize(
    ("kw", "field", "allowed"),
    [
        ({"view": "oblique"}, "view", "lateral or ap"),
        ({"pixels": np.zeros((4, 64, 64), np.uint16)}, "pixels shape", "2-D"),
        ({"pixels": np.zeros((64, 64), np.float32)}, "pixels dtype", "uint8 or uint16"),
        ({"pixels": np.zeros((8, 64), np.uint16)}, "size", "16..4096"),
        ({"bit_depth": 7}, "bit_depth", "8..16"),
        ({"pixels": np.zeros((64, 64), np.uint8), "bit_depth": 12}, "bit_depth", "at most 8 for uint8"),
        (
            {"pixels": np.full((64, 64), 4096, np.uint16), "bit_depth": 12},
            "pixel value 4096",
            "below 2\\*\\*12",
        ),
        ({"pixel_mm": float("nan")}, "pixel_mm", "> 0 mm"),
        ({"pixel_mm": 0.0}, "pixel_mm", "> 0 mm"),
        ({"index": -1}, "index", ">= 0"),
    ],
)
def test_a_malformed_frame_is_refused_naming_field_value_and_allowed(
    kw: dict, field: str, allowed: str
) -> None:
    with pytest.raises(FrameRejected, match=f"{field}.*allowed.*{allowed}") as info:
        frame(**kw)
    assert isinstance(info.value, CementguardError)
    assert f"mem://t frame {kw.get('index', 0)}:" in str(info.value)


def test_the_push_source_is_a_frame_source_and_delivers_in_order() -> None:
    src = PushFrameSource("mem://t")
    assert isinstance(src, FrameSource)
    assert src.read(0.0) is None  # nothing yet: None, not an error
    src.push(frame(0, 0))
    src.push(frame(1, 100_000))
    got = [src.read(0.0), src.read(0.0)]
    assert [f.index for f in got if f is not None] == [0, 1]


def test_read_waits_for_a_frame_pushed_by_another_thread() -> None:
    src = PushFrameSource("mem://t")
    pushed = threading.Event()

    def produce() -> None:
        pushed.wait()
        src.push(frame(5, 5))

    thread = threading.Thread(target=produce)
    thread.start()
    pushed.set()
    got = src.read(5.0)
    thread.join()
    assert got is not None
    assert got.index == 5


@pytest.mark.parametrize(
    ("second", "match"),
    [
        ({"index": 1, "t_us": 0}, "t_us 0 is not allowed; allowed > 0"),
        ({"index": 0, "t_us": 100_000}, "index 0 is not allowed; allowed > 0"),
        ({"index": 1, "t_us": 10_000}, "rate 100.0 frames/s is not allowed; allowed at most 30 frames/s"),
        ({"index": 1, "t_us": 100_000, "shape": (64, 32)}, "size 64x32 is not allowed; allowed 64x64"),
        ({"index": 1, "t_us": 100_000, "depth": 8}, "bit_depth 8 is not allowed; allowed 12"),
    ],
)
def test_a_frame_that_breaks_the_sources_promise_is_rejected_and_the_next_good_one_passes(
    second: dict, match: str
) -> None:
    src = PushFrameSource("mem://t", expect_shape=(64, 64), expect_bit_depth=12, max_fps=30)
    src.push(frame(0, 0))
    src.push(frame(**second))
    src.push(frame(2, 200_000))
    assert src.read(0.0) is not None
    with pytest.raises(FrameRejected, match=match):
        src.read(0.0)
    good = src.read(0.0)
    assert good is not None
    assert good.index == 2
    assert src.checks.rejected == 1


def test_a_lost_source_says_so_on_every_read_after() -> None:
    src = PushFrameSource("mem://t")
    src.push(frame(0, 0))
    src.lose("grabber unplugged")
    assert src.read(0.0) is not None
    for _ in range(2):
        with pytest.raises(FrameSourceLost, match="mem://t lost: grabber unplugged"):
            src.read(0.0)


def test_the_end_of_a_stream_is_a_loss_that_is_not_a_fault() -> None:
    src = PushFrameSource("mem://t")
    src.end()
    with pytest.raises(FrameStreamEnded):
        src.read(0.0)
    src.close()


def test_a_full_queue_drops_the_oldest_and_counts_it() -> None:
    src = PushFrameSource("mem://t", capacity=2)
    for i in range(4):
        src.push(frame(i, i * 100_000))
    assert src.dropped == 2
    got = src.read(0.0)
    assert got is not None
    assert got.index == 2


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_fps": float("nan")}, "max_fps: nan is not a finite number; allowed 0.5..60 frames/s"),
        ({"max_fps": 0}, "max_fps: 0 is outside the range"),
        ({"expect_shape": (64,)}, "expect_shape"),
        ({"expect_shape": (8, 64)}, "expect_shape height: 8 is outside the range; allowed 16..4096"),
        ({"expect_bit_depth": 20}, "expect_bit_depth: 20 is outside the range; allowed 8..16"),
        ({"pixel_mm": -1}, "pixel_mm: -1 is outside the range"),
        ({"view": "top"}, "view: 'top' is not a view"),
        ({"colour": True}, "unknown frame source option 'colour'"),
    ],
)
def test_bad_options_are_refused_naming_them(options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PushFrameSource("mem://t", **options)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("", "empty source"),
        ("rtsp://camera/1", "unknown scheme 'rtsp'"),
        ("/nonexistent/frames", "no such file, folder or device"),
    ],
)
def test_open_refuses_what_is_not_a_source(url: str, match: str) -> None:
    with pytest.raises(FrameSourceError, match=match):
        open_frame_source(url)


def test_open_mem_gives_a_push_source() -> None:
    src = open_frame_source("mem://hil", max_fps=30)
    assert isinstance(src, PushFrameSource)


def test_without_an_expectation_the_first_frame_sets_size_and_depth() -> None:
    src = PushFrameSource("mem://t")
    src.push(frame(0, 0, shape=(64, 64)))
    src.push(frame(1, 100_000, shape=(64, 48)))
    src.push(frame(2, 200_000, depth=8))
    src.push(frame(3, 300_000, shape=(32, 32), view="ap"))  # the other view may differ
    assert src.read(0.0) is not None
    with pytest.raises(FrameRejected, match=r"size 64x48 is not allowed; allowed 64x64 .the first lateral"):
        src.read(0.0)
    with pytest.raises(FrameRejected, match=r"bit_depth 8 is not allowed; allowed 12 .the first frame's"):
        src.read(0.0)
    assert src.read(0.0) is not None


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 3601.0])
def test_a_read_timeout_that_is_not_a_finite_time_is_refused(timeout: float) -> None:
    with pytest.raises(ValueError, match=r"timeout_s: .* allowed 0..3600 s"):
        PushFrameSource("mem://t").read(timeout)


def test_a_negative_read_timeout_does_not_wait() -> None:
    assert PushFrameSource("mem://t").read(-0.5) is None
