"""Numbers as the dashboard prints them: never "-0" (a reading of -0.3 kPa rounded to 0 digits is
0 kPa, not a negative pressure; the same for volumes and flows near zero)."""

from __future__ import annotations


def fixed(value: float, digits: int) -> str:
    """`value` with `digits` decimals, without the sign of a value that rounds to zero."""
    text = f"{value:.{digits}f}"
    if text.startswith("-") and float(text) == 0:
        return text[1:]
    return text
