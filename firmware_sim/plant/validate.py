"""`cementguard sim validate`: the simulator against the published figures of docs/references.md.

Every simulated number here comes from running the model (mostly the `Plant` itself, driven at a
constant plunger rate), never from a constant. Each row says whether the figure was *calibrated* (a
model constant was set from it, so the row checks the implementation), *predicted* (it follows from
other figures and assumptions), or holds *by construction* (an equation was chosen to make it so).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from firmware_sim.hal import MotorCommand
from firmware_sim.plant.cannula import GAUGE_ID_M
from firmware_sim.plant.cement import PROFILES, CementProfile
from firmware_sim.plant.config import SYRINGE_BORE_MM, PlantConfig
from firmware_sim.plant.plant import Plant
from firmware_sim.plant.vertebra import (
    LI_INTACT_PA,
    LI_VOID_PA,
    REIDY_INTACT_PA,
    REIDY_TUMOUR_PA,
    RESTING_PRESSURE_PA,
)

Basis = Literal["predicted", "calibrated", "by construction"]

ML_MIN = 1e-6 / 60.0
KREBS_FLOW_M3_S = 0.05e-6
"""0.05 mL/s (3 mL/min): the bench rate of the injection-force study, a steady stand-in for Krebs' hands."""
KREBS_VOLUME_M3 = 3.0e-6
KREBS_STARTS_S = tuple(range(300, 601, 25))
"""Start times after mixing: Krebs' early group (300-500 s) and a late group 500-600 s (Krebs gives
no upper bound; 600 s + a 60 s injection keeps the low-viscosity cement below its steep last minutes)."""
KREBS_LENGTHS_MM = (100.0, 125.0, 150.0)
KREBS_TEMPERATURE_C = 22.0
KREBS_MEAN_PEAK_PA = 1693e3
KREBS_SD_PA = 653e3
KREBS_MAX_PEAK_PA = 3215e3
REFERENCE_MIXED_AGO_S = 400.0
"""Cement age for the single-injection checks: the middle of Krebs' early window."""
BAROUD_REDUCTION = 0.63
BAROUD_FLOW_M3_S = 4.0 * ML_MIN
NICHOLAS_CURE_S = {"low_viscosity": 13.0 * 60.0, "fast_setting": 8.7 * 60.0}


@dataclass(frozen=True, slots=True)
class ValidationRow:
    target: int
    quantity: str
    published: str
    simulated: float
    unit: str
    low: float
    high: float
    basis: Basis
    source: str
    known_miss: str | None = None
    """Why the model misses this published figure, when it is known to: the row stays in the table,
    shown as MISS, and does not fail the run. A known miss that starts to pass fails the tests, so the
    mark is removed when the model improves."""

    @property
    def passed(self) -> bool:
        return self.low <= self.simulated <= self.high

    @property
    def result(self) -> str:
        if self.passed:
            return "PASS"
        return "MISS (known)" if self.known_miss is not None else "FAIL"

    @property
    def tolerance(self) -> str:
        if math.isinf(self.high):
            return f">= {self.low:.4g} {self.unit}"
        return f"{self.low:.4g} .. {self.high:.4g} {self.unit}"


@dataclass(frozen=True, slots=True)
class Injection:
    """One constant-rate injection through the plant: what it peaked at and how it ended."""

    mixed_ago_s: float
    cannula_length_mm: float
    peak_syringe_pa: float
    peak_intravertebral_pa: float
    final_syringe_pa: float
    final_cannula_dp_pa: float
    final_intravertebral_pa: float
    delivered_m3: float


def reference_config(**changes: object) -> PlantConfig:
    """The validation set-up: low-viscosity cement at 22 degC, 11G x 125 mm, a 3 mL syringe, ex vivo."""
    base: dict[str, object] = {
        "cement": "low_viscosity",
        "mixed_ago_s": REFERENCE_MIXED_AGO_S,
        "temperature_c": KREBS_TEMPERATURE_C,
        "syringe_bore_mm": SYRINGE_BORE_MM["3ml"],
        "resting_pressure_kpa": 0.0,
        "sensor_noise_kpa": 0.0,
    }
    base.update(changes)
    return PlantConfig.model_validate(base)


