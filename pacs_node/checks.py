"""Start-up checks: what ``serve`` (and the workers) need, checked before anything starts, so a
bad setting gives one clear line instead of a traceback later."""

from __future__ import annotations

import socket
from pathlib import Path

from kombu import Connection
from kombu.exceptions import KombuError
from sqlalchemy import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from pacs_node.config import Settings
from pacs_node.db.session import make_engine
from pacs_node.errors import StartupError

BROKER_CHECK_SECONDS = 5.0


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]


def _masked(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(malformed URL)"


def check_database(url: str) -> None:
    """Open and close one connection to the database.

    Raises:
        StartupError: if the URL is malformed or the database cannot be reached.
    """
    try:
        engine = make_engine(url)
    except (ArgumentError, ImportError) as exc:
        raise StartupError(f"bad database URL {_masked(url)}: {_first_line(exc)}") from exc
    try:
        with engine.connect():
            pass
    except SQLAlchemyError as exc:
        raise StartupError(f"cannot reach the database {_masked(url)}: {_first_line(exc)}") from exc
    finally:
        engine.dispose()


def check_broker(url: str, timeout: float = BROKER_CHECK_SECONDS) -> None:
    """Connect to the Celery broker once.

    Raises:
        StartupError: if the broker cannot be reached within ``timeout`` seconds.
    """
    try:
        with Connection(url, connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, timeout=timeout)
    except (KombuError, OSError) as exc:
        raise StartupError(f"cannot reach the broker {_masked(url)}: {_first_line(exc)}") from exc


def check_port_free(host: str, port: int, what: str) -> None:
    """Fail early, naming the port, when ``host:port`` cannot be bound (port 0 always can).

    Raises:
        StartupError: if the address is in use or not available here.
    """
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot listen for {what} on {host}:{port}: {exc.strerror}"
            ) from exc


def check_checkpoint(path: Path) -> None:
    """Check that a configured model checkpoint is a readable file.

    Raises:
        StartupError: if it is missing or unreadable.
    """
    try:
        with path.open("rb") as checkpoint:
            checkpoint.read(1)
    except OSError as exc:
        raise StartupError(f"cannot read the model checkpoint {path}: {exc.strerror}") from exc


def check_startup(settings: Settings, *, worker_queue: bool = True) -> None:
    """Check what ``serve`` needs before starting anything, so a bad setting gives one clear
    error: the database, both ports and, when ``worker_queue`` (the service starts its own
    Celery queue), the broker. The embedded worker checks its checkpoint when it starts.

    Raises:
        StartupError: naming the first problem found.
    """
    check_database(settings.database_url)
    if worker_queue and not settings.embedded:
        check_broker(settings.broker_url)
    check_port_free(settings.host, settings.port, "DICOM")
    check_port_free(settings.api_host, settings.api_port, "the admin API")
