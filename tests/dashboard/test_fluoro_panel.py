"""The fluoroscopy panel (issue 15, "Where people see it"): the overlay's geometry on a known frame,
the half-block cells, stale and bad frames, and the guard's state on every screen."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from rich.console import Console

from host.dashboard.app import DashboardApp
from host.dashboard.guard_view import GuardFrame, GuardView
from host.dashboard.model import DashboardModel
from host.dashboard.widgets.banner import banner_text
from host.dashboard.widgets.fluoro_panel import UPPER_HALF, FluoroPanel, HalfBlocks, fit_cells
from host.fluoro_overlay import COLOURS, FluoroPicture, overlay_rgb
from host.guard.region import BodyRegion
from host.plan import load_plan
from protocol import State
from tests.dashboard.conftest import EXAMPLE_PLAN, SIZE, SMALL
from tests.dashboard.scripted import ScriptedSource, Step, status
from tests.dashboard.test_snapshots import fed
from tests.guard.phantom import BODY, Phantom

REGION = BodyRegion.rectangle(*BODY)  # anterior x 70, posterior x 190 (right)


def picture(front_x: float | None = None, mask: np.ndarray | None = None, size: int = 256) -> FluoroPicture:
    px = np.full((size, size), 3000, np.uint16)
    px[80:180, 70:190] = 1500  # the body, darker
    return FluoroPicture(px, 12, REGION, 0.75, front_x, mask)


def columns_of(rgb: np.ndarray, colour: tuple[int, int, int]) -> set[int]:
    hit = np.all(rgb == np.array(colour, np.uint8), axis=2)
    return set(np.nonzero(hit.any(axis=0))[0].tolist())


def test_the_posterior_quarter_line_is_at_its_column() -> None:
    # line at 70 + 0.75 * 120 = 160 px; at 64 columns for 256 px: column floor(160 / 4) = 40
    rgb = overlay_rgb(picture(), 64, 64)
    assert columns_of(rgb, COLOURS["line"]) == {40}
    rows = np.nonzero(np.all(rgb[:, 40] == COLOURS["line"], axis=1))[0]
    assert rows.min() == 80 // 4
    assert rows.max() == 180 // 4


def test_the_front_is_drawn_at_its_column_and_turns_red_past_the_line() -> None:
    before = overlay_rgb(picture(front_x=100.0), 64, 64)
    assert columns_of(before, COLOURS["front"]) == {25}
    assert columns_of(before, COLOURS["front_past"]) == set()
    past = overlay_rgb(picture(front_x=170.0), 64, 64)
    assert columns_of(past, COLOURS["front_past"]) == {42}
    assert columns_of(past, COLOURS["front"]) == set()


def test_the_outline_follows_the_region_and_the_cement_is_tinted() -> None:
    mask = np.zeros((256, 256), bool)
    mask[120:140, 90:110] = True
    rgb = overlay_rgb(picture(mask=mask), 64, 64)
    outline = columns_of(rgb, COLOURS["outline"])
    assert min(outline) == 70 // 4
    assert max(outline) == 190 // 4
    cell = rgb[32, 25].astype(int)  # inside the cement: orange over grey (red > blue)
    assert cell[0] - cell[2] > 40
    clear = rgb[32, 35].astype(int)  # body without cement: grey
    assert abs(clear[0] - clear[2]) <= 1


def test_a_mask_of_another_size_is_left_out_not_a_crash() -> None:
    rgb = overlay_rgb(picture(mask=np.ones((100, 100), bool)), 32, 32)
    assert rgb.shape == (32, 32, 3)
    view = GuardView("sim://x")
    view.show(GuardFrame(1, 0, picture(mask=np.ones((10, 10), bool))))
    assert view.frame is not None
    assert view.frame.picture.mask is None


def test_half_blocks_put_two_pixel_rows_in_one_cell() -> None:
    rgb = np.zeros((4, 2, 3), np.uint8)
    rgb[0] = (255, 0, 0)
    rgb[1] = (0, 0, 255)
    rows = HalfBlocks(rgb).rows()
    assert len(rows) == 2
    assert all(len(r) == 2 for r in rows)
    seg = rows[0][0]
    assert seg.text == UPPER_HALF
    assert seg.style is not None
    assert seg.style.color is not None
    assert seg.style.bgcolor is not None
    assert seg.style.color.triplet is not None
    assert tuple(seg.style.color.triplet) == (255, 0, 0)
    assert seg.style.bgcolor.triplet is not None
    assert tuple(seg.style.bgcolor.triplet) == (0, 0, 255)
    text = Console(width=10, color_system="truecolor", record=True)
    text.print(HalfBlocks(rgb))
    assert text.export_text().splitlines()[:2] == [UPPER_HALF * 2] * 2


@pytest.mark.parametrize(
    ("frame", "cells", "expected"),
    [((512, 512), (46, 20), (40, 40)), ((512, 256), (46, 20), (46, 24)), ((256, 512), (46, 20), (20, 40))],
)
def test_the_picture_keeps_the_frames_aspect(
    frame: tuple[int, int], cells: tuple[int, int], expected: tuple[int, int]
) -> None:
    assert fit_cells(*frame, *cells) == expected


def test_blindness_is_on_the_banner_not_only_in_the_panel() -> None:
    model = DashboardModel(clock=lambda: 0.0)
    model.on_link("connected", "")
    model.guard = GuardView("sim:///tmp/frames.sock")
    model.on_guard_state("BLIND", "BLIND(frozen image)")
    _css, _headline, detail = banner_text(model)
    assert "fluoroscopic guard: BLIND(frozen image)" in detail
    model.on_guard_state("WATCHING", "WATCHING")
    assert "guard" not in banner_text(model)[2]


def guarded_app(view: GuardView) -> tuple[DashboardApp, ScriptedSource]:
    source = ScriptedSource(Step(status=status(State.IDLE, t_s=100.0)))
    model = DashboardModel(clock=lambda: 1000.0)
    model.guard = view
    app = DashboardApp(
        source,
        plan=load_plan(EXAMPLE_PLAN),
        plan_path=Path("plans/incremental-3x0.5ml.toml"),
        mixed_ago_s=240.0,
        model=model,
    )
    return app, source


def watching_view() -> GuardView:
    phantom = Phantom(seed=3)
    phantom.bolus(0.5)
    frame = phantom.frame()
    mask = phantom.cement > 0
    view = GuardView("sim:///tmp/frames.sock")
    view.status("WATCHING", "WATCHING")
    view.show(GuardFrame(frame.index, frame.t_us, FluoroPicture(frame.pixels, 12, REGION, 0.75, 130.0, mask)))
    return view


def test_snapshot_the_panel_shows_the_frame_and_the_guard(snap_compare: Any) -> None:
    app, source = guarded_app(watching_view())
    assert snap_compare(app, terminal_size=SIZE, run_before=fed(source))


def test_snapshot_a_blind_guard_at_80x24(snap_compare: Any) -> None:
    view = watching_view()
    view.status("BLIND", "BLIND(no frame for 1.2 s)")
    app, source = guarded_app(view)
    assert snap_compare(app, terminal_size=SMALL, run_before=fed(source))


async def test_frames_of_another_size_mid_stream_never_crash_the_panel() -> None:
    view = GuardView("sim:///tmp/frames.sock")
    app, source = guarded_app(view)
    async with app.run_test(size=SIZE) as pilot:
        await source.fed.wait()
        panel = app.query_one(FluoroPanel)
        for i, (h, w) in enumerate([(256, 256), (64, 512), (512, 16), (16, 16), (256, 256)]):
            px = np.random.default_rng(i).integers(0, 4095, (h, w), dtype=np.uint16)
            mask = np.ones((256, 256), bool)  # the previous size's mask
            view.show(GuardFrame(i + 1, i, FluoroPicture(px, 12, REGION, 0.75, 130.0, mask)))
            app.refresh_view()
            await pilot.pause()
            assert panel._image is not None
            rendered = Console(width=80, record=True, color_system="truecolor")
            rendered.print(panel.render())
            assert UPPER_HALF in rendered.export_text()
        assert view.frames == 5


def test_a_step_is_drawn_on_its_own_frame_and_only_the_newest_is_kept() -> None:
    from types import SimpleNamespace

    from host.guard import GuardConfig, GuardStatus, GuardStep
    from host.guard.worker import Judged
    from host.guard_feed import judged_handler

    phantom = Phantom(seed=1)
    frames = [phantom.frame() for _ in range(3)]
    view = GuardView("mem://frames")
    states: list[str] = []
    worker = SimpleNamespace(guard=SimpleNamespace(region=REGION, config=GuardConfig()))
    seen: list[int] = []
    handle = judged_handler(
        lambda: view,
        lambda _state, label: states.append(label),
        lambda: worker,  # type: ignore[arg-type,return-value]
        lambda judged, _pic: seen.append(judged.step.frame_index or 0),
    )
    watching = GuardStatus("WATCHING")
    handle(
        Judged(GuardStep(watching, frame_index=3, t_us=300_000, changed=True), frames[2], "lateral", watching)
    )
    handle(Judged(GuardStep(watching), None, "lateral", watching))  # a tick: nothing to draw or record
    assert states == ["WATCHING"]
    assert seen == [3]
    assert view.frame is not None
    assert view.frame.index == 3
    assert np.array_equal(view.frame.picture.pixels, frames[2].pixels)
    assert view.frame.picture.posterior_fraction == GuardConfig().posterior_fraction


async def test_a_frame_source_that_cannot_be_opened_is_said_on_the_banner(tmp_path: Path) -> None:
    from host.dashboard.source import LiveSource
    from host.guard import GuardConfig
    from host.guard.options import GuardSetup

    url = str(tmp_path / "no-such-folder")
    source = LiveSource("/dev/null-none", guard=GuardSetup(url, GuardConfig()))
    model = DashboardModel(clock=lambda: 0.0)
    model.on_link("connected", "")
    await source._start_guard(model, None, None, source.guard)  # type: ignore[arg-type]
    assert model.guard is not None
    assert source.guard_worker is None
    detail = banner_text(model)[2]
    assert detail.startswith(f"fluoroscopic guard: BLIND(no frame source: frame source {url}: no such file")


async def test_the_dashboard_guards_both_sources_and_says_which_one_cannot_be_opened(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from host.dashboard.source import LiveSource
    from host.guard import GuardConfig
    from host.guard.biplane import BiplaneGuard
    from host.guard.options import GuardSetup

    added: list[object] = []
    pump = SimpleNamespace(
        add=added.append, supervisor=SimpleNamespace(spawn=lambda coro, _name, **_kw: coro.close())
    )
    setup = GuardSetup("mem://lateral", GuardConfig(), ap_url="mem://ap")
    source = LiveSource("/dev/null-none", guard=setup)
    model = DashboardModel(clock=lambda: 0.0)
    model.on_link("connected", "")
    ctl = SimpleNamespace(state=None)
    await source._start_guard(model, ctl, pump, setup)  # type: ignore[arg-type]
    worker = source.guard_worker
    assert worker is not None
    assert added == [worker]
    assert isinstance(worker.guard, BiplaneGuard)
    assert sorted(worker.sources) == ["ap", "lateral"]
    assert model.guard is not None
    assert model.guard.views == ["lateral", "ap"]

    missing = str(tmp_path / "no-such-ap-folder")
    broken = LiveSource("/dev/null-none", guard=GuardSetup("mem://lateral", GuardConfig(), ap_url=missing))
    model = DashboardModel(clock=lambda: 0.0)
    model.on_link("connected", "")
    await broken._start_guard(model, ctl, pump, broken.guard)  # type: ignore[arg-type]
    assert broken.guard_worker is None
    detail = banner_text(model)[2]
    assert detail.startswith(f"fluoroscopic guard: BLIND(no frame source: frame source {missing}: no such")


def test_the_rules_evidence_is_drawn_over_the_cement_and_ringed() -> None:
    mask = np.zeros((256, 256), bool)
    mask[120:140, 90:110] = True  # cement inside the body
    mask[40:46, 120:126] = True  # and a small blob above it, outside
    evidence = np.zeros_like(mask)
    evidence[40:46, 120:126] = True
    pic = picture(mask=mask)
    rgb = overlay_rgb(FluoroPicture(pic.pixels, 12, REGION, 0.75, None, mask, evidence), 64, 64)
    magenta = np.all(rgb == np.array(COLOURS["evidence"], np.uint8), axis=2)
    rows, cols = np.nonzero(magenta)
    assert rows.min() <= 40 // 4 - 1
    assert rows.max() >= 46 // 4
    assert cols.min() <= 120 // 4 - 1
    assert cols.max() >= 126 // 4
    inside = rgb[11, 31].astype(int)  # the blob itself: strongly magenta-tinted
    assert inside[0] - inside[1] > 80
    assert inside[2] - inside[1] > 80
    bolus = rgb[32, 25].astype(int)  # the cement inside: orange, not magenta
    assert bolus[0] - bolus[2] > 40


def biplane_view() -> GuardView:
    """A lateral frame, watching, and an AP frame whose guard stopped on cement outside the body."""
    lateral, ap = Phantom(seed=3), Phantom(seed=4)
    lateral.bolus(0.5)
    ap.bolus(0.5)
    ap.blob(120, 60, 8)
    view = GuardView("sim:///tmp/lateral.sock", ("lateral", "ap"))
    view.status("STOPPED", "STOPPED(EXTRAVASATION)")
    lf, af = lateral.frame(), ap.frame(view="ap")
    evidence = np.zeros((256, 256), bool)
    evidence[52:69, 112:129] = ap.cement[52:69, 112:129] > 0
    view.view_status("lateral", "WATCHING")
    view.show(
        GuardFrame(lf.index, lf.t_us, FluoroPicture(lf.pixels, 12, REGION, 0.75, 130.0, lateral.cement > 0))
    )
    view.view_status("ap", "STOPPED(EXTRAVASATION)")
    pic = FluoroPicture(af.pixels, 12, REGION, 0.75, None, ap.cement > 0, evidence)
    view.show(GuardFrame(af.index + 1, af.t_us, pic, "ap"))
    return view


def test_snapshot_a_biplane_guard_shows_both_views_and_which_one_stopped(snap_compare: Any) -> None:
    app, source = guarded_app(biplane_view())

    async def quiet(pilot: Any) -> None:
        """Fed, and the STOPPED toast cleared: it times out on the wall clock (10 s), which a loaded
        machine can outrun before the screenshot; the panel and the banner are what is compared."""
        await fed(source)(pilot)
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=quiet)


async def test_the_b_key_shows_one_view_larger_then_both_and_is_in_the_help() -> None:
    view = biplane_view()
    app, source = guarded_app(view)
    async with app.run_test(size=SIZE) as pilot:
        await source.fed.wait()
        panel = app.query_one(FluoroPanel)

        def text() -> str:
            app.refresh_view()
            rendered = Console(width=panel.size.width, record=True, color_system="truecolor")
            rendered.print(panel.render())
            return rendered.export_text()

        both = text()
        assert "LATERAL  frame 1" in both
        assert "AP  frame 2" in both
        assert "WATCHING" in both
        assert "STOPPED(EXTRAVASAT" in both.split("\n", 1)[1]
        assert "both views (b)" in both
        assert [v for v, _f in view.panes()] == ["lateral", "ap"]
        await pilot.press("b")
        alone = text()
        assert "lateral view (b)" in alone
        assert "AP  frame" not in alone
        assert alone.count(UPPER_HALF) > both.count(UPPER_HALF) // 2  # one view, drawn larger
        await pilot.press("b")
        assert "ap view (b)" in text()
        assert "LATERAL  frame" not in text()
        await pilot.press("b")
        assert "both views (b)" in text()
        assert any(key == "b" for key, _what in app.help_rows())


async def test_a_one_view_guard_has_no_b_key() -> None:
    app, source = guarded_app(watching_view())
    async with app.run_test(size=SIZE) as pilot:
        await source.fed.wait()
        await pilot.press("b")
        assert app.model.guard is not None
        assert app.model.guard.shown == "both"
        assert all(key != "b" for key, _what in app.help_rows())
