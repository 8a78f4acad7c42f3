"""Injection plans: the shipped examples run on the simulator, bad plans are explained, wire units exact.

The examples are run through the real controller and plant (firmware_sim.virtual_rig) in virtual
time: that, not a reviewer's eye, is what shows their numbers are sane.
"""

from __future__ import annotations

import copy
import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.controller import ControllerConfig
from firmware_sim.hal import REFERENCE_RIG
from firmware_sim.plant import PlantConfig
from firmware_sim.virtual_rig import VirtualRig
from host.plan import (
    GAUGE_ID_MM,
    SYRINGE_BORE_MM,
    InjectionPlan,
    PlanError,
    clamp_to_device,
    edge,
    load_plan,
    parse_plan,
    wire,
)
from protocol import (
    Ack,
    Capabilities,
    DeviceInfo,
    EventKind,
    Mode,
    PlanFlags,
    Resume,
    Start,
    State,
    StopReason,
)
from protocol.enums import AlarmCode
from protocol.messages import Arm, Status

REPO = Path(__file__).resolve().parents[2]
PLANS = sorted((REPO / "plans").glob("*.toml"))
SRC = "mine.toml"

BASE: dict[str, Any] = {
    "name": "test",
    "mode": "incremental",
    "flow_ml_min": 3.0,
    "increment_ml": 0.5,
    "volume_limit_ml": 1.5,
    "pressure": {"soft_limit_kpa": 2500, "hard_limit_kpa": 4000},
    "relief": {"enabled": True, "relief_kpa": 200},
    "cement": {
        "profile": "low_viscosity",
        "working_time_s": 600,
        "viscosity_min_pa_s": 50,
        "viscosity_max_pa_s": 400,
    },
    "cannula": {"gauge": 11, "length_mm": 125},
    "syringe": {"size": "2.5ml"},
}


def _with(**changes: Any) -> dict[str, Any]:
    """BASE with dotted paths set (a value of ... removes the key)."""
    data = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *tables, key = dotted.split("__")
        target = data
        for t in tables:
            target = target.setdefault(t, {})
        if value is ...:
            target.pop(key, None)
        else:
            target[key] = value
    return data


