"""Sources (PACS_NODE_SOURCES), the priors settings, and which study is a prior."""

from __future__ import annotations

import pytest

from pacs_node.config import load_settings
from pacs_node.errors import ConfigError
from pacs_node.retrieve.priors import CurrentStudy, latest_prior, prior_query
from pacs_node.retrieve.scu import StudyMatch
from pacs_node.sources import RetrieveMethod, Source


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PACS@pacs.local:104", Source("PACS", "PACS", "pacs.local", 104)),
        ("main=PACS@10.0.0.5:11112", Source("main", "PACS", "10.0.0.5", 11112)),
        (
            "vna=VNA@vna:4242/get",
            Source("vna", "VNA", "vna", 4242, RetrieveMethod.GET),
        ),
    ],
)
def test_sources_parse(text: str, expected: Source) -> None:
    assert Source.parse(text) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("PACS@host", "is not [NAME=]AE@host:port[/get]"),
        ("PACS@host:0", "out of range"),
        ("bad name=PACS@host:104", "is not 1-64 of"),
        ("a=PACS@h:104,a=OTHER@h:105", "source names must be unique"),
        ("TOO_LONG_AE_TITLE_X@h:104", "AE title"),
    ],
)
def test_bad_sources_are_refused_naming_the_variable(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match="PACS_NODE_SOURCES") as raised:
        load_settings(environ={"PACS_NODE_SOURCES": value})
    assert problem in str(raised.value)


def test_priors_need_a_source_they_can_name() -> None:
    with pytest.raises(ConfigError, match="PACS_NODE_PRIORS: needs exactly one source"):
        load_settings(environ={"PACS_NODE_PRIORS": "true"})
    two = "a=PACS@h:104,b=VNA@h:105"
    with pytest.raises(ConfigError, match="PACS_NODE_PRIORS"):
        load_settings(environ={"PACS_NODE_PRIORS": "on", "PACS_NODE_SOURCES": two})
    with pytest.raises(ConfigError, match="PACS_NODE_PRIORS_SOURCE: no source is named 'c'"):
        load_settings(environ={"PACS_NODE_SOURCES": two, "PACS_NODE_PRIORS_SOURCE": "c"})
    settings = load_settings(
        environ={"PACS_NODE_PRIORS": "on", "PACS_NODE_SOURCES": two, "PACS_NODE_PRIORS_SOURCE": "b"}
    )
    assert settings.prior_source == Source("b", "VNA", "h", 105)
    with pytest.raises(ConfigError, match="PACS_NODE_PRIOR_LOOKBACK_DAYS"):
        load_settings(environ={"PACS_NODE_PRIOR_LOOKBACK_DAYS": "0"})


CURRENT = CurrentStudy("1.2.9", "PAT1", "20250310", "101500")


def _match(uid: str, date: str, description: str = "MRI LUMBAR SPINE", **other: str) -> StudyMatch:
    fields = {"patient_id": "PAT1", "study_time": "090000", "modalities": ("MR",)} | other
    return StudyMatch(
        study_instance_uid=uid,
        accession_number="",
        study_date=date,
        study_description=description,
        **fields,  # type: ignore[arg-type]
    )


def test_the_prior_is_the_latest_earlier_lumbar_mri_of_the_same_patient() -> None:
    matches = [
        _match("1.2.1", "20230101"),
        _match("1.2.2", "20240601"),  # the latest earlier lumbar MRI
        _match("1.2.9", "20250310"),  # the current study itself
        _match("1.2.3", "20250310", study_time="120000"),  # later the same day
        _match("1.2.4", "20241201", description="MRI CERVICAL SPINE"),
        _match("1.2.5", "20241202", patient_id="PAT2"),  # a PACS that matched loosely
        _match("1.2.6", "20241203", modalities=("CT",)),
        _match("1.2.7", "20241204", description="MRT LWS nativ"),
    ]
    assert latest_prior(CURRENT, matches) == matches[-1]
    assert latest_prior(CURRENT, matches[:4]) == matches[1]
    assert latest_prior(CURRENT, matches[2:4]) is None


def test_the_query_looks_back_from_the_study_date() -> None:
    assert prior_query(CURRENT, 365) == {
        "PatientID": "PAT1",
        "StudyDate": "20240310-20250310",
        "ModalitiesInStudy": "MR",
    }
