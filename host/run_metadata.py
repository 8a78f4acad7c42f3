"""Run metadata for the lab notebook: specimen, operator, cement product and lot, mixing time,
temperatures, notes, label.

Given in the plan file's `[metadata]` table (`host.plan.InjectionPlan.metadata`, checked with the
plan: one line per problem naming the field, the value and what is allowed) and/or on the command
line (`cementguard run --specimen ... --operator ...`: an option wins over the plan's field). The run
stores it in the recording (meta.json `extra.run_metadata`, docs/recordings.md) and names the
recording's folder after the label and the specimen (`folder_label`). The device never sees it.
"""

from __future__ import annotations

import argparse
import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from host.cli_types import FiniteFloat
from host.config_file import Unit, describe

ONE_LINE = r"^[^\x00-\x1f\x7f]*$"
"""Single-line text: no control characters (no newline, tab, escape)."""
MULTI_LINE = r"^[^\x00-\x08\x0b-\x1f\x7f]*$"
"""Text that may span lines (tab and newline allowed), without other control characters."""

Text = Annotated[str | None, Field(min_length=1, max_length=64, pattern=ONE_LINE), Unit("text, one line")]


class RunMetadata(BaseModel):
    """What a lab notebook needs to know about a run beyond the plan. Every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)

    label: Text = None
    """Short name of this run (also in the recording's folder name)."""
    specimen: Text = None
    """Specimen id, e.g. "L2-left-07" (also in the folder name)."""
    operator: Text = None
    cement_product: Text = None
    cement_lot: Text = None
    mixing_time_s: Annotated[float | None, Field(ge=0, le=3600), Unit("s")] = None
    """How long the cement was mixed (the time since mixing is --mixed-ago / --mixed-at)."""
    room_temperature_c: Annotated[float | None, Field(ge=-10, le=50), Unit("degC")] = None
    bath_temperature_c: Annotated[float | None, Field(ge=0, le=60), Unit("degC")] = None
    notes: Annotated[str | None, Field(max_length=4000, pattern=MULTI_LINE), Unit("text")] = None

    def record(self) -> dict[str, Any]:
        """The fields that are set, as stored in the recording (meta.json `extra.run_metadata`)."""
        return self.model_dump(mode="json", exclude_none=True)


FIELDS = tuple(RunMetadata.model_fields)

_OPTIONS: dict[str, tuple[str, str]] = {
    # field: (option, help)
    "label": ("--label", "short name of this run; with --specimen, names the recording's folder"),
    "specimen": ("--specimen", "specimen id (recorded, and in the recording's folder name)"),
    "operator": ("--operator", "who runs the injection"),
    "cement_product": ("--cement-product", "the cement's product name"),
    "cement_lot": ("--cement-lot", "the cement's lot number"),
    "mixing_time_s": ("--mixing-time", "how long the cement was mixed (s)"),
    "room_temperature_c": ("--room-temperature", "room temperature (degC)"),
    "bath_temperature_c": ("--bath-temperature", "water bath temperature (degC)"),
    "notes": ("--notes", "free text for the record"),
}
_NUMBERS = {
    "mixing_time_s": FiniteFloat("--mixing-time", 0.0, 3600.0, "s"),
    "room_temperature_c": FiniteFloat("--room-temperature", -10.0, 50.0, "degC"),
    "bath_temperature_c": FiniteFloat("--bath-temperature", 0.0, 60.0, "degC"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The metadata options (`--specimen`, `--operator`, ...), grouped; each overrides the plan's
    `[metadata]` field of the same name."""
    group = parser.add_argument_group("run metadata (recorded; each overrides the plan's [metadata])")
    for field, (option, text) in _OPTIONS.items():
        number = _NUMBERS.get(field)
        if number is not None:
            group.add_argument(
                option, dest=f"meta_{field}", type=number, metavar="N", help=f"{text}; {number.allowed}"
            )
        else:
            group.add_argument(option, dest=f"meta_{field}", metavar="TEXT", help=text)


def merge(base: RunMetadata, args: argparse.Namespace) -> RunMetadata:
    """`base` (the plan's) with every option given on the command line in its place. Raises
    ValueError naming the option, the value and what is allowed."""
    given = {f: getattr(args, f"meta_{f}") for f in FIELDS if getattr(args, f"meta_{f}", None) is not None}
    if not given:
        return base
    try:
        return RunMetadata.model_validate({**base.model_dump(), **given})
    except ValidationError as exc:
        lines = describe(exc, RunMetadata, lambda path: _OPTIONS.get(path, (path, ""))[0])
        raise ValueError("\n".join(lines)) from None


def folder_label(metadata: RunMetadata, fallback: str) -> str:
    """The recording folder's label: `<label>-<specimen>` (those set), else `fallback` (the plan's
    name); ASCII letters, digits, '-' and '_' only, at most 48 characters."""
    parts = [p for p in (metadata.label, metadata.specimen) if p]
    return sanitise("-".join(parts) if parts else fallback)


def sanitise(text: str, limit: int = 48) -> str:
    """A file-name-safe form of `text`: runs of anything but ASCII letters, digits, '-' and '_'
    become one '-'; no leading or trailing '-'; "run" when nothing is left."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:limit].strip("-")
    return safe or "run"


__all__ = ["FIELDS", "RunMetadata", "add_arguments", "folder_label", "merge", "sanitise"]
