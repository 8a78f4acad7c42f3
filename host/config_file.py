"""TOML files checked by pydantic models: reading them, and error lines that name the field.

Plans (host/plan.py), settings (host/settings.py) and HIL scenarios (hil/scenario.py) are all TOML
files validated by pydantic models, and all report a problem the same way, one line each:

    <file or origin>: <field path>: <value> is <why>; allowed <range> (<unit>)

with the range and the unit read from the field's own declaration (its `Unit` marker and its
annotated constraints), so the message cannot drift from the check. This module is that shared part;
each file kind keeps its own models and its own error class (any ValueError taking a list of lines).
"""

from __future__ import annotations

import os
import re
import reprlib
import tomllib
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import Any, Literal, Union

import annotated_types as at
from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo

from host.file_limits import MAX_TOML_BYTES, FileRejectedError, read_regular

__all__ = ["Problem", "Raw", "RulesBrokenError", "Unit", "describe", "read_toml", "show"]


@dataclass(frozen=True, slots=True)
class Unit:
    """Annotated marker: the unit a field is written in, quoted by every error message about it."""

    name: str
    allowed: str | None = None
    """What is allowed, where the annotation's constraints cannot say it (a pattern, a URL form)."""


@dataclass(frozen=True, slots=True)
class Problem:
    """A broken cross-field rule; `path` is relative to the model whose validator found it."""

    path: str
    value: object
    why: str
    allowed: str
    unit: str


class RulesBrokenError(ValueError):
    """Raised by model validators with every broken rule at once (pydantic keeps it in ctx["error"])."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.path}: {show(p.value)} is {p.why}" for p in problems))


# ---------------------------------------------------------------------------------------------
# Error messages: every pydantic error and every rule becomes "<source>: <path>: <value> is <why>;
# allowed <range> (<unit>)", with the range and unit read from the field's own declaration.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Raw:
    """A value shown as is, not repr'd (e.g. "(missing)")."""

    text: str


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = 60
_WHY = {
    "missing": "required",
    "extra_forbidden": "not a known field",
    "greater_than_equal": "too small",
    "greater_than": "too small",
    "less_than_equal": "too large",
    "less_than": "too large",
    "finite_number": "not a finite number",
    "float_type": "not a number",
    "float_parsing": "not a number",
    "int_parsing": "not a whole number",
    "int_from_float": "not a whole number",
    "bool_parsing": "not true or false",
    "string_pattern_mismatch": "not in the allowed form",
    "path_type": "not a path",
    "datetime_parsing": "not a date-time",
    "int_type": "not a whole number",
    "bool_type": "not true or false",
    "string_type": "not text (quote it)",
    "string_too_short": "too short",
    "string_too_long": "too long",
    "literal_error": "not one of the choices",
    "datetime_type": "not a date-time",
    "model_type": "not a table",
    "dict_type": "not a table",
}


def show(value: object) -> str:
    """A value as an error message quotes it: whole floats without ".0", text quoted, long values cut."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if isinstance(value, datetime):
        return value.isoformat()
    return _repr.repr(value)


def _unwrap(annotation: Any) -> Any:
    """X | None -> X."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _field(model: type[BaseModel], loc: Sequence[int | str]) -> tuple[type[BaseModel], FieldInfo | None]:
    """The model that owns the last element of `loc`, and that field's declaration (if any)."""
    info: FieldInfo | None = None
    for i, key in enumerate(loc):
        info = model.model_fields.get(str(key))
        if info is None:
            return model, None
        inner = _unwrap(info.annotation)
        if i < len(loc) - 1 and isinstance(inner, type) and issubclass(inner, BaseModel):
            model = inner
    return model, info


