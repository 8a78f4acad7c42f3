"""Telemetry decode throughput on the host, in samples/s on one core, against a baseline from the same run.

    python bench/telemetry_decode.py                    # table
    python bench/telemetry_decode.py --json             # machine-readable
    python bench/telemetry_decode.py --profile 25       # cProfile of one decode pass, batch size 25

A long byte stream of TELEMETRY_BATCH frames is fed to protocol.MessageStream in serial-read-sized
chunks, and the decoded sample arrays are concatenated into one, as the host does. The same stream also
goes through a baseline that does the least any Python decoder must do per frame with the same C
primitives (split on 0x00, cobs.decode, binascii CRC, np.frombuffer, concatenate): the machine is shared
and noisy, so the ratio of the two is the figure to compare across runs, not the absolute rate. Each
figure is the best of --repeats runs. The script also prints what the serial link itself can carry for
this layout, which is the real limit the codec must stay clear of.
"""

from __future__ import annotations

import argparse
import binascii
import cProfile
import gc
import json
import math
import os
import platform
import pstats
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from cobs import cobs

from protocol import framing
from protocol.codec import HEADER_SIZE, Frame, MessageStream, encode_frame
from protocol.enums import Flags, State
from protocol.messages import TelemetryBatch
from protocol.telemetry import BATCH_HEADER, MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE, SampleArray

GOAL_SAMPLES_PER_S = 1_000_000
STREAM_RATE_HZ = 1000
BAUDS = (115_200, 921_600)
BITS_PER_BYTE = 10  # 8N1: start + 8 data + stop
LINK_HEADROOM = 0.2


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


