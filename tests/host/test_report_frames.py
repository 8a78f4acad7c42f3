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


def add_biplane_frames(path: Path) -> None:
    """Both views, one frame a second each from 50 s (the AP half a second later); the AP view's guard
    stops on cement outside the body at 64.5 s: its frame keeps the cement mask and the evidence."""
    from host.fluoro_overlay import FluoroPicture
    from host.frame_recording import FrameRecorder
    from host.frames import FluoroFrame
    from tests.dashboard.test_fluoro_replay import REGION

    rec = FrameRecorder(path, max_fps=1.0, around_stop_s=0.0, queue_size=100)
    mask = np.zeros((128, 128), bool)
    mask[50:70, 40:60] = True  # the bolus, inside
    mask[4:12, 60:68] = True  # and a blob above the body, outside
    evidence = np.zeros_like(mask)
    evidence[4:12, 60:68] = True
    for i, t_s in enumerate(range(50, 71)):
        for view, dt_us in (("lateral", 0), ("ap", 500_000)):
            t_us = t_s * 1_000_000 + dt_us
            px = np.full((128, 128), 1000 + 100 * i, np.uint16)
            frame = FluoroFrame(i, t_us, view, px, 12, 0.3, "sim:///tmp/f.sock")
            ap_stop = view == "ap" and t_s == 64
            stopped = t_us > 64_500_000
            label = "STOPPED(EXTRAVASATION)" if stopped or ap_stop else "WATCHING"
            own = label if view == "ap" else "WATCHING"
            leak = view == "ap" and t_s >= 64
            pic = FluoroPicture(
                px, 12, REGION, 0.75, 60.0, mask if leak else None, evidence if leak else None
            )
            rec.offer(frame, pic, label, "EXTRAVASATION" if ap_stop else None, view_label=own)
    assert rec.close() is None


def test_a_biplane_report_shows_both_views_and_the_rules_evidence(tmp_path: Path) -> None:
    path = make_recording(tmp_path / "rec")  # a latched stop at 65 s
    add_biplane_frames(path)
    page = write_report(path, tmp_path / "out").html.read_text()
    captions = re.findall(r"<figcaption>([^<]*)</figcaption>", page)
    assert len(captions) == 2  # the stop's frame of each view (the AP one is the guard's own)
    lateral = next(c for c in captions if "lateral view frame 15 of 65.000 s" in c)
    ap = next(c for c in captions if "ap view frame 14 of 64.500 s" in c)
    assert "the guard stopped here (EXTRAVASATION, ap view)" in ap
    assert "stopped here" not in lateral
    by_caption = dict(zip(captions, images(page), strict=True))
    magenta = np.all(by_caption[ap] == np.array(COLOURS["evidence"], np.uint8), axis=2)
    rows, cols = np.nonzero(magenta)
    assert rows.min() >= 3 * 4 - 3  # ringed around the blob at rows 4..11, cols 60..67, drawn 3x
    assert rows.max() <= 3 * 12 + 2
    assert cols.min() >= 3 * 60 - 3
    assert cols.max() <= 3 * 68 + 2
    assert not np.all(by_caption[lateral] == np.array(COLOURS["evidence"], np.uint8), axis=2).any()
    cement = by_caption[ap][3 * 60, 3 * 50].astype(int)  # inside the bolus: orange-tinted
    assert cement[0] - cement[2] > 40
