"""Deterministic UIDs and HL7 control IDs."""

from __future__ import annotations

import re

import pytest
from pydicom.uid import UID

from pacs_node.results.identity import MAX_CONTROL_ID_LENGTH, derive_control_id, derive_uid


def test_uid_is_deterministic_and_valid() -> None:
    uid = derive_uid("job-1", "seg/series")
    assert uid == derive_uid("job-1", "seg/series")
    assert UID(uid).is_valid
    assert len(uid) <= 64


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (("job-1", "seg"), ("job-2", "seg")),
        (("job-1", "seg"), ("job-1", "sr")),
        (("job-1", "ab"), ("job-1a", "b")),
    ],
)
def test_uid_differs_with_job_or_purpose(a: tuple[str, str], b: tuple[str, str]) -> None:
    assert derive_uid(*a) != derive_uid(*b)


def test_uid_uses_site_prefix() -> None:
    uid = derive_uid("job-1", "sr", prefix="1.2.3.4.")
    assert uid.startswith("1.2.3.4.")
    assert UID(uid).is_valid


@pytest.mark.parametrize(
    ("job", "purpose", "prefix"), [("", "x", "1.2."), ("j", "", "1.2."), ("j", "x", "1.02.x")]
)
def test_uid_rejects_bad_input(job: str, purpose: str, prefix: str) -> None:
    with pytest.raises(ValueError):
        derive_uid(job, purpose, prefix=prefix)


def test_control_id_fits_msh10() -> None:
    control = derive_control_id("job-1", "oru/final")
    assert control == derive_control_id("job-1", "oru/final")
    assert control != derive_control_id("job-1", "oru/corrected")
    assert len(control) == MAX_CONTROL_ID_LENGTH == 20
    assert re.fullmatch(r"[A-Z2-7]{20}", control)


def test_control_id_rejects_empty_job() -> None:
    with pytest.raises(ValueError):
        derive_control_id("")
