"""Device runtime: binds the controller core and the plant to a clock and a byte stream.

This is the part of the firmware that a microcontroller port replaces with its timer interrupt and
UART driver; everything it calls is pure.
"""

from firmware_sim.device.runtime import DeviceRuntime, TickStats
from firmware_sim.device.transport import PtyTransport, TcpTransport, Transport

__all__ = ["DeviceRuntime", "PtyTransport", "TcpTransport", "TickStats", "Transport"]
