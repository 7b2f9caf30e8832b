"""What the DICOMweb routes need: the database, the spool and the intake, built once per app."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI, HTTPException, Request, status
from sqlalchemy.orm import Session, sessionmaker

from pacs_node.config import Settings
from pacs_node.db.ledger import InstanceLedger
from pacs_node.errors import InvalidIdentifierError
from pacs_node.instance_store import InstanceStore
from pacs_node.intake import Intake
from pacs_node.spool import Spool
from pacs_node.validation import validate_uid

PREFIX = "/dicom-web"


@dataclass(frozen=True)
class DicomWebContext:
    """Dependencies of the DICOMweb routes."""

    sessions: sessionmaker[Session]
    spool: Spool
    intake: Intake


def install_context(
    app: FastAPI,
    settings: Settings,
    sessions: sessionmaker[Session],
    store: InstanceStore | None = None,
) -> None:
    """Give ``app`` its DICOMweb context over the settings' spool and ``sessions``; STOW-RS
    stores through ``store`` (the SCP's, so that both lock the same UIDs), or its own."""
    spool = Spool(settings.spool_dir, settings.min_free_bytes)
    ledger = InstanceLedger(sessions)
    store = store or InstanceStore(spool, ledger)
    app.state.dicomweb = DicomWebContext(sessions, spool, Intake(spool, store, ledger))


async def get_dicomweb(request: Request) -> DicomWebContext:
    """The DICOMweb context of the app serving ``request``."""
    context: DicomWebContext = request.app.state.dicomweb
    return context


def path_uid(value: str, what: str) -> str:
    """A UID from the request path.

    Raises:
        HTTPException: 400 if it is not a valid UID (the value is not echoed).
    """
    try:
        return validate_uid(value, what)
    except InvalidIdentifierError as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from exc


def base_url(request: Request) -> str:
    """The absolute URL of the DICOMweb root as the caller reached it."""
    return str(request.base_url).rstrip("/") + PREFIX


def retrieve_url(
    request: Request, study: str, series: str | None = None, sop: str | None = None
) -> str:
    """The WADO-RS URL of a study, series or instance."""
    url = f"{base_url(request)}/studies/{study}"
    if series is not None:
        url += f"/series/{series}"
        if sop is not None:
            url += f"/instances/{sop}"
    return url
