"""Behaviour is pinned byte for byte: each scenario of `tests.controller.determinism` (injections,
occlusions at several phases, leaks, sensor faults, movements, setup commands on the fake plant;
the sweep's event kinds on the real plant) must produce exactly the output digest recorded from the
code before the last change that was meant to move no outcome (`tick_digests.json`).

A failure means a decision, a sample at which a stop latched, a flag or a telemetry byte moved. If
that was deliberate, re-record from the commit that makes it and say so in its message
(`python -m tests.controller.determinism --record`)."""

from __future__ import annotations

import json

import pytest

from tests.controller.determinism import DIGESTS, SCENARIOS

EXPECTED: dict[str, str] = json.loads(DIGESTS.read_text())


def test_every_scenario_has_a_recorded_digest() -> None:
    assert sorted(EXPECTED) == sorted(SCENARIOS)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_output_bytes_unchanged(name: str) -> None:
    assert SCENARIOS[name]() == EXPECTED[name]