def inject(
    config: PlantConfig,
    flow_m3_s: float,
    duration_s: float,
    dt_s: float = 1e-3,
    profile: CementProfile | None = None,
) -> Injection:
    """Drive the plunger at the step rate of `flow_m3_s` for `duration_s` and record the pressures."""
    plant = Plant(config, profile=profile)
    rate = flow_m3_s / (plant.bore_area_m2 * plant.hardware.plunger_m_per_step)
    cmd = MotorCommand(rate)
    peak = peak_iv = 0.0
    for _ in range(round(duration_s / dt_s)):
        plant.step(cmd, dt_s)
        peak = max(peak, plant.syringe_pressure_pa)
        peak_iv = max(peak_iv, plant.intravertebral_pressure_pa)
    return Injection(
        config.mixed_ago_s,
        config.cannula_length_mm,
        peak,
        peak_iv,
        plant.syringe_pressure_pa,
        plant.cannula_dp_pa,
        plant.intravertebral_pressure_pa,
        plant.delivered_volume_m3,
    )


def with_k0(profile: CementProfile, k0_pa_sn: float) -> CementProfile:
    """The same cement with another K0 (what the fit varies)."""
    return replace(profile, k0_pa_sn=k0_pa_sn)


def krebs_population(profile: CementProfile | None = None, dt_s: float = 5e-3) -> list[Injection]:
    """Injections across the working window: 3 mL at 0.05 mL/s through 11G of 100-150 mm."""
    runs = []
    for start in KREBS_STARTS_S:
        for length in KREBS_LENGTHS_MM:
            config = reference_config(
                mixed_ago_s=float(start),
                cannula_length_mm=length,
                resting_pressure_kpa=RESTING_PRESSURE_PA / 1e3,
            )
            runs.append(inject(config, KREBS_FLOW_M3_S, KREBS_VOLUME_M3 / KREBS_FLOW_M3_S, dt_s, profile))
    return runs


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _target_1() -> list[ValidationRow]:
    rows = []
    at3 = inject(reference_config(), 3.0 * ML_MIN, 60.0)
    at4 = inject(reference_config(), 4.0 * ML_MIN, 45.0)
    rows.append(
        ValidationRow(
            1,
            "intravertebral pressure, intact, 3 mL/min (peak)",
            f"{LI_INTACT_PA / 1e3:.2f}-{REIDY_INTACT_PA / 1e3:.2f} kPa",
            at3.peak_intravertebral_pa / 1e3,
            "kPa",
            4.5,
            8.0,
            "calibrated",
            "Reidy 2003; Li 2015",
        )
    )
    rows.append(
        ValidationRow(
            1,
            "syringe / intravertebral pressure, 3 mL/min",
            "1693 kPa vs 5-7 kPa (~250x)",
            at3.final_syringe_pa / at3.final_intravertebral_pa,
            "x",
            100.0,
            math.inf,
            "predicted",
            "Krebs 2005; Reidy 2003",
        )
    )
    for flow, run in ((3, at3), (4, at4)):
        rows.append(
            ValidationRow(
                1,
                f"cannula share of syringe pressure, {flow} mL/min, 3 mL in",
                "~95 %",
                100.0 * run.final_cannula_dp_pa / run.final_syringe_pa,
                "%",
                90.0,
                100.0,
                "predicted",
                "Baroud & Steffen 2005",
            )
        )
    return rows


