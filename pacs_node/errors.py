"""Operational errors of the node (bad arguments raise ValueError or TypeError)."""

from __future__ import annotations


class NodeError(Exception):
    """Base class; ``retryable`` says whether trying again later may succeed."""

    retryable: bool = False


class ConfigError(NodeError, ValueError):
    """A setting is unknown, malformed or inconsistent."""


class SettingError(ConfigError):
    """One setting's value is malformed or out of range.

    Attributes:
        setting: The field name.
        problem: What is wrong with its value, without the name.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class StartupError(NodeError):
    """The node cannot start: a peer it needs is unreachable or a resource it needs is taken."""


class InvalidIdentifierError(NodeError, ValueError):
    """A UID or AE title from outside does not follow the DICOM grammar."""


class SpoolFullError(NodeError):
    """Free disk space on the spool is below the watermark."""

    retryable = True


class ConflictingInstanceError(NodeError):
    """A SOP Instance UID arrived again with a different study or series."""


class StudyIncompleteError(NodeError):
    """The study is not yet complete."""

    retryable = True
