"""`SpatialConfig`: the parameters of the spatial vertebral body, validated at the edge.

A scenario selects the spatial body with ``vertebra = "spatial"`` in ``[plant]`` and may set any of
these in ``[plant.spatial]`` (units in the field names; an out-of-range value fails with the field,
the value and the allowed range). Every default is a lumbar body of an osteoporotic adult, injected
unipedicularly from the left; where a figure is published it is cited by its key in
docs/references.md, where it is chosen the docstring says so.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from firmware_sim.plant.events import in_range

Approach = Literal["unipedicular", "bipedicular"]
Side = Literal["left", "right"]
DefectSite = Literal[
    "anterior", "left_lateral", "right_lateral", "posterior_wall", "superior_endplate", "inferior_endplate"
]


class CorticalDefect(BaseModel):
    """A hole through the cortical shell or an end plate (a fracture line, a lytic breach)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    site: DefectSite = "anterior"
    diameter_mm: Annotated[float, in_range(0.2, 8.0, "mm")] = 2.0
    length_mm: Annotated[float, in_range(0.2, 20.0, "mm")] = 1.0
    """Thickness of the breached cortex: ~0.3-1 mm for a lumbar shell (chosen)."""


class FractureCleft(BaseModel):
    """An intravertebral cleft: a fluid-filled horizontal gap in the anterior body (Kummell)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    height_fraction: Annotated[float, in_range(0.1, 0.9, "")] = 0.5
    """Where the cleft lies between the inferior (0) and superior (1) end plates."""
    thickness_mm: Annotated[float, in_range(0.5, 10.0, "mm")] = 2.0
    depth_fraction: Annotated[float, in_range(0.1, 1.0, "")] = 0.6
    """How far back from the anterior cortex it reaches, as a fraction of the body's depth."""
    permeability_factor: Annotated[float, in_range(1.0, 1e4, "x")] = 100.0
    """Permeability of the cleft relative to the cancellous bone (an open gap: chosen, large)."""


class Tumour(BaseModel):
    """Soft tissue replacing cancellous bone: the cement pushes it rather than permeating it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    centre_fraction: tuple[
        Annotated[float, in_range(0.0, 1.0, "")],
        Annotated[float, in_range(0.0, 1.0, "")],
        Annotated[float, in_range(0.0, 1.0, "")],
    ] = (0.5, 0.5, 0.5)
    """(medio-lateral left->right, antero-posterior anterior->posterior, inferior->superior)."""
    radius_mm: Annotated[float, in_range(1.0, 20.0, "mm")] = 6.0
    permeability_factor: Annotated[float, in_range(1e-6, 1.0, "x")] = 0.01
    """Soft tissue is nearly impermeable to cement (chosen: two decades below cancellous bone)."""


class SpatialConfig(BaseModel):
    """Geometry, bone, marrow, veins and cannula trajectory of the spatial vertebral body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    grid_mm: Annotated[float, in_range(1.0, 4.0, "mm")] = 2.0
    """Cell size. 2 mm by default for speed: bench/spatial_convergence.py (docs/simulator.md) shows its
    tip pressure within 0.3 % and its front depth within a cell of a 1 mm grid's."""
    width_mm: Annotated[float, in_range(25.0, 60.0, "mm")] = 45.0
    depth_mm: Annotated[float, in_range(20.0, 45.0, "mm")] = 33.0
    height_mm: Annotated[float, in_range(15.0, 40.0, "mm")] = 27.0
    """Lumbar body: width ~40-50, depth ~30-35, height ~25-30 mm (anatomical texts)."""
    permeability_si_m2: Annotated[float, in_range(1e-10, 1e-6, "m^2")] = 4.45e-8
    permeability_ap_m2: Annotated[float, in_range(1e-10, 1e-6, "m^2")] = 3.44e-8
    """Baroud 2004; medio-lateral is taken equal to antero-posterior (an assumption)."""
    permeability_spread: Annotated[float, in_range(0.0, 1.0, "")] = 0.35
    """Sigma of the log-normal cell-to-cell scatter of permeability: Baroud 2004's SD/mean is ~0.37-0.39."""
    porosity: Annotated[float, in_range(0.5, 0.99, "")] = 0.90
    marrow_viscosity_pa_s: Annotated[float, in_range(1e-3, 1e3, "Pa s")] = 0.1
    """Chosen: marrow is a fatty fluid of order 0.1 Pa s at body temperature; the reference that makes
    a cement 'high' or 'low' viscosity (Trivedi 2023)."""
    pore_shear_rate_s: Annotated[float, in_range(0.01, 100.0, "1/s")] = 2.0
    """The one shear rate at which the cement's apparent viscosity is taken inside the bone: the
    Christopher-Middleman pore shear rate at the middle of a 3 mL cloud at 3 mL/min (~2 1/s). Fixed, so
    the bone sees no bulk shear thinning (about 10 % at whole-bone scale: JMBBM 2013)."""
    approach: Approach = "unipedicular"
    side: Side = "left"
    tip_depth_fraction: Annotated[float, in_range(0.1, 0.9, "")] = 0.35
    """Where the tip ends up along the antero-posterior axis (0 anterior cortex, 1 posterior wall):
    the anterior third, as the technique asks."""
    basivertebral_diameter_mm: Annotated[float, in_range(0.2, 6.0, "mm")] = 3.0
    segmental_diameter_mm: Annotated[float, in_range(0.2, 6.0, "mm")] = 2.0
    vein_length_mm: Annotated[float, in_range(0.5, 50.0, "mm")] = 5.0
    """Vein segment from the cortex to where it widens into the plexus (chosen)."""
    vein_opening_pressure_kpa: Annotated[float, in_range(0.0, 50.0, "kPa")] = 2.0
    """Cement enters a vein only when its pressure at the exit exceeds the venous pressure by this
    much (the blood column and valves it must push; chosen)."""
    cortical_defect: CorticalDefect | None = None
    cleft: FractureCleft | None = None
    tumour: Tumour | None = None
    body_temperature_c: Annotated[float, in_range(15.0, 42.0, "degC")] = 37.0
    """37 degC in a patient; the bath temperature of a bench phantom."""
    flow_update_s: Annotated[float, in_range(0.01, 2.0, "s")] = 1.0
    """How often the front is advanced (and the events checked) while cement moves
    (docs/simulator.md: why 1 s)."""
    solve_update_s: Annotated[float, in_range(0.01, 10.0, "s")] = 2.0
    """How often the pressure field is solved while cement moves; between solves the front advances
    with the last solve's fluxes. A solve is also made at once when a leak path's exit cell has
    filled since the last one (a vein may open). Never more often than `flow_update_s`
    (docs/simulator.md: why 2 s)."""
    heat_update_s: Annotated[float, in_range(0.1, 5.0, "s")] = 2.0
    """How often heat, cure and exotherm are advanced (a 2 mm cell relaxes in ~20 s; the exotherm's
    rise takes ~15 s at 37 degC: docs/simulator.md)."""
    snapshot_every_s: Annotated[float, in_range(0.1, 60.0, "s")] = 1.0
    """How often the cement fraction per cell is kept for the outputs (while cement moves)."""

    @model_validator(mode="after")
    def _cells(self) -> SpatialConfig:
        cells = (
            (self.width_mm / self.grid_mm) * (self.depth_mm / self.grid_mm) * (self.height_mm / self.grid_mm)
        )
        if cells > 200_000:
            raise ValueError(
                f"grid_mm = {self.grid_mm} mm makes {cells:.0f} cells for this body: allowed at most 200000 "
                "(use a coarser grid or a smaller body)"
            )
        return self
