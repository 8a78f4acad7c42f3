"""Stops published around a broker restart: how many reach the controller, with and without the
bridge's persistent session (issue 13 item 10).

    python bench/mqtt_restart_stops.py                 # 6 restarts per mode (about 1.5 min), table
    python bench/mqtt_restart_stops.py --restarts 10 --json

Set-up, all real parts: a private Mosquitto (hil.mosquitto) with persistence on (sessions and
retained messages saved every second, as deploy/mosquitto/cementguard.conf keeps them), the
simulator on a pty, and `host.mqtt.MqttBridge` with its default reconnect backoff (0.2 s doubling
to 5 s). Each restart: wait until the broker has saved its sessions, SIGKILL the broker and start it
again at once, then publish one stop (`mosquitto_pub -q 1`, a unique `by`) at each offset after the
restart (0, 0.5, 1, 2, 3, 4, 6 s); after the bridge is back, a marker stop: the broker delivers in
order, so a stop not in before the marker is lost. Modes: the persistent session (fixed client id,
clean session off: the default) and, as the baseline of the same run, a clean session (the bridge
before this change). Reported per mode and per offset: stops published, delivered, lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common
from stop_latency import start_simulator, stop_process

from hil.mosquitto import Mosquitto, find_binary
from host.client import DeviceClient
from host.mqtt import MqttBridge, MqttOptions

RIG = "bench"
TOPIC = f"cementguard/{RIG}/fluoro/stop"
OFFSETS_S = (0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0)


async def _pub(broker: Mosquitto, by: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        find_binary("mosquitto_pub"), "-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", TOPIC,
        "-m", json.dumps({"by": by, "sent_at": time.time()}),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await proc.wait()


async def _until(condition: Any, within_s: float) -> bool:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)  # polling interval of a bounded wait
    return True


async def _restart_once(broker: Mosquitto, bridge: MqttBridge, log: list[str], tag: str) -> dict[float, bool]:
    db = broker.workdir / "mosquitto.db"
    await _until(db.exists, 10)
    saved = db.stat().st_mtime if db.exists() else 0.0
    await _until(lambda: db.exists() and db.stat().st_mtime > saved, 10)
    await asyncio.to_thread(broker.restart)
    t0 = time.monotonic()
    for offset in OFFSETS_S:
        await asyncio.sleep(max(0.0, t0 + offset - time.monotonic()))  # the offset being measured
        await _pub(broker, f"{tag}-{offset}")
    await bridge.wait_connected(timeout=30)
    marker = f"{tag}-marker"
    await _pub(broker, marker)
    await _until(lambda: any(f"by {marker}" in line for line in log), 15)
    return {offset: any(f"by {tag}-{offset}" in line for line in log) for offset in OFFSETS_S}


async def _mode(port: str, persistent: bool, restarts: int) -> dict[float, list[bool]]:
    results: dict[float, list[bool]] = {o: [] for o in OFFSETS_S}
    with tempfile.TemporaryDirectory() as tmp, Mosquitto.start(Path(tmp), persistence=True) as broker:
        async with DeviceClient.open(port) as ctl:
            log: list[str] = []
            bridge = MqttBridge(
                ctl, MqttOptions(url=broker.url, rig=RIG, persistent_session=persistent), log=log.append
            )
            task = asyncio.create_task(bridge.run())
            try:
                await bridge.wait_connected(timeout=10)
                for n in range(restarts):
                    for offset, delivered in (await _restart_once(broker, bridge, log, f"r{n}")).items():
                        results[offset].append(delivered)
            finally:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--restarts", type=int, default=6, help="broker restarts per mode (default 6)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    sim, port = start_simulator()
    try:
        modes = {
            name: asyncio.run(_mode(port, persistent, args.restarts))
            for name, persistent in (("persistent session", True), ("clean session (baseline)", False))
        }
    finally:
        stop_process(sim)
    rows: list[dict[str, Any]] = [
        {"mode": name, "offset_s": offset, "published": len(r), "delivered": sum(r), "lost": len(r) - sum(r)}
        for name, results in modes.items()
        for offset, r in results.items()
    ]
    command = _common.command_line("mqtt_restart_stops", argv)
    doc = {
        "command": command,
        "machine": _common.machine(),
        "rows": rows,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    print(f"{'mode':<26} {'offset s':>8} {'published':>9} {'delivered':>9} {'lost':>5}")
    for row in rows:
        print(
            f"{row['mode']:<26} {row['offset_s']:>8g} {row['published']:>9} "
            f"{row['delivered']:>9} {row['lost']:>5}"
        )
    for name in modes:
        lost = sum(r["lost"] for r in rows if r["mode"] == name)
        total = sum(r["published"] for r in rows if r["mode"] == name)
        print(f"{name}: {lost} of {total} stops lost over {args.restarts} restarts")
    print(command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
