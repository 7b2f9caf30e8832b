"""``generate_study``: one seeded synthetic lumbar spine MRI study with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from models.phantom.acquisition import (
    image_orientation,
    image_positions,
    plan_axial,
    plan_localizer,
    plan_sagittal,
    sequence,
)
from models.phantom.anatomy import Anatomy, Disc, Segment, build_anatomy
from models.phantom.canvas import Plane
from models.phantom.config import PhantomConfig
from models.phantom.imaging import RenderedStack, form_image, render_stack
from models.phantom.pathology import LevelPathology, sample_pathology
from models.phantom.report import write_report
from models.phantom.scene import ABNORMALITY_INDEX, disc_height
from models.phantom.tissues import signal_lut, tissue_table

SAGITTAL_ROLES = ("SAG_T1", "SAG_T2", "SAG_STIR")
#: Lesions are only drawn at levels whose disc centre lies this far inside the sagittal FOV.
FOV_MARGIN_MM = 12.0


@dataclass
class PhantomSeries:
    """One series of a phantom study, in slice order (InstanceNumber = index + 1).

    Attributes:
        role: "SAG_T1", "SAG_T2", "SAG_STIR", "AX_T2" or "LOCALIZER".
        pixels: ``(slices, rows, cols)`` uint16 magnitude image.
        labels: ``(slices, rows, cols)`` uint8 structure labels (values per ``labels.json``,
            0 = background), or None (localizer).
        abnormality_masks: Abnormality key -> ``(slices, rows, cols)`` bool voxel mask, for each
            abnormality present in this series.
        image_positions: ``(slices, 3)`` ImagePositionPatient (mm, LPS).
        image_orientation: ImageOrientationPatient, six direction cosines (row, then column).
        pixel_spacing: ``(row spacing, column spacing)`` in mm (DICOM PixelSpacing).
        slice_thickness: SliceThickness (mm).
        acquisition: DICOM acquisition attributes by keyword (RepetitionTime, EchoTime, ...).
        description: SeriesDescription.
    """

    role: str
    pixels: np.ndarray
    labels: np.ndarray | None
    abnormality_masks: dict[str, np.ndarray]
    image_positions: np.ndarray
    image_orientation: tuple[float, ...]
    pixel_spacing: tuple[float, float]
    slice_thickness: float
    acquisition: dict[str, float | str]
    description: str


@dataclass
class PhantomStudy:
    """A synthetic study and its ground truth.

    Attributes:
        seed: The seed it was generated from.
        series: SAG_T1, SAG_T2, SAG_STIR (optional), AX_T2 (optional), sometimes LOCALIZER.
        findings: Disc level name -> abnormality key -> present, for every disc in the FOV.
        measurements: Disc level name -> disc height at its centre (mm), for every disc in the FOV.
        report: Radiology report text (findings and impression).
        visible_structures: Names of the structures inside the sagittal FOV, cranio-caudal.
        centres: Structure name -> ``(x, y, z)`` patient position (mm) of its centre (vertebral
            body centre, disc centre; S1 for "S"), for every visible structure.
        anatomy: Other ground truth: lordosis, sacral slope, transitional anatomy, conus level,
            field strength.
    """

    seed: int
    series: list[PhantomSeries]
    findings: dict[str, dict[str, bool]]
    measurements: dict[str, float]
    report: str
    visible_structures: list[str]
    centres: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    anatomy: dict[str, float | str] = field(default_factory=dict)

    def get(self, role: str) -> PhantomSeries:
        """The series with ``role``.

        Raises:
            KeyError: if the study has no such series.
        """
        for s in self.series:
            if s.role == role:
                return s
        raise KeyError(role)


def generate_study(seed: int, config: PhantomConfig | None = None) -> PhantomStudy:
    """Generate one study; the same seed and config always give the same study.

    Args:
        seed: Non-negative integer seed.
        config: Generator settings; ``PhantomConfig.standard()`` when None.

    Returns:
        The study.

    Raises:
        ValueError: if ``seed`` is negative.
    """
    if seed < 0:
        raise ValueError("seed must be non-negative")
    cfg = config or PhantomConfig.standard()
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(6)]
    r_path, r_anat, r_plan, r_tissue, r_image, r_report = streams
    pathology = sample_pathology(r_path, cfg.prevalence)
    heights = {k: p.height_factor for k, p in pathology.items()}
    anatomy = build_anatomy(r_anat, cfg.transitional_probability, heights)
    field_strength = float(r_plan.choice(cfg.field_strengths))
    sag_planes, sag_thickness = plan_sagittal(r_plan, cfg, anatomy)
    pathology = _within_fov(anatomy, pathology, sag_planes)
    table = tissue_table(r_tissue, field_strength)

    sag = render_stack(sag_planes, sag_thickness, cfg.subsamples, anatomy, pathology, r_tissue)
    roles = SAGITTAL_ROLES if cfg.include_stir else SAGITTAL_ROLES[:2]
    series = [
        _series(r_image, cfg, role, sag_planes, sag_thickness, sag, table, field_strength)
        for role in roles
    ]
    if cfg.include_axial:
        ax_planes, ax_thickness = plan_axial(r_plan, cfg, anatomy)
        ax = render_stack(ax_planes, ax_thickness, cfg.subsamples, anatomy, pathology, r_tissue)
        series.append(
            _series(r_image, cfg, "AX_T2", ax_planes, ax_thickness, ax, table, field_strength)
        )
    if r_plan.random() < cfg.localizer_probability:
        loc_planes, loc_thickness = plan_localizer(anatomy)
        loc = render_stack(loc_planes, loc_thickness, 1, anatomy, pathology, r_tissue)
        localizer = _series(
            r_image, cfg, "LOCALIZER", loc_planes, loc_thickness, loc, table, field_strength
        )
        localizer.labels = None
        localizer.abnormality_masks = {}
        series.insert(0, localizer)

    visible = _visible(anatomy, sag.labels)
    findings = {k: p.findings() for k, p in pathology.items() if k in visible}
    measurements = {
        d.name: round(disc_height(anatomy, d), 2) for d in anatomy.discs if d.name in visible
    }
    extra = _anatomy_truth(anatomy, field_strength)
    report = write_report(
        r_report,
        [pathology[k] for k in findings],
        transitional=anatomy.transitional,
        conus_level=str(extra["conus_level"]),
        lordosis_deg=anatomy.lordosis_deg,
        roles=[s.role for s in series],
    )
    return PhantomStudy(
        seed=seed,
        series=series,
        findings=findings,
        measurements=measurements,
        report=report,
        visible_structures=visible,
        centres=_centres(anatomy, visible),
        anatomy=extra,
    )


def _series(
    rng: np.random.Generator,
    cfg: PhantomConfig,
    role: str,
    planes: tuple[Plane, ...],
    thickness: float,
    stack: RenderedStack,
    table: np.ndarray,
    field_strength: float,
) -> PhantomSeries:
    """Image ``stack`` with the sequence of ``role`` and package it with its geometry."""
    spacing = float(np.linalg.norm(planes[1].origin - planes[0].origin))
    acq, description, phase_axis = sequence(rng, role, field_strength, thickness, spacing)
    ti = acq.get("InversionTime")
    lut = signal_lut(
        table,
        float(acq["RepetitionTime"]),
        float(acq["EchoTime"]),
        float(ti) if ti is not None else None,
        float(acq["FlipAngle"]),
    )
    ghosting = float(rng.uniform(0.015, 0.04)) if rng.random() < cfg.motion_probability else 0.0
    low, high = cfg.contrast_gamma
    gamma = float(rng.uniform(low, high)) if high > low else low
    pixels = form_image(
        stack,
        lut,
        rng,
        noise_fraction=float(rng.uniform(*cfg.noise_fraction)),
        bias_strength=float(rng.uniform(*cfg.bias_strength)),
        ghosting=ghosting,
        phase_axis=phase_axis,
        contrast_gamma=gamma,
    )
    masks = {
        key: stack.abnormality == idx
        for key, idx in ABNORMALITY_INDEX.items()
        if np.any(stack.abnormality == idx)
    }
    return PhantomSeries(
        role=role,
        pixels=pixels,
        labels=stack.labels,
        abnormality_masks=masks,
        image_positions=image_positions(planes),
        image_orientation=image_orientation(planes),
        pixel_spacing=planes[0].spacing,
        slice_thickness=round(thickness, 3),
        acquisition=acq,
        description=description,
    )


def _within_fov(
    anatomy: Anatomy,
    pathology: dict[str, LevelPathology],
    planes: tuple[Plane, ...],
) -> dict[str, LevelPathology]:
    """Clear the lesions of levels not well inside the sagittal FOV (their truth is unknowable)."""
    p = planes[0]
    rows = p.shape[0] * p.spacing[0]
    out = {}
    for level, path in pathology.items():
        c = anatomy.disc(level).centre
        depth_along_col = (np.array([p.origin[0], c[0], c[1]]) - p.origin) @ p.col_dir
        inside = FOV_MARGIN_MM <= depth_along_col <= rows - FOV_MARGIN_MM
        out[level] = path if inside else path.cleared()
    return out


def _visible(anatomy: Anatomy, labels: np.ndarray) -> list[str]:
    """Names of labelled structures present in ``labels``, cranio-caudal (T9, T9/T10, ..., S)."""
    present = set(np.unique(labels).tolist())
    chain: list[tuple[str, int]] = []
    for i, seg in enumerate(anatomy.segments):
        if seg.sacral > 1:
            break
        chain.append((seg.name, seg.label))
        chain.extend((d.name, d.label) for d in anatomy.discs if d.upper == i and d.name)
    return [name for name, value in chain if value and value in present]


def _centres(anatomy: Anatomy, names: list[str]) -> dict[str, tuple[float, float, float]]:
    """Patient-space centre of each named structure (the first segment named "S" is S1)."""
    out: dict[str, tuple[float, float, float]] = {}
    items: list[Segment | Disc] = [*anatomy.segments, *anatomy.discs]
    for item in items:
        if item.name in names and item.name not in out:
            y, z = item.centre
            out[item.name] = (round(anatomy.x_mid, 3), round(y, 3), round(z, 3))
    return {name: out[name] for name in names}


def _anatomy_truth(anatomy: Anatomy, field_strength: float) -> dict[str, float | str]:
    return {
        "lordosis_deg": round(anatomy.lordosis_deg, 1),
        "sacral_slope_deg": round(anatomy.sacral_slope_deg, 1),
        "transitional": anatomy.transitional,
        "conus_level": conus_level(anatomy),
        "field_strength": field_strength,
    }


def conus_level(anatomy: Anatomy) -> str:
    """Name of the vertebra or disc at which the conus medullaris ends."""
    best, dist = "", np.inf
    items: list[Segment | Disc] = [*anatomy.segments, *anatomy.discs]
    for item in items:
        if not item.name or item.name == "S":
            continue
        s, _, _ = anatomy.centreline.frame(np.array([item.centre[0]]), np.array([item.centre[1]]))
        d = abs(float(s[0]) - anatomy.conus_s)
        if d < dist:
            best, dist = item.name, d
    return best