def _problems(data: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(PlanError) as info:
        parse_plan(data, SRC)
    problems = info.value.problems
    assert str(info.value) == "\n".join(problems)
    assert all(p.startswith(f"{SRC}: ") for p in problems), problems
    return problems


def _one_problem(data: dict[str, Any]) -> str:
    problems = _problems(data)
    assert len(problems) == 1, problems
    return problems[0]


def _device(**changes: Any) -> DeviceInfo:
    info = DeviceInfo(
        cmd_id=1,
        protocol_version=1,
        fw_major=0,
        fw_minor=1,
        fw_patch=0,
        serial="DEV-7",
        capabilities=Capabilities.RELIEF_BACKOFF | Capabilities.INCREMENTAL,
        sample_rate_hz=1000,
        watchdog_ms=500,
        max_pressure_pa=8_000_000,
        max_flow_nl_s=166_667,
        travel_um=60_000,
        max_batch_samples=30,
    )
    return replace(info, **changes)


# ---------------------------------------------------------------------------------------------
# The shipped plans
# ---------------------------------------------------------------------------------------------


def _plant_for(plan: InjectionPlan) -> PlantConfig:
    """The simulated rig a plan is written for: its cement profile, cannula and syringe, every other
    parameter (cement age 4 min at start, 22 degC, intact bone, 10 kPa noise) at the default."""
    return PlantConfig(
        cement=plan.cement.profile,  # type: ignore[arg-type]
        cannula_gauge=plan.cannula.gauge,  # type: ignore[arg-type]
        cannula_length_mm=plan.cannula.length_mm,
        syringe_bore_mm=plan.syringe.bore,
    )


def test_the_examples_are_shipped() -> None:
    names = {p.name for p in PLANS}
    assert {"incremental-3x0.5ml.toml", "continuous-2ml.toml", "high-viscosity-13g.toml"} <= names


def test_the_low_viscosity_examples_fit_the_default_plant() -> None:
    for name in ("incremental-3x0.5ml.toml", "continuous-2ml.toml"):
        assert _plant_for(load_plan(REPO / "plans" / name)) == PlantConfig()


def test_the_demo_plan_is_what_the_demo_promises() -> None:
    plan = load_plan(REPO / "plans" / "incremental-3x0.5ml.toml")
    assert (plan.mode, plan.increment_ml, plan.volume_limit_ml, plan.flow_ml_min) == (
        "incremental",
        0.5,
        1.5,
        3.0,
    )
    assert plan.relief.enabled
    assert plan.cement.mixed_at is None  # reusable: the mixing time is given at run time


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_every_example_runs_to_its_end_on_the_simulator_without_a_safety_stop(path: Path) -> None:
    plan = load_plan(path)
    plant = _plant_for(plan)
    rig = VirtualRig(plant)
    info = rig.connect()
    assert isinstance(info, DeviceInfo)
    assert clamp_to_device(plan, info) == (plan, [])

    arm_ack = rig.command(lambda i: plan.to_arm(i, plant.mixed_ago_s + rig.now_us / 1e6))
    assert isinstance(arm_ack, Ack), arm_ack
    status = next(m for m in rig.replies if isinstance(m, Status) and m.cmd_id == arm_ack.cmd_id)
    sent = plan.to_arm(1, 0.0)
    in_force = (status.soft_limit_pa, status.hard_limit_pa, status.relief_pa, status.volume_limit_nl)
    assert in_force == (sent.soft_limit_pa, sent.hard_limit_pa, sent.relief_pa, sent.volume_limit_nl)
    assert (status.increment_nl, status.working_time_ms) == (sent.increment_nl, sent.working_time_ms)
    assert isinstance(rig.command(Start), Ack)

    resumes = 0
    while True:
        rig.run(300.0, until=rig.state_is(State.PAUSED, State.DONE, State.STOPPED, State.FAULT))
        if rig.controller.state != State.PAUSED:
            break
        # An operator would image the spread now; resume once the relief back-off has finished.
        rig.run(10.0, until=lambda r: not r.controller.relief_active)
        assert isinstance(rig.command(Resume), Ack)
        resumes += 1
        assert resumes < 100

    stops = rig.stop_events()
    assert rig.controller.state == State.DONE, [(e.reason.name, e.t_us) for e in stops]
    increments = 1 if plan.mode == "continuous" else round(plan.volume_limit_ml / (plan.increment_ml or 1))
    assert [e.reason for e in stops] == [StopReason.INCREMENT_DONE] * (increments - 1) + [
        StopReason.VOLUME_LIMIT
    ]
    assert resumes == increments - 1
    assert stops[-1].delivered_nl == pytest.approx(plan.volume_limit_ml * 1e6, rel=0.01)
    alarms = {e.alarm for e in rig.events if e.kind == EventKind.ALARM}
    assert not alarms & {AlarmCode.LIMIT_CLAMPED, AlarmCode.PRESSURE_THROTTLE, AlarmCode.VISCOSITY_HIGH}
    assert AlarmCode.VISCOSITY_LOW not in alarms
    # Well clear of the soft limit: the throttle's band starts at 82 % of it (docs/controller.md).
    assert rig.samples["pressure_pa"].max() < 0.82 * plan.pressure.soft_limit_kpa * 1e3


@pytest.mark.parametrize("path", PLANS, ids=lambda p: p.name)
def test_every_example_is_commented_for_the_bench_engineer(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert lines[0].startswith("# ")
    assert sum("#" in line for line in lines) >= 10


def test_the_readme_documents_every_field() -> None:
    readme = (REPO / "plans" / "README.md").read_text()
    sections = {
        "": InjectionPlan,
        "pressure": InjectionPlan.model_fields["pressure"].annotation,
        "relief": InjectionPlan.model_fields["relief"].annotation,
        "cement": InjectionPlan.model_fields["cement"].annotation,
        "cannula": InjectionPlan.model_fields["cannula"].annotation,
        "syringe": InjectionPlan.model_fields["syringe"].annotation,
        "metadata": InjectionPlan.model_fields["metadata"].annotation,
    }
    for table, model in sections.items():
        if table:
            assert f"### `[{table}]`" in readme
        for name in model.model_fields:  # type: ignore[union-attr]
            if name not in sections:
                assert f"| `{name}` |" in readme, f"{table}.{name}"


# ---------------------------------------------------------------------------------------------
# Reading files
# ---------------------------------------------------------------------------------------------


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.problems == (f"{path}: file not found",)


def test_a_directory_is_not_a_plan(tmp_path: Path) -> None:
    refused = rf"^{re.escape(str(tmp_path))}: is a directory; allowed a regular file"
    with pytest.raises(PlanError, match=refused):
        load_plan(tmp_path)


def test_a_toml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('name = "x"\nmode = "continuous"\nflow_ml_min = \n')
    with pytest.raises(PlanError) as info:
        load_plan(path)
    (line,) = info.value.problems
    assert line.startswith(f"{path}: line 3, column 15: TOML syntax error: ")


def test_a_file_lists_every_problem_at_once(tmp_path: Path) -> None:
    path = tmp_path / "many.toml"
    path.write_text(
        """
name = "many"
mode = "incremental"
flow_ml_min = "3"         # quoted: text, not a number
volume_limit_ml = 1.5
increment_ml = 0.5
pump_speed = 7            # not a field

[pressure]
soft_limit_kpa = 2500
hard_limit_kpa = 90000

[cement]
profile = "low_viscosity"
working_time_s = 0
viscosity_min_pa_s = 50
viscosity_max_pa_s = 400

[cannula]
gauge = 12
length_mm = 125

[syringe]
size = "2.5ml"
"""
    )
    with pytest.raises(PlanError) as info:
        load_plan(path)
    assert info.value.problems == (
        f"{path}: flow_ml_min: '3' is not a number; allowed [0.01, 20] (mL/min)",
        f"{path}: pressure.hard_limit_kpa: 90000 is too large; allowed [10, 20000] (kPa)",
        f"{path}: cement.working_time_s: 0 is too small; allowed [1, 7200] (s)",
        f"{path}: cannula.gauge: 12 is not one of the choices; allowed 10, 11 or 13 (gauge)",
        f"{path}: pump_speed: 7 is not a known field; allowed name, description, mode, flow_ml_min, "
        "increment_ml, volume_limit_ml, pressure, relief, cement, cannula, syringe, metadata (field names)",
    )


def test_the_cross_field_rules_are_listed_together() -> None:
    data = _with(
        pressure__soft_limit_kpa=5000,
        relief__relief_kpa=6000,
        increment_ml=2.0,
        syringe__size="1ml",
        cement__viscosity_max_pa_s=40,
    )
    assert _problems(data) == (
        f"{SRC}: pressure.soft_limit_kpa: 5000 is not below pressure.hard_limit_kpa (4000); "
        "allowed [10, 4000) (kPa)",
        f"{SRC}: relief.relief_kpa: 6000 is not below pressure.soft_limit_kpa (5000); "
        "allowed [0, 5000) (kPa)",
        f"{SRC}: increment_ml: 2 is not in (0, volume_limit_ml]; allowed (0, 1.5] (mL)",
        f"{SRC}: volume_limit_ml: 1.5 is more than the syringe holds; allowed [0.01, 1] (mL)",
        f"{SRC}: cement.viscosity_max_pa_s: 40 is not above cement.viscosity_min_pa_s (50); "
        "allowed (50, 100000] (Pa s)",
    )


# ---------------------------------------------------------------------------------------------
# Every bounded field: an out-of-range value names the field, the value and the range
# ---------------------------------------------------------------------------------------------

BOUNDS: dict[str, tuple[float, float, str, str]] = {
    # dotted path: (low, high, allowed as printed, unit)
    "flow_ml_min": (0.01, 20, "[0.01, 20]", "mL/min"),
    "increment_ml": (0, 100, "[0, 100]", "mL"),
    "volume_limit_ml": (0.01, 100, "[0.01, 100]", "mL"),
    "pressure.soft_limit_kpa": (10, 20_000, "[10, 20000]", "kPa"),
    "pressure.hard_limit_kpa": (10, 20_000, "[10, 20000]", "kPa"),
    "relief.relief_kpa": (0, 20_000, "[0, 20000]", "kPa"),
    "cement.working_time_s": (1, 7200, "[1, 7200]", "s"),
    "cement.viscosity_min_pa_s": (0, 100_000, "[0, 100000]", "Pa s"),
    "cement.viscosity_max_pa_s": (0, 100_000, "[0, 100000]", "Pa s"),
    "cannula.length_mm": (20, 500, "[20, 500]", "mm"),
}


def _shown(value: float) -> str:
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else repr(value)


@st.composite
def out_of_range(draw: st.DrawFn) -> tuple[str, float]:
    path = draw(st.sampled_from(sorted(BOUNDS)))
    lo, hi, _, _ = BOUNDS[path]
    below = st.floats(min_value=-1e9, max_value=lo, exclude_max=True, allow_nan=False)
    above = st.floats(min_value=hi, max_value=1e12, exclude_min=True, allow_nan=False)
    value = draw(st.one_of(below, above) if lo > -1e9 else above)
    return path, value


@given(out_of_range())
def test_an_out_of_range_value_names_field_value_and_range(case: tuple[str, float]) -> None:
    path, value = case
    data = _with(**{path.replace(".", "__"): value})
    problems = _problems(data)
    _, _, allowed, unit = BOUNDS[path]
    why = "too small" if value < BOUNDS[path][0] else "too large"
    assert f"{SRC}: {path}: {_shown(value)} is {why}; allowed {allowed} ({unit})" in problems


@given(st.sampled_from(sorted(BOUNDS)), st.sampled_from([math.inf, -math.inf, math.nan]))
def test_inf_and_nan_are_never_a_limit(path: str, value: float) -> None:
    problems = _problems(_with(**{path.replace(".", "__"): value}))
    _, _, allowed, unit = BOUNDS[path]
    assert f"{SRC}: {path}: {value!r} is not a finite number; allowed {allowed} ({unit})" in problems


@given(
    st.sampled_from(sorted(BOUNDS)),
    st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2)),
)
def test_a_value_of_the_wrong_type_is_refused_not_coerced(path: str, value: object) -> None:
    problems = _problems(_with(**{path.replace(".", "__"): value}))
    _, _, allowed, unit = BOUNDS[path]
    assert any(
        p.startswith(f"{SRC}: {path}: ") and p.endswith(f"; allowed {allowed} ({unit})") for p in problems
    )


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": ""}, "name: '' is too short; allowed 1 to 64 characters (text)"),
        (
            {"mode": "burst"},
            "mode: 'burst' is not one of the choices; allowed 'continuous' or 'incremental' (mode)",
        ),
        (
            {"pressure": ...},
            "pressure: (missing) is required; allowed a table with soft_limit_kpa, hard_limit_kpa (table)",
        ),
        (
            {"pressure__hard_limit_kpa": ...},
            "pressure.hard_limit_kpa: (missing) is required; allowed [10, 20000] (kPa)",
        ),
        (
            {"relief__enabled": "yes"},
            "relief.enabled: 'yes' is not true or false; allowed true or false (true/false)",
        ),
        (
            {"cement__mixed_at": "10:42"},
            "cement.mixed_at: '10:42' is not a date-time; "
            "allowed a date-time such as 2025-03-01T10:42:00 (local date-time)",
        ),
        ({"cannula__gauge": 12}, "cannula.gauge: 12 is not one of the choices; allowed 10, 11 or 13 (gauge)"),
        (
            {"cannula__gauge": ...},
            "cannula.gauge: (missing) is required unless inner_diameter_mm is given; "
            "allowed 10, 11 or 13 (gauge)",
        ),
        (
            {"cannula__inner_diameter_mm": 2.0},
            "cannula.inner_diameter_mm: 2 is given together with gauge 11; "
            "allowed gauge or inner_diameter_mm, not both (mm)",
        ),
        (
            {"cannula__gauge": ..., "cannula__inner_diameter_mm": 9.0},
            "cannula.inner_diameter_mm: 9 is too large; allowed [0.3, 6] (mm)",
        ),
        (
            {"syringe__size": "20ml"},
            "syringe.size: '20ml' is not one of the choices; allowed '1ml', '2.5ml', '3ml', '5ml' or '10ml' "
            "(syringe size)",
        ),
        (
            {"syringe__bore_mm": 7.29},
            "syringe.bore_mm: 7.29 is given together with size '2.5ml'; "
            "allowed size or bore_mm, not both (mm)",
        ),
        (
            {"syringe__size": ..., "syringe__bore_mm": 7.29},
            "syringe.capacity_ml: (missing) is required with bore_mm; allowed (0, 100] (mL)",
        ),
        (
            {"syringe__size": ...},
            "syringe.size: (missing) is required unless bore_mm is given; "
            "allowed '1ml', '2.5ml', '3ml', '5ml' or '10ml' (syringe size)",
        ),
        (
            {"syringe__size": ..., "syringe__bore_mm": 1.0},
            "syringe.bore_mm: 1 is too small; allowed [2, 40] (mm)",
        ),
        ({"syringe__capacity_ml": 0}, "syringe.capacity_ml: 0 is too small; allowed (0, 100] (mL)"),
        (
            {"increment_ml": ...},
            "increment_ml: (missing) is required in incremental mode; allowed (0, 1.5] (mL)",
        ),
        ({"increment_ml": 0}, "increment_ml: 0 is not in (0, volume_limit_ml]; allowed (0, 1.5] (mL)"),
        ({"mode": "continuous"}, "increment_ml: 0.5 is set in continuous mode; allowed 0 or absent (mL)"),
        (
            {"syringe__size": "1ml", "volume_limit_ml": 1.2, "increment_ml": 0.4},
            "volume_limit_ml: 1.2 is more than the syringe holds; allowed [0.01, 1] (mL)",
        ),
        (
            {
                "cannula__gauge": ...,
                "cannula__inner_diameter_mm": 5.0,
                "syringe__size": "1ml",
                "volume_limit_ml": 0.9,
                "increment_ml": 0.3,
            },
            "cannula.inner_diameter_mm: 5 is not narrower than the syringe bore (4.65 mm); "
            "allowed an inner diameter below 4.65 (mm)",
        ),
        (
            {"pressure__sof_limit_kpa": 1},
            "pressure.sof_limit_kpa: 1 is not a known field; "
            "allowed soft_limit_kpa, hard_limit_kpa (field names)",
        ),
    ],
    ids=lambda v: ",".join(v) if isinstance(v, dict) else "",
)
def test_each_rule_is_explained(changes: dict[str, Any], expected: str) -> None:
    assert _one_problem(_with(**changes)) == f"{SRC}: {expected}"


