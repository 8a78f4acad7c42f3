"""`cementguard bridge`: one controller on one MQTT broker, until Ctrl-C or SIGTERM.

The broker URL and the rig come from the command line or from the settings ([mqtt] in the settings
file, CEMENTGUARD_MQTT__* in the environment), which also supply TLS and the user name and password.
The password is never printed. Log lines go to stderr (stdlib logging, INFO unless `cementguard
--log-level` says otherwise); the first line on stdout is
`BRIDGE <broker url> <rig>` once the controller answered.

Exit codes: 0 stopped by a signal; 2 usage or settings error; 4 link failure (the controller could
not be reached). The broker being away is not an error: the bridge waits for it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from host.cli_types import CONFIG_HELP, EXIT_OK, EXIT_USAGE, add_time_scale
from host.client import DeviceClient, LinkOptions
from host.control import serve_control
from host.errors import CementguardError
from host.mqtt._bridge import MqttBridge
from host.mqtt._options import MqttOptions, MqttOptionsError
from host.settings import SettingsError, command_settings

EXIT_LINK = 4


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "bridge",
        help="publish a controller's state, telemetry and events over MQTT; take fluoroscopy stops",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="exit codes: 0 stopped by a signal; 2 usage or settings error; 4 link failure",
    )
    p.add_argument("--port", help="serial device or pyserial URL (default: the settings' port)")
    p.add_argument("--mqtt", metavar="URL", help="broker: mqtt://HOST[:PORT], mqtts://, ws://, wss://")
    p.add_argument("--rig", help="this rig's name in the topics (cementguard/<rig>/...)")
    p.add_argument("--config", help=CONFIG_HELP)
    add_time_scale(p)
    p.set_defaults(func=_main, default_log_level="INFO")


log = logging.getLogger(__name__)


def _log(line: str) -> None:
    log.info("%s", line)


def _main(args: argparse.Namespace) -> int:
    try:
        settings, port = command_settings(args.config, args.port)
        options = MqttOptions.from_settings(settings.mqtt, url=args.mqtt, rig=args.rig)
        link = LinkOptions.from_settings(settings, time_scale=args.time_scale)
    except (SettingsError, MqttOptionsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_bridge(port, link, options))


async def _bridge(port: str, link: LinkOptions, options: MqttOptions) -> int:
    try:
        ctl = await DeviceClient.connect(port, link)
    except CementguardError as exc:
        print(f"link failure: {exc}", file=sys.stderr)
        return EXIT_LINK
    bridge = MqttBridge(ctl, options)  # its lines go to the log: stderr at INFO by default
    task = asyncio.create_task(bridge.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, task.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            async with serve_control(ctl):  # `cementguard stop/status/clear` from another terminal
                print(f"BRIDGE {options.url} {options.rig}", flush=True)
                _log(f"bridging {ctl.device.serial} on {port} to {options.describe()}")
                await task
    finally:
        await ctl.close()
        c = bridge.counters
        _log(
            f"bridge ended: published {c.published}, dropped {c.dropped}, reconnects {c.reconnects}, "
            f"stops forwarded {c.stops_forwarded}, refused {c.refused}, malformed {c.malformed}, "
            f"oversized {c.oversized}"
        )
    return EXIT_OK
