"""The sweep's run kinds are one table (hil._sweep_runs.KINDS) whose rows carry their own size draw
and plant event: a kind added to the table cannot be forgotten by a match statement elsewhere."""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel

from hil._sweep_runs import KINDS, _event_for, draw_size

HOST_PLAYED = {"nominal", "host_silence"}
MEASURED_AT_ONSET = {"nominal", "disconnection", "motor_stall"}


def test_every_row_draws_its_size_and_makes_its_event() -> None:
    for name in KINDS:
        size, sign = draw_size(np.random.default_rng(7), name)
        assert sign in (1.0, -1.0)
        assert math.isnan(size) == (name in MEASURED_AT_ONSET), name
        event = _event_for(name, 1.0 if math.isnan(size) else size, sign, 10.0)
        assert (event is None) == (name in HOST_PLAYED), name
        if event is not None:
            assert isinstance(event, BaseModel)
            assert event.model_dump()["kind"], name


def test_the_report_row_holds_figures_not_functions() -> None:
    row = KINDS["occlusion"].as_json()
    assert "draw" not in row
    assert "event" not in row
    assert row["expected"] == sorted(KINDS["occlusion"].expected)
