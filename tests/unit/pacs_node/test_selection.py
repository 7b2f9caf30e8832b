from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pacs_node.domain import SeriesRole
from pacs_node.errors import ConfigError
from pacs_node.selection import load_rules, plane_of, series_attributes
from tests.helpers.dicom_factory import StudySpec, make_series

RULES = load_rules()


def attrs(description: str, **extra: Any) -> dict[str, Any]:
    ds = next(make_series(StudySpec(), description))
    out = series_attributes(ds)
    out.update(extra)
    return out


@pytest.mark.parametrize(
    ("description", "role"),
    [
        ("T1 TSE SAG", SeriesRole.SAG_T1),
        ("T2 TSE SAG", SeriesRole.SAG_T2),
        ("STIR SAG", SeriesRole.SAG_STIR),
        ("T2 TSE AX", SeriesRole.AX_T2),
    ],
)
def test_protocol_series_are_classified(description: str, role: SeriesRole) -> None:
    assert RULES.classify(attrs(description)) is role


def test_acquisition_tags_classify_when_the_description_is_unhelpful() -> None:
    t2 = attrs("T2 TSE SAG", SeriesDescription="series 3")
    t1 = attrs("T1 TSE SAG", SeriesDescription="series 2")
    stir = attrs("STIR SAG", SeriesDescription="series 4")
    assert RULES.classify(t2) is SeriesRole.SAG_T2
    assert RULES.classify(t1) is SeriesRole.SAG_T1
    assert RULES.classify(stir) is SeriesRole.SAG_STIR


def test_localizers_by_image_type_or_description() -> None:
    assert RULES.classify(attrs("T2 TSE SAG", ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])) is (
        SeriesRole.LOCALIZER
    )
    assert RULES.classify(attrs("T1 TSE SAG", SeriesDescription="3-plane loc")) is (
        SeriesRole.LOCALIZER
    )


def test_coronal_or_unknown_is_other() -> None:
    coronal = attrs("T2 TSE SAG", ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    assert plane_of(coronal["ImageOrientationPatient"]) == "coronal"
    assert RULES.classify(coronal) is SeriesRole.OTHER
    assert plane_of(None) is None and plane_of([1, 2]) is None


def test_gating_reasons() -> None:
    sag = attrs("T2 TSE SAG")
    assert RULES.not_analysable_reason([(sag, SeriesRole.SAG_T2)]) is None
    ct = dict(sag, Modality="CT")
    assert "not MR" in (RULES.not_analysable_reason([(ct, SeriesRole.SAG_T2)]) or "")
    head = dict(sag, BodyPartExamined="HEAD")
    reason = RULES.not_analysable_reason([(head, SeriesRole.SAG_T2)]) or ""
    assert "not the lumbar spine" in reason
    ax_only = attrs("T2 TSE AX")
    assert "missing SAG_T2" in (RULES.not_analysable_reason([(ax_only, SeriesRole.AX_T2)]) or "")
    no_body_part = {k: v for k, v in sag.items() if k != "BodyPartExamined"}
    assert RULES.not_analysable_reason([(no_body_part, SeriesRole.SAG_T2)]) is None
    knee = dict(no_body_part, StudyDescription="MRI KNEE", SeriesDescription="T2 SAG")
    assert "no description" in (RULES.not_analysable_reason([(knee, SeriesRole.SAG_T2)]) or "")


def test_site_rules_replace_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(
        '[[rule]]\nrole = "SAG_T2"\ndescription_regex = "^my t2$"\n'
        '[gating]\nmodalities = ["MR"]\nrequired_roles = ["SAG_T2"]\n'
    )
    site = load_rules(path)
    assert site.classify(attrs("T2 TSE SAG", SeriesDescription="my t2")) is SeriesRole.SAG_T2
    assert site.classify(attrs("T2 TSE SAG")) is SeriesRole.OTHER


def test_malformed_rules_are_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[[rule]]\nrole = "NOT_A_ROLE"\n')
    with pytest.raises(ConfigError):
        load_rules(path)