@given(
    st.floats(min_value=10, max_value=20_000, allow_nan=False),
    st.floats(min_value=10, max_value=20_000, allow_nan=False),
)
def test_soft_must_stay_below_hard(soft: float, hard: float) -> None:
    data = _with(pressure__soft_limit_kpa=soft, pressure__hard_limit_kpa=hard, relief__relief_kpa=0)
    if soft < hard:
        parse_plan(data)
        return
    expected = (
        f"{SRC}: pressure.soft_limit_kpa: {_shown(soft)} is not below "
        f"pressure.hard_limit_kpa ({_shown(hard)}); allowed [10, {_shown(hard)}) (kPa)"
    )
    assert _one_problem(data) == expected


def test_continuous_mode_accepts_an_absent_or_zero_increment() -> None:
    for increment in (..., 0, 0.0):
        plan = parse_plan(_with(mode="continuous", increment_ml=increment))
        assert plan.to_arm(1, 0).increment_nl == 0


def test_a_custom_cannula_and_syringe() -> None:
    plan = parse_plan(
        _with(
            cannula={"inner_diameter_mm": 2.1, "length_mm": 150.5},
            syringe={"bore_mm": 9.5, "capacity_ml": 4.0},
            volume_limit_ml=3.5,
        )
    )
    arm = plan.to_arm(1, 0)
    assert (arm.cannula_id_um, arm.cannula_length_um, arm.syringe_bore_um, arm.volume_limit_nl) == (
        2100,
        150_500,
        9500,
        3_500_000,
    )


