"""Settings: one frozen object built at each entry point and passed down.

Every setting has a default that serves the embedded mode. Values come from, in increasing
priority: the defaults below, a TOML file (``--config``; keys are the field names in lower
case), and ``PACS_NODE_<NAME>`` environment variables. Nothing here is process-global.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pacs_node.errors import ConfigError
from pacs_node.hl7.addressing import Hl7Addressing
from pacs_node.validation import validate_ae_title, validate_uid_root

ENV_PREFIX = "PACS_NODE_"


KEY_IMAGES_SUFFIX = "/key-images"


@dataclass(frozen=True)
class Destination:
    """A DICOM peer that receives our results: ``AE@host:port``, or ``AE@host:port/key-images``
    for a viewer that cannot show SEG (it gets burned-in key images instead of the SEG)."""

    ae_title: str
    host: str
    port: int
    key_images: bool = False

    @property
    def address(self) -> str:
        """``AE@host:port``, as stored on a delivery."""
        return f"{self.ae_title}@{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> Destination:
        """Parse ``AE@host:port`` with an optional ``/key-images``.

        Raises:
            ConfigError: if the text is not of that form.
        """
        text = text.strip()
        key_images = text.endswith(KEY_IMAGES_SUFFIX)
        try:
            ae, address = text.removesuffix(KEY_IMAGES_SUFFIX).split("@", 1)
            host, port = address.rsplit(":", 1)
            return cls(validate_ae_title(ae), host, _port(port), key_images)
        except ValueError as exc:
            raise ConfigError(
                f"destination {text!r} is not AE@host:port[/key-images]: {exc}"
            ) from exc


@dataclass(frozen=True)
class HostPort:
    """A ``host:port`` address (the HL7 MLLP receiver)."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> HostPort:
        """Parse ``host:port``.

        Raises:
            ConfigError: if the text is not of that form.
        """
        try:
            host, port = text.strip().rsplit(":", 1)
            return cls(host, _port(port))
        except ValueError as exc:
            raise ConfigError(f"endpoint {text!r} is not host:port: {exc}") from exc


MAX_LO_CHARS = 64
"""DICOM LO (InstitutionName): at most 64 characters, no backslash."""


def _is_dicom_text(text: str) -> bool:
    return text.isprintable() and "\\" not in text


def _port(text: str | int) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range")
    return port


