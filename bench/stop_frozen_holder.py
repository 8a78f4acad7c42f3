"""`cementguard stop` beside a frozen session: wall time from starting the process to the STOP frame
reaching the device.

    python bench/stop_frozen_holder.py                 # 10 stops each way (about 15 s), table
    python bench/stop_frozen_holder.py --stops 5 --json

The device is a pty whose master this process reads (the STOP frame's bytes are timestamped as they
arrive, on this process's clock). The holder is a second process that holds the port as a session
does (host.link.Link: the lock, the exclusive tty, its descriptor recorded) and serves a control
socket that accepts but never answers; it is frozen with SIGSTOP before each stop. Three ways:

- **no holder** (baseline, same run): nothing holds the port; `stop` opens it and sends STOP first.
- **frozen holder**: `stop` asks the holder's socket, hears nothing within its deadline
  (host.control_client.STOP_DEADLINE_S), and writes STOP onto the port beside it.
- **frozen holder, no CAP_SYS_ADMIN** (when run as root, through `setpriv`): the exclusive tty
  refuses `stop`'s open(), so it borrows the holder's descriptor (pidfd_getfd).

Before this deadline existed `stop` waited for the holder's answer for ANSWER_TIMEOUT_S (3 s) first.
The device's watchdog period is 500 ms: the STOP should reach it sooner (a frozen holder's device
otherwise stops with HOST_LOST, not the operator's STOP).
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tty
from pathlib import Path
from typing import Any

import _common

from protocol import Frame, MessageStream, Stop

REPO = Path(__file__).resolve().parents[1]
WATCHDOG_MS = 500.0
HOLDER = (
    "import asyncio, socket, sys\n"
    "from host.link import Link, LinkOptions\n"
    "from host.port_lock import socket_path\n"
    "async def main():\n"
    "    link = Link(sys.argv[1], LinkOptions(reconnect=False))\n"
    "    await link.open(handshake=False)\n"
    "    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
    "    path = str(socket_path(sys.argv[1]))\n"
    "    server.bind(path)\n"
    "    server.listen(16)\n"
    "    link.port_lock.set_socket(path)\n"
    "    print('READY', flush=True)\n"
    "    await asyncio.sleep(3600)\n"
    "asyncio.run(main())\n"
)


def _cementguard() -> list[str]:
    script = Path(sys.executable).parent / "cementguard"
    return [str(script)] if script.exists() else [sys.executable, "-m", "host.cli"]


def _unprivileged() -> list[str] | None:
    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        return None
    return [setpriv, "--inh-caps=-sys_admin", "--bounding-set=-sys_admin"]


def _one_stop(master: int, port: str, env: dict[str, str], prefix: list[str]) -> float:
    """Seconds from starting `cementguard stop` to a STOP frame read on the master."""
    stream = MessageStream()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [*prefix, *_cementguard(), "stop", "--port", port],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=REPO,
    )
    try:
        deadline = t0 + 10.0
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.perf_counter()))
            if not ready:
                raise RuntimeError("no STOP reached the device within 10 s")
            frames = stream.feed(os.read(master, 4096))
            if any(isinstance(f, Frame) and isinstance(f.message, Stop) for f in frames):
                return time.perf_counter() - t0
    finally:
        proc.kill()  # its answer never comes (nobody plays the device): not measured
        proc.wait()


def _drain(master: int) -> None:
    while select.select([master], [], [], 0.05)[0]:
        os.read(master, 4096)


def run(stops: int) -> dict[str, Any]:
    base = tempfile.mkdtemp(prefix="cg-")
    os.chmod(base, 0o700)
    env = dict(os.environ, PYTHONPATH=str(REPO), XDG_RUNTIME_DIR=base)
    master, slave = os.openpty()
    tty.setraw(slave)
    port = os.ttyname(slave)  # the slave stays open here: reading a master without one fails (EIO)
    results: dict[str, list[float]] = {"no_holder": [], "frozen": [], "frozen_no_cap_sys_admin": []}
    try:
        for _ in range(stops):
            results["no_holder"].append(_one_stop(master, port, env, []))
            _drain(master)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, port], stdout=subprocess.PIPE, text=True, env=env, cwd=REPO
        )
        try:
            assert holder.stdout is not None
            if holder.stdout.readline().strip() != "READY":
                raise RuntimeError("the holder did not start")
            _drain(master)
            os.kill(holder.pid, signal.SIGSTOP)
            unprivileged = _unprivileged()
            for _ in range(stops):
                results["frozen"].append(_one_stop(master, port, env, []))
                _drain(master)
                if unprivileged is not None:
                    results["frozen_no_cap_sys_admin"].append(_one_stop(master, port, env, unprivileged))
                    _drain(master)
        finally:
            holder.kill()
            holder.wait()
    finally:
        os.close(slave)
        os.close(master)
        shutil.rmtree(base, ignore_errors=True)
    base_p50 = _common.median(results["no_holder"])
    rows = {}
    for name, values in results.items():
        if values:
            row = _common.latency_summary(values)
            row["p50_over_baseline"] = _common.median(values) / base_p50
            rows[name] = row
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--stops", type=int, default=10, help="stops each way (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)
    if not 1 <= args.stops <= 1000:
        parser.error(f"--stops {args.stops}: allowed 1..1000")
    rows = run(args.stops)
    if args.json:
        _common.dump_json(
            {
                "bench": "stop_frozen_holder",
                "command": _common.command_line("stop_frozen_holder", argv),
                "machine": _common.machine(),
                "rows": rows,
            }
        )
        return 0
    labels = {
        "no_holder": "no holder (baseline): start -> STOP on the device",
        "frozen": "frozen holder: start -> STOP on the device",
        "frozen_no_cap_sys_admin": "frozen holder, no CAP_SYS_ADMIN (borrowed descriptor)",
    }
    print(f"{'':56} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50/base':>9}")
    for name, r in rows.items():
        figures = f"{r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['max_ms']:8.1f}"
        print(f"{labels[name]:56} {figures} {r['p50_over_baseline']:9.2f}")
    worst = max(r["max_ms"] for name, r in rows.items() if name != "no_holder")
    print(f"watchdog period {WATCHDOG_MS:.0f} ms: {'inside' if worst < WATCHDOG_MS else 'NOT inside'} it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
