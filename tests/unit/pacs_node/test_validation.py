from __future__ import annotations

import pytest

from pacs_node.errors import InvalidIdentifierError
from pacs_node.validation import is_valid_uid, validate_ae_title, validate_uid


@pytest.mark.parametrize(
    "uid",
    ["1.2", "1.2.840.10008.5.1.4.1.1.4", "2.25.123456789012345678901234567890", "0.0"],
)
def test_valid_uids(uid: str) -> None:
    assert validate_uid(uid) == uid


@pytest.mark.parametrize(
    "uid",
    [
        "",
        "1",
        "../../etc/passwd",
        "1.2/../../x",
        "1.02.3",
        "1..2",
        "1.2.",
        ".1.2",
        "1.2.3a",
        "1.2 .3",
        "1." + "1" * 63,
        "1.2\x00",
        None,
        12,
    ],
)
def test_invalid_uids_are_refused(uid: object) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_uid(uid)


def test_uid_length_limit_is_64() -> None:
    uid = "1." + "2" * 62
    assert len(uid) == 64 and is_valid_uid(uid)
    assert not is_valid_uid(uid + "2")


@pytest.mark.parametrize("ae", ["PACS", "  PACS  ", "A" * 16, "MY-AE_1 X"])
def test_valid_ae_titles(ae: str) -> None:
    assert validate_ae_title(ae) == ae.strip()


@pytest.mark.parametrize("ae", ["", "   ", "A" * 17, "BAD\\AE", "TAB\tAE", "NUL\x00", 5])
def test_invalid_ae_titles(ae: object) -> None:
    with pytest.raises(InvalidIdentifierError):
        validate_ae_title(ae)