def test_gauge_and_size_are_read_as_written_on_the_part() -> None:
    plan = parse_plan(_with(cannula__gauge="13G", syringe__size="2.5 mL"))
    assert (plan.cannula.gauge, plan.syringe.size) == (13, "2.5ml")


# ---------------------------------------------------------------------------------------------
# Wire units
# ---------------------------------------------------------------------------------------------


def test_to_arm_converts_every_field() -> None:
    plan = parse_plan(_with())
    arm = plan.to_arm(7, 241.5)
    assert arm == Arm(
        cmd_id=7,
        mode=Mode.INCREMENTAL,
        plan_flags=PlanFlags.RELIEF,
        flow_nl_s=50_000,
        increment_nl=500_000,
        volume_limit_nl=1_500_000,
        soft_limit_pa=2_500_000,
        hard_limit_pa=4_000_000,
        relief_pa=200_000,
        mixed_ago_ms=241_500,
        working_time_ms=600_000,
        viscosity_min_pas=50.0,
        viscosity_max_pas=400.0,
        cannula_length_um=125_000,
        cannula_id_um=round(GAUGE_ID_MM[11] * 1000),
        syringe_bore_um=round(SYRINGE_BORE_MM["2.5ml"] * 1000),
    )
    assert parse_plan(_with(relief__enabled=False)).to_arm(7, 0).plan_flags == PlanFlags.NONE


