"""Deterministic identities of result objects.

Every UID and HL7 control ID the node writes is a hash of the job key and a purpose string, so a
rebuilt object (a retry, a replay) carries the same identity and a PACS or RIS can de-duplicate it.
Different purposes ("seg-series", "sr-instance", ...) give unrelated identities.

The job key (:func:`job_result_key`) holds the node's identity (random, created once per
database), the Study Instance UID and the job version; the model that made the results is added
to it by :meth:`~pacs_node.results.inputs.ResultContext.for_model`. Identities therefore never
repeat between installations, database resets, studies, job versions or models.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Final

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

DEFAULT_UID_PREFIX: Final = PYDICOM_ROOT_UID
"""UID root used when the site has not configured its own (pydicom's registered root)."""

MAX_CONTROL_ID_LENGTH: Final = 20
"""HL7 v2.5 MSH-10 (Message Control ID) is an ST of at most 20 characters."""


def job_result_key(node_identity: str, study_instance_uid: str, job_version: int) -> str:
    """The key the identities of one job version's results derive from.

    Args:
        node_identity: The node's identity (``pacs_node.db.node_identity``).
        study_instance_uid: The analysed study.
        job_version: The job's version within its study (1, 2, ... as late series supersede).

    Raises:
        ValueError: if an argument is empty or the version is not positive.
    """
    if not node_identity or not study_instance_uid:
        raise ValueError("node identity and Study Instance UID must not be empty")
    if job_version < 1:
        raise ValueError(f"job version must be positive, not {job_version}")
    return f"{node_identity}/{study_instance_uid}/v{job_version}"


def _check_parts(job_key: str, purpose: str) -> None:
    if not job_key:
        raise ValueError("job_key must not be empty")
    if not purpose:
        raise ValueError("purpose must not be empty")


def derive_uid(job_key: str, purpose: str, *, prefix: str = DEFAULT_UID_PREFIX) -> str:
    """Return a UID that depends only on ``job_key``, ``purpose`` and ``prefix``.

    Args:
        job_key: Stable identity of the job (its ID and version).
        purpose: What the UID identifies, e.g. ``"sr-instance"``.
        prefix: Organisation UID root ending with ``"."``, at most 54 characters.

    Returns:
        A valid DICOM UID (PS3.5 9.1) of at most 64 characters.

    Raises:
        ValueError: if ``job_key`` or ``purpose`` is empty or ``prefix`` is not a UID root.
    """
    _check_parts(job_key, purpose)
    return str(generate_uid(prefix=prefix, entropy_srcs=[f"{job_key}\x00{purpose}"]))


def derive_control_id(job_key: str, purpose: str = "oru") -> str:
    """Return an HL7 message control ID (MSH-10) that depends only on the arguments.

    Args:
        job_key: Stable identity of the job.
        purpose: Which message of the job, e.g. ``"oru-final"``; a corrected result is a new
            message and needs its own purpose.

    Returns:
        20 characters from ``A-Z2-7`` (base32 of a SHA-256 digest).

    Raises:
        ValueError: if ``job_key`` or ``purpose`` is empty.
    """
    _check_parts(job_key, purpose)
    digest = hashlib.sha256(f"{job_key}\x00{purpose}".encode()).digest()
    return base64.b32encode(digest).decode("ascii")[:MAX_CONTROL_ID_LENGTH]
