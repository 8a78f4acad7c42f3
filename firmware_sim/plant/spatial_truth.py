"""`SpatialTruth`: the spatial body's ground truth in a few numbers, and its one-line trace form.

What a HIL scenario can state expectations on (`[expect.truth]`, docs/hil.md): how far back the
cement reaches, whether and when it crossed the posterior-quarter line, the cement in each leak path
and when each opened, the hottest cell of the body and the canal face of the posterior wall. The
simulator writes it on its `--trace` stream (`TRACE spatial ...`, once a second of device time and
at exit); the HIL runner reads it back with `parse`. Ground truth: never telemetry.

Line format (device seconds, mL, degC; ``-`` for "not yet")::

    TRACE spatial <t_s> front <fraction> quarter <t_s|-> peak_c <degC> canal_c <degC|nan>
        [leak <name>=<mL>@<onset t_s|->]...
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class SpatialTraceError(ValueError):
    """A `TRACE spatial` line that does not parse (names the token)."""


@dataclass(frozen=True, slots=True)
class LeakTruth:
    """Cement that left the body through one leak path, and when it started."""

    volume_ml: float
    onset_t_s: float | None


@dataclass(frozen=True, slots=True)
class SpatialTruth:
    """The spatial body's ground truth at device time `t_s`."""

    t_s: float
    front_ap_fraction: float
    """0 anterior cortex .. 1 posterior wall (`SpatialVertebra.front_ap_fraction`)."""
    posterior_quarter_t_s: float | None
    """First crossing of the posterior-quarter line (None: not crossed)."""
    peak_temperature_c: float
    """Hottest any cell of the body has been so far."""
    canal_peak_c: float
    """Hottest the canal face of the posterior wall has been so far (nan: no canal on the grid)."""
    leaks: dict[str, LeakTruth] = field(default_factory=dict)
    """Every leak path of the body, by name, cement or not."""

    def trace_line(self) -> str:
        def t(value: float | None) -> str:
            return "-" if value is None else f"{value:.4f}"

        leaks = " ".join(
            f"leak {name}={leak.volume_ml:.6f}@{t(leak.onset_t_s)}" for name, leak in self.leaks.items()
        )
        line = (
            f"TRACE spatial {self.t_s:.4f} front {self.front_ap_fraction:.4f} "
            f"quarter {t(self.posterior_quarter_t_s)} peak_c {self.peak_temperature_c:.2f} "
            f"canal_c {self.canal_peak_c:.2f}"
        )
        return f"{line} {leaks}" if leaks else line

    @classmethod
    def parse(cls, line: str) -> SpatialTruth:
        """Read a `trace_line` back (raises `SpatialTraceError` naming what is wrong)."""
        parts = line.split()
        if parts[:2] != ["TRACE", "spatial"] or len(parts) < 11 or len(parts) % 2 == 0:
            raise SpatialTraceError(f"not a TRACE spatial line: {line!r}")
        try:
            t_s = float(parts[2])
            pairs = dict(zip(parts[3:11:2], parts[4:11:2], strict=True))
            leaks: dict[str, LeakTruth] = {}
            for key, value in zip(parts[11::2], parts[12::2], strict=True):
                if key != "leak":
                    raise SpatialTraceError(f"unexpected token {key!r} in {line!r}")
                name, _, rest = value.partition("=")
                ml, _, onset = rest.partition("@")
                leaks[name] = LeakTruth(float(ml), None if onset == "-" else float(onset))
            quarter = pairs["quarter"]
            return cls(
                t_s=t_s,
                front_ap_fraction=float(pairs["front"]),
                posterior_quarter_t_s=None if quarter == "-" else float(quarter),
                peak_temperature_c=float(pairs["peak_c"]),
                canal_peak_c=float(pairs["canal_c"]),
                leaks=leaks,
            )
        except (KeyError, ValueError) as exc:
            if isinstance(exc, SpatialTraceError):
                raise
            raise SpatialTraceError(f"bad TRACE spatial line ({exc}): {line!r}") from None

    @property
    def leaked_ml(self) -> float:
        return math.fsum(leak.volume_ml for leak in self.leaks.values())
