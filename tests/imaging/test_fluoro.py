"""The renderer's physics: what a fluoroscopy image must show of bone and cement, the noise law of
its photons, determinism, and the detector's bit depth."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from pydantic import ValidationError

from firmware_sim.imaging.fluoro import FluoroConfig, FluoroRenderer
from firmware_sim.plant.spatial import SpatialVertebra

from .conftest import scene_with

SMALL = {"width_px": 128, "height_px": 128, "pixel_mm": 0.8}
"""A 102 mm field on 128 px: the same anatomy as the default, 16x fewer pixels (fast tests)."""


def renderer(vertebra: SpatialVertebra, **changes: object) -> FluoroRenderer:
    return FluoroRenderer(vertebra.body, FluoroConfig.model_validate({**SMALL, **changes}))


def box(r: FluoroRenderer, view: str = "lateral") -> tuple[slice, slice]:
    """The body's true box in the image, shrunk by two pixels (rows, cols)."""
    left, top, right, bottom = r.geometry(view).body_box_px  # type: ignore[arg-type]
    return slice(round(top) + 2, round(bottom) - 1), slice(round(left) + 2, round(right) - 1)


def test_bone_is_darker_than_soft_tissue_and_cement_darker_than_bone(vertebra: SpatialVertebra) -> None:
    r = renderer(vertebra, tissue_variation=0.0, cannula=False)
    empty = r.expected(scene_with(vertebra), "lateral")
    full = r.expected(scene_with(vertebra, fill=1.0, depth_cells=8), "lateral")
    rows, cols = box(r)
    tissue = float(empty[:, :8].mean())  # the far anterior soft tissue
    bone = float(empty[rows, cols].mean())
    most = np.unravel_index(int(np.argmax(empty - full)), full.shape)
    assert bone < tissue
    # where the cement is thickest it is far darker than the bone it fills, and darker than any bone
    assert full[most] < 0.7 * empty[most]
    assert full[most] < empty.min()


def test_contrast_rises_with_the_cement_volume(vertebra: SpatialVertebra) -> None:
    r = renderer(vertebra, tissue_variation=0.0)
    empty = r.expected(scene_with(vertebra), "lateral")
    contrasts = []
    for depth in (2, 4, 8, 12):
        img = r.expected(scene_with(vertebra, fill=1.0, depth_cells=depth), "lateral")
        contrasts.append(float((empty - img).sum()))
    assert all(b > a for a, b in itertools.pairwise(contrasts)), contrasts
    fills = [
        r.expected(scene_with(vertebra, fill=f, depth_cells=8), "lateral").min() for f in (0.25, 0.5, 1.0)
    ]
    assert fills[0] > fills[1] > fills[2]


def test_the_body_is_where_the_geometry_says(vertebra: SpatialVertebra) -> None:
    r = renderer(vertebra, tissue_variation=0.0, cannula=False, neighbours=False, scatter_to_primary=0.0)
    img = r.expected(scene_with(vertebra), "lateral")
    g = r.geometry("lateral")
    row = round((g.body_box_px[1] + g.body_box_px[3]) / 2)
    background = float(img[row, 0])
    dark = np.nonzero(img[row] < background - 1.0)[0]
    assert abs(dark.min() - g.body_box_px[0]) <= 1.5
    assert abs(dark.max() - g.body_box_px[2]) <= 1.5
    assert g.posterior_col is not None
    assert g.anterior_col is not None
    assert g.posterior_col > g.anterior_col  # posterior is to the right
    quarter = g.ap_fraction_col(0.75)
    assert quarter == pytest.approx(g.anterior_col + 0.75 * (g.posterior_col - g.anterior_col))


def test_a_leak_darkens_the_image_outside_the_body(vertebra: SpatialVertebra) -> None:
    r = renderer(vertebra, tissue_variation=0.0, cannula=False)
    clean = r.expected(scene_with(vertebra), "lateral")
    leaked = r.expected(scene_with(vertebra, leak_cells=6), "lateral")
    g = r.geometry("lateral")
    behind = slice(round(g.body_box_px[2]) + 2, None)  # columns behind the posterior wall
    assert float((clean - leaked)[:, behind].max()) > 0.05 * float(clean.max())


