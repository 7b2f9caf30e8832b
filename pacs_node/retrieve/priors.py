"""Finding a study's prior: the same patient's latest earlier lumbar spine MRI on a source."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pacs_node.retrieve.scu import StudyMatch

LUMBAR_DESCRIPTION = re.compile(r"lumb|l-?spine|\blws\b", re.IGNORECASE)
"""A study description that names the lumbar spine (English and German habits)."""
DATE_FORMAT = "%Y%m%d"


@dataclass(frozen=True)
class CurrentStudy:
    """The study a prior is looked for (from one of its instances)."""

    study_instance_uid: str
    patient_id: str
    study_date: str
    study_time: str


def prior_query(current: CurrentStudy, lookback_days: int) -> dict[str, str]:
    """The C-FIND keys: the patient's MR studies from ``lookback_days`` before the current
    study's date up to that date (up to today when the current study has no date)."""
    try:
        end = dt.datetime.strptime(current.study_date, DATE_FORMAT).date()
    except ValueError:
        end = dt.date.today()
    start = end - dt.timedelta(days=lookback_days)
    return {
        "PatientID": current.patient_id,
        "StudyDate": f"{start:{DATE_FORMAT}}-{end:{DATE_FORMAT}}",
        "ModalitiesInStudy": "MR",
    }


def latest_prior(current: CurrentStudy, matches: Sequence[StudyMatch]) -> StudyMatch | None:
    """The latest of ``matches`` that is a lumbar MRI of the same patient acquired before the
    current study (None if there is none)."""
    when = (current.study_date, current.study_time.split(".")[0])

    def is_prior(match: StudyMatch) -> bool:
        return (
            match.study_instance_uid != current.study_instance_uid
            and match.patient_id == current.patient_id
            and (not match.modalities or "MR" in match.modalities)
            and LUMBAR_DESCRIPTION.search(match.study_description) is not None
            and (match.study_date, match.study_time.split(".")[0]) < when
        )

    priors = [m for m in matches if is_prior(m)]
    return max(priors, key=lambda m: (m.study_date, m.study_time), default=None)


def find_prior(
    find: Callable[..., list[StudyMatch]], current: CurrentStudy, lookback_days: int
) -> StudyMatch | None:
    """C-FIND (with ``find``) the current study's prior on a source.

    Raises:
        SourceUnavailableError: if the source cannot be queried.
    """
    return latest_prior(current, find(**prior_query(current, lookback_days)))
