"""Config, tissue contrast, anatomy variation and the report, part by part."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from models.phantom import PhantomConfig, generate_study
from models.phantom.anatomy import build_anatomy
from models.phantom.pathology import LevelPathology, sample_pathology
from models.phantom.report import write_report
from models.phantom.tissues import Tissue, signal_lut, tissue_table


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="unknown abnormality"):
        PhantomConfig().with_prevalence(disc_herniation=0.2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        PhantomConfig().with_prevalence(disc_bulge=1.5)
    with pytest.raises(ValueError, match="odd"):
        PhantomConfig(subsamples=2)
    with pytest.raises(ValueError, match="range"):
        PhantomConfig(sag_fov_mm=(320.0, 280.0))


def test_config_is_hashable_and_compares_by_value() -> None:
    a = PhantomConfig.small().with_prevalence(disc_bulge=0.5)
    b = PhantomConfig.small().with_prevalence(disc_bulge=0.5)
    assert a == b and hash(a) == hash(b)
    assert a != PhantomConfig.small() and len({a, b, PhantomConfig.small()}) == 2


def test_presets_have_real_and_small_sizes() -> None:
    standard, small = PhantomConfig.standard(), PhantomConfig.small()
    assert min(standard.sag_matrix) >= 320 and max(standard.sag_matrix) <= 512
    assert standard.sag_slices[0] >= 15 and standard.sag_slices[1] <= 20
    assert max(small.sag_matrix) <= 128 and small.sag_slices[1] <= 12


@pytest.fixture(scope="module")
def table() -> np.ndarray:
    return tissue_table(np.random.default_rng(0), 1.5, jitter=0.0)


def test_t2_contrast(table: np.ndarray) -> None:
    s = signal_lut(table, 4000.0, 100.0)
    assert s[Tissue.CSF] > s[Tissue.NUCLEUS] > s[Tissue.MARROW] > s[Tissue.MUSCLE]
    assert s[Tissue.FAT] > s[Tissue.MUSCLE] and s[Tissue.CORTEX] < 0.1 * s[Tissue.CSF]
    assert s[Tissue.ANNULUS] < s[Tissue.NUCLEUS]


def test_t1_contrast(table: np.ndarray) -> None:
    s = signal_lut(table, 550.0, 12.0)
    assert s[Tissue.FAT] > s[Tissue.MARROW] > s[Tissue.NUCLEUS] > s[Tissue.CSF]
    assert s[Tissue.MODIC1] < s[Tissue.MARROW] < s[Tissue.MODIC2]


def test_stir_nulls_fat(table: np.ndarray) -> None:
    stir = signal_lut(table, 4000.0, 60.0, inversion_time=170.0)
    t2 = signal_lut(table, 4000.0, 60.0)
    assert stir[Tissue.FAT] < 0.3 * t2[Tissue.FAT]
    assert stir[Tissue.MODIC1] > 2 * stir[Tissue.MARROW]  # marrow oedema lights up
    assert stir[Tissue.CSF] > stir[Tissue.FAT]


def test_signal_rejects_bad_timing(table: np.ndarray) -> None:
    with pytest.raises(ValueError, match="TE < TR"):
        signal_lut(table, 10.0, 20.0)


def test_three_tesla_lengthens_t1() -> None:
    low = tissue_table(np.random.default_rng(0), 1.5, jitter=0.0)
    high = tissue_table(np.random.default_rng(0), 3.0, jitter=0.0)
    assert np.all(high[1:, 1] > low[1:, 1])


def test_anatomy_varies_between_seeds() -> None:
    lordosis = {build_anatomy(np.random.default_rng(s), 0.0, {}).lordosis_deg for s in range(8)}
    assert len(lordosis) == 8 and max(lordosis) - min(lordosis) > 5.0


def test_vertebrae_are_stacked_head_to_feet() -> None:
    anatomy = build_anatomy(np.random.default_rng(3), 0.0, {})
    free = [s for s in anatomy.segments if s.sacral <= 1]
    names = ["T7", "T8", "T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5", "S"]
    assert [s.name for s in free] == names
    assert [s.label for s in free[:3]] == [0, 0, 10]  # T7, T8 drawn but unlabelled
    zs = [s.centre[1] for s in anatomy.segments]
    assert zs == sorted(zs, reverse=True)
    for disc in anatomy.discs:
        up, lo = anatomy.segments[disc.upper], anatomy.segments[disc.lower]
        assert lo.centre[1] < disc.centre[1] < up.centre[1]


def test_disc_height_factor_shrinks_the_disc() -> None:
    base = build_anatomy(np.random.default_rng(5), 0.0, {})
    worn = build_anatomy(np.random.default_rng(5), 0.0, {"L4/L5": 0.5})
    assert worn.disc("L4/L5").rim_height == pytest.approx(0.5 * base.disc("L4/L5").rim_height)


def test_transitional_anatomy_changes_the_lumbosacral_junction() -> None:
    kinds = {}
    for seed in range(40):
        anatomy = build_anatomy(np.random.default_rng(seed), 1.0, {})
        kinds.setdefault(anatomy.transitional, anatomy)
    assert set(kinds) == {"sacralization", "lumbarization"}
    assert kinds["sacralization"].disc("L5/S1").rim_height <= 4.0
    vestigial = [d for d in kinds["lumbarization"].discs if not d.name]
    assert vestigial[0].rim_height > 2 * vestigial[1].rim_height  # a real S1/S2 disc


def test_transitional_anatomy_is_reported() -> None:
    config = replace(PhantomConfig.small(), transitional_probability=1.0, include_axial=False)
    study = generate_study(2, config)
    assert study.anatomy["transitional"] in ("sacralization", "lumbarization")
    assert "Transitional lumbosacral vertebra" in study.report
    assert [s.role for s in study.series] == ["SAG_T1", "SAG_T2", "SAG_STIR"]


def test_pathology_flags_are_consistent() -> None:
    levels = sample_pathology(np.random.default_rng(1), PhantomConfig().prevalence)
    assert next(iter(levels)) == "T9/T10" and list(levels)[-1] == "L5/S1"
    for path in levels.values():
        flags = path.findings()
        assert sum(flags[k] for k in ("disc_bulge", "disc_protrusion", "disc_extrusion")) <= 1
        assert flags["vertebral_degeneration"] == (path.modic > 0)
        if flags["vertebral_degeneration"]:
            assert path.height_factor < 0.8 and path.darkness >= 0.7


def test_report_phrases_findings_and_negations() -> None:
    levels = [
        LevelPathology("L3/L4"),
        LevelPathology("L4/L5", herniation="disc_protrusion", hernia_x=5.0),
        LevelPathology("L5/S1", herniation="disc_extrusion", hernia_x=-4.0, hernia_migration=-6.0),
    ]
    texts = {
        write_report(
            np.random.default_rng(seed),
            levels,
            transitional="none",
            conus_level="L1",
            lordosis_deg=45.0,
            roles=["SAG_T1", "SAG_T2", "AX_T2"],
        )
        for seed in range(12)
    }
    assert len(texts) > 3  # phrasings vary
    for text in texts:
        assert "TECHNIQUE: Sagittal T1, sagittal T2 and axial T2 images." in text
        assert "left paracentral" in text.lower() and "right paracentral" in text.lower()
        assert "caudal" in text
        impression = text.split("IMPRESSION:\n")[1]
        assert impression.count("\n") == 2  # two numbered findings
        findings = text.split("IMPRESSION:")[0]
        l34 = next(ln for ln in findings.splitlines() if ln.startswith(("L3/L4", "L3-L4", "L3-4")))
        assert "protrusion" not in l34 and "extrusion" not in l34