def _target_2(dt_s: float) -> list[ValidationRow]:
    runs = krebs_population(dt_s=dt_s)
    peaks = [r.peak_syringe_pa for r in runs]
    early = [r.peak_syringe_pa for r in runs if r.mixed_ago_s < 500.0]
    late = [r.peak_syringe_pa for r in runs if r.mixed_ago_s >= 500.0]
    return [
        ValidationRow(
            2,
            f"mean peak syringe pressure, {len(runs)} injections 300-600 s",
            f"{KREBS_MEAN_PEAK_PA / 1e3:.0f} +/- {KREBS_SD_PA / 1e3:.0f} kPa",
            _mean(peaks) / 1e3,
            "kPa",
            0.85 * KREBS_MEAN_PEAK_PA / 1e3,
            1.15 * KREBS_MEAN_PEAK_PA / 1e3,
            "calibrated",
            "Krebs 2005",
        ),
        ValidationRow(
            2,
            "max peak syringe pressure, same injections",
            f"{KREBS_MAX_PEAK_PA / 1e3:.0f} kPa (highest seen)",
            max(peaks) / 1e3,
            "kPa",
            0.75 * KREBS_MAX_PEAK_PA / 1e3,
            1.10 * KREBS_MAX_PEAK_PA / 1e3,
            "predicted",
            "Krebs 2005",
        ),
        ValidationRow(
            2,
            "mean peak late (>= 500 s) / early (300-500 s)",
            "> 1 (higher when late)",
            _mean(late) / _mean(early),
            "x",
            1.05,
            math.inf,
            "predicted",
            "Krebs 2005",
        ),
    ]


def _target_3() -> list[ValidationRow]:
    standard = inject(reference_config(), BAROUD_FLOW_M3_S, 10.0)
    wide_id_mm = 2.0 * GAUGE_ID_M[11] * 1e3
    widened = inject(reference_config(cannula_proximal_id_mm=wide_id_mm), BAROUD_FLOW_M3_S, 10.0)
    g11 = inject(reference_config(), 3.0 * ML_MIN, 10.0)
    g13 = inject(reference_config(cannula_gauge=13), 3.0 * ML_MIN, 10.0)
    n = PROFILES["low_viscosity"].flow_index_n
    radius_ratio = GAUGE_ID_M[11] / GAUGE_ID_M[13]
    predicted = radius_ratio ** (3.0 * n + 1.0)
    newtonian = radius_ratio**4
    return [
        ValidationRow(
            3,
            "delivery pressure saved by doubling the proximal ID, 4 mL/min",
            f"~{BAROUD_REDUCTION * 100:.0f} %",
            100.0 * (1.0 - widened.final_syringe_pa / standard.final_syringe_pa),
            "%",
            100.0 * BAROUD_REDUCTION - 5.0,
            100.0 * BAROUD_REDUCTION + 5.0,
            "predicted",
            "Baroud & Steffen 2005 (distal 35 mm kept narrow: assumed)",
        ),
        ValidationRow(
            3,
            "13G / 11G syringe pressure at 3 mL/min",
            f"{newtonian:.2f} Newtonian; power law n={n}: {predicted:.2f}",
            g13.final_syringe_pa / g11.final_syringe_pa,
            "x",
            0.95 * predicted,
            min(1.05 * predicted, newtonian),
            "predicted",
            "Rabinowitsch-Mooney; gauge chart",
        ),
    ]


def _target_4() -> list[ValidationRow]:
    ivp = {
        bone: inject(reference_config(bone=bone), 3.0 * ML_MIN, 20.0).final_intravertebral_pa
        for bone in ("intact", "tumour", "void")
    }
    tumour_ratio = REIDY_TUMOUR_PA / REIDY_INTACT_PA
    void_ratio = LI_VOID_PA / LI_INTACT_PA
    return [
        ValidationRow(
            4,
            f"tumour / intact intravertebral pressure "
            f"({ivp['tumour'] / 1e3:.1f} / {ivp['intact'] / 1e3:.1f} kPa)",
            f"{tumour_ratio:.2f} (39.66 / 6.83 kPa)",
            ivp["tumour"] / ivp["intact"],
            "x",
            0.85 * tumour_ratio,
            1.15 * tumour_ratio,
            "calibrated",
            "Reidy 2003",
        ),
        ValidationRow(
            4,
            f"void / intact intravertebral pressure "
            f"({ivp['void'] / 1e3:.2f} / {ivp['intact'] / 1e3:.1f} kPa)",
            f"{void_ratio:.3f} (1.20 / 5.09 kPa)",
            ivp["void"] / ivp["intact"],
            "x",
            0.85 * void_ratio,
            1.15 * void_ratio,
            "calibrated",
            "Li 2015",
        ),
    ]


