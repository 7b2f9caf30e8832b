"""Debian's chromium, headless, driven by playwright: never a browser playwright downloads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("PACS_NODE_TEST_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@contextmanager
def chromium(playwright: Any) -> Iterator[Any]:
    """Launch :data:`CHROMIUM` headless with ``playwright`` (each context gets a fresh profile);
    closed at the end of the block."""
    browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
    try:
        yield browser
    finally:
        browser.close()
