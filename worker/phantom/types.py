"""Who a phantom study belongs to, and where the writer put it."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_STUDY_EPOCH = dt.date(2024, 1, 1)


@dataclass(frozen=True)
class PatientInfo:
    """Who the synthetic study belongs to (Patient module) and when it was acquired.

    Attributes:
        patient_name: PatientName (PN, e.g. "PHANTOM^CASE000042").
        patient_id: PatientID.
        birth_date: PatientBirthDate.
        sex: PatientSex ("M", "F" or "O").
        weight_kg: PatientWeight.
        height_m: PatientSize.
        study_datetime: StudyDate and StudyTime.
    """

    patient_name: str
    patient_id: str
    birth_date: dt.date
    sex: str
    weight_kg: float
    height_m: float
    study_datetime: dt.datetime

    @property
    def age(self) -> str:
        """PatientAge as an AS string, e.g. "047Y"."""
        d, b = self.study_datetime.date(), self.birth_date
        years = d.year - b.year - ((d.month, d.day) < (b.month, b.day))
        return f"{years:03d}Y"

    @classmethod
    def from_seed(cls, seed: int) -> PatientInfo:
        """A deterministic fictitious patient for ``seed`` (adult, 25-80 years old).

        Raises:
            ValueError: if ``seed`` is negative.
        """
        if seed < 0:
            raise ValueError("seed must be non-negative")
        rng = np.random.default_rng([seed, 0x5EED])
        study_day = _STUDY_EPOCH + dt.timedelta(days=int(rng.integers(0, 730)))
        seconds = int(rng.integers(7 * 3600, 19 * 3600))
        when = dt.datetime.combine(study_day, dt.time()) + dt.timedelta(seconds=seconds)
        age_days = int(rng.integers(25 * 365, 80 * 365))
        sex = "F" if rng.random() < 0.5 else "M"
        height = float(rng.normal(1.66 if sex == "F" else 1.78, 0.07))
        weight = float(np.clip(rng.normal(24.0, 3.5), 17.0, 38.0) * height**2)
        return cls(
            patient_name=f"PHANTOM^CASE{seed:06d}",
            patient_id=f"PH{seed:08d}",
            birth_date=study_day - dt.timedelta(days=age_days),
            sex=sex,
            weight_kg=round(weight, 1),
            height_m=round(height, 2),
            study_datetime=when,
        )


@dataclass(frozen=True)
class WrittenSeries:
    """Where one series went.

    Attributes:
        role: Series role.
        series_instance_uid: SeriesInstanceUID.
        series_number: SeriesNumber.
        sop_instance_uids: SOPInstanceUID per slice, in slice (InstanceNumber) order.
        paths: File per slice, in the same order.
        labels_path: The ``labels_<role>.npz`` ground truth file, or None.
    """

    role: str
    series_instance_uid: str
    series_number: int
    sop_instance_uids: tuple[str, ...]
    paths: tuple[Path, ...]
    labels_path: Path | None


@dataclass(frozen=True)
class WrittenStudy:
    """Where a study went.

    Attributes:
        study_instance_uid: StudyInstanceUID.
        directory: The study's folder.
        truth_path: Its ``truth.json``.
        series: Each series, in acquisition order.
    """

    study_instance_uid: str
    directory: Path
    truth_path: Path
    series: tuple[WrittenSeries, ...]