@pytest.mark.parametrize(
    ("path", "value", "field", "expected"),
    [
        ("volume_limit_ml", 0.1, "volume_limit_nl", 100_000),  # 0.1 * 1e6 = 100000.00000000001 in floats
        ("volume_limit_ml", 0.3, "volume_limit_nl", 300_000),
        ("flow_ml_min", 1.0, "flow_nl_s", 16_667),  # 16666.67 nL/s
        ("flow_ml_min", 0.03, "flow_nl_s", 500),  # exactly 500
        ("pressure.soft_limit_kpa", 2500.0005, "soft_limit_pa", 2_500_001),  # a half: away from zero
        ("pressure.soft_limit_kpa", 2500.0015, "soft_limit_pa", 2_500_002),
        ("pressure.soft_limit_kpa", 2500.0025, "soft_limit_pa", 2_500_003),  # not to even
        ("cement.working_time_s", 600.0005, "working_time_ms", 600_001),
        ("cannula.length_mm", 125.0004, "cannula_length_um", 125_000),
        ("cannula.length_mm", 125.0005, "cannula_length_um", 125_001),
    ],
)
def test_rounding_is_to_the_nearest_unit_with_halves_away_from_zero(
    path: str, value: float, field: str, expected: int
) -> None:
    plan = parse_plan(_with(mode="continuous", increment_ml=..., **{path.replace(".", "__"): value}))
    assert getattr(plan.to_arm(1, 0), field) == expected