@pytest.mark.parametrize("dose", [100.0, 10_000.0])
def test_noise_variance_follows_the_dose(vertebra: SpatialVertebra, dose: float) -> None:
    """Poisson: photon variance = photon mean. In output units (gain set by the brightness control,
    so ~1/dose), the variance of a flat region times the dose is the same at every dose."""
    r = renderer(vertebra, photons_per_pixel=dose, electronic_noise=0.0, blur_mm=0.0, bit_depth=16)
    scene = scene_with(vertebra)
    mean = r.expected(scene, "lateral")
    noise = np.concatenate([(r.render(scene, "lateral", i) - mean)[:, :16].ravel() for i in range(4)])
    c = r.config
    gain = (c.background_level - c.dark_level) * c.full_scale / (dose * (1 + c.scatter_to_primary))
    photons = (mean[:, :16] - c.dark_level * c.full_scale) / gain
    expected_var = float(photons.mean()) * gain**2
    assert float(noise.var()) == pytest.approx(expected_var, rel=0.1)


def test_more_dose_means_less_relative_noise(vertebra: SpatialVertebra) -> None:
    scene = scene_with(vertebra)
    stds = []
    for dose in (50.0, 500.0, 5000.0):
        r = renderer(vertebra, photons_per_pixel=dose, bit_depth=16)
        stds.append(float((r.render(scene, "lateral", 0) - r.expected(scene, "lateral")).std()))
    assert stds[0] > 2.5 * stds[1] > 2.5 * 2.5 * stds[2]


def test_frames_are_deterministic_per_seed_view_and_index(vertebra: SpatialVertebra) -> None:
    scene = scene_with(vertebra, fill=1.0, depth_cells=6)
    a, b = renderer(vertebra, seed=7), renderer(vertebra, seed=7)
    assert np.array_equal(a.render(scene, "lateral", 3), b.render(scene, "lateral", 3))
    assert not np.array_equal(a.render(scene, "lateral", 3), a.render(scene, "lateral", 4))
    assert not np.array_equal(a.render(scene, "lateral", 3), a.render(scene, "ap", 3))
    assert not np.array_equal(
        a.render(scene, "lateral", 3), renderer(vertebra, seed=8).render(scene, "lateral", 3)
    )


@pytest.mark.parametrize(
    ("bits", "dtype"), [(8, np.uint8), (10, np.uint16), (12, np.uint16), (16, np.uint16)]
)
def test_bit_depth_is_respected(vertebra: SpatialVertebra, bits: int, dtype: type) -> None:
    # a low dose and a bright background: noise pushes pixels against the top of the range
    r = renderer(vertebra, bit_depth=bits, photons_per_pixel=20.0, background_level=0.95)
    img = r.render(scene_with(vertebra, fill=1.0, depth_cells=6), "ap", 0)
    assert img.dtype == dtype
    assert int(img.max()) == (1 << bits) - 1  # it saturates, and never beyond
    assert img.shape == (128, 128)


def test_the_default_frame_is_512_by_512_at_12_bits(vertebra: SpatialVertebra) -> None:
    img = FluoroRenderer(vertebra.body).render(scene_with(vertebra), "lateral", 0)
    assert img.shape == (512, 512)
    assert img.dtype == np.uint16
    assert int(img.max()) < 4096


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("fps", 0.5, "fps = 0.5 frames/s is outside the allowed range 1..30"),
        ("fps", 31.0, "outside the allowed range 1..30"),
        ("bit_depth", 7, "bit_depth = 7 bits is outside the allowed range 8..16"),
        ("photons_per_pixel", float("nan"), "photons_per_pixel = nan"),
        ("width_px", 10_000, "width_px = 10000 px is outside"),
        ("shift_mm", (float("nan"), 0.0), "= nan mm is outside the allowed range -100..100"),
    ],
)
def test_bad_settings_are_refused_naming_them(field: str, value: object, match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        FluoroConfig.model_validate({field: value})


def test_a_shift_moves_the_body_in_the_image(vertebra: SpatialVertebra) -> None:
    still = renderer(vertebra).geometry("lateral").body_box_px
    moved = renderer(vertebra, shift_mm=(8.0, -4.0)).geometry("lateral").body_box_px
    assert moved[0] - still[0] == pytest.approx(8.0 / 0.8)  # right, in 0.8 mm pixels
    assert moved[1] - still[1] == pytest.approx(-4.0 / 0.8)  # and up
