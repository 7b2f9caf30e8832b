"""The coded concepts: complete for the label scheme, SNOMED codes real, local codes distinct."""

from __future__ import annotations

from types import MappingProxyType

import pytest
from pydicom.sr._concepts_dict import concepts

from models.labels import load_label_scheme
from pacs_node.results import codes


def test_every_structure_of_the_label_scheme_has_a_code() -> None:
    scheme = load_label_scheme()
    assert {s.name for s in scheme.structures} == set(codes.STRUCTURE_CODES)
    assert {s.name for s in scheme.discs} == set(codes.DISC_CODES)
    assert {a.key for a in scheme.abnormalities} == set(codes.ABNORMALITY_CODES)
    assert set(codes.ABNORMALITY_PROBABILITY_CODES) == set(codes.ABNORMALITY_CODES)


def _dictionary_values(scheme: str) -> set[str]:
    return {value for entry in concepts[scheme].values() for value in entry}


@pytest.mark.parametrize(
    "code",
    [
        *codes.STRUCTURE_CODES.values(),
        codes.ANATOMICAL_STRUCTURE,
        codes.PRESENT,
        codes.ABSENT,
        codes.LUMBAR_SPINE,
        codes.IMAGING_PROCEDURE,
        codes.IMAGING_RESULT_ABNORMAL,
        codes.IMAGING_RESULT_NORMAL,
        codes.IMPRESSION,
        codes.SUMMARY,
        codes.DEVICE,
        codes.ARTIFICIAL_INTELLIGENCE,
        codes.STUDY_INSTANCE_UID,
        codes.SOURCE_IMAGE_FOR_PROCESSING,
        codes.SEGMENTATION_DERIVATION,
        codes.BACKGROUND,
        *(name for name, _ in codes.MEASUREMENT_CODES.values()),
        *(unit for _, unit in codes.MEASUREMENT_CODES.values()),
    ],
    ids=lambda code: f"{code.scheme_designator}-{code.value}",
)
def test_standard_codes_exist_in_the_dicom_dictionary(code: codes.CodedConcept) -> None:
    assert code.value in _dictionary_values(code.scheme_designator)


def test_no_invented_snomed_codes_for_findings() -> None:
    local = [*codes.ABNORMALITY_CODES.values(), *codes.ABNORMALITY_PROBABILITY_CODES.values()]
    assert all(c.scheme_designator == codes.LOCAL_SCHEME for c in local)
    status = [codes.NOT_ANALYSED, codes.ANALYSIS_STATUS, codes.NOT_ANALYSED_REASON]
    values = [c.value for c in [*local, *status, codes.AI_SPINE_ANALYSIS]]
    assert len(set(values)) == len(values)


def test_local_code_values_are_never_reused() -> None:
    local = [
        value
        for entry in vars(codes).values()
        for value in (entry.values() if isinstance(entry, MappingProxyType) else [entry])
        if isinstance(value, codes.CodedConcept) and value.scheme_designator == codes.LOCAL_SCHEME
    ]
    assert codes.LEVEL_CONFIDENCE in local and codes.REVIEW_REASON in local
    values = [c.value for c in local]
    assert len(set(values)) == len(values)


def test_lookup_of_unknown_structure_raises() -> None:
    assert codes.structure_code("L4/L5") == codes.DISC_CODES["L4/L5"]
    with pytest.raises(ValueError):
        codes.structure_code("L6")
