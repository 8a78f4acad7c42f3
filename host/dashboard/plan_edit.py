"""Checking the plan fields an operator edits on the dashboard, with the plan module's own rules.

An edit is applied to the loaded plan and the whole plan is validated again by `InjectionPlan`, so
cross-field rules (soft below hard, increment within the volume, the volume within the syringe)
hold exactly as for a plan file, and each message names the field, the value and the allowed range.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from host.config_file import describe, show
from host.plan import InjectionPlan

SOURCE = "edit"
EDITABLE: dict[str, tuple[str, str]] = {
    # field path -> (label, unit)
    "flow_ml_min": ("flow", "mL/min"),
    "increment_ml": ("increment", "mL"),
    "volume_limit_ml": ("volume", "mL"),
    "pressure.soft_limit_kpa": ("soft limit", "kPa"),
    "pressure.hard_limit_kpa": ("hard limit", "kPa"),
}
AGE_RANGE_S = (0.0, 7200.0)


@dataclass(frozen=True, slots=True)
class EditResult:
    plan: InjectionPlan | None
    """The edited plan, or None while any field is wrong."""
    errors: dict[str, str] = field(default_factory=dict)
    """Field path -> message ("flow_ml_min: 50 is too large; allowed [0.01, 20] (mL/min)")."""
    general: list[str] = field(default_factory=list)
    """Messages about fields that are not editable here (e.g. the syringe's capacity)."""


def field_value(plan: InjectionPlan, path: str) -> float | None:
    value: Any = plan
    for key in path.split("."):
        value = getattr(value, key)
    return None if value is None else float(value)


def field_text(plan: InjectionPlan, path: str) -> str:
    value = field_value(plan, path)
    return "" if value is None else show(value)


def _parse(text: str) -> float | str | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return text  # the model reports it: "'abc' is not a number; allowed ..."
    return value if math.isfinite(value) else text


def apply_edits(base: InjectionPlan, texts: Mapping[str, str]) -> EditResult:
    """`base` with the edited fields (`texts`: field path -> text as typed), validated."""
    data = base.model_dump()
    for path, text in texts.items():
        *tables, key = path.split(".")
        target = data
        for table in tables:
            target = target[table]
        target[key] = _parse(text)
    try:
        return EditResult(InjectionPlan.model_validate(data))
    except ValidationError as exc:
        lines = describe(exc, InjectionPlan, SOURCE)
    errors: dict[str, str] = {}
    general: list[str] = []
    for line in lines:
        text = line.removeprefix(f"{SOURCE}: ")
        path = text.split(": ", 1)[0]
        if path in EDITABLE:
            errors[path] = f"{errors[path]}; {text}" if path in errors else text
        else:
            general.append(text)
    return EditResult(None, errors, general)


def parse_age(text: str) -> tuple[float | None, str | None]:
    """(cement age in s, None) or (None, message) for the "mixed ago" field."""
    lo, hi = AGE_RANGE_S
    value = _parse(text)
    if value is None:
        return None, None
    if isinstance(value, str):
        return None, f"mixed_ago_s: {show(value)} is not a number; allowed [{show(lo)}, {show(hi)}] (s)"
    if not lo <= value <= hi:
        why = "too small" if value < lo else "too large"
        return None, f"mixed_ago_s: {show(value)} is {why}; allowed [{show(lo)}, {show(hi)}] (s)"
    return value, None
