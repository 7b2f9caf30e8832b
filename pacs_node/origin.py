"""Which received objects are source images and which are derived objects (the loop guard).

Only source images open, reopen or supersede a study's analysis. Derived objects (segmentations,
structured reports, key object selections, presentation states, secondary captures, encapsulated
documents, registrations, ...) are stored but never start a job: a PACS that forwards everything
back to the node (its own SEG and SR included) must not make it analyse its own results again.
A segmentation that refers to one of the node's SEGs is a reviewer's correction of it
(:func:`referenced_instances` lists what it refers to; the instance store decides).
"""

from __future__ import annotations

from pydicom import Dataset
from pydicom.uid import UID
from pynetdicom import AllStoragePresentationContexts

DERIVED_CLASS_MARKERS = (
    "SRStorage",
    "Segmentation",
    "PresentationSta",  # ...State and the standard's own typo ...Stage
    "KeyObjectSelection",
    "SecondaryCapture",
    "Encapsulated",
    "ParametricMap",
    "RealWorldValueMapping",
    "SpatialRegistration",
    "SpatialFiducials",
    "RTStructureSet",
    "RTSegmentAnnotation",
    "TractographyResults",
    "Annotations",
    "ContentAssessmentResults",
    "BasicStructuredDisplay",
    "RawData",
)
"""Parts of the keywords of storage SOP classes whose instances are derived, not acquired."""

DERIVED_SOP_CLASSES = frozenset(
    str(context.abstract_syntax)
    for context in AllStoragePresentationContexts
    if context.abstract_syntax is not None
    and any(marker in UID(context.abstract_syntax).keyword for marker in DERIVED_CLASS_MARKERS)
)


SEGMENTATION_SOP_CLASSES = frozenset(
    uid for uid in DERIVED_SOP_CLASSES if UID(uid).keyword.endswith("SegmentationStorage")
)
"""Storage SOP classes of segmentations: a corrected one may come back as a reference."""

REFERENCED_SOP_INSTANCE_UID = 0x00081155


def referenced_instances(ds: Dataset) -> frozenset[str]:
    """The SOP Instance UIDs a segmentation refers to, in any sequence (referenced series,
    source images, derivation images of its frames); empty for any other object."""
    if str(ds.get("SOPClassUID", "")) not in SEGMENTATION_SOP_CLASSES:
        return frozenset()
    return frozenset(
        str(element.value)
        for element in ds.iterall()
        if element.tag == REFERENCED_SOP_INSTANCE_UID and element.value
    )


def is_derived_sop_class(sop_class_uid: str) -> bool:
    """True for storage SOP classes of derived objects (SEG, SR, KO, PR, SC, ...)."""
    return sop_class_uid in DERIVED_SOP_CLASSES
