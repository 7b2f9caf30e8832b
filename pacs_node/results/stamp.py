"""Replace the wall-clock times highdicom writes with the job's result time."""

from __future__ import annotations

from pydicom import Dataset
from pydicom.valuerep import DA, DT, TM

from pacs_node.results.inputs import ResultContext


def pin_creation(dataset: Dataset, context: ResultContext) -> None:
    """Set the creation times highdicom takes from the clock to the job's result time.

    These are Instance Creation Date/Time and each Contribution DateTime of the Contributing
    Equipment Sequence (plus, for Secondary Capture, Date/Time of Secondary Capture).
    """
    dataset.InstanceCreationDate = DA(context.created.date())
    dataset.InstanceCreationTime = TM(context.created.time())
    for item in dataset.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = DT(context.created)
    if "DateOfSecondaryCapture" in dataset:
        dataset.DateOfSecondaryCapture = DA(context.created.date())
        dataset.TimeOfSecondaryCapture = TM(context.created.time())
