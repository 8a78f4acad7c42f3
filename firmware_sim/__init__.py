"""Controller firmware reference implementation and the simulated hardware it drives.

- `firmware_sim.hal`: the boundary between firmware and hardware (what a tick reads and writes).
- `firmware_sim.controller`: the deterministic, tick-driven controller core (no clock, no I/O).
- `firmware_sim.plant`: the physics of pump, cement, cannula and vertebra (numpy is fine there).
- `firmware_sim.device`: binds both to a clock and a byte stream, as firmware sits on a UART.
"""
