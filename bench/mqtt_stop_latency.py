"""MQTT fluoroscopy stop -> STOPPED event, on a loopback Mosquitto against `cementguard sim --pty`.

    python bench/mqtt_stop_latency.py                  # 200 cycles per method (about 40 s), table
    python bench/mqtt_stop_latency.py --cycles 50 --json

Set-up, all real parts: a private Mosquitto (hil.mosquitto) on a free loopback port; the simulator in
its own process on a pty, in real time at 1 kHz with 1 kHz telemetry; this process is the host: a
`host.client.DeviceClient` with an `host.mqtt.MqttBridge` in the same event loop, as `cementguard bridge`
runs them. Each cycle: ARM (continuous), START, wait for a telemetry batch showing the plunger moving,
stop by one of three methods (rotated, so all three see the same load), wait for the STOP event, CLEAR.

Methods, each timed from its own origin to the moment the bytes carrying EVENT{STOP} were read off the
pty by the host (`Subscription.received_at`); every clock is `time.perf_counter()` (CLOCK_MONOTONIC,
the same in every process on Linux):

- **mosquitto_pub**: the real binary, `mosquitto_pub -q 1 -t cementguard/<rig>/fluoro/stop -m ...`,
  timed from just before the process is spawned: includes starting the program, its TCP connect and
  MQTT CONNECT/CONNACK, as an imaging system's script calling it would see. The docs/design.md goal figure.
- **persistent publisher**: a paho-mqtt client (the library under aiomqtt) in a separate process,
  connected once, publishing QoS 1 on a command from this process; timed from just before its
  `publish()` call: what an imaging system holding a connection sees.
- **direct (baseline)**: `await ctl.stop(FLUORO_OPERATOR)` in the host, no broker: the same link, pty
  and simulator tick; the floor the MQTT path adds to. The ratio MQTT/direct is reported.

Also reported, from the bridge's own stop annotations (host.stops): **bridge read -> event read**, the
part of the MQTT paths inside the host (from the moment the bridge read the message off its socket).

Tick phase: every stop waits for the device's next 1 ms tick. The direct STOP is sent right after a
telemetry batch was read, i.e. just after a tick (the slow end, as bench/stop_latency.py); the MQTT
stops arrive at whatever phase the broker delivers them, so their p50 can come out at or below the
baseline's. Broker: Mosquitto's default configuration (set_tcp_nodelay false, Nagle's algorithm on);
--broker-nodelay turns it off for comparison. The bridge's two connections (host.mqtt._bridge) keep
its own publishing from delaying a stop in either configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import _common
from stop_latency import PLAN, start_simulator, stop_process

from hil.mosquitto import Mosquitto, find_binary
from host.client import DeviceClient
from host.mqtt import MqttBridge, MqttOptions
from host.stops import StopRequests
from protocol import Event, EventKind, State, StopReason, StopSource

REPO = Path(__file__).resolve().parents[1]
GOAL_P99_MS = 25.0
RIG = "bench"
TOPIC = f"cementguard/{RIG}/fluoro/stop"
PAYLOAD = b'{"by": "bench", "reason": "latency benchmark"}'
METHODS = ("mosquitto_pub", "publisher", "direct")

PUBLISHER = textwrap.dedent(
    """
    import sys, time
    import paho.mqtt.client as mqtt
    host, port, topic, payload = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-publisher")
    client.connect(host, port, keepalive=60)
    client.loop_start()
    print("READY", flush=True)
    for _line in sys.stdin:
        t0 = time.perf_counter()
        client.publish(topic, payload, qos=1)
        print(repr(t0), flush=True)
    """
)


class Publisher:
    """The persistent publisher process: `fire()` makes it publish once and returns its t0."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, broker: Mosquitto) -> Publisher:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, broker.host, str(broker.port), TOPIC, PAYLOAD.decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 10)
        if line.strip() != b"READY":
            raise SystemExit(f"the publisher did not start: {line!r}")
        return cls(proc)

    def fire(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def t0(self) -> float:
        assert self.proc.stdout is not None
        return float(await asyncio.wait_for(self.proc.stdout.readline(), 5))

    async def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await self.proc.wait()


async def next_stop(events: Any) -> Event:
    while True:
        event: Event = await events.get(timeout=5)
        if event.kind == EventKind.STOP:
            return event


async def cycles(path: str, broker: Mosquitto, n: int) -> tuple[dict[str, list[float]], dict[str, Any]]:
    out: dict[str, list[float]] = {m: [] for m in (*METHODS, "bridge_read")}
    pub_bin = find_binary("mosquitto_pub")
    pub_args = ["-h", broker.host, "-p", str(broker.port), "-q", "1", "-t", TOPIC, "-m", PAYLOAD.decode()]
    stops = StopRequests()
    log: list[str] = []
    async with DeviceClient.open(path) as ctl:
        bridge = MqttBridge(ctl, MqttOptions(url=broker.url, rig=RIG), stops=stops, log=log.append)
        task = asyncio.create_task(bridge.run())
        publisher = await Publisher.start(broker)
        try:
            await bridge.wait_connected(timeout=10)
            events, telemetry = ctl.events(), ctl.telemetry()
            for i in range(n * len(METHODS)):
                method = METHODS[i % len(METHODS)]
                await ctl.arm(PLAN)
                await ctl.start()
                while True:  # until a batch shows the plunger moving forward
                    batch = await telemetry.get(timeout=2)
                    last = batch.samples[-1]
                    if int(last["state"]) == State.INJECTING and int(last["motor_um_s"]) > 0:
                        break
                if method == "direct":
                    t0 = time.perf_counter()
                    await ctl.stop(StopSource.FLUORO_OPERATOR)
                    event = await next_stop(events)
                elif method == "publisher":
                    publisher.fire()
                    event = await next_stop(events)
                    t0 = await publisher.t0()
                else:
                    t0 = time.perf_counter()
                    proc = await asyncio.create_subprocess_exec(pub_bin, *pub_args)
                    event = await next_stop(events)
                    if await proc.wait() != 0:
                        raise SystemExit("mosquitto_pub failed")
                expected = StopSource.FLUORO_OPERATOR if method == "direct" else StopSource.FLUORO_REMOTE
                if (event.reason, event.source) != (StopReason.FLUORO_STOP, expected):
                    raise SystemExit(f"unexpected stop for {method}: {event}")
                assert events.received_at is not None
                out[method].append(events.received_at - t0)
                if method != "direct":
                    notes = stops.match(event, events.received_at)
                    out["bridge_read"].append(notes["stop_latency_ms"] / 1000.0)
                await _common.clear_at_rest(ctl)
            counters = ctl.counters
            extra = {
                "bridge_counters": vars(bridge.counters).copy(),
                "link_clean": not (counters.framing_errors or counters.retries or counters.link_losses),
            }
        finally:
            await publisher.close()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if not extra["link_clean"]:
        raise SystemExit(f"the link was not clean during the run: {counters}")
    return out, extra


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cycles", type=int, default=200, help="cycles per method (default %(default)s)")
    parser.add_argument(
        "--broker-nodelay",
        action="store_true",
        help="run the broker with set_tcp_nodelay true (default: Mosquitto's own default, false)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = parser.parse_args(argv)

    load_before = os.getloadavg()[0]
    with (
        tempfile.TemporaryDirectory(prefix="cg-bench-mqtt-") as tmp,
        Mosquitto.start(tmp, tcp_nodelay=args.broker_nodelay) as broker,
    ):
        proc, path = start_simulator()
        try:
            t0 = time.monotonic()
            results, extra = asyncio.run(cycles(path, broker, args.cycles))
            wall = time.monotonic() - t0
        finally:
            stop_process(proc)

    rows = {name: _common.latency_summary(values) for name, values in results.items()}
    direct_p50, direct_p99 = rows["direct"]["p50_ms"], rows["direct"]["p99_ms"]
    for name in ("mosquitto_pub", "publisher", "bridge_read"):
        rows[name]["ratio_p50_vs_direct"] = rows[name]["p50_ms"] / direct_p50
        rows[name]["ratio_p99_vs_direct"] = rows[name]["p99_ms"] / direct_p99
    meets = rows["mosquitto_pub"]["p99_ms"] <= GOAL_P99_MS
    doc = {
        "benchmark": "mqtt_stop_latency",
        "command": _common.command_line("mqtt_stop_latency", argv),
        "machine": _common.machine(),
        "cycles_per_method": args.cycles,
        "publisher": "mosquitto_pub binary (goal figure) and a persistent paho-mqtt publisher process",
        "broker_tcp_nodelay": args.broker_nodelay,
        "wall_s": wall,
        "load_avg_1min_before_after": [load_before, os.getloadavg()[0]],
        "goal_p99_ms": GOAL_P99_MS,
        "meets_goal": meets,
        "publisher_meets_goal": rows["publisher"]["p99_ms"] <= GOAL_P99_MS,
        "rows": rows,
        **extra,
    }
    if args.json:
        _common.dump_json(doc)
        return 0
    labels = {
        "mosquitto_pub": "mosquitto_pub spawned -> STOP read (goal)",
        "publisher": "persistent publish() -> STOP read",
        "bridge_read": "bridge read -> STOP read",
        "direct": "baseline: host stop() -> STOP read",
    }
    print(
        f"MQTT fluoroscopy stop latency, loopback Mosquitto, pty simulator: {args.cycles} cycles per method "
        f"in {wall:.1f} s, broker set_tcp_nodelay {str(args.broker_nodelay).lower()}; "
        f"goal p99 <= {GOAL_P99_MS:g} ms; 1-min load {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after on {os.cpu_count()} CPUs"
    )
    print(f"{'what':<42} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'p50/dir':>8} {'p99/dir':>8}")
    for key, label in labels.items():
        r = rows[key]
        print(
            f"{label:<42} {r['n']:>5.0f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} {r['max_ms']:>8.3f} "
            f"{r.get('ratio_p50_vs_direct', 1.0):>8.2f} {r.get('ratio_p99_vs_direct', 1.0):>8.2f}"
        )
    print(f"bridge counters: {extra['bridge_counters']}")
    print(f"goal: {_common.VERDICT[meets]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
