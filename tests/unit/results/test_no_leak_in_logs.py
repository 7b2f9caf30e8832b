"""Building results logs nothing that carries patient data or report text."""

from __future__ import annotations

import logging

import pytest

from models.labels import load_label_scheme
from pacs_node.results.hl7 import build_oru
from pacs_node.results.inputs import LevelFinding
from pacs_node.results.key_images import build_key_images
from pacs_node.results.seg import build_seg
from pacs_node.results.sr import build_not_analysed_sr, build_sr
from worker.pipeline import level_regions


def test_builders_log_no_patient_data_or_report_text(
    t2_series, structure_values, algorithm, context, caplog: pytest.LogCaptureFixture
) -> None:
    findings = [LevelFinding("L4/L5", "disc_extrusion", 0.97, True)]
    images, labels = t2_series.images, t2_series.label_map
    with caplog.at_level(logging.DEBUG):
        seg = build_seg(images, labels, structure_values, algorithm=algorithm, context=context)
        regions = level_regions(images, labels, ["L4/L5"], load_label_scheme())
        build_sr(
            images,
            findings,
            [],
            algorithm=algorithm,
            context=context,
            segmentation=seg,
            regions=regions,
        )
        build_not_analysed_sr(images[0], "secret reason", context=context)
        build_oru(images[0], findings, [], context=context)
        build_key_images(images, labels, structure_values, context=context)
    text = "\n".join(record.getMessage() for record in caplog.records)
    for secret in ("Doe", "PAT-001", "ACC-42", "extrusion", "secret reason", "SECRET"):
        assert secret not in text