@dataclass(frozen=True)
class Settings:
    """The node's configuration. Field docs are the README's configuration table."""

    ae_title: str = "LUMBAR_NODE"
    host: str = "127.0.0.1"
    port: int = 11112
    # Calling AE titles accepted; ("*",) accepts any.
    allowed_aes: tuple[str, ...] = ("*",)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    spool_dir: Path = Path("var/spool")
    database_url: str = "sqlite:///./var/pacs-node.db"
    broker_url: str = "embedded"
    destinations: tuple[Destination, ...] = ()
    hl7_endpoint: HostPort | None = None
    # Also send an ORU^R01 for a study out of intended use (off: the RIS hears of analysed ones).
    hl7_not_analysed: bool = False
    # MSH-3 to MSH-6 as the site's interface engine routes them, and MSH-11 (P, T or D).
    hl7_sending_application: str = "PACS_NODE"
    hl7_sending_facility: str = ""
    hl7_receiving_application: str = ""
    hl7_receiving_facility: str = ""
    hl7_processing_id: str = "P"
    # The site's organisation UID root for the UIDs of results ("" = pydicom's root) and the
    # InstitutionName written into them ("" = none).
    uid_root: str = ""
    institution_name: str = ""
    quiet_seconds: float = 30.0
    # Grace after an association release before an early completion check.
    release_grace_seconds: float = 2.0
    model: Path | None = None
    device: str = "auto"
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    max_associations: int = 16
    # Seconds of silence before an association (or a connection that never speaks) is dropped.
    network_timeout: float = 60.0
    acse_timeout: float = 30.0
    dimse_timeout: float = 60.0
    # Largest PDU we accept; bigger PDUs mean fewer round trips per instance (0 = unlimited).
    max_pdu_size: int = 4_194_304
    # New instances are refused when free space on the spool falls below this many bytes.
    min_free_bytes: int = 1_073_741_824
    # Series classification rules (TOML); None uses the built-in lumbar protocol rules.
    selection_rules: Path | None = None
    log_level: str = "INFO"
    log_format: str = "text"
    # Job control (pacs_node.db.leases.JobPolicy documents each).
    lease_seconds: float = 60.0
    max_attempts: int = 3
    job_timeout_seconds: float = 1800.0
    requeue_after_seconds: float = 30.0
    reconcile_interval_seconds: float = 5.0
    delivery_max_attempts: int = 16
    delivery_backoff_seconds: float = 30.0
    delivery_backoff_max_seconds: float = 3600.0
    delivery_attempt_seconds: float = 300.0

    def __post_init__(self) -> None:
        validate_ae_title(self.ae_title)
        for ae in self.allowed_aes:
            if ae != "*":
                validate_ae_title(ae)
        for port in (self.port, self.api_port):
            _port(port)
        if self.quiet_seconds <= 0:
            raise ConfigError("quiet_seconds must be positive")
        if self.max_associations < 1:
            raise ConfigError("max_associations must be at least 1")
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("tls_cert and tls_key must be set together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise ConfigError("tls_ca needs tls_cert and tls_key")
        if self.log_format not in ("text", "json"):
            raise ConfigError("log_format must be 'text' or 'json'")
        self._check_site_identity()

    def _check_site_identity(self) -> None:
        try:
            self.hl7_addressing  # noqa: B018 - built to be validated
        except ValueError as exc:
            raise ConfigError(f"HL7 addressing: {exc}") from exc
        if self.uid_root:
            validate_uid_root(self.uid_root)
        if len(self.institution_name) > MAX_LO_CHARS or not _is_dicom_text(self.institution_name):
            raise ConfigError(
                f"institution_name must be at most {MAX_LO_CHARS} printable characters"
            )

    @property
    def hl7_addressing(self) -> Hl7Addressing:
        """The MSH fields of the node's HL7 messages."""
        return Hl7Addressing(
            self.hl7_sending_application,
            self.hl7_sending_facility,
            self.hl7_receiving_application,
            self.hl7_receiving_facility,
            self.hl7_processing_id,
        )

    @property
    def accepts_any_ae(self) -> bool:
        """True when any calling AE title is accepted."""
        return "*" in self.allowed_aes

    @property
    def embedded(self) -> bool:
        """True when the worker runs in-process (no broker)."""
        return self.broker_url == "embedded"

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}


def _convert(name: str, raw: Any) -> Any:
    """Turn a TOML or environment value into the field's type."""
    kind = str(_FIELDS[name].type)
    if isinstance(raw, str):
        raw = raw.strip()
    if raw == "" and "None" in kind:
        return None
    match name:
        case "allowed_aes":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(a.strip() for a in items if a.strip())
        case "destinations":
            items = raw.split(",") if isinstance(raw, str) else list(raw)
            return tuple(Destination.parse(d) for d in items if d.strip())
        case "hl7_endpoint":
            return HostPort.parse(raw)
    if kind.startswith("bool"):
        return _boolean(name, raw)
    if kind.startswith("Path"):
        return Path(raw)
    if kind.startswith("int"):
        return int(raw)
    if kind.startswith("float"):
        return float(raw)
    return str(raw)


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEANS |= {"false": False, "no": False, "off": False, "0": False}


def _boolean(name: str, raw: Any) -> bool:
    """A TOML boolean or one of true/false, yes/no, on/off, 1/0 (any case).

    Raises:
        ValueError: for any other value.
    """
    if isinstance(raw, bool):
        return raw
    value = _BOOLEANS.get(str(raw).lower())
    if value is None:
        raise ValueError(f"{name} must be true or false, not {raw!r}")
    return value


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides.

    Raises:
        ConfigError: if a value is unknown, malformed or inconsistent.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    if config_file is not None:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        for key, raw in table.items():
            name = key.lower()
            if name not in _FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {config_file}")
            values[name] = raw
    for key, raw in environ.items():
        if key.startswith(ENV_PREFIX):
            name = key[len(ENV_PREFIX) :].lower()
            if name in _FIELDS:
                values[name] = raw
    values.update(overrides)
    try:
        converted = {name: _convert(name, raw) for name, raw in values.items()}
        return Settings(**converted)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from exc


SETTING_NAMES: tuple[str, ...] = tuple(_FIELDS)
__all__ = ["SETTING_NAMES", "Destination", "HostPort", "Settings", "load_settings"]
