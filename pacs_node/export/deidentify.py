"""De-identification by the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile.

dicognito does the replacing, for every element at any depth of nesting: each UID (except DICOM's
own, ``1.2.840.10008.*``, and class and transfer syntax UIDs) by one derived from the export's
secret, so an original UID maps to the same new UID in every file of an export and two exports
are not linkable; names and IDs by pseudonyms; dates and times shifted by one random offset per
export (the Retain Longitudinal Temporal Information with Modified Dates Option); institutions by
fake ones. This module adds what the profile asks beyond that: private elements, curves and
overlays removed, the profile's ``X`` attributes removed, ``Z`` ones emptied, the device serial
number a dummy value, the SR content tree cleaned (the Clean Structured Content Option: the text
comparing with a prior study, which names its date and accession number, removed; the device
serial number replaced) with its references to objects outside the export (the prior's report,
earlier versions) removed, and the de-identification recorded in each object.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pydicom
from dicognito.anonymizer import Anonymizer
from dicognito.element_anonymizer import ElementAnonymizer
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dicom_codes

from pacs_node.results import codes

PROFILE = (
    dicom_codes.DCM.BasicApplicationConfidentialityProfile,
    dicom_codes.DCM.CleanStructuredContentOption,
    dicom_codes.DCM.RetainLongitudinalTemporalInformationModifiedDatesOption,
)
"""The profile and options applied, as DeidentificationMethodCodeSequence codes (CID 7050)."""
LIBRARY = "dicognito 0.19.0"
DUMMY = "DEIDENTIFIED"
WELL_KNOWN_UID_ROOT = "1.2.840.10008."
_REMOVED_KEYWORDS = """
    AcquisitionComments AcquisitionDeviceProcessingDescription ActualHumanPerformersSequence
    AdditionalPatientHistory AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence
    AdmittingDiagnosesDescription AdmittingTime Allergies AuthorObserverSequence BranchOfService
    CommentsOnThePerformedProcedureStep ConfidentialityConstraintOnPatientDataDescription
    ContributionDescription CountryOfResidence CurrentPatientLocation
    CustodialOrganizationSequence DataSetTrailingPadding DerivationDescription DetectorID
    DeviceDescription DeviceLabel DischargeDiagnosisDescription DistributionAddress
    DistributionName EthnicGroup FrameComments GantryID HumanPerformerName
    HumanPerformerOrganization IconImageSequence IdentifyingComments ImageComments
    ImagePresentationComments InstitutionAddress InstitutionalDepartmentName
    InsurancePlanIdentification IntendedRecipientsOfResultsIdentificationSequence
    InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription
    InterpretationIDIssuer InterpretationRecorder InterpretationText InterpretationTranscriber
    IssuerOfAdmissionID IssuerOfPatientID IssuerOfServiceEpisodeID MedicalAlerts
    MedicalRecordLocator MilitaryRank ModifiedAttributesSequence
    NamesOfIntendedRecipientsOfResults Occupation OperatorIdentificationSequence
    OrderCallbackPhoneNumber OrderEnteredBy OrderEntererLocation OriginalAttributesSequence
    OtherPatientIDs OtherPatientIDsSequence OtherPatientNames ParticipantSequence PatientAddress
    PatientAge PatientBirthName PatientBirthTime PatientComments PatientInstitutionResidence
    PatientInsurancePlanCodeSequence PatientMotherBirthName PatientPrimaryLanguageCodeSequence
    PatientReligiousPreference PatientSexNeutered PatientSize PatientState
    PatientTelecomInformation PatientTelephoneNumbers PatientTransportArrangements PatientWeight
    PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepEndDate
    PerformedProcedureStepEndTime PerformedProcedureStepID PerformedProcedureStepStartDate
    PerformedProcedureStepStartTime PerformedStationAETitle
    PerformedStationGeographicLocationCodeSequence PerformedStationName
    PerformedStationNameCodeSequence PerformingPhysicianIdentificationSequence
    PerformingPhysicianName PersonAddress PersonTelecomInformation PersonTelephoneNumbers
    PhysicianApprovingInterpretation PhysiciansOfRecord PhysiciansOfRecordIdentificationSequence
    PhysiciansReadingStudyIdentificationSequence PreMedication PregnancyStatus ProtocolName
    ReasonForStudy ReasonForTheRequestedProcedure ReferencedPatientAliasSequence
    ReferencedPatientPhotoSequence ReferencedPatientSequence
    ReferencedStudySequence ReferringPhysicianAddress
    ReferringPhysicianIdentificationSequence ReferringPhysicianTelephoneNumbers RegionOfResidence
    RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
    RequestedProcedureDescription RequestedProcedureLocation RequestingPhysician RequestingService
    ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence
    ResultsIDIssuer ScheduledHumanPerformersSequence ScheduledPatientInstitutionResidence
    ScheduledPerformingPhysicianIdentificationSequence ScheduledProcedureStepDescription
    ScheduledProcedureStepLocation ScheduledStationAETitle
    ScheduledStationGeographicLocationCodeSequence ScheduledStationName
    ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
    SeriesDescription ServiceEpisodeDescription ServiceEpisodeID SmokingStatus SpecialNeeds
    StudyComments StudyDescription StudyIDIssuer TextComments TextString TopicAuthor
    TopicKeywords TopicSubject TopicTitle VerifyingOrganization VisitComments
    PertinentOtherEvidenceSequence PredecessorDocumentsSequence
