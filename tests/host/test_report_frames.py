"""The run report shows the frame at each stop with the guard's overlay (issue 15)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import cv2
import numpy as np

from host.fluoro_overlay import COLOURS
from host.report import write_report
from tests.dashboard.test_fluoro_replay import add_frames
from tests.dashboard.test_plan_and_replay import make_recording


def images(page: str) -> list[np.ndarray]:
    out = []
    for data in re.findall(r"<img class='frame'[^>]*src='data:image/png;base64,([^']+)'", page):
        bgr = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        out.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return out


def test_the_report_contains_the_stop_frame_with_its_overlay(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "rec")  # a latched stop at 65 s
    add_frames(path)  # one frame a second; the guard stopped on the one at 65 s (frame 16)
    written = write_report(path, tmp_path / "out")
    page = written.html.read_text()
    assert "Fluoroscopy at the stops" in page
    assert "frame 16 of 65.000 s" in page
    assert "STOPPED(POSTERIOR_QUARTER)" in page
    (frame,) = images(page)
    assert frame.shape == (384, 384, 3)  # 128 px drawn 3x
    # the line at 20 + 0.75 * 80 = 80 px of 128: column 80 * 3 = 240
    line = np.all(frame == np.array(COLOURS["line"], np.uint8), axis=2)
    assert set(np.nonzero(line.any(axis=0))[0].tolist()) == {240}
    assert "<script" not in page  # self-contained: no script, no external file
    assert not re.search(r"src=['\"](?!data:)", page)
    assert pages(written.pdf) == 3  # the text, the plots, the stop frames


def pages(pdf: Path) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf.read_bytes()))


def test_a_report_without_frames_has_no_fluoroscopy_section(tmp_path: Path) -> None:
    written = write_report(make_recording(tmp_path / "rec"), tmp_path / "out")
    assert "Fluoroscopy" not in written.html.read_text()
    assert pages(written.pdf) == 2
