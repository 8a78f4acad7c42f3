"""sim:// through real sockets: the simulator's publisher on one end, the host's source on the other."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from firmware_sim.imaging.camera import FluoroCamera
from firmware_sim.imaging.fluoro import FluoroConfig
from firmware_sim.imaging.publisher import FrameListener, FrameStreamer, parse_frames_address
from firmware_sim.imaging.truth import TruthWriter
from firmware_sim.plant import Plant, PlantConfig
from hil.frames import load_truth
from host.frames import (
    FluoroFrame,
    FrameRejected,
    FrameSourceError,
    FrameSourceLost,
    FrameStreamEnded,
    open_frame_source,
)
from host.frames.sim_source import SimFrameSource
from protocol.fluoro_stream import encode_streamed_frame
from tests.support.wire_client import simulator

PX = (np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) * 4) % 4096


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[FrameListener]:
    lst = FrameListener(str(tmp_path / "frames.sock"))
    yield lst
    lst.close()


def connect(lst: FrameListener, **options: object) -> SimFrameSource:
    src = open_frame_source(lst.url, **options)
    assert isinstance(src, SimFrameSource)
    # the listener accepts in its own thread: a frame sent before it has this reader would not reach it
    assert lst.wait_for_readers(1, timeout_s=10.0)
    return src


def test_frames_arrive_as_sent_with_the_device_clock(listener: FrameListener) -> None:
    src = connect(listener)
    listener.send(encode_streamed_frame(4, 1_000_000, "lateral", 12, 0.2, PX))
    listener.send(encode_streamed_frame(5, 1_100_000, "ap", 12, 0.2, PX))
    first = src.read(5.0)
    second = src.read(5.0)
    assert isinstance(first, FluoroFrame)
    assert isinstance(second, FluoroFrame)
    assert (first.index, first.t_us, first.view, first.bit_depth, first.source) == (
        4,
        1_000_000,
        "lateral",
        12,
        listener.url,
    )
    assert first.pixel_mm == pytest.approx(0.2)
    assert np.array_equal(first.pixels, PX)
    assert (second.index, second.view) == (5, "ap")
    assert src.read(0.05) is None  # nothing more: None, not an error


def test_the_end_of_the_stream_is_reported_after_the_last_frame(listener: FrameListener) -> None:
    src = connect(listener)
    listener.send(encode_streamed_frame(0, 0, "lateral", 12, 0.2, PX))
    listener.close()  # sends END
    frame = src.read(5.0)
    assert frame is not None
    with pytest.raises(FrameStreamEnded, match="the simulator ended the stream"):
        src.read(5.0)
    with pytest.raises(FrameStreamEnded):  # and on every read after
        src.read(0.0)


def test_a_stream_cut_without_end_is_the_source_lost(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "s"))
    server.listen(1)
    src = open_frame_source(f"sim://{tmp_path / 's'}")
    conn, _ = server.accept()
    conn.sendall(encode_streamed_frame(0, 0, "lateral", 12, 0.2, PX)[:50])  # half a frame, then gone
    conn.close()
    server.close()
    with pytest.raises(FrameSourceLost, match="closed the stream without END") as info:
        src.read(5.0)
    assert not isinstance(info.value, FrameStreamEnded)


def test_a_corrupt_stream_is_the_source_lost_naming_why(tmp_path: Path) -> None:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp_path / "s"))
    server.listen(1)
    src = open_frame_source(f"sim://{tmp_path / 's'}")
    conn, _ = server.accept()
    data = bytearray(encode_streamed_frame(0, 0, "lateral", 12, 0.2, PX))
    data[-1] ^= 0xFF
    conn.sendall(bytes(data))
    with pytest.raises(FrameSourceLost, match="corrupt: frame 0: payload crc32"):
        src.read(5.0)
    conn.close()
    server.close()


def test_time_that_runs_backwards_is_rejected_and_the_stream_goes_on(listener: FrameListener) -> None:
    src = connect(listener, max_fps=30)
    for index, t_us in ((0, 100_000), (1, 50_000), (2, 200_000)):
        listener.send(encode_streamed_frame(index, t_us, "lateral", 12, 0.2, PX))
    assert src.read(5.0) is not None
    with pytest.raises(FrameRejected, match="t_us 50000 is not allowed; allowed > 100000"):
        src.read(5.0)
    good = src.read(5.0)
    assert good is not None
    assert good.index == 2


def test_a_pixel_above_the_bit_depth_is_rejected(listener: FrameListener) -> None:
    src = connect(listener)
    listener.send(encode_streamed_frame(0, 0, "lateral", 10, 0.2, PX))  # PX reaches 4092
    with pytest.raises(FrameRejected, match=r"pixel value 4092 is not allowed; allowed below 2\*\*10"):
        src.read(5.0)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("sim:///nonexistent/frames.sock", "nothing serves frames there"),
        ("sim://localhost", "allowed sim:///path/to/socket or sim://HOST:PORT"),
        ("sim://127.0.0.1:0", "port 1..65535"),
    ],
)
def test_opening_where_nothing_serves_frames_says_so(url: str, match: str) -> None:
    with pytest.raises(FrameSourceError, match=match):
        open_frame_source(url)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/run/x.sock", ("unix", "/run/x.sock")),
        ("unix:/run/x.sock", ("unix", "/run/x.sock")),
        ("127.0.0.1:0", ("tcp", ("127.0.0.1", 0))),
        (":5600", ("tcp", ("127.0.0.1", 5600))),
    ],
)
def test_frames_out_addresses(text: str, expected: tuple) -> None:
    assert parse_frames_address(text) == expected


@pytest.mark.parametrize("text", ["frames", "host:port", "host:70000"])
def test_bad_frames_out_addresses_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not an address; allowed a Unix socket path"):
        parse_frames_address(text)


def test_the_streamer_renders_pulses_to_the_reader_and_truth_to_the_sidecar(tmp_path: Path) -> None:
    spatial = Plant(PlantConfig(vertebra="spatial")).spatial
    assert spatial is not None
    config = FluoroConfig(width_px=64, height_px=64, pixel_mm=1.0, fps=10.0)
    listener = FrameListener("127.0.0.1:0")
    streamer = FrameStreamer(FluoroCamera(spatial, config), listener, TruthWriter(tmp_path / "truth.jsonl"))
    src = connect(listener, expect_shape=(64, 64), expect_bit_depth=12, max_fps=10)
    got = []
    for k in range(3):
        streamer.on_tick(k * 100_000)
        frame = src.read(10.0)  # the render thread has it: wait for it before the next pulse
        assert frame is not None
        got.append(frame)
    streamer.close()
    with pytest.raises(FrameStreamEnded):
        src.read(5.0)
    assert [(f.index, f.t_us) for f in got] == [(0, 0), (1, 100_000), (2, 200_000)]
    records = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2]
    assert {"front_ap_fraction", "leak_onset_t_us", "body_box_px"} <= set(records[0])


def test_with_an_ap_listener_each_view_goes_out_on_its_own_socket() -> None:
    """A biplane C-arm's two outputs (`--frames-out-ap`): the lateral pulses on one socket, the AP
    pulses half a period later on the other, one clock and one index sequence across both."""
    spatial = Plant(PlantConfig(vertebra="spatial")).spatial
    assert spatial is not None
    config = FluoroConfig(width_px=64, height_px=64, pixel_mm=1.0, fps=10.0)
    lateral, ap = FrameListener("127.0.0.1:0"), FrameListener("127.0.0.1:0")
    streamer = FrameStreamer(FluoroCamera(spatial, config, ("lateral", "ap")), lateral, None, ap)
    lat_src, ap_src = connect(lateral), connect(ap)
    got = []
    for k in range(4):
        streamer.on_tick(k * 50_000)
        src = lat_src if k % 2 == 0 else ap_src
        frame = src.read(10.0)  # the render process has it: wait for it before the next pulse
        assert frame is not None
        got.append((src is ap_src, frame.view, frame.t_us))
    assert lat_src.read(0.2) is None  # nothing of the AP view came on the lateral socket
    streamer.close()
    assert got == [
        (False, "lateral", 0),
        (True, "ap", 50_000),
        (False, "lateral", 100_000),
        (True, "ap", 150_000),
    ]


def test_cementguard_sim_publishes_frames_the_host_reads(tmp_path: Path) -> None:
    """The whole path: `cementguard sim --frames-out` in a subprocess, `sim://` on the host."""
    sock = tmp_path / "f.sock"
    truth = tmp_path / "truth.jsonl"
    args = (
        "--tcp",
        "127.0.0.1:0",
        "--power-on",
        "now",
        "--scenario",
        "hil/scenarios/spatial-posterior-quarter.toml",
    )
    args += ("--frames-out", str(sock), "--frames-truth", str(truth), "--frames-size", "128x96")
    args += ("--frames-fps", "5", "--frames-bits", "10")
    with simulator(*args) as (proc, _port):
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.strip() == f"FRAMES sim://{sock}"
        src = open_frame_source(line.split()[1], expect_shape=(96, 128), expect_bit_depth=10, max_fps=5)
        frames = [src.read(10.0) for _ in range(2)]
        src.close()
    assert all(f is not None for f in frames)
    a, b = frames
    assert a is not None
    assert b is not None
    assert b.index > a.index
    assert b.t_us - a.t_us == 200_000 * (b.index - a.index)  # 5 pulses/s on the device clock
    records = load_truth(truth)
    assert {a.index, b.index} <= set(records)
    assert records[a.index].t_us == a.t_us
    assert records[a.index].view == "lateral"


SPATIAL = "hil/scenarios/spatial-posterior-quarter.toml"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), 'needs the spatial vertebra: set vertebra = "spatial"'),
        (("--frames-fps", "100"), "--frames-fps: fps = 100.0 frames/s is outside the allowed range 1..30"),
        (("--frames-fps", "nan"), "--frames-fps: fps = nan"),
        (("--frames-bits", "4"), "--frames-bits: bit_depth = 4 bits is outside the allowed range 8..16"),
        (("--frames-size", "512"), "--frames-size '512' is not WIDTHxHEIGHT"),
        (("--frames-size", "9000x512"), "--frames-size: width_px = 9000 px is outside"),
        (("--frames-truth", "/nonexistent/t.jsonl"), "--frames-truth /nonexistent/t.jsonl: No such file"),
    ],
)
def test_cementguard_sim_refuses_bad_frame_options_naming_them(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    import subprocess
    import sys

    from tests.support.wire_client import REPO

    scenario = ("--scenario", SPATIAL) if args else ()
    cmd = [
        sys.executable,
        "-m",
        "host.cli",
        "sim",
        "--tcp",
        "127.0.0.1:0",
        "--frames-out",
        str(tmp_path / "f"),
    ]
    out = subprocess.run([*cmd, *scenario, *args], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2
    assert message in out.stderr
    assert not (tmp_path / "f").exists()  # nothing left listening


def test_a_sim_source_imports_neither_opencv_nor_pydicom() -> None:
    import subprocess
    import sys

    from tests.support.wire_client import REPO

    probe = (
        "import sys\n"
        "from host.frames import open_frame_source, FrameSourceError\n"
        "try:\n"
        "    open_frame_source('sim:///nonexistent/frames.sock')\n"
        "except FrameSourceError:\n"
        "    pass\n"
        "loaded = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted({'cv2', 'pydicom', 'scipy', 'firmware_sim'} & loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_truth_file_that_is_not_one_is_refused_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"index": 0}\n{"index": 1}\n')
    with pytest.raises(ValueError, match="line 1 is not a frame truth record"):
        load_truth(path)


def test_a_truth_file_cut_mid_line_keeps_the_whole_records(tmp_path: Path) -> None:
    from firmware_sim.imaging.truth import FrameTruth

    record = FrameTruth(
        3, 300_000, "lateral", 0.5, False, None, 1.0, {}, {}, (1.0, 2.0, 3.0, 4.0), 1.0, 3.0, 2.5
    )
    line = json.dumps(record.to_json())
    path = tmp_path / "t.jsonl"
    path.write_text(line + "\n" + line[: len(line) // 2])
    assert load_truth(path) == {3: record}


def test_a_stale_socket_is_replaced_and_a_live_one_or_a_file_refused(tmp_path: Path) -> None:
    stale = tmp_path / "stale.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(stale))
    dead.close()  # the file stays, nobody listens: a simulator that died
    FrameListener(str(stale)).close()
    live = FrameListener(str(tmp_path / "live.sock"))
    with pytest.raises(ValueError, match="another simulator serves frames there"):
        FrameListener(str(tmp_path / "live.sock"))
    live.close()
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="already exists and is not a socket"):
        FrameListener(str(tmp_path / "file"))


def test_a_render_process_that_dies_cuts_the_stream_so_the_reader_loses_its_source() -> None:
    import os
    import signal

    spatial = Plant(PlantConfig(vertebra="spatial")).spatial
    assert spatial is not None
    config = FluoroConfig(width_px=64, height_px=64, pixel_mm=1.0, fps=10.0)
    listener = FrameListener("127.0.0.1:0")
    streamer = FrameStreamer(FluoroCamera(spatial, config), listener)
    src = connect(listener)
    streamer.on_tick(0)
    assert src.read(10.0) is not None
    assert streamer.render_pid is not None
    os.kill(streamer.render_pid, signal.SIGKILL)
    with pytest.raises(FrameSourceLost, match="closed the stream without END") as info:
        src.read(10.0)
    assert not isinstance(info.value, FrameStreamEnded)
    streamer.close()  # and closing after it does not hang or raise