def gel_time_s(profile: CementProfile, temperature_c: float) -> float:
    """Seconds after mixing at which the model's K reaches K_set, found by bisection on K(t, T)."""
    lo, hi = 0.0, 4.0 * 3600.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if profile.consistency_at(mid, temperature_c) >= profile.k_set_pa_sn:
            hi = mid
        else:
            lo = mid
    return hi


def _target_5() -> list[ValidationRow]:
    rows = []
    for name in ("low_viscosity", "high_viscosity", "fast_setting"):
        profile = PROFILES[name]
        rows.append(
            ValidationRow(
                5,
                f"time to gel 37 / 25 degC, {name}",
                "~0.5 (about halved)",
                gel_time_s(profile, 37.0) / gel_time_s(profile, 25.0),
                "x",
                0.4,
                0.6,
                "by construction",
                "Nicholas 2007",
            )
        )
    for name, published in NICHOLAS_CURE_S.items():
        rows.append(
            ValidationRow(
                5,
                f"cure time at 25 degC, {name}",
                f"{published / 60:.1f} min",
                gel_time_s(PROFILES[name], 25.0) / 60.0,
                "min",
                0.95 * published / 60.0,
                1.05 * published / 60.0,
                "calibrated",
                "Nicholas 2007",
            )
        )
    return rows


def run_validation(dt_s: float = 5e-3, *, spatial: bool = True) -> list[ValidationRow]:
    """Every validation target of docs/references.md, computed from the model (~3 s lumped, ~10 s
    more for the spatial body and heat, targets 6-11)."""
    rows = [*_target_1(), *_target_2(dt_s), *_target_3(), *_target_4(), *_target_5()]
    if spatial:
        from firmware_sim.plant.validate_spatial import spatial_rows

        rows += spatial_rows()
    return rows


def _format(value: float) -> str:
    return f"{value:.4g}"


def main(argv: list[str] | None = None) -> int:
    """Print the validation table; exit status 1 when any row fails."""
    parser = argparse.ArgumentParser(prog="cementguard sim validate", description=__doc__)
    parser.add_argument(
        "--dt", type=float, default=5e-3, help="time step of the Krebs runs, s (default 5 ms)"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table (for docs, reports)")
    parser.add_argument("--lumped-only", action="store_true", help="only targets 1-5 (the lumped body), ~3 s")
    args = parser.parse_args(argv)

    import sys

    from rich.console import Console
    from rich.table import Table

    rows = run_validation(args.dt, spatial=not args.lumped_only)
    failed = [r for r in rows if r.result == "FAIL"]
    misses = [r for r in rows if r.result == "MISS (known)"]
    if args.markdown:
        print("| # | quantity | published | simulated | tolerance | basis | source | result |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for row in rows:
            print(
                f"| {row.target} | {row.quantity} | {row.published} | {_format(row.simulated)} {row.unit} "
                f"| {row.tolerance} | {row.basis} | {row.source} | {row.result} |"
            )
        for row in misses:
            print(f"\nKnown miss, target {row.target} ({row.quantity}): {row.known_miss}")
        return 1 if failed else 0
    table = Table(title="cementguard simulator vs published figures (sources: docs/references.md)")
    for column in ("#", "quantity", "published", "simulated", "tolerance", "basis", "source", "result"):
        table.add_column(column, overflow="fold")
    for row in rows:
        result = {
            "PASS": "[green]PASS[/green]",
            "FAIL": "[bold red]FAIL[/bold red]",
            "MISS (known)": "[yellow]MISS (known)[/yellow]",
        }[row.result]
        table.add_row(
            str(row.target),
            row.quantity,
            row.published,
            f"{_format(row.simulated)} {row.unit}",
            row.tolerance,
            row.basis,
            row.source,
            result,
        )
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(table)
    for row in misses:
        console.print(f"known miss, target {row.target} ({row.quantity}): {row.known_miss}")
    predicted = sum(1 for r in rows if r.basis == "predicted" and r.passed)
    passed = sum(1 for r in rows if r.passed)
    console.print(
        f"{passed}/{len(rows)} PASS ({predicted} of them predictions)"
        + (f", {len(misses)} known MISS" if misses else "")
        + (f", {len(failed)} FAIL" if failed else "")
    )
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
