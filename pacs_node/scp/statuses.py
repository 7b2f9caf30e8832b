"""Named DIMSE statuses the SCP answers with (PS3.4 Annex B.2.3, PS3.7 Annex C)."""

from __future__ import annotations

from enum import IntEnum


class StoreStatus(IntEnum):
    """C-STORE response statuses."""

    SUCCESS = 0x0000
    # Failure: the sender may retry later (disk below watermark, database unavailable).
    OUT_OF_RESOURCES = 0xA700
    # Failure: the data set's SOP Class or Instance UID differs from the command's.
    DATA_SET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
    # Failure: the data set cannot be parsed or has invalid identifiers.
    CANNOT_UNDERSTAND = 0xC000
    # Failure (PS3.7 C.4.8): the SOP Instance UID is already held for another study/series.
    DUPLICATE_SOP_INSTANCE = 0x0111
    # Failure (PS3.7 C.4.1): an unexpected error while processing.
    PROCESSING_FAILURE = 0x0110
