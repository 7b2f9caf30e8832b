"""Validation of identifiers that come from outside: UIDs and AE titles (PS3.5 §9.1, §6.2)."""

from __future__ import annotations

import re

from pacs_node.errors import InvalidIdentifierError

# PS3.5 §9.1: components of digits separated by '.', no leading zero unless the component is
# "0", at most 64 characters in all.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
# PS3.5 §6.2 AE: 1-16 characters of the default repertoire, no backslash or control characters;
# leading/trailing spaces are not significant.
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")


def is_valid_uid(uid: str) -> bool:
    """Return True if ``uid`` follows the DICOM UID grammar."""
    return len(uid) <= 64 and _UID_RE.fullmatch(uid) is not None


def validate_uid(uid: object, what: str = "UID") -> str:
    """Return ``uid`` if it is a valid DICOM UID.

    Raises:
        InvalidIdentifierError: if it is not a string following the UID grammar.
    """
    if not isinstance(uid, str) or not is_valid_uid(uid):
        raise InvalidIdentifierError(f"invalid {what}: {uid!r}")
    return uid


def validate_ae_title(ae_title: object) -> str:
    """Return the AE title without padding if it is valid.

    Raises:
        InvalidIdentifierError: if it is empty, too long or has forbidden characters.
    """
    if not isinstance(ae_title, str):
        raise InvalidIdentifierError(f"invalid AE title: {ae_title!r}")
    stripped = ae_title.strip()
    if not stripped or _AE_RE.fullmatch(stripped) is None:
        raise InvalidIdentifierError(f"invalid AE title: {ae_title!r}")
    return stripped
