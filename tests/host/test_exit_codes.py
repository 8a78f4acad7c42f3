"""One exit code for bad input across the commands that read a recording (host.cli_types.EXIT_USAGE,
README "Exit codes"): a path that is not a recording exits 2, as an argparse usage error does, whether
it is exported, plotted, reported or replayed."""

from __future__ import annotations

from pathlib import Path

import pytest

from host.cli import main as cli_main


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "{rec}", "--csv", "{out}/x.csv"],
        ["export", "{rec}", "--parquet", "{out}/x.parquet"],
        ["plot", "{rec}", "--out", "{out}/x.png"],
        ["report", "{rec}", "--out", "{out}/r"],
        ["replay", "{rec}"],
    ],
    ids=lambda argv: "-".join(a for a in argv if not a.startswith("{"))[:30],
)
def test_not_a_recording_exits_2_on_every_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    rec = tmp_path / "not-a-recording"
    rec.mkdir()
    (rec / "notes.txt").write_text("hello")
    out = tmp_path / "out"
    out.mkdir()
    code = cli_main([a.format(rec=rec, out=out) for a in argv])
    assert code == 2  # host.cli_types.EXIT_USAGE
    assert "not a recording" in capsys.readouterr().err
    assert list(out.iterdir()) == [], "nothing is written for bad input"
