"""The validation table of physics-references.md: every row computed from the model, every row PASS."""

from __future__ import annotations

import pytest

from firmware_sim.plant import validate
from firmware_sim.plant.validate import ValidationRow, main, run_validation


@pytest.fixture(scope="module")
def rows() -> list[ValidationRow]:
    return run_validation()


def test_every_validation_target_passes(rows: list[ValidationRow]) -> None:
    failed = [
        f"{r.target} {r.quantity}: {r.simulated:.4g} {r.unit} not in {r.tolerance}"
        for r in rows
        if not r.passed
    ]
    assert not failed, "\n".join(failed)


def test_all_five_targets_are_covered(rows: list[ValidationRow]) -> None:
    assert {r.target for r in rows} == {1, 2, 3, 4, 5}


def test_main_prints_the_table_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "PASS" in out
    assert "FAIL" not in out
    assert "Krebs 2005" in out


def test_main_exits_1_when_a_row_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = ValidationRow(9, "a figure the model misses", "1", 2.0, "x", 0.9, 1.1, "predicted", "nobody")
    monkeypatch.setattr(validate, "run_validation", lambda dt_s=5e-3: [bad])
    assert main([]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_main_can_print_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markdown"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| # | quantity")
    assert all(line.endswith("| PASS |") for line in lines[2:])
