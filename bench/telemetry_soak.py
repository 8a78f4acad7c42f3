"""1 kHz telemetry with recording over a pty for N minutes: lost sequence numbers, host CPU, RSS.

    python bench/telemetry_soak.py                 # 10 minutes (the docs/design.md figure)
    python bench/telemetry_soak.py --minutes 1 --json

`cementguard sim --pty` runs in its own process in real time and streams every 1 kHz sample (divider
1, 20 samples per batch); this process is the host: `host.client.DeviceClient` reads the stream and
`host.recording.Recorder` writes every sample and counter snapshot to disk, as `cementguard run
--record` does. The controller stays IDLE: the telemetry stream is the same size in every state.

Measured on the host process only (the simulator is another process): CPU = (user + system time) /
wall time over the soak; RSS = peak resident set size (ru_maxrss) at the end; lost sequence numbers
= the link's lost_frames counter; lost samples = gaps in first_index, and the recording's sample
count against the samples the device sent. Baseline in the same run: the same host with telemetry
switched off (SET_TELEMETRY divider 0) for `--baseline-s` seconds, so the CPU figure can be read as
what the 1 kHz stream itself costs.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

from host.client import DeviceClient
from host.recording import Recorder, Recording
from protocol.models import DeviceInfoRecord

REPO = Path(__file__).resolve().parents[1]

GOAL_CPU = 0.10
GOAL_RSS_MB = 150.0


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_simulator() -> tuple[subprocess.Popen[str], str]:
    return _common.start_simulator("BENCH-SOAK")


async def soak(port: str, seconds: float, baseline_s: float, directory: Path) -> dict[str, Any]:
    async with DeviceClient.open(port) as ctl:
        await ctl.set_telemetry(0)  # baseline: the same host, no stream
        c0, w0 = _cpu_s(), time.monotonic()
        await asyncio.sleep(baseline_s)  # measuring an idle window, not synchronising
        baseline_cpu = (_cpu_s() - c0) / (time.monotonic() - w0)

        recorder = Recorder.create(
            directory,
            {"bench": "telemetry_soak"},
            DeviceInfoRecord.from_message(ctl.device),
            counters_source=lambda: ctl.counters,
        )
        first: int | None = None
        last_end = 0
        received = 0
        async with ctl.telemetry() as telemetry:
            await ctl.set_telemetry(1, 20)
            c0, w0 = _cpu_s(), time.monotonic()
            deadline = w0 + seconds
            async for batch in telemetry:
                if first is None:
                    first = batch.first_index
                recorder.add_samples(batch.samples)
                received += len(batch.samples)
                last_end = batch.first_index + len(batch.samples)
                if time.monotonic() >= deadline:
                    break
            wall = time.monotonic() - w0
            cpu = (_cpu_s() - c0) / wall
        await ctl.set_telemetry(0)
        counters = ctl.counters
        await asyncio.to_thread(recorder.close)
    rec = Recording.open(directory)
    sent = last_end - (first or 0)
    return {
        "seconds": wall,
        "samples_received": received,
        "samples_sent_by_device": sent,
        "samples_recorded": len(rec.samples),
        "sample_rate_hz": received / wall,
        "lost_frames": counters.lost_frames,
        "lost_samples": counters.lost_samples,
        "framing_errors": counters.framing_errors,
        "dropped_batches": counters.dropped_batches,
        "host_cpu_fraction": cpu,
        "baseline_cpu_fraction": baseline_cpu,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "recording_complete": rec.is_complete,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument("--baseline-s", type=float, default=10.0, help="telemetry-off baseline (default 10)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    proc, port = start_simulator()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            result = asyncio.run(soak(port, args.minutes * 60.0, args.baseline_s, Path(tmp) / "soak"))
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    ok = (
        result["lost_frames"] == 0
        and result["lost_samples"] == 0
        and result["samples_recorded"] == result["samples_received"] == result["samples_sent_by_device"]
        and result["host_cpu_fraction"] <= GOAL_CPU
        and result["rss_mb"] <= GOAL_RSS_MB
    )
    if args.json:
        _common.dump_json(
            {
                "benchmark": "telemetry_soak",
                "command": _common.command_line("telemetry_soak.py", argv),
                "machine": _common.machine(),
                "result": result,
                "meets_goal": ok,
            }
        )
        return 0
    r = result
    print(f"1 kHz telemetry with recording over a pty, {r['seconds']:.0f} s")
    print(f"  samples: device sent {r['samples_sent_by_device']}, host received {r['samples_received']}, "
          f"recorded {r['samples_recorded']} ({r['sample_rate_hz']:.1f} samples/s)")  # fmt: skip
    print(f"  lost sequence numbers {r['lost_frames']}, lost samples {r['lost_samples']}, "
          f"framing errors {r['framing_errors']}, dropped batches {r['dropped_batches']}")  # fmt: skip
    print(f"  host CPU {r['host_cpu_fraction']:.1%} of a core (goal <= {GOAL_CPU:.0%}); "
          f"baseline with telemetry off {r['baseline_cpu_fraction']:.1%}")  # fmt: skip
    print(f"  host RSS peak {r['rss_mb']:.0f} MB (goal <= {GOAL_RSS_MB:.0f}); recording complete: "
          f"{r['recording_complete']}")  # fmt: skip
    print(f"  goal: {_common.VERDICT[ok]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
