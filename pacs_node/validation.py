"""Validation of identifiers from outside or from the site: UIDs, UID roots and AE titles (PS3.5
§9.1, §6.2), HL7 namespace IDs."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from pacs_node.errors import InvalidIdentifierError, SettingError

# PS3.5 §9.1: components of digits separated by '.', no leading zero unless the component is
# "0", at most 64 characters in all.
_UID_RE = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))+$")
# PS3.5 §6.2 AE: 1-16 characters of the default repertoire, no backslash or control characters;
# leading/trailing spaces are not significant.
_AE_RE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")
# HL7 v2.5 IS/HD namespace ID: at most 20 printable characters, none of the delimiters |^~\&.
_HL7_NAME_RE = re.compile(r"^[\x20-\x25\x27-\x5b\x5d\x5f-\x7b\x7d]{0,20}$")
# A generated UID is the root plus up to 10 digits of ours: the root leaves room for them.
MAX_UID_ROOT_CHARS = 54


def is_valid_uid(uid: str) -> bool:
    """Return True if ``uid`` follows the DICOM UID grammar."""
    return len(uid) <= 64 and _UID_RE.fullmatch(uid) is not None


def validate_uid(uid: object, what: str = "UID") -> str:
    """Return ``uid`` if it is a valid DICOM UID.

    Raises:
        InvalidIdentifierError: if it is not a string following the UID grammar.
    """
    if not isinstance(uid, str) or not is_valid_uid(uid):
        # The value is left out: a UID (or what a corrupt element swallowed) is patient data.
        raise InvalidIdentifierError(f"invalid {what}: {_uid_problem(uid)}")
    return uid


def _uid_problem(uid: object) -> str:
    if not isinstance(uid, str):
        return f"not a single text value ({type(uid).__name__})"
    if len(uid) > 64:
        return f"{len(uid)} characters, more than 64"
    return "not digits and dots as the UID grammar requires"


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


def validate_uid_root(root: object) -> str:
    """Return ``root`` if it is an organisation UID root: a UID followed by ``"."``, at most
    54 characters.

    Raises:
        InvalidIdentifierError: otherwise.
    """
    if (
        not isinstance(root, str)
        or len(root) > MAX_UID_ROOT_CHARS
        or not root.endswith(".")
        or not is_valid_uid(root[:-1])
    ):
        raise InvalidIdentifierError(f"invalid UID root: {root!r} (digits and dots, ending in '.')")
    return root


def validate_hl7_name(name: object, what: str = "HL7 name") -> str:
    """Return ``name`` if it fits an HL7 v2.5 namespace ID (MSH-3 to MSH-6): at most 20
    printable characters without the delimiters ``|^~\\&``.

    Raises:
        InvalidIdentifierError: otherwise.
    """
    if not isinstance(name, str) or _HL7_NAME_RE.fullmatch(name) is None:
        raise InvalidIdentifierError(f"invalid {what}: {name!r}")
    return name


def check_limits(
    owner: object, positive: Iterable[str] = (), at_least: Mapping[str, float] | None = None
) -> None:
    """Check numeric settings of ``owner`` (by attribute name): those in ``positive`` must be
    above zero, those in ``at_least`` at least their bound.

    Raises:
        SettingError: naming the first setting out of range.
    """
    for setting in positive:
        value = getattr(owner, setting)
        if not value > 0:
            raise SettingError(setting, f"must be positive, not {_shown(value)}")
    for setting, least in (at_least or {}).items():
        value = getattr(owner, setting)
        if not value >= least:
            raise SettingError(setting, f"must be at least {least:g}, not {_shown(value)}")


def _shown(value: float) -> str:
    """A number as a person would write it (``-1``, not ``-1.0``)."""
    return f"{value:g}" if isinstance(value, float) else str(value)
