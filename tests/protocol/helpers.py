"""Shared pieces of the protocol tests: hypothesis strategies over every message type, a NaN-aware
message comparison, the golden vectors, and a reader of their JSON written from the format notes
(independently of scripts/gen_vectors.py, as a C or another host's implementer would write it)."""

from __future__ import annotations

import json
import math
import typing
from enum import IntEnum, IntFlag
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

from protocol.enums import MsgType
from protocol.messages import _INT_RANGES, REGISTRY, Message, TelemetryBatch
from protocol.telemetry import MAX_BATCH_SAMPLES, SAMPLE_DTYPE, SAMPLE_SIZE

REPO = Path(__file__).resolve().parents[2]
VECTORS_PATH = REPO / "protocol" / "vectors.json"

FIXED_TYPES: list[type[Message]] = [REGISTRY[t] for t in sorted(REGISTRY) if t is not MsgType.TELEMETRY_BATCH]
ALL_TYPES: list[type[Message]] = [REGISTRY[t] for t in sorted(REGISTRY)]


# ---------------------------------------------------------------------------------------------
# Layout introspection
# ---------------------------------------------------------------------------------------------


def layout(cls: type[Message]) -> list[tuple[str, str, Any]]:
    """(field name, struct code, type hint) in wire order."""
    hints = typing.get_type_hints(cls)
    return [(name, code, hints[name]) for name, code in zip(cls._names, cls._codes, strict=True)]


def is_enum(hint: Any) -> bool:
    return isinstance(hint, type) and issubclass(hint, IntEnum | IntFlag)


M = typing.TypeVar("M", bound=Message)


def minimal(cls: type[M]) -> M:
    """A valid instance with every field at its smallest legal value."""
    kwargs: dict[str, Any] = {}
    for name, code, hint in layout(cls):
        if is_enum(hint):
            kwargs[name] = hint(0) if issubclass(hint, IntFlag) else min(hint)
        elif code == "f":
            kwargs[name] = 0.0
        elif code.endswith("s"):
            kwargs[name] = ""
        else:
            kwargs[name] = _INT_RANGES[code][0]
    return cls(**kwargs)


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------


def field_strategy(code: str, hint: Any) -> st.SearchStrategy[Any]:
    if is_enum(hint) and issubclass(hint, IntFlag):
        lo, hi = _INT_RANGES[code]
        return st.integers(lo, hi).map(hint)  # any bits, defined or not: flags keep unknown bits
    if is_enum(hint):
        return st.sampled_from(list(hint))
    if code == "f":
        return st.floats(width=32)  # every float32, NaN and infinities included
    if code.endswith("s"):
        ascii_no_nul = st.characters(min_codepoint=1, max_codepoint=127)
        return st.text(alphabet=ascii_no_nul, max_size=int(code[:-1]))
    lo, hi = _INT_RANGES[code]
    return st.integers(lo, hi)


def samples_from_bytes(raw: bytes) -> np.ndarray[Any, Any]:
    return np.frombuffer(raw, dtype=SAMPLE_DTYPE).copy()


@st.composite
def sample_arrays(draw: st.DrawFn, max_samples: int = MAX_BATCH_SAMPLES) -> np.ndarray[Any, Any]:
    """Arbitrary sample bytes: every bit pattern is a legal sample (NaN payloads, any flags)."""
    n = draw(st.integers(0, max_samples))
    return samples_from_bytes(draw(st.binary(min_size=n * SAMPLE_SIZE, max_size=n * SAMPLE_SIZE)))


def telemetry_batches() -> st.SearchStrategy[TelemetryBatch]:
    return st.builds(
        TelemetryBatch,
        first_index=st.integers(0, 0xFFFF_FFFF),
        period_us=st.integers(0, 0xFFFF),
        samples=sample_arrays(),
    )


def message_strategy(cls: type[Message]) -> st.SearchStrategy[Message]:
    if cls is TelemetryBatch:
        return telemetry_batches()
    return st.builds(cls, **{name: field_strategy(code, hint) for name, code, hint in layout(cls)})


def messages() -> st.SearchStrategy[Message]:
    return st.sampled_from(ALL_TYPES).flatmap(message_strategy)


# ---------------------------------------------------------------------------------------------
# Comparison
# ---------------------------------------------------------------------------------------------


def same_value(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and bool(a == b)


def same_message(a: Message, b: Message) -> bool:
    """Field-wise equality where NaN equals NaN, enum types must match, samples compare as bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, TelemetryBatch) and isinstance(b, TelemetryBatch):
        return (
            a.first_index == b.first_index
            and a.period_us == b.period_us
            and a.samples.dtype == b.samples.dtype
            and a.samples.tobytes() == b.samples.tobytes()
        )
    return all(same_value(getattr(a, n), getattr(b, n)) for n in a._names)


# ---------------------------------------------------------------------------------------------
# Golden vectors
# ---------------------------------------------------------------------------------------------


@cache
def vectors_doc() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(VECTORS_PATH.read_text(encoding="ascii"))
    return doc


def vectors() -> list[dict[str, Any]]:
    return list(vectors_doc()["vectors"])


def negative_vectors() -> list[dict[str, Any]]:
    return list(vectors_doc()["negative_vectors"])


def enum_from_json(hint: Any, j: dict[str, Any]) -> Any:
    """{name, value} -> member; the name must agree with the value."""
    value = hint(j["value"])
    if issubclass(hint, IntFlag):
        names = [] if j["name"] == "NONE" else j["name"].split("|")
        combined = 0
        for name in names:
            combined |= int(hint[name])
        assert combined == j["value"], j
    else:
        assert hint[j["name"]] == value, j
    return value


def float_from_json(j: float | str) -> float:
    special = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}
    return special[j] if isinstance(j, str) else float(j)


def samples_from_json(samples: list[dict[str, Any]]) -> np.ndarray[Any, Any]:
    arr = np.zeros(len(samples), dtype=SAMPLE_DTYPE)
    names = SAMPLE_DTYPE.names
    assert names is not None
    for i, s in enumerate(samples):
        assert list(s) == list(names), "sample keys in SAMPLE_DTYPE order"
        for name in names:
            v = s[name]
            if isinstance(v, dict):
                arr[i][name] = v["value"]
            elif name == "viscosity_pas":
                arr[i][name] = float_from_json(v)
            else:
                arr[i][name] = v
    return arr


def message_from_json(vector: dict[str, Any]) -> Message:
    cls = REGISTRY[MsgType[vector["msg_type"]]]
    assert int(cls.TYPE) == vector["msg_type_value"]
    f = vector["fields"]
    if cls is TelemetryBatch:
        assert f["count"] == len(f["samples"])
        return TelemetryBatch(f["first_index"], f["period_us"], samples_from_json(f["samples"]))
    assert list(f) == list(cls._names), "fields listed in layout order"
    kwargs: dict[str, Any] = {}
    for name, code, hint in layout(cls):
        j = f[name]
        if is_enum(hint):
            kwargs[name] = enum_from_json(hint, j)
        elif code == "f":
            kwargs[name] = float_from_json(j)
        else:
            kwargs[name] = j
    return cls(**kwargs)
