"""The validation table of docs/references.md: every row computed from the model, every row PASS."""

from __future__ import annotations

from pathlib import Path

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
        if r.result == "FAIL"
    ]
    assert not failed, "\n".join(failed)


def test_all_targets_are_covered(rows: list[ValidationRow]) -> None:
    assert {r.target for r in rows} == set(range(1, 12))


def test_a_known_miss_really_misses_and_says_why(rows: list[ValidationRow]) -> None:
    # when the model improves and a known miss starts to pass, drop its mark
    for row in rows:
        if row.known_miss is not None:
            assert not row.passed, f"{row.quantity} passes now: remove known_miss"
            assert row.result == "MISS (known)"
            assert len(row.known_miss) > 20


def test_at_least_eight_rows_are_passing_predictions_beyond_the_lumped_ones(
    rows: list[ValidationRow],
) -> None:
    new = [r for r in rows if r.target >= 6 and r.basis == "predicted" and r.passed]
    assert len(new) >= 8, [r.quantity for r in new]


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch, rows: list[ValidationRow]) -> None:
    """main() prints the rows already computed (the computation is tested above)."""
    monkeypatch.setattr(validate, "run_validation", lambda dt_s=5e-3, spatial=True: rows)


@pytest.mark.usefixtures("quick")
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
    monkeypatch.setattr(validate, "run_validation", lambda dt_s=5e-3, spatial=True: [bad])
    assert main([]) == 1
    assert "FAIL" in capsys.readouterr().out


def test_a_known_miss_does_not_fail_the_run_but_is_shown(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    miss = ValidationRow(
        9,
        "a figure the model is known to miss",
        "1",
        2.0,
        "x",
        0.9,
        1.1,
        "predicted",
        "nobody",
        "reason given",
    )
    monkeypatch.setattr(validate, "run_validation", lambda dt_s=5e-3, spatial=True: [miss])
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "MISS (known)" in out
    assert "reason given" in out


@pytest.mark.usefixtures("quick")
def test_main_can_print_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--markdown"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("|")]
    assert lines[0].startswith("| # | quantity")
    assert all(line.endswith(("| PASS |", "| MISS (known) |")) for line in lines[2:])


REPO = Path(__file__).resolve().parents[2]


def _reference_keys() -> set[str]:
    """The keys of the Sources table of docs/references.md (first column)."""
    text = (REPO / "docs" / "references.md").read_text(encoding="utf-8")
    section = text.split("## Sources", 1)[1].split("\n## ", 1)[0]
    keys = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] not in ("key", "---"):
            keys.add(cells[0])
    return keys


def test_every_validation_source_resolves_in_the_repository_references(rows: list[ValidationRow]) -> None:
    keys = _reference_keys()
    missing = set()
    for row in rows:
        for part in row.source.split(";"):
            cited = part.strip().split(" (", 1)[0]
            if cited not in keys:
                missing.add(cited)
    assert not missing, f"sources cited by `sim validate` but absent from docs/references.md: {missing}"


def test_the_simulator_docs_and_code_cite_only_files_inside_the_repository() -> None:
    outside = ("physics-" + "references", ".." + "/shared")
    offenders = []
    for folder in ("firmware_sim", "docs", "tests/plant"):
        for path in (REPO / folder).rglob("*"):
            if path.suffix in (".py", ".md"):
                text = path.read_text(encoding="utf-8")
                if any(name in text for name in outside):
                    offenders.append(str(path.relative_to(REPO)))
    assert not offenders, f"these name a file outside the repository: {offenders}"