"""
REMOVED = frozenset(pydicom.datadict.tag_for_keyword(k) for k in _REMOVED_KEYWORDS.split())
"""The profile's ``X`` attributes, and the SR's references to objects the export leaves out."""
EMPTIED = frozenset(
    pydicom.datadict.tag_for_keyword(keyword)
    for keyword in ("PatientSex", "ReferencedPerformedProcedureStepSequence")
)
"""``Z`` attributes dicognito keeps, and ``X`` ones that are Type 2 in an IOD exported (SR)."""
DUMMIED = frozenset({pydicom.datadict.tag_for_keyword("DeviceSerialNumber")})
"""``X/Z/D`` attributes that are Type 1 in an IOD exported (the SEG's equipment module)."""
SERIAL_NUMBER_CONCEPT = "121012"
"""DCM "Device Serial Number": a TEXT item of the SR's observer context."""
CURVE_AND_OVERLAY_GROUPS = (0x5000, 0x6000)
"""Repeating groups 50xx (curves) and 60xx (overlays, which may carry burned-in text)."""


class _KeepWellKnownUids(ElementAnonymizer):
    """Leave UIDs defined by DICOM (coding schemes, context groups) as they are."""

    def __call__(self, dataset: Dataset, data_element: DataElement) -> bool:
        if data_element.VR != "UI" or not data_element.value:
            return False
        values = data_element.value if data_element.VM > 1 else [data_element.value]
        return all(str(v).startswith(WELL_KNOWN_UID_ROOT) for v in values)

    def describe_actions(self) -> Iterator[str]:
        """What it does, for dicognito's description."""
        yield "Keep UIDs defined by DICOM (1.2.840.10008.*)"


class Deidentifier:
    """De-identifies the objects of one export: one secret, so UIDs map the same in every file.

    Args:
        secret: Seeds every replacement; random (the default) makes the export unlinkable to
            any other.
    """

    def __init__(self, secret: str | None = None) -> None:
        self._anonymizer = Anonymizer(seed=secret or secrets.token_hex(32))
        self._anonymizer.add_element_handler(_KeepWellKnownUids())

    def __call__(self, dataset: Dataset) -> None:
        """De-identify ``dataset`` (with its file meta) in place."""
        dataset.remove_private_tags()
        _clean_content(dataset)
        self._anonymizer.anonymize(dataset)
        dataset.walk(_apply_profile_actions)
        _record_method(dataset)


def has_burned_in_annotation(dataset: Dataset) -> bool:
    """True when the pixels carry identifying text (the profile then leaves the image out)."""
    return str(dataset.get("BurnedInAnnotation", "")).upper() == "YES"


def _apply_profile_actions(dataset: Dataset, element: DataElement) -> None:
    tag = element.tag
    if tag in REMOVED or tag.group & 0xFF00 in CURVE_AND_OVERLAY_GROUPS:
        del dataset[tag]
    elif tag in EMPTIED:
        element.value = [] if element.VR == "SQ" else ""
    elif tag in DUMMIED:
        element.value = DUMMY


def _clean_content(dataset: Dataset) -> None:
    """Clean an SR content tree: no prior comparison text, no device serial number."""
    if "ContentSequence" not in dataset:
        return
    kept = []
    for item in dataset.ContentSequence:
        concept = (
            item.ConceptNameCodeSequence[0].CodeValue
            if item.get("ConceptNameCodeSequence")
            else None
        )
        if concept == codes.COMPARISON.value:
            continue
        if concept == SERIAL_NUMBER_CONCEPT and item.get("ValueType") == "TEXT":
            item.TextValue = DUMMY
        _clean_content(item)
        kept.append(item)
    dataset.ContentSequence = kept


def _record_method(dataset: Dataset) -> None:
    dataset.PatientIdentityRemoved = "YES"
    dataset.LongitudinalTemporalInformationModified = "MODIFIED"
    dataset.DeidentificationMethod = [code.meaning for code in PROFILE] + [LIBRARY]
    items = []
    for code in PROFILE:
        item = Dataset()
        item.CodeValue = code.value
        item.CodingSchemeDesignator = code.scheme_designator
        item.CodeMeaning = code.meaning
        items.append(item)
    dataset.DeidentificationMethodCodeSequence = items
