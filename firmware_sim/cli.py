"""`cementguard sim`: serve the simulated pump on a pty or TCP, or validate the physics.

The first line on stdout is always `PORT <address>`, so scripts and tests can start the simulator
and read where to connect before anything else is printed.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import stat
import sys
import tomllib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from pydantic import ValidationError

from firmware_sim.controller.config import OPTIONAL_CAPABILITIES
from firmware_sim.plant import Plant, PlantConfig
from protocol import Event, EventKind

if TYPE_CHECKING:
    from firmware_sim.controller import TickOutput
    from firmware_sim.imaging.publisher import FrameStreamer


TIME_SCALE_RANGE = (1.0, 100.0)
"""Simulated seconds per wall second the simulator accepts (the host's --time-scale allows the same:
host.cli_types.TIME_SCALE; the simulator does not import the host, docs/design.md "Layering")."""
_TIME_SCALE_ALLOWED = f"allowed {TIME_SCALE_RANGE[0]:g}..{TIME_SCALE_RANGE[1]:g} x"


_SEED_MAX = 2**63 - 1
"""The plant's seed range (PlantConfig.seed)."""


def _seed(text: str) -> int:
    """argparse type of --seed: a whole number in 0..2**63-1, else a usage error naming it (not a
    validation error blamed on the scenario file)."""
    allowed = f"allowed 0..{_SEED_MAX}"
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; {allowed}") from None
    if not 0 <= value <= _SEED_MAX:
        raise argparse.ArgumentTypeError(f"{text} is outside the range; {allowed}")
    return value