def _allowed(info: FieldInfo) -> tuple[str, str]:
    """(allowed range, unit) of one field, from its annotation and constraints."""
    marker = next((m for m in info.metadata if isinstance(m, Unit)), Unit("-"))
    unit = marker.name
    if marker.allowed is not None:
        return marker.allowed, unit
    kind = _unwrap(info.annotation)
    if isinstance(kind, type) and issubclass(kind, BaseModel):
        return "a table with " + ", ".join(kind.model_fields), "table"
    if typing.get_origin(kind) is Literal:
        choices = [show(a) for a in typing.get_args(kind)]
        return " or ".join([", ".join(choices[:-1]), choices[-1]] if len(choices) > 1 else choices), unit
    if kind is bool:
        return "true or false", unit
    if kind is datetime:
        return "a date-time such as 2025-03-01T10:42:00", unit
    lo: object = None
    hi: object = None
    lo_open = hi_open = False
    min_len, max_len = 0, None
    for m in info.metadata:
        if isinstance(m, at.Ge | at.Gt):
            lo, lo_open = (m.ge, False) if isinstance(m, at.Ge) else (m.gt, True)
        elif isinstance(m, at.Le | at.Lt):
            hi, hi_open = (m.le, False) if isinstance(m, at.Le) else (m.lt, True)
        elif isinstance(m, at.MinLen):
            min_len = m.min_length
        elif isinstance(m, at.MaxLen):
            max_len = m.max_length
    if kind is str:
        return f"{min_len} to {max_len} characters" if max_len else "any text", unit
    if lo is None and hi is None:
        if isinstance(kind, type) and issubclass(kind, PurePath):
            return "a path", unit
        if kind is SecretStr:
            return "any text", unit
        return "a number" if kind in (int, float) else "see the documentation", unit
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    return f"{left}{show(lo)}, {show(hi)}{right}", unit


def _constant(text: str) -> Callable[[str], str]:
    return lambda _path: text


def describe(exc: ValidationError, model: type[BaseModel], source: str | Callable[[str], str]) -> list[str]:
    """One line per error. `source` names where the values came from: a file name, or a function
    from the dotted field path to its origin (e.g. the environment variable that set it)."""
    origin: Callable[[str], str] = source if callable(source) else _constant(source)
    lines: list[str] = []
    for err in exc.errors():
        loc = [str(k) for k in err["loc"]]
        ctx = err.get("ctx") or {}
        rules = ctx.get("error")
        if isinstance(rules, RulesBrokenError):
            for p in rules.problems:
                path = ".".join([*loc, p.path])
                lines.append(
                    f"{origin(path)}: {path}: {show(p.value)} is {p.why}; allowed {p.allowed} ({p.unit})"
                )
            continue
        path = ".".join(loc) or "(top level)"
        owner, info = _field(model, loc)
        value: object = Raw("(missing)") if err["type"] == "missing" else err["input"]
        if info is not None and _unwrap(info.annotation) is SecretStr:
            value = Raw("'**********'")
        why = _WHY.get(err["type"], err["msg"])
        if err["type"] == "extra_forbidden":
            allowed, unit = ", ".join(owner.model_fields), "field names"
        elif info is None:
            allowed, unit = "see the documentation", "-"
        else:
            allowed, unit = _allowed(info)
        if err["type"] == "value_error":
            why = str(ctx.get("error", why))
        lines.append(f"{origin(path)}: {path}: {show(value)} is {why}; allowed {allowed} ({unit})")
    return lines


_TOML_WHERE = re.compile(r"^(?P<msg>.*?)\s*\(at line (?P<line>\d+), column (?P<col>\d+)\)$")


def read_toml(path: str | os.PathLike[str], error: type[ValueError]) -> dict[str, Any]:
    """A TOML file as a dict; a missing or unreadable file or a syntax error raises `error` with one
    line naming the file (and the line and column of a syntax error)."""
    name = os.fspath(path)
    try:
        return tomllib.loads(read_regular(name, MAX_TOML_BYTES).decode("utf-8"))
    except FileRejectedError as exc:  # /dev/zero, a FIFO, a directory, a huge file: never read on
        raise error([str(exc)]) from None
    except FileNotFoundError:
        raise error([f"{name}: file not found"]) from None
    except OSError as exc:
        raise error([f"{name}: cannot be read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError as exc:
        raise error([f"{name}: byte {exc.start} is not UTF-8 text; TOML files are UTF-8"]) from None
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_WHERE.match(str(exc))
        where = f"line {m['line']}, column {m['col']}: " if m else ""
        raise error([f"{name}: {where}TOML syntax error: {m['msg'] if m else exc}"]) from None
