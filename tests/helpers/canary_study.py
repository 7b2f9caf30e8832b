"""A phantom study whose every identifying attribute is a canary, and the checks of an export.

``write_canary_study`` writes a small phantom study and sets names, IDs, dates, site and device
attributes, a private element and a nested sequence item to canary values. The ``assert_*``
functions check a research export (``pacs-node export``) of it: no canary and no original UID in
any byte or name, every UID reference resolving inside the export.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from worker.commands.phantom import write_phantom
from worker.phantom import WrittenStudy

CANARIES = {
    "PatientName": "CANARYNAME^ZEBRA",
    "PatientID": "CANARYPID77",
    "OtherPatientIDs": "CANARYOTHERPID",
    "PatientBirthDate": "19230405",
    "PatientAge": "097Y",
    "PatientAddress": "CANARYADDRESS",
    "AccessionNumber": "CANARYACC1",
    "StudyID": "CANARYSID",
    "StudyDescription": "CANARYSTUDYDESC",
    "InstitutionName": "CANARYHOSPITAL",
    "InstitutionAddress": "CANARYINSTADDRESS",
    "InstitutionalDepartmentName": "CANARYDEPT",
    "ReferringPhysicianName": "CANARYREF^DOCTOR",
    "PerformingPhysicianName": "CANARYPERF^DOCTOR",
    "OperatorsName": "CANARYOP^ERATOR",
    "StationName": "CANARYSTATION",
    "DeviceSerialNumber": "CANARYSERIAL",
    "StudyDate": "20190312",
    "SeriesDate": "20190312",
    "AcquisitionDate": "20190312",
    "ContentDate": "20190312",
    "ImageComments": "CANARYCOMMENT",
}
PRIVATE_CANARY = "CANARYPRIVATE"
NESTED_CANARIES = {
    "InstitutionName": "CANARYNESTEDHOSP",
    "OperatorsName": "CANARYNESTED^OPERATOR",
    "StationName": "CANARYNSTATION",
    "DeviceSerialNumber": "CANARYNESTEDSERIAL",
}
REQUEST_CANARIES = {
    "RequestedProcedureID": "CANARYRPID",
    "ScheduledProcedureStepID": "CANARYSPSID",
    "RequestedProcedureDescription": "CANARYRPDESC",
}
WELL_KNOWN_UID_ROOT = "1.2.840.10008."
REFERENCE_KEYWORDS = ("ReferencedSOPInstanceUID", "ReferencedFrameOfReferenceUID")


def canary_strings() -> list[str]:
    """Every canary value, names split at ``^`` as well."""
    values = [
        *CANARIES.values(),
        PRIVATE_CANARY,
        *NESTED_CANARIES.values(),
        *REQUEST_CANARIES.values(),
    ]
    return sorted({part for value in values for part in (value, *value.split("^"))})


def _canary_item(keywords: dict[str, str]) -> Dataset:
    item = Dataset()
    for keyword, value in keywords.items():
        setattr(item, keyword, value)
    return item


def _add_canaries(ds: Dataset) -> None:
    for keyword, value in CANARIES.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0011, "CANARY CREATOR", create=True)
    block.add_new(0x01, "LO", PRIVATE_CANARY)
    equipment = _canary_item(NESTED_CANARIES)
    equipment.Manufacturer = "PHANTOM"
    purpose = _canary_item(
        {
            "CodeValue": "109103",
            "CodingSchemeDesignator": "DCM",
            "CodeMeaning": "Modifying Equipment",
        }
    )
    equipment.PurposeOfReferenceCodeSequence = [purpose]
    ds.ContributingEquipmentSequence = [equipment]
    ds.RequestAttributesSequence = [_canary_item(REQUEST_CANARIES)]


def write_canary_study(seed: int, folder: Path) -> WrittenStudy:
    """A small phantom study with every identifying attribute a canary."""
    study = write_phantom(seed, folder, size="small")
    for path in sorted(study.directory.rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        _add_canaries(ds)
        ds.save_as(path, enforce_file_format=True)
    return study


def instance_uids(paths: Iterable[Path]) -> set[str]:
    """Every UID value in the files (file meta too) but class UIDs (SOP classes, the software's
    implementation class) and DICOM's own (transfer syntaxes, coding schemes)."""
    found: set[str] = set()

    def collect(_: Dataset, element: pydicom.DataElement) -> None:
        if element.VR == "UI" and element.value and not element.keyword.endswith("ClassUID"):
            values = element.value if element.VM > 1 else [element.value]
            found.update(str(v) for v in values if not str(v).startswith(WELL_KNOWN_UID_ROOT))

    for path in paths:
        ds = pydicom.dcmread(path)
        ds.file_meta.walk(collect)
        ds.walk(collect)
    return found


def exported_files(out: Path) -> list[Path]:
    """Every file of an export."""
    return sorted(p for p in out.rglob("*") if p.is_file())


def assert_nothing_identifying(out: Path, forbidden: Iterable[str]) -> None:
    """No forbidden string in any byte of any file, nor in any file or folder name."""
    needles = [value.encode() for value in forbidden if value]
    for path in out.rglob("*"):
        name = str(path.relative_to(out))
        assert not [n for n in needles if n.decode() in name], name
        if path.is_file():
            data = path.read_bytes()
            leaked = [n.decode() for n in needles if n in data]
            assert not leaked, f"{name} holds {leaked}"


def _walk_values(ds: Dataset, keyword: str) -> Iterator[str]:
    for element in ds.iterall():
        if element.keyword == keyword and element.value:
            yield str(element.value)


def assert_references_resolve(study_folder: Path) -> None:
    """Every SOP instance, series, study and frame of reference the SEG and SR refer to is in
    the folder, and all objects share one study."""
    objects = [pydicom.dcmread(p) for p in study_folder.rglob("*.dcm")]
    instances = {str(ds.SOPInstanceUID) for ds in objects}
    series = {str(ds.SeriesInstanceUID) for ds in objects}
    frames = {str(ds.FrameOfReferenceUID) for ds in objects if "FrameOfReferenceUID" in ds}
    studies = {str(ds.StudyInstanceUID) for ds in objects}
    assert len(studies) == 1
    checked = 0
    for ds in objects:
        for keyword, known in (
            ("ReferencedSOPInstanceUID", instances),
            ("SeriesInstanceUID", series),
            ("StudyInstanceUID", studies),
            ("FrameOfReferenceUID", frames),
            ("ReferencedFrameOfReferenceUID", frames),
        ):
            for uid in _walk_values(ds, keyword):
                assert uid in known, f"{keyword} of {ds.Modality} does not resolve"
                checked += 1
    assert checked > len(objects) * 3
