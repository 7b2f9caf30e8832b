"""RSNA 2024 CSV layout parsing, on small CSVs written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.data.rsna import read_rsna


def write_layout(root: Path, severity: str = "Moderate") -> None:
    (root / "train_series_descriptions.csv").write_text(
        "study_id,series_id,series_description\n"
        "100,11,Sagittal T1\n100,12,Sagittal T2/STIR\n100,13,Axial T2\n200,21,Sagittal T2/STIR\n"
    )
    header = ["study_id"] + [
        f"{c}_{lv}"
        for c in ("spinal_canal_stenosis", "left_neural_foraminal_narrowing")
        for lv in ("l4_l5", "l5_s1")
    ]
    (root / "train.csv").write_text(
        ",".join(header) + "\n"
        f"100,{severity},Normal/Mild,Normal/Mild,Severe\n"
        "200,Normal/Mild,Normal/Mild,,Normal/Mild\n"
    )


def test_read_rsna_layout_and_reports(tmp_path: Path) -> None:
    write_layout(tmp_path)
    first, second = read_rsna(tmp_path)
    assert first.study_id == "100"
    assert first.series == {
        "SAG_T1": tmp_path / "train_images" / "100" / "11",
        "SAG_T2": tmp_path / "train_images" / "100" / "12",
        "AX_T2": tmp_path / "train_images" / "100" / "13",
    }
    assert first.grades[("spinal_canal_stenosis", "L4/L5")] == "Moderate"
    assert first.report() == (
        "Moderate spinal canal stenosis at L4/L5. Severe left neural foraminal narrowing at L5/S1."
    )
    assert ("left_neural_foraminal_narrowing", "L4/L5") not in second.grades
    assert second.report().startswith("No moderate or severe stenosis")


def test_unknown_severity_and_missing_files(tmp_path: Path) -> None:
    write_layout(tmp_path, severity="Terrible")
    with pytest.raises(ValueError):
        read_rsna(tmp_path)
    with pytest.raises(FileNotFoundError):
        read_rsna(tmp_path / "nothing")
