"""The ``pacs-node`` commands that need the ML stack (run by :mod:`worker.main`)."""

from __future__ import annotations

import re


def summary(doc: str | None) -> str:
    """The first line of a module docstring as plain text for ``--help`` (no reST markup)."""
    first = (doc or "").strip().splitlines()[0] if doc else ""
    return re.sub(r"``([^`]+)``", r"\1", first)
