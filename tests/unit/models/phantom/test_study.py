"""generate_study: determinism, geometry, labels, abnormalities, report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from models.labels import load_label_scheme
from models.phantom import PhantomConfig, PhantomSeries, PhantomStudy, generate_study
from models.phantom.pathology import HERNIATIONS

SCHEME = load_label_scheme()
SMALL = PhantomConfig.small()


@pytest.fixture(scope="module")
def study() -> PhantomStudy:
    return generate_study(7, SMALL)


def voxel_positions(
    series: PhantomSeries, k: int, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Patient positions of pixels (rows, cols) of slice k, from the DICOM-style geometry."""
    row_dir = np.array(series.image_orientation[:3])
    col_dir = np.array(series.image_orientation[3:])
    dr, dc = series.pixel_spacing
    return series.image_positions[k] + np.outer(cols * dc, row_dir) + np.outer(rows * dr, col_dir)


def test_same_seed_same_study(study: PhantomStudy) -> None:
    again = generate_study(7, SMALL)
    assert again.report == study.report
    assert again.findings == study.findings
    assert again.measurements == study.measurements
    for a, b in zip(study.series, again.series, strict=True):
        assert a.role == b.role and a.description == b.description
        np.testing.assert_array_equal(a.pixels, b.pixels)
        np.testing.assert_array_equal(a.image_positions, b.image_positions)
        if a.labels is not None:
            np.testing.assert_array_equal(a.labels, b.labels)


def test_other_seed_other_study(study: PhantomStudy) -> None:
    other = generate_study(8, SMALL)
    assert not np.array_equal(other.get("SAG_T2").pixels, study.get("SAG_T2").pixels)


def test_negative_seed_rejected() -> None:
    with pytest.raises(ValueError, match="seed"):
        generate_study(-1, SMALL)


def test_series_shapes_and_types(study: PhantomStudy) -> None:
    roles = [s.role for s in study.series]
    assert roles[-4:] == ["SAG_T1", "SAG_T2", "SAG_STIR", "AX_T2"]
    sag = study.get("SAG_T2")
    assert 9 <= sag.pixels.shape[0] <= 12 and sag.pixels.shape[1:] == (128, 128)
    for s in study.series:
        assert s.pixels.dtype == np.uint16 and s.pixels.max() < 4096
        assert s.image_positions.shape == (s.pixels.shape[0], 3)
        assert s.labels is None or (s.labels.shape == s.pixels.shape and s.labels.dtype == np.uint8)
        row, col = np.array(s.image_orientation[:3]), np.array(s.image_orientation[3:])
        assert abs(row @ col) < 1e-9 and abs(np.linalg.norm(row) - 1) < 1e-9
        assert 3.0 <= s.slice_thickness <= 4.5
        assert s.acquisition["RepetitionTime"] > s.acquisition["EchoTime"]  # type: ignore[operator]
    assert "InversionTime" in study.get("SAG_STIR").acquisition


def test_sagittal_series_share_geometry_and_labels(study: PhantomStudy) -> None:
    t1, t2, stir = (study.get(r) for r in ("SAG_T1", "SAG_T2", "SAG_STIR"))
    for s in (t1, stir):
        np.testing.assert_array_equal(s.image_positions, t2.image_positions)
        assert s.image_orientation == t2.image_orientation
        assert s.pixel_spacing == t2.pixel_spacing
        np.testing.assert_array_equal(s.labels, t2.labels)  # type: ignore[arg-type]
    steps = np.diff(t2.image_positions, axis=0)
    assert np.allclose(steps[:, 1:], 0.0)  # sagittal: slices move along x only
    assert np.allclose(steps[:, 0], float(t2.acquisition["SpacingBetweenSlices"]), atol=1e-3)


def test_label_values_come_from_the_scheme(study: PhantomStudy) -> None:
    values = {s.value for s in SCHEME.structures} | {0}
    for s in study.series:
        if s.labels is not None:
            assert set(np.unique(s.labels).tolist()) <= values


def test_structure_centres_carry_their_label(study: PhantomStudy) -> None:
    """The voxel nearest each structure's true centre is labelled with that structure."""
    sag = study.get("SAG_T2")
    assert sag.labels is not None
    row_dir = np.array(sag.image_orientation[:3])
    col_dir = np.array(sag.image_orientation[3:])
    normal = np.cross(row_dir, col_dir)
    offsets = sag.image_positions @ normal
    for name in study.visible_structures:
        centre = np.array(study.centres[name])
        k = int(np.argmin(np.abs(offsets - centre @ normal)))
        d = centre - sag.image_positions[k]
        i = round(float(d @ col_dir) / sag.pixel_spacing[0])
        j = round(float(d @ row_dir) / sag.pixel_spacing[1])
        if 0 <= i < sag.labels.shape[1] and 0 <= j < sag.labels.shape[2]:
            assert sag.labels[k, i, j] == SCHEME.by_name(name).value, name


