"""Logging set-up: plain text for people, one JSON object per line for log collectors.

Every record, from the node or any library, passes :class:`SanitisingFilter` before it is
written: UIDs are replaced, control characters escaped (a peer's AE title cannot forge a log
line or drive a terminal) and exception texts redacted. Libraries' messages are redacted more
thoroughly, because they quote the values they choke on (pydicom quotes the bytes a corrupt
length swallowed: names, IDs, accession numbers); Python warnings are routed through the same
path. The node's own messages carry counts, statuses, AE titles and its own row ids only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import traceback
import warnings
from datetime import UTC, datetime

OWN_LOGGERS = ("pacs_node", "worker", "models")
"""Top-level logger names of the node's own code."""

REDACTED = "<redacted>"
# A UID: five or more dot-separated numbers (an IPv4 address has four).
_UID = re.compile(r"\d+(?:\.\d+){4,}")
# A quoted value as Python's repr writes it (str or bytes). A quote right after a letter is an
# apostrophe ("node's"), not the start of a value, unless it is the b of a bytes literal.
_QUOTED = re.compile(
    r"""(?:(?<![A-Za-z])|(?<=\bb))(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""", re.DOTALL
)
# A person name (PN components are separated by carets) or a long number (IDs, accessions).
_NAME_OR_NUMBER = re.compile(r"\S*\^\S*|\b\d{6,}\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
EXCEPTION_INDENT = "    "
"""Continuation lines of a record (its traceback) start with this: never a forged record."""


def _escape(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def _scrub(text: str, thorough: bool) -> str:
    """``text`` without UIDs and, when ``thorough``, without quoted values, person names and
    long numbers (control characters left as they are)."""
    text = _UID.sub("<uid>", text)
    if thorough:
        text = _NAME_OR_NUMBER.sub(REDACTED, _QUOTED.sub(REDACTED, text))
    return text


def redact(text: str, *, thorough: bool = True) -> str:
    """``text`` scrubbed of UIDs and, when ``thorough``, of quoted values, person names and
    long numbers; control characters (newlines included) escaped.

    Use it for any text that may quote received data before it reaches a log or an error
    record (exception messages of parsers, values of malformed elements).
    """
    return _CONTROL.sub(_escape, _scrub(text, thorough))


def _redact_block(text: str) -> str:
    """A multi-line text (a traceback) scrubbed thoroughly, control characters other than
    newlines escaped, and every line indented so none can pass for a record of its own."""
    text = _CONTROL_BUT_NEWLINE.sub(_escape, _scrub(text, thorough=True))
    return "\n".join(EXCEPTION_INDENT + line for line in text.splitlines())


class SanitisingFilter(logging.Filter):
    """Rewrites each record's message and exception text (see the module docstring)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Sanitise ``record`` in place; never drops it."""
        try:
            message = record.getMessage()
        except Exception:  # a library's bad format string: keep the template only
            message = str(record.msg)
        own = record.name.split(".", 1)[0] in OWN_LOGGERS
        record.msg, record.args = redact(message, thorough=not own), None
        if record.exc_info and not record.exc_text:
            record.exc_text = _redact_block("".join(traceback.format_exception(*record.exc_info)))
        if record.stack_info:
            record.stack_info = _redact_block(record.stack_info)
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as JSON."""
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload)


QUIET_LIBRARIES = {
    "pynetdicom": logging.WARNING,  # every PDU at INFO
    "highdicom": logging.WARNING,  # UIDs of every object it builds at INFO
    "alembic.runtime.plugins": logging.WARNING,  # plugin set-up lines on every command
}


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """Send logs to stderr in ``fmt`` ("text" or "json"), sanitised, with Python warnings
    routed through them."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SanitisingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, floor in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(floor, root.level))
    logging.captureWarnings(True)
    # pydicom logs each of its warnings and also raises it as a UserWarning: keep the log line.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
