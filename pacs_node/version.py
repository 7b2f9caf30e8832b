"""The installed software version, as written into results and shown by the API."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    SOFTWARE_VERSION = version("pacs-node")
except PackageNotFoundError:  # run from a source tree that was never installed
    SOFTWARE_VERSION = "0+unknown"