def test_mixed_ago_rounds_the_same_way() -> None:
    plan = parse_plan(_with())
    assert [plan.to_arm(1, s).mixed_ago_ms for s in (0.0025, 0.0035, 0.0044, 240)] == [3, 4, 4, 240_000]


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("20"), places=6))
def test_flow_is_exact_for_every_value_as_written(flow: Decimal) -> None:
    plan = parse_plan(_with(flow_ml_min=float(flow)))
    exact = (flow * 1_000_000 / 60).to_integral_value(rounding=ROUND_HALF_UP)
    assert plan.to_arm(1, 0).flow_nl_s == int(exact)


@given(
    st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2.5"), places=6),
    st.decimals(min_value=Decimal("11"), max_value=Decimal("20000"), places=4),
)
def test_volumes_and_pressures_are_exact(volume: Decimal, hard: Decimal) -> None:
    plan = parse_plan(
        _with(
            volume_limit_ml=float(volume),
            increment_ml=float(volume),
            pressure__hard_limit_kpa=float(hard),
            pressure__soft_limit_kpa=10,
            relief__relief_kpa=0,
        )
    )
    arm = plan.to_arm(1, 0)
    assert arm.volume_limit_nl == arm.increment_nl == int(volume * 1_000_000)
    assert arm.hard_limit_pa == int((hard * 1000).to_integral_value(rounding=ROUND_HALF_UP))


@given(
    st.floats(min_value=0, max_value=100_000, allow_nan=False),
    st.floats(min_value=0, max_value=100_000, allow_nan=False),
)
def test_viscosities_go_as_float32_and_survive_the_wire(a: float, b: float) -> None:
    lo, hi = sorted((a, b))
    if lo == hi:
        return
    plan = parse_plan(_with(cement__viscosity_min_pa_s=lo, cement__viscosity_max_pa_s=hi))
    arm = plan.to_arm(65535, 1.0)
    assert Arm.unpack_body(arm.pack_body()) == arm
    assert arm.viscosity_min_pas == pytest.approx(lo, rel=2**-23)
    assert arm.viscosity_max_pas == pytest.approx(hi, rel=2**-23)


def test_wire_matches_a_decimal_computation() -> None:
    assert wire(3.0, 1_000_000, 60) == 50_000
    assert wire(0.1, 1_000_000) == 100_000
    assert wire(-0.0005, 1000) == -1


