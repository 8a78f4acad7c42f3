"""The import budget of `cementguard stop` on the paths that reach a device (issue 12: "`stop`
imports neither the simulator, nor the HIL harness, nor textual, nor matplotlib"). The probe in
test_stop_e2e.py runs the port-not-found path only; these run the two paths a bench engineer takes:
STOP on the port directly (a simulator answers), and STOP through a session's control endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.wire_client import REPO, simulator

FORBIDDEN = {"firmware_sim", "hil", "textual", "matplotlib", "plotext", "aiomqtt", "rich", "pydantic"}
FORBIDDEN |= {"cv2", "pydicom", "scipy"}  # the frame sources' and the renderer's (issue 15)
PROBE = (
    "import sys\n"
    "from host.cli import main\n"
    "code = main(['stop', '--port', sys.argv[1]])\n"
    "print('EXIT', code)\n"
    "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
)


@pytest.fixture
def env() -> Iterator[dict[str, str]]:
    base = tempfile.mkdtemp(prefix="cg-")
    os.chmod(base, 0o700)
    yield dict(os.environ, PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=base)
    shutil.rmtree(base, ignore_errors=True)


def _probe(env: dict[str, str], port: str) -> tuple[str, set[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, port], capture_output=True, text=True, cwd=REPO, env=env, timeout=60
    )
    lines = done.stdout.strip().splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    return "\n".join(lines[:-1]), set(lines[-1].split())


def test_a_direct_stop_loads_no_simulator_harness_or_ui(env: dict[str, str]) -> None:
    with simulator("--pty") as (_proc, port):
        said, loaded = _probe(env, port)
    assert "EXIT 0" in said, said
    assert "STOP acknowledged on" in said, said
    assert loaded & FORBIDDEN == set()
    assert loaded & {"numpy", "pandas", "pyarrow"} == set(), (
        "numpy is imported only for telemetry arrays: a STOP carries none (docs/performance.md)"
    )


def test_importing_the_protocol_loads_no_numpy() -> None:
    """The frames a STOP needs (encode STOP, decode ACK, STATUS, EVENT) are built without numpy; the
    telemetry arrays load it when a batch is first packed or decoded."""
    code = (
        "import sys\n"
        "import protocol\n"
        "from protocol import Stop, encode_frame, MessageStream, StopSource\n"
        "MessageStream().feed(encode_frame(Stop(cmd_id=1, source=StopSource.OPERATOR), 0))\n"
        "print('numpy' in sys.modules)\n"
        "protocol.SAMPLE_DTYPE\n"
        "print('numpy' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr


def test_a_stop_through_a_session_loads_no_simulator_harness_or_ui(env: dict[str, str]) -> None:
    port = "/dev/cementguard-probe-port"
    code = "import sys; from host.port_lock import socket_path; print(socket_path(sys.argv[1]))"
    path = subprocess.run(
        [sys.executable, "-c", code, port], capture_output=True, text=True, cwd=REPO, env=env, check=True
    ).stdout.strip()
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def answer() -> None:  # a session's endpoint, as host.control answers a stop
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            assert json.loads(f.readline())["op"] == "stop"
            f.write(b'{"ok": true, "op": "stop", "state": "STOPPED", "event": null, "session": "probe"}\n')
            f.flush()

    serving = threading.Thread(target=answer, daemon=True)
    serving.start()
    try:
        said, loaded = _probe(env, port)
    finally:
        server.close()
        Path(path).unlink(missing_ok=True)
    serving.join(5.0)
    assert "STOP acknowledged through probe" in said, said
    assert loaded & FORBIDDEN == set()
    assert loaded & {"protocol", "numpy", "serial"} == set(), "docs/design.md: the endpoint's client alone"