def _time_scale(text: str) -> float:
    """argparse type of --time-scale: a finite number in TIME_SCALE_RANGE, else a usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; {_TIME_SCALE_ALLOWED}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number; {_TIME_SCALE_ALLOWED}")
    if not TIME_SCALE_RANGE[0] <= value <= TIME_SCALE_RANGE[1]:
        raise argparse.ArgumentTypeError(f"{text} is outside the range; {_TIME_SCALE_ALLOWED}")
    return value


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run the simulated pump, cement and vertebra on a pty or TCP port",
        description=(
            "Serve the controller firmware and the simulated plant on a byte stream, at a 1 kHz tick. "
            "Prints 'PORT <address>' as the first line, then serves until SIGINT or SIGTERM."
        ),
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (the default)")
    where.add_argument(
        "--tcp",
        metavar="HOST:PORT",
        help="serve on TCP for pyserial socket:// URLs; port 0 picks a free port (loopback by default)",
    )
    p.add_argument("--scenario", type=Path, help="TOML file with plant parameters and scheduled events")
    p.add_argument("--seed", type=_seed, default=None, help="override the scenario's random seed")
    p.add_argument(
        "--time-scale",
        type=_time_scale,
        default=1.0,
        help=(
            f"run simulated time this many times faster than wall time ({_TIME_SCALE_ALLOWED}). "
            "The host must then "
            "heartbeat time-scale times faster than the reported watchdog: pass the same value to "
            "`cementguard run --time-scale`"
        ),
    )
    p.add_argument(
        "--trace",
        action="store_true",
        help=(
            "also log to stderr, in simulated time, each plant event that fires, each STOP event with "
            "the plant's true delivered volume, and that volume and pressure every 50 ms "
            "(lines starting 'TRACE'; read by `cementguard hil run`, format in docs/hil.md)"
        ),
    )
    p.add_argument("--serial", default="SIM-0001", help="device serial number reported in the handshake")
    p.add_argument(
        "--without",
        action="append",
        choices=sorted(OPTIONAL_CAPABILITIES),
        default=[],
        metavar="CAPABILITY",
        help=(
            "simulate a device that lacks this capability (repeatable; one of "
            f"{', '.join(sorted(OPTIONAL_CAPABILITIES))}): it is clear in DEVICE_INFO and the "
            "commands it covers are unknown to the device (NAK UNKNOWN_COMMAND, SPEC §6.12, §7.7), "
            "as a firmware built without them. For testing hosts against such a device"
        ),
    )
    p.add_argument(
        "--setup-file",
        type=Path,
        default=None,
        help=(
            "JSON file that keeps the syringe and the calibration across restarts, as a pump's flash "
            "does (created on the first change; a malformed file is an error and is left as it is). "
            "Default: none, every start has the factory setup"
        ),
    )
    p.add_argument(
        "--power-on",
        choices=["host", "now"],
        default="host",
        help=(
            "when the simulated device boots: 'host' when a host first opens the port, so the host "
            "reads the POWER_UP event (as with a USB-powered pump); 'now' at once"
        ),
    )
    frames = p.add_argument_group(
        'fluoroscopy frames (docs/fluoroscopy.md; need vertebra = "spatial" in the scenario)'
    )
    frames.add_argument(
        "--frames-out",
        metavar="PATH|HOST:PORT",
        help=(
            "publish synthetic fluoroscopy frames on this Unix socket path or TCP address (port 0 picks "
            "one); read them with `--frames sim://PATH` or `sim://HOST:PORT`. Prints 'FRAMES <url>' "
            "on stdout after the PORT line"
        ),
    )
    frames.add_argument(
        "--frames-out-ap",
        metavar="PATH|HOST:PORT",
        help=(
            "with --frames-out: the AP view on a second socket, the lateral one on --frames-out (a "
            "biplane C-arm's two outputs; --frames-view is then both). Prints 'FRAMES-AP <url>' after "
            "the FRAMES line; read with `--frames sim://LATERAL --frames-ap sim://AP`"
        ),
    )
    frames.add_argument(
        "--frames-truth",
        type=Path,
        metavar="PATH",
        help="write each frame's ground truth (front depth, leaks, true outline) here as JSON lines, "
        "for scoring; never sent on the frame stream",
    )
    frames.add_argument("--frames-view", choices=["lateral", "ap", "both"], default="lateral")
    frames.add_argument("--frames-fps", type=float, default=10.0, help="pulses per second (1..30)")
    frames.add_argument(
        "--frames-dose", type=float, default=1000.0, help="photons per pixel through soft tissue (10..1e6)"
    )
    frames.add_argument("--frames-bits", type=int, default=12, help="detector bit depth (8..16)")
    frames.add_argument(
        "--frames-size", default="512x512", metavar="WxH", help="image size in pixels (64..2048 a side)"
    )
    p.set_defaults(func=_serve)
    sub = p.add_subparsers(dest="sim_command", metavar="{validate}")
    v = sub.add_parser(
        "validate",
        help="check the simulator against the published figures (exits 1 on a FAIL)",
        description="Print each validation target (sources in docs/references.md): published, simulated, "
        "tolerance, basis, PASS / FAIL / MISS (known).",
    )
    v.add_argument("--markdown", action="store_true", help="print a Markdown table")
    v.add_argument("--lumped-only", action="store_true", help="only targets 1-5 (the lumped body)")
    v.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    from firmware_sim.plant.validate import main

    argv = ["--markdown"] if args.markdown else []
    if args.lumped_only:
        argv.append("--lumped-only")
    return main(argv)


MAX_SCENARIO_BYTES = 1 << 20
"""A scenario is a few kB; the host reads its files with the same bound (host.file_limits, which the
simulator does not import: docs/design.md, "Layering")."""


def _read_scenario_text(path: Path) -> str:
    """The scenario file's text: a regular file of at most MAX_SCENARIO_BYTES (`/dev/zero` or a FIFO
    is refused at once, never read until memory runs out or a writer comes). ValueError if not."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{path}: is not a regular file; allowed a regular file")
        data = os.read(fd, MAX_SCENARIO_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_SCENARIO_BYTES:
        raise ValueError(f"{path}: is larger than {MAX_SCENARIO_BYTES} bytes; allowed at most that")
    return data.decode("utf-8")


def load_plant_config(path: Path | None, seed: int | None) -> PlantConfig:
    """Plant parameters from a scenario file (its [plant] table, or the whole file)."""
    data: dict[str, object] = {}
    if path is not None:
        raw = tomllib.loads(_read_scenario_text(path))
        plant = raw.get("plant", raw)
        data = dict(plant) if isinstance(plant, dict) else {}
    if seed is not None:
        data["seed"] = seed
    return PlantConfig.model_validate(data)


TRACE_TRUTH_PERIOD_US = 50_000
TRACE_SPATIAL_PERIOD_US = 1_000_000
"""The spatial body's truth line: once a second (its flow update rate), and at exit."""


def _tracer(plant: Plant) -> Callable[[int, TickOutput], None]:
    """The `--trace` log: what only the simulator knows (when a plant event really fired, the cement
    truly delivered out of the tip), in simulated time, for HIL detection-latency and after-flow
    figures. One line each, to stderr (stdout carries only the PORT line):

        TRACE plant <t_s> <delivered_ml> <start|end> <kind>
        TRACE stop <t_s> <reason> <source> <delivered_ml> <syringe_kpa>
        TRACE truth <t_s> <delivered_ml> <syringe_kpa>
        TRACE spatial <t_s> front <f> quarter <t_s|-> peak_c <degC> canal_c <degC> leak <path>=<mL>@<t_s|->

    (the last only with the spatial body: once a second and at exit; `plant/spatial_truth.py`) and,
    at exit, `TRACE ticks <n> overruns <late by > 1 period> max_late_ms <wall ms>`: whether the
    simulator kept its real-time tick (a starved simulator catches up in bursts, which a host's
    heartbeats cannot keep pace with).
    """
    seen = 0
    next_truth_us = 0
    next_spatial_us = 0
    spatial = plant.spatial

    def trace(now_us: int, out: TickOutput) -> None:
        nonlocal seen, next_truth_us, next_spatial_us
        lines = []
        fired = plant.fired_events
        for ev in fired[seen:]:
            lines.append(f"TRACE plant {ev.t_s:.4f} {ev.delivered_ml:.6f} {ev.phase} {ev.event.kind}")
        seen = len(fired)
        t_s = now_us / 1e6
        delivered_ml = plant.delivered_volume_m3 * 1e6
        p_kpa = plant.syringe_pressure_pa / 1e3
        for msg in out.outgoing:
            if isinstance(msg, Event) and msg.kind == EventKind.STOP:
                lines.append(
                    f"TRACE stop {t_s:.4f} {int(msg.reason)} {int(msg.source)} {delivered_ml:.6f} {p_kpa:.2f}"
                )
        if now_us >= next_truth_us:
            next_truth_us = now_us + TRACE_TRUTH_PERIOD_US
            lines.append(f"TRACE truth {t_s:.4f} {delivered_ml:.6f} {p_kpa:.2f}")
        if spatial is not None and now_us >= next_spatial_us:
            next_spatial_us = now_us + TRACE_SPATIAL_PERIOD_US
            lines.append(spatial.truth().trace_line())
        if lines:
            print("\n".join(lines), file=sys.stderr, flush=True)

    return trace


def _serve(args: argparse.Namespace) -> int:
    from firmware_sim.controller import Controller, ControllerConfig, FirmwareIdentity
    from firmware_sim.device import DeviceRuntime, PtyTransport, TcpTransport

    try:
        plant_config = load_plant_config(args.scenario, args.seed)
    except FileNotFoundError:
        print(f"error: scenario file {args.scenario} does not exist", file=sys.stderr)
        return 2
    except tomllib.TOMLDecodeError as exc:
        print(f"error: scenario file {args.scenario} is not valid TOML: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"error: scenario file {args.scenario}:\n{exc}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:  # not a regular file, too large, not UTF-8, unreadable
        print(f"error: scenario file {exc}", file=sys.stderr)
        return 2

    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        try:
            transport: PtyTransport | TcpTransport = TcpTransport(host or "127.0.0.1", int(port))
        except (ValueError, OSError) as exc:
            print(f"error: --tcp {args.tcp}: {exc}", file=sys.stderr)
            return 2
    else:
        transport = PtyTransport()

    from firmware_sim.device.setup_store import SetupFileError, SetupWriter, load_setup
    from firmware_sim.hal import REFERENCE_RIG

    config = ControllerConfig()
    setup_file: Path | None = args.setup_file
    try:
        setup = load_setup(setup_file, config, REFERENCE_RIG) if setup_file is not None else None
    except SetupFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    identity = FirmwareIdentity.simulator(args.serial)
    for name in args.without:
        identity = replace(identity, capabilities=identity.capabilities & ~OPTIONAL_CAPABILITIES[name])
    controller = Controller(config, identity=identity, setup=setup)

    def _log_link(attached: bool, now_us: int) -> None:
        # stderr, one line per change: stdout carries only the PORT line.
        what = "host attached" if attached else "host detached"
        print(f"{now_us / 1e6:10.3f} s  {what}", file=sys.stderr, flush=True)

    plant = Plant(plant_config)
    tracer = _tracer(plant) if args.trace else None
    streamer = None
    if args.frames_out_ap is not None and args.frames_out is None:
        transport.close()
        print("error: --frames-out-ap needs --frames-out (the lateral view's socket)", file=sys.stderr)
        return 2
    if args.frames_out is not None:
        try:
            streamer = _frame_streamer(args, plant)
        except ValueError as exc:
            transport.close()
            print(f"error: {exc}", file=sys.stderr)
            return 2
    on_tick = _both(tracer, streamer.on_tick if streamer is not None else None)

    def _setup_error(text: str) -> None:
        print(f"error: {text}", file=sys.stderr, flush=True)

    writer = None if setup_file is None else SetupWriter(setup_file, _setup_error)
    runtime = DeviceRuntime(
        controller,
        plant,
        transport,
        on_link_change=_log_link,
        on_tick=on_tick,
        on_setup_change=None if writer is None else writer.submit,
    )

    stopping = False

    def _stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"PORT {transport.address}", flush=True)
    if streamer is not None:
        print(f"FRAMES {streamer.listener.url}", flush=True)
        if streamer.ap_listener is not None:
            print(f"FRAMES-AP {streamer.ap_listener.url}", flush=True)
    try:
        if args.power_on == "host" and not runtime.wait_for_host(lambda: stopping):
            return 0
        runtime.run_realtime(lambda: stopping, time_scale=args.time_scale)
    finally:
        transport.close()
        if writer is not None:
            writer.close()  # the last change is on disk before the process ends
        if streamer is not None:
            streamer.close()
            print(
                f"{runtime.now_us / 1e6:10.3f} s  frames sent {streamer.sent} dropped {streamer.dropped}",
                file=sys.stderr,
                flush=True,
            )
        if args.trace:
            stats = runtime.stats
            late_ms = max(stats.lateness_us, default=0) / 1e3
            if plant.spatial is not None:
                print(plant.spatial.truth().trace_line(), file=sys.stderr, flush=True)
            print(
                f"TRACE ticks {stats.ticks} overruns {stats.overruns} max_late_ms {late_ms:.1f} "
                f"slips {stats.slips}",
                file=sys.stderr,
                flush=True,
            )
    return 0


def _both(
    a: Callable[[int, TickOutput], None] | None, b: Callable[[int], None] | None
) -> Callable[[int, TickOutput], None] | None:
    """One tick hook for the trace log and the frame streamer (either may be absent)."""
    if b is None:
        return a
    if a is None:
        return lambda now_us, out: b(now_us)

    def both(now_us: int, out: TickOutput) -> None:
        a(now_us, out)
        b(now_us)

    return both


_FRAMES_OPTION = {
    "width_px": "--frames-size",
    "height_px": "--frames-size",
    "fps": "--frames-fps",
    "photons_per_pixel": "--frames-dose",
    "bit_depth": "--frames-bits",
}


def _frame_streamer(args: argparse.Namespace, plant: Plant) -> FrameStreamer:
    """The frame publisher of `--frames-out`; ValueError naming the option and what is allowed."""
    from firmware_sim.imaging.camera import FluoroCamera
    from firmware_sim.imaging.fluoro import FluoroConfig, View
    from firmware_sim.imaging.publisher import FrameListener, FrameStreamer
    from firmware_sim.imaging.truth import TruthWriter

    if plant.spatial is None:
        raise ValueError(
            '--frames-out needs the spatial vertebra: set vertebra = "spatial" in the scenario\'s [plant]'
        )
    width, sep, height = args.frames_size.partition("x")
    if not (sep and width.isdigit() and height.isdigit()):
        raise ValueError(f"--frames-size {args.frames_size!r} is not WIDTHxHEIGHT; allowed e.g. 512x512")
    try:
        config = FluoroConfig(
            width_px=int(width),
            height_px=int(height),
            fps=args.frames_fps,
            photons_per_pixel=args.frames_dose,
            bit_depth=args.frames_bits,
            seed=plant.config.seed,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        option = _FRAMES_OPTION.get(str(first["loc"][0]) if first["loc"] else "", "--frames-*")
        raise ValueError(f"{option}: {first['msg'].removeprefix('Value error, ')}") from None
    both = args.frames_view == "both" or args.frames_out_ap is not None
    views: tuple[View, ...] = ("lateral", "ap") if both else (args.frames_view,)
    camera = FluoroCamera(plant.spatial, config, views)
    truth = None
    if args.frames_truth is not None:
        try:
            truth = TruthWriter(args.frames_truth)
        except OSError as exc:
            raise ValueError(f"--frames-truth {args.frames_truth}: {exc.strerror}") from None
    try:
        listener = FrameListener(args.frames_out)
    except OSError as exc:
        if truth is not None:
            truth.close()
        raise ValueError(f"--frames-out {args.frames_out}: {exc}") from None
    ap_listener = None
    if args.frames_out_ap is not None:
        try:
            ap_listener = FrameListener(args.frames_out_ap)
        except (OSError, ValueError) as exc:
            listener.close()
            if truth is not None:
                truth.close()
            if isinstance(exc, ValueError):  # it names --frames-out: this is the AP one's address
                raise ValueError(str(exc).replace("--frames-out ", "--frames-out-ap ", 1)) from None
            raise ValueError(f"--frames-out-ap {args.frames_out_ap}: {exc}") from None
    try:
        return FrameStreamer(camera, listener, truth, ap_listener)
    except OSError as exc:  # the renderer did not start
        listener.close()
        if ap_listener is not None:
            ap_listener.close()
        if truth is not None:
            truth.close()
        raise ValueError(f"--frames-out: {exc}") from None