def make_samples(n: int, seed: int = 0) -> SampleArray:
    """A plausible injection: 1 kHz, noisy pressure around 0.8 MPa, rising volume, some NaN viscosity."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n, dtype=SAMPLE_DTYPE)
    s["t_us"] = 5_000_000 + np.arange(n, dtype=np.uint64) * 1000
    s["pressure_pa"] = 800_000 + rng.normal(0, 2_000, n).astype(np.int32)
    s["flow_nl_s"] = 33_333 + rng.normal(0, 300, n).astype(np.int32)
    s["delivered_nl"] = np.cumsum(s["flow_nl_s"] // 1000, dtype=np.int64).astype(np.int32)
    s["motor_um_s"] = 202
    visc = 400.0 + rng.normal(0, 5.0, n)
    visc[rng.random(n) < 0.01] = np.nan
    s["viscosity_pas"] = visc
    valid = np.isfinite(visc)
    base = int(Flags.MOTOR_MOVING | Flags.HOST_LINK_OK)
    s["flags"] = np.where(valid, base | int(Flags.VISCOSITY_VALID), base)
    s["state"] = int(State.INJECTING)
    return s


@dataclass(frozen=True)
class Workload:
    batch: int
    samples: SampleArray
    wire: bytes
    chunks: list[bytes]
    frames: int


def build(n_samples: int, batch: int, chunk: int) -> Workload:
    samples = make_samples(n_samples)
    parts = [
        encode_frame(TelemetryBatch(start, 1000, samples[start : start + batch]), seq)
        for seq, start in enumerate(range(0, n_samples, batch))
    ]
    wire = b"".join(parts)
    # What successive serial reads hand the host: bytes objects of up to `chunk` bytes.
    chunks = [wire[i : i + chunk] for i in range(0, len(wire), chunk)]
    return Workload(batch, samples, wire, chunks, len(parts))


# ---------------------------------------------------------------------------------------------
# Decoders under test
# ---------------------------------------------------------------------------------------------


def join_samples(arrays: list[SampleArray]) -> SampleArray:
    """One array from many batches: a byte join, then one frombuffer. np.concatenate gives the same
    result but promotes the structured dtype pair by pair in Python (numpy 2.x), which costs more
    than decoding the frames; see the `np.concatenate` column."""
    # ndarrays export the buffer protocol; numpy's stubs do not say so on Python 3.11. Joining the
    # arrays themselves is 10x faster than joining their .data memoryviews (one object per batch).
    return np.frombuffer(bytearray().join(arrays), SAMPLE_DTYPE)  # type: ignore[arg-type]


def _feed(w: Workload) -> list[SampleArray]:
    stream = MessageStream()
    arrays: list[SampleArray] = []
    append = arrays.append
    for chunk in w.chunks:
        for item in stream.feed(chunk):
            if isinstance(item, Frame):
                message = item.message
                if isinstance(message, TelemetryBatch):
                    append(message.samples)
    return arrays


def decode_codec(w: Workload) -> SampleArray:
    """The host path: MessageStream over serial-sized chunks, then one (writable) array."""
    return join_samples(_feed(w))


def decode_codec_npconcat(w: Workload) -> SampleArray:
    """The same, joined with a plain np.concatenate."""
    return np.concatenate(_feed(w))


_OFFSET = HEADER_SIZE + BATCH_HEADER.size


def decode_floor(w: Workload) -> SampleArray:
    """Baseline: the least per-frame work with the same C primitives and the same join, no header or
    length checks, no counters, no objects. Not a usable decoder: a reference measured in the same run."""
    arrays: list[SampleArray] = []
    append = arrays.append
    for part in w.wire.split(b"\x00"):
        if not part:
            continue
        body = cobs.decode(part)
        if binascii.crc_hqx(body[:-2], 0xFFFF) != int.from_bytes(body[-2:], "little"):
            continue
        append(np.frombuffer(body, SAMPLE_DTYPE, (len(body) - _OFFSET - 2) // SAMPLE_SIZE, _OFFSET))
    return join_samples(arrays)


def decode_memcpy(w: Workload) -> SampleArray:
    """Upper bound: the sample bytes alone, one frombuffer and one copy."""
    return np.frombuffer(w.samples.tobytes(), SAMPLE_DTYPE).copy()


def best_time(fn: Callable[[Workload], SampleArray], w: Workload, repeats: int) -> float:
    best = math.inf
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        out = fn(w)
        dt = time.perf_counter() - t0
        best = min(best, dt)
        if out.tobytes() != w.samples.tobytes():
            raise AssertionError(f"{fn.__name__} decoded the wrong samples")
    return best


@dataclass(frozen=True)
class Result:
    batch: int
    samples: int
    frames: int
    wire_bytes: int
    chunk: int
    repeats: int
    codec_s: float
    codec_samples_per_s: float
    codec_npconcat_samples_per_s: float
    floor_samples_per_s: float
    memcpy_samples_per_s: float
    codec_vs_floor: float
    meets_goal: bool


def measure(n_samples: int, batch: int, chunk: int, repeats: int) -> Result:
    w = build(n_samples, batch, chunk)
    t_codec = best_time(decode_codec, w, repeats)
    t_npconcat = best_time(decode_codec_npconcat, w, repeats)
    t_floor = best_time(decode_floor, w, repeats)
    t_memcpy = best_time(decode_memcpy, w, repeats)
    rate = n_samples / t_codec
    return Result(
        batch=batch,
        samples=n_samples,
        frames=w.frames,
        wire_bytes=len(w.wire),
        chunk=chunk,
        repeats=repeats,
        codec_s=t_codec,
        codec_samples_per_s=rate,
        codec_npconcat_samples_per_s=n_samples / t_npconcat,
        floor_samples_per_s=n_samples / t_floor,
        memcpy_samples_per_s=n_samples / t_memcpy,
        codec_vs_floor=t_floor / t_codec,
        meets_goal=rate >= GOAL_SAMPLES_PER_S,
    )


# ---------------------------------------------------------------------------------------------
# The link's own limit
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LinkLimit:
    batch: int
    payload_bytes: int
    """protocol header + batch header + samples."""
    wire_bytes_worst: int
    """+ CRC + worst-case COBS overhead + delimiter."""
    wire_bytes_per_sample: float
    measured_wire_bytes_per_sample: float | None
    samples_per_s: dict[str, float]
    min_divider_115200: int
    link_use_at_min_divider_115200: float
    divider_115200_headroom: int
    """Smallest divider that leaves LINK_HEADROOM of the link for STATUS, EVENT, ACK, HEARTBEAT."""
    link_use_at_headroom_divider_115200: float


def link_limit(batch: int, measured: float | None = None) -> LinkLimit:
    payload = HEADER_SIZE + BATCH_HEADER.size + batch * SAMPLE_SIZE
    body = payload + framing.CRC_SIZE
    cobs_worst = max(1, math.ceil(body / 254))  # one code byte per 254 data bytes, at least one
    wire = body + cobs_worst + len(framing.DELIMITER)
    per_sample = wire / batch
    rates = {str(b): b / BITS_PER_BYTE / per_sample for b in BAUDS}
    divider = math.ceil(STREAM_RATE_HZ / rates["115200"])
    use = (STREAM_RATE_HZ / divider) / rates["115200"]
    roomy = math.ceil(STREAM_RATE_HZ / (rates["115200"] * (1 - LINK_HEADROOM)))
    roomy_use = (STREAM_RATE_HZ / roomy) / rates["115200"]
    return LinkLimit(batch, payload, wire, per_sample, measured, rates, divider, use, roomy, roomy_use)


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def print_table(results: list[Result], links: list[LinkLimit]) -> None:
    print(
        f"telemetry decode, best of {results[0].repeats}, {results[0].samples} samples, chunks of "
        f"{results[0].chunk} B; goal >= {GOAL_SAMPLES_PER_S:,} samples/s"
    )
    head = f"{'batch':>5} {'frames':>7} {'codec samples/s':>16} {'floor samples/s':>16} {'codec/floor':>11} "
    print(head + f"{'goal':>5} {'np.concatenate':>15} {'memcpy samples/s':>17}")
    verdict = {True: "ok", False: "MISS"}
    for r in results:
        print(
            f"{r.batch:>5} {r.frames:>7} {r.codec_samples_per_s:>16,.0f} {r.floor_samples_per_s:>16,.0f} "
            f"{r.codec_vs_floor:>11.2f} {verdict[r.meets_goal]:>5} {r.codec_npconcat_samples_per_s:>15,.0f} "
            f"{r.memcpy_samples_per_s:>17,.0f}"
        )
    print()
    print("link limit (8N1, 10 bits/byte; worst-case COBS overhead; dividers for the 1 kHz stream at 115200)")
    print(
        f"{'batch':>5} {'frame B':>8} {'B/sample':>9} {'measured':>9} {'@115200/s':>10} {'@921600/s':>10} "
        f"{'min divider':>11} {'link use':>8} {'divider, 20% free':>17} {'link use':>8}"
    )
    for link in links:
        measured = (
            f"{link.measured_wire_bytes_per_sample:.3f}" if link.measured_wire_bytes_per_sample else "-"
        )
        print(
            f"{link.batch:>5} {link.wire_bytes_worst:>8} {link.wire_bytes_per_sample:>9.3f} {measured:>9} "
            f"{link.samples_per_s['115200']:>10.0f} {link.samples_per_s['921600']:>10.0f} "
            f"{link.min_divider_115200:>11} {link.link_use_at_min_divider_115200:>8.0%} "
            f"{link.divider_115200_headroom:>17} {link.link_use_at_headroom_divider_115200:>8.0%}"
        )


def profile(n_samples: int, batch: int, chunk: int) -> None:
    w = build(n_samples, batch, chunk)
    prof = cProfile.Profile()
    prof.enable()
    decode_codec(w)
    prof.disable()
    pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(12)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", type=int, default=200_000, help="samples per stream (default %(default)s)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        nargs="+",
        default=[20, MAX_BATCH_SAMPLES],
        help="batch sizes to measure (default 20 and the largest, 25)",
    )
    parser.add_argument("--chunk", type=int, default=4096, help="bytes per feed() call (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="best of this many runs (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--profile", type=int, metavar="BATCH", help="cProfile one decode pass and exit")
    args = parser.parse_args(argv)
    for b in [*args.batch, *([args.profile] if args.profile else [])]:
        if not 1 <= b <= MAX_BATCH_SAMPLES:
            parser.error(f"batch size {b} outside 1..{MAX_BATCH_SAMPLES}")
    if args.profile:
        profile(args.samples, args.profile, args.chunk)
        return 0
    results = [measure(args.samples, b, args.chunk, args.repeats) for b in args.batch]
    links = [link_limit(r.batch, r.wire_bytes / r.samples) for r in results]
    if args.json:
        doc = {
            "benchmark": "telemetry_decode",
            "command": "python bench/telemetry_decode.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "goal_samples_per_s": GOAL_SAMPLES_PER_S,
            "machine": machine(),
            "results": [asdict(r) for r in results],
            "link": [asdict(link) for link in links],
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(results, links)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