def test_labels_are_in_cranio_caudal_order() -> None:
    """Label centroids run head to feet in the scheme's order (T9 ... L5, then S)."""
    for seed in (1, 2, 3):
        st = generate_study(seed, SMALL)
        sag = st.get("SAG_T2")
        assert sag.labels is not None
        zs = {}
        for structure in (*SCHEME.vertebrae, *SCHEME.discs):
            k, i, j = np.nonzero(sag.labels == structure.value)
            if k.size:
                zs[structure.name] = voxel_positions(sag, 0, i, j)[:, 2].mean()
        vertebrae = [v.name for v in SCHEME.vertebrae if v.name in zs]
        discs = [d.name for d in SCHEME.discs if d.name in zs]
        assert len(vertebrae) >= 7 and len(discs) >= 6
        assert all(zs[a] > zs[b] for a, b in itertools.pairwise(vertebrae))
        assert all(zs[a] > zs[b] for a, b in itertools.pairwise(discs))
        for disc in discs:
            upper, lower = disc.split("/")
            lower = "S" if lower == "S1" else lower
            if upper in zs and lower in zs:
                assert zs[upper] > zs[disc] > zs[lower]
        centre_z = [st.centres[n][2] for n in st.visible_structures]
        assert centre_z == sorted(centre_z, reverse=True)


def _nearest_level(study: PhantomStudy, points: np.ndarray) -> list[str]:
    levels = [n for n in study.findings if n in study.centres]
    centres = np.array([study.centres[n] for n in levels])
    dist = np.linalg.norm(points[:, None, :] - centres[None, :, :], axis=2)
    return [levels[i] for i in np.argmin(dist, axis=1)]


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_abnormality_masks_sit_where_findings_say(seed: int) -> None:
    config = SMALL.with_prevalence(
        disc_bulge=0.3,
        disc_protrusion=0.3,
        disc_extrusion=0.3,
        schmorl_node=0.5,
        vertebral_degeneration=0.5,
    )
    st = generate_study(seed, config)
    sag = st.get("SAG_T2")
    positives = {(lv, k) for lv, flags in st.findings.items() for k, v in flags.items() if v}
    assert positives, "high prevalence should give findings"
    seen = set()
    for key, mask in sag.abnormality_masks.items():
        k, i, j = np.nonzero(mask)
        points = np.vstack(
            [voxel_positions(sag, kk, i[k == kk], j[k == kk]) for kk in np.unique(k)]
        )
        levels = _nearest_level(st, points)
        hits = [(lv, key) in positives for lv in levels]
        assert np.mean(hits) > 0.9, (key, set(levels))
        seen |= {(lv, key) for lv in levels}
    assert positives <= seen


def test_zero_prevalence_gives_a_normal_study() -> None:
    config = SMALL.with_prevalence(**dict.fromkeys(PhantomConfig().prevalence, 0.0))
    st = generate_study(3, config)
    assert not any(v for flags in st.findings.values() for v in flags.values())
    assert all(not s.abnormality_masks for s in st.series)
    assert "IMPRESSION:\n" in st.report
    assert st.report.strip().splitlines()[-1] in (
        "No significant abnormality of the lumbar spine.",
        "Normal MRI of the lumbar spine.",
        "No disc herniation or degenerative change.",
    )


def test_certain_extrusion_at_every_lumbar_level() -> None:
    zero = dict.fromkeys(PhantomConfig().prevalence, 0.0)
    st = generate_study(4, SMALL.with_prevalence(**{**zero, "disc_extrusion": 1.0}))
    for level in ("L1/L2", "L2/L3", "L3/L4", "L4/L5"):
        flags = st.findings[level]
        assert flags["disc_extrusion"] and not any(flags[k] for k in HERNIATIONS[:2])


def test_degeneration_narrows_the_disc() -> None:
    zero = dict.fromkeys(PhantomConfig().prevalence, 0.0)
    healthy = generate_study(5, SMALL.with_prevalence(**zero))
    worn = generate_study(5, SMALL.with_prevalence(**{**zero, "vertebral_degeneration": 1.0}))
    for level in ("L3/L4", "L4/L5"):
        assert worn.findings[level]["vertebral_degeneration"]
        assert worn.measurements[level] < 0.85 * healthy.measurements[level]


def test_report_lists_every_finding(study: PhantomStudy) -> None:
    positives = sum(v for flags in study.findings.values() for v in flags.values())
    impression = study.report.split("IMPRESSION:\n", 1)[1].strip().splitlines()
    numbered = [line for line in impression if line[:1].isdigit()]
    assert len(numbered) == positives
    assert study.report.startswith("EXAMINATION: MRI lumbar spine")


def test_contrast_follows_the_sequences(study: PhantomStudy) -> None:
    """CSF is bright on T2 and dark on T1; bone marrow the other way round."""
    canal = SCHEME.by_name("canal").value
    l3 = SCHEME.by_name("L3").value
    t1, t2 = study.get("SAG_T1"), study.get("SAG_T2")
    labels = t2.labels
    assert labels is not None
    mid = labels.shape[0] // 2
    sl = slice(mid - 1, mid + 2)

    def mean(series: PhantomSeries, value: int) -> float:
        return float(series.pixels[sl][labels[sl] == value].mean())

    assert mean(t2, canal) > 1.5 * mean(t2, l3)
    assert mean(t1, l3) > 1.5 * mean(t1, canal)


def test_measurements_cover_visible_discs(study: PhantomStudy) -> None:
    discs = [n for n in study.visible_structures if "/" in n]
    assert sorted(study.measurements) == sorted(discs)
    assert all(2.0 < h < 20.0 for h in study.measurements.values())
    assert set(study.findings) == set(discs)
