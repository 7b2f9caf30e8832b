"""Benchmark of the result builders: SEG and SR build + encode time against a plain pydicom write.

Run: ``python bench/results/run.py [--runs N]``. For a 16-slice and a 60-slice 512x512 sagittal
series with all 19 spine structures (plus the canal), it times ``build_seg`` followed by encoding to
bytes (binary and label-map SEG), and as the peer a plain pydicom write of the same label map as an
8-bit multi-frame dataset: the cost of getting these pixels into a DICOM file without any SEG
semantics. It also times ``build_sr`` (9 levels x 5 findings, disc heights, image regions, SEG
references). Each
figure is the median of ``--runs`` runs; ratios are SEG time / peer time.
"""

from __future__ import annotations

import argparse
import datetime
import io
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial

import numpy as np
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

from models.labels import load_label_scheme
from pacs_node.results.codes import ABNORMALITY_CODES, DISC_CODES
from pacs_node.results.inputs import (
    AlgorithmInfo,
    LevelFinding,
    LevelMeasurement,
    ResultContext,
)
from pacs_node.results.seg import build_seg
from pacs_node.results.sr import build_sr
from worker.pipeline import level_regions

SIZE = 512
SCHEME = load_label_scheme()
VALUES = {structure.name: structure.value for structure in SCHEME.structures}
ALGORITHM = AlgorithmInfo("bench-model", "0", "0" * 64, "cfg")


def _series(n_slices: int) -> list[Dataset]:
    series_uid, frame_uid, study_uid = (generate_uid() for _ in range(3))
    images = []
    for i in range(n_slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = MRImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.FrameOfReferenceUID = frame_uid
        ds.PatientName, ds.PatientID, ds.Modality = "Bench^Patient", "BENCH", "MR"
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20260101", "080000", "1", "A1"
        ds.ReferringPhysicianName = ""
        ds.PatientBirthDate, ds.PatientSex = "", ""
        ds.SeriesNumber, ds.InstanceNumber = 1, i + 1
        ds.ImageOrientationPatient = [0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
        ds.ImagePositionPatient = [-30.0 + 3.5 * i, -150.0, 150.0]
        ds.PixelSpacing = [0.6, 0.6]
        ds.SliceThickness = 3.5
        ds.Rows = ds.Columns = SIZE
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        images.append(ds)
    return images


def _labels(n_slices: int) -> np.ndarray:
    """Vertebrae and discs stacked head to feet over the central 80% of slices, plus the canal."""
    labels = np.zeros((n_slices, SIZE, SIZE), dtype=np.uint8)
    lo, hi = n_slices // 10, max(n_slices // 10 + 1, n_slices - n_slices // 10)
    row = 20
    order = [*reversed(list(DISC_CODES))]  # T9/T10 .. L5/S1
    vertebrae = ["T9", "T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5"]
    for vertebra, disc in zip(vertebrae, order, strict=True):
        labels[lo:hi, row : row + 30, 180:300] = VALUES[vertebra]
        labels[lo:hi, row + 30 : row + 40, 185:295] = VALUES[disc]
        row += 40
    labels[lo:hi, row : row + 60, 170:300] = VALUES["S"]
    labels[n_slices // 2 - 1 : n_slices // 2 + 2, 20:row, 310:340] = VALUES["canal"]
    return labels


def _peer_write(images: list[Dataset], labels: np.ndarray) -> bytes:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.NumberOfFrames, ds.Rows, ds.Columns = labels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = labels.tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _median_seconds(function: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _encode(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _seg_encoded(
    images: list[Dataset], labels: np.ndarray, kind: str, context: ResultContext
) -> bytes:
    return _encode(
        build_seg(
            images, labels, VALUES, algorithm=ALGORITHM, context=context, segmentation_type=kind
        )
    )


def _sr_encoded(
    images: list[Dataset], labels: np.ndarray, seg: Dataset, context: ResultContext
) -> bytes:
    findings = [LevelFinding(lv, key, 0.5, False) for lv in DISC_CODES for key in ABNORMALITY_CODES]
    heights = [LevelMeasurement(level, "disc_height", 9.0, "mm") for level in DISC_CODES]
    regions = level_regions(images, labels, list(DISC_CODES), SCHEME)
    return _encode(
        build_sr(
            images,
            findings,
            heights,
            algorithm=ALGORITHM,
            context=context,
            segmentation=seg,
            regions=regions,
        )
    )


def _rows(n_slices: int, runs: int, context: ResultContext) -> list[str]:
    images, labels = _series(n_slices), _labels(n_slices)
    peer = _median_seconds(partial(_peer_write, images, labels), runs)
    rows = []
    for kind in ("binary", "labelmap"):
        seg = build_seg(
            images, labels, VALUES, algorithm=ALGORITHM, context=context, segmentation_type=kind
        )
        seconds = _median_seconds(partial(_seg_encoded, images, labels, kind, context), runs)
        size = len(_encode(seg)) / 1e6
        rows.append(
            f"| {n_slices}x{SIZE}² | SEG {kind} | {seg.NumberOfFrames} | {size:.2f} | "
            f"{seconds:.3f} | {peer:.4f} | {seconds / peer:.0f}x |"
        )
    seg = build_seg(images, labels, VALUES, algorithm=ALGORITHM, context=context)
    seconds = _median_seconds(partial(_sr_encoded, images, labels, seg, context), runs)
    rows.append(f"| {n_slices}x{SIZE}² | SR (9 levels) | - | - | {seconds:.3f} | - | - |")
    return rows


def main(argv: list[str]) -> int:
    """Run the benchmark and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    context = ResultContext("bench-job", datetime.datetime(2026, 1, 1, 8, 0), "bench")
    print(f"median of {args.runs} runs")
    print("| series | object | frames | size MB | median s | peer s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for n_slices in (16, 60):
        print("\n".join(_rows(n_slices, args.runs, context)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