@given(
    st.integers(min_value=0, max_value=0xFFFF_FFFF),
    st.sampled_from([(1000, 1), (1_000_000, 1), (1_000_000, 60)]),
)
def test_edge_values_convert_back_to_the_same_wire_integer(n: int, scale_divisor: tuple[int, int]) -> None:
    scale, divisor = scale_divisor
    assert wire(edge(n, scale, divisor), scale, divisor) == n


def test_bad_command_ids_are_refused() -> None:
    plan = parse_plan(_with())
    for cmd_id in (0, 65536):
        with pytest.raises(ValueError, match="cmd_id"):
            plan.to_arm(cmd_id, 0)


# ---------------------------------------------------------------------------------------------
# Mixing time
# ---------------------------------------------------------------------------------------------

NOW = datetime(2025, 3, 1, 10, 46, 30)


def test_a_reusable_plan_needs_the_age_at_run_time() -> None:
    plan = parse_plan(_with())
    with pytest.raises(PlanError) as info:
        plan.to_arm(1)
    assert info.value.problems == (
        "plan 'test': cement.mixed_at: (missing) is required when no cement age is given at run time; "
        "allowed a local date-time in the plan, or mixed_ago_s (s)",
    )


def test_mixed_at_gives_the_age_and_a_run_time_age_wins() -> None:
    plan = parse_plan(_with(cement__mixed_at=datetime(2025, 3, 1, 10, 42, 0)))
    assert plan.mixed_ago_s(NOW) == 270.0
    assert plan.to_arm(1, now=NOW).mixed_ago_ms == 270_000
    assert plan.to_arm(1, 30.0, now=NOW).mixed_ago_ms == 30_000


def test_mixed_at_may_carry_an_offset() -> None:
    cet = timezone(timedelta(hours=1))
    plan = parse_plan(_with(cement__mixed_at=datetime(2025, 3, 1, 10, 42, 0, tzinfo=cet)))
    assert plan.to_arm(1, now=datetime(2025, 3, 1, 9, 46, 30, tzinfo=UTC)).mixed_ago_ms == 270_000


def test_mixed_at_in_a_plan_file(tmp_path: Path) -> None:
    text = (REPO / "plans" / "continuous-2ml.toml").read_text()
    text = text.replace("# mixed_at = 2025-03-01T10:42:00", "mixed_at = 2025-03-01T10:42:00")
    path = tmp_path / "today.toml"
    path.write_text(text)
    assert load_plan(path).to_arm(1, now=NOW).mixed_ago_ms == 270_000


def test_cement_mixed_in_the_future_is_refused() -> None:
    plan = parse_plan(_with(cement__mixed_at=NOW + timedelta(minutes=1)))
    with pytest.raises(PlanError, match=r"plan 'test': mixed_ago_s: -60 is not a cement age"):
        plan.to_arm(1, now=NOW)
    with pytest.raises(PlanError, match=r"mixed_ago_s: nan is not a cement age"):
        plan.to_arm(1, math.nan)


# ---------------------------------------------------------------------------------------------
# Clamping to the device
# ---------------------------------------------------------------------------------------------


def test_a_plan_within_the_device_limits_is_returned_as_is() -> None:
    plan = parse_plan(_with())
    assert clamp_to_device(plan, _device()) == (plan, [])


def test_each_clamped_field_gets_one_warning_with_both_values() -> None:
    plan = parse_plan(_with(pressure__hard_limit_kpa=9000, flow_ml_min=12.0))
    clamped, warnings = clamp_to_device(plan, _device())
    assert warnings == [
        "pressure.hard_limit_kpa: requested 9000 kPa, in force 8000 kPa "
        "(device DEV-7 max_pressure_pa 8000000 Pa)",
        "flow_ml_min: requested 12 mL/min, in force 10.00002 mL/min (device DEV-7 max_flow_nl_s 166667 nL/s)",
    ]
    assert clamped.pressure.hard_limit_kpa == 8000
    assert clamped.flow_ml_min == 10.00002
    assert clamped.pressure.soft_limit_kpa == plan.pressure.soft_limit_kpa
    arm = clamped.to_arm(1, 0)
    assert (arm.hard_limit_pa, arm.flow_nl_s) == (8_000_000, 166_667)


