"""The simulator's byte streams: a real pty and a real TCP socket, polled as the tick loop does."""

from __future__ import annotations

import os
import select
import termios

import pytest
import serial

from firmware_sim.device.transport import MAX_PENDING_OUT, PtyTransport, TcpTransport


def _poll_until(transport: PtyTransport | TcpTransport, want: bytes, attempts: int = 50) -> bytes:
    """Poll as the tick loop does, waiting on readiness (select) rather than on a sleep."""
    got = b""
    for _ in range(attempts):
        select.select([transport], [], [], 1.0)
        data, _attached = transport.poll()
        got += data
        if len(got) >= len(want):
            break
    return got


@pytest.fixture
def pty():
    t = PtyTransport()
    yield t
    t.close()


def test_pty_reports_no_host_until_the_slave_is_opened(pty: PtyTransport) -> None:
    data, attached = pty.poll()
    assert (data, attached) == (b"", False)


def test_pty_is_raw_and_carries_zero_bytes_both_ways(pty: PtyTransport) -> None:
    with serial.Serial(pty.address, timeout=1) as port:
        payload = bytes(range(256)) * 4  # includes 0x00, 0x0A, 0x0D, 0x03, 0x11: no line discipline
        port.write(payload)
        assert _poll_until(pty, payload) == payload
        assert pty.poll()[1] is True
        pty.write(payload)
        assert port.read(len(payload)) == payload


def test_pty_detects_the_host_closing(pty: PtyTransport) -> None:
    port = serial.Serial(pty.address, timeout=1)
    port.write(b"x")
    assert _poll_until(pty, b"x") == b"x"
    port.close()
    assert pty.poll() == (b"", False)


def test_pty_accepts_a_new_host_after_one_left(pty: PtyTransport) -> None:
    serial.Serial(pty.address).close()
    assert pty.poll()[1] is False
    with serial.Serial(pty.address, timeout=1) as port:
        port.write(b"again")
        assert _poll_until(pty, b"again") == b"again"


def test_pty_output_for_a_host_that_never_reads_is_bounded(pty: PtyTransport) -> None:
    fd = os.open(pty.address, os.O_RDWR | os.O_NOCTTY)
    try:
        termios.tcgetattr(fd)
        pty.poll()
        chunk = b"\x55" * 65536
        for _ in range(2 * MAX_PENDING_OUT // len(chunk) + 4):
            pty.write(chunk)
        assert pty.dropped_out > 0
    finally:
        os.close(fd)


@pytest.fixture
def tcp():
    t = TcpTransport("127.0.0.1", 0)
    yield t
    t.close()


def test_tcp_address_is_a_pyserial_url_with_the_picked_port(tcp: TcpTransport) -> None:
    assert tcp.port > 0
    assert tcp.address == f"socket://127.0.0.1:{tcp.port}"


def test_tcp_round_trip_through_pyserial_url(tcp: TcpTransport) -> None:
    port = serial.serial_for_url(tcp.address, timeout=1)
    try:
        port.write(b"\x00hello\x00")
        assert _poll_until(tcp, b"\x00hello\x00") == b"\x00hello\x00"
        tcp.write(b"reply")
        assert port.read(5) == b"reply"
    finally:
        port.close()
    select.select([tcp], [], [], 1.0)  # the peer's FIN makes the socket readable
    assert tcp.poll() == (b"", False)