def test_volume_and_increment_are_clamped_to_what_the_stroke_holds() -> None:
    plan = parse_plan(_with(volume_limit_ml=2.5, increment_ml=2.5))
    clamped, warnings = clamp_to_device(plan, _device(travel_um=30_000))
    stroke_nl = int(0.030 * math.pi * 7.29e-3**2 / 4 * 1e12)  # 1 252 ... nL
    assert [w.split(":")[0] for w in warnings] == ["volume_limit_ml", "increment_ml"]
    assert f"in force {stroke_nl / 1e6!r} mL" in warnings[0]
    assert "travel_um 30000 um x syringe bore 7.29 mm" in warnings[0]
    arm = clamped.to_arm(1, 0)
    assert arm.volume_limit_nl == arm.increment_nl == stroke_nl


def test_a_clamp_that_breaks_a_rule_is_refused() -> None:
    plan = parse_plan(_with())
    with pytest.raises(PlanError) as info:
        clamp_to_device(plan, _device(max_pressure_pa=2_000_000))
    assert info.value.problems == (
        "plan 'test' on device DEV-7 (after clamping): pressure.soft_limit_kpa: 2000 is not below "
        "pressure.hard_limit_kpa (2000); allowed [10, 2000) (kPa)",
    )


def test_a_plan_needing_a_missing_capability_is_refused() -> None:
    plan = parse_plan(_with())
    with pytest.raises(PlanError) as info:
        clamp_to_device(plan, _device(capabilities=Capabilities.NONE))
    assert info.value.problems == (
        "plan 'test' on device DEV-7: mode: 'incremental' is not supported by the device; "
        "allowed 'continuous' (mode)",
        "plan 'test' on device DEV-7: relief.enabled: true is not supported by the device; "
        "allowed false (true/false)",
    )


@given(
    max_pressure=st.integers(min_value=20_000, max_value=10_000_000),
    max_flow=st.integers(min_value=200, max_value=500_000),
    travel=st.integers(min_value=10_000, max_value=100_000),
)
def test_clamped_values_are_exactly_the_device_limits_on_the_wire(
    max_pressure: int, max_flow: int, travel: int
) -> None:
    plan = parse_plan(
        _with(pressure__hard_limit_kpa=20_000, pressure__soft_limit_kpa=10, relief__relief_kpa=0)
    )
    try:
        clamped, warnings = clamp_to_device(
            plan, _device(max_pressure_pa=max_pressure, max_flow_nl_s=max_flow, travel_um=travel)
        )
    except PlanError:
        pytest.fail("soft 10 kPa stays below any ceiling >= 20 kPa")
    sent, arm = plan.to_arm(1, 0), clamped.to_arm(1, 0)
    assert arm.hard_limit_pa == min(sent.hard_limit_pa, max_pressure)
    assert arm.flow_nl_s == min(sent.flow_nl_s, max_flow)
    assert arm.volume_limit_nl <= sent.volume_limit_nl
    assert len(warnings) == sum(
        (
            sent.hard_limit_pa > max_pressure,
            sent.flow_nl_s > max_flow,
            arm.volume_limit_nl < sent.volume_limit_nl,
        )
    ) + (arm.increment_nl < sent.increment_nl)


def test_the_controller_accepts_a_clamped_plan_without_clamping_it_again() -> None:
    """A device with lower limits than the plan: the host's clamp matches the controller's exactly."""
    config = ControllerConfig(
        max_pressure_pa=3_000_000, default_hard_limit_pa=3_000_000, max_flow_nl_s=40_000
    )
    rig = VirtualRig(controller_config=config, hardware=replace(REFERENCE_RIG, travel_m=0.030))
    info = rig.connect()
    assert isinstance(info, DeviceInfo)
    plan = parse_plan(
        _with(mode="continuous", increment_ml=..., volume_limit_ml=2.5, pressure__hard_limit_kpa=4000)
    )
    clamped, warnings = clamp_to_device(plan, info)
    assert [w.split(":")[0] for w in warnings] == [
        "pressure.hard_limit_kpa",
        "flow_ml_min",
        "volume_limit_ml",
    ]
    ack = rig.command(lambda i: clamped.to_arm(i, 240.0))
    assert isinstance(ack, Ack), ack
    assert not [e for e in rig.events if e.alarm == AlarmCode.LIMIT_CLAMPED]
    status = next(m for m in rig.replies if isinstance(m, Status) and m.cmd_id == ack.cmd_id)
    arm = clamped.to_arm(1, 0)
    assert (status.hard_limit_pa, status.volume_limit_nl) == (arm.hard_limit_pa, arm.volume_limit_nl)
