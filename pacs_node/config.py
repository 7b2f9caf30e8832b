"""Settings: one frozen object built at each entry point and passed down.

Every setting has a default that serves the embedded mode. Values come from, in increasing
priority: the defaults below, a TOML file (``--config``; keys are the field names in lower
case), and ``PACS_NODE_<NAME>`` environment variables. Nothing here is process-global.

Every value is checked when the settings are built. An error names the setting it is about: the
field name when :class:`Settings` is built directly, the environment variable or the TOML key
(and its file) when :func:`load_settings` read it from there.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import os
import re
import ssl
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from pacs_node.destinations import Destination, DestinationKind, Destinations, Secret
from pacs_node.errors import ConfigError, SettingError
from pacs_node.hl7.addressing import Hl7Addressing
from pacs_node.policy import POLICY_NAMES, JobPolicy
from pacs_node.sources import Source, Sources
from pacs_node.validation import check_limits, validate_ae_title, validate_uid_root

ENV_PREFIX = "PACS_NODE_"


@contextmanager
def _about(setting: str) -> Iterator[None]:
    """Report a ValueError or TypeError raised inside as a :class:`SettingError` on ``setting``."""
    try:
        yield
    except (ValueError, TypeError) as exc:
        raise SettingError(setting, str(exc)) from exc


MAX_LO_CHARS = 64
"""DICOM LO (InstitutionName): at most 64 characters, no backslash."""


def _is_dicom_text(text: str) -> bool:
    return text.isprintable() and "\\" not in text


def _integer(raw: object) -> int:
    """An integer, or its decimal text.

    Raises:
        ValueError: for anything else (booleans and fractions included).
    """
    if isinstance(raw, int | str) and not isinstance(raw, bool):
        try:
            return int(raw)
        except ValueError:
            pass
    raise ValueError(f"{raw!r} is not an integer")


def _number(raw: object) -> float:
    """A finite number, or its text.

    Raises:
        ValueError: for anything else (booleans, ``nan`` and ``inf`` included).
    """
    if isinstance(raw, int | float | str) and not isinstance(raw, bool):
        try:
            number = float(raw)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValueError(f"{raw!r} is not a number")


def _port(raw: object) -> int:
    port = _integer(raw)
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0 to 65535)")
    return port


# Numeric settings that must be above zero, and those with a least value they may take.
_POSITIVE = ("quiet_seconds", "network_timeout", "acse_timeout", "dimse_timeout")
_AT_LEAST = {
    "prior_lookback_days": 1,
    "release_grace_seconds": 0,
    "max_pdu_size": 0,
    "min_free_bytes": 0,
    "max_associations": 1,
    "scp_processes": 1,
}
_NOT_EMPTY = ("host", "api_host", "database_url", "broker_url")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_LOG_FORMATS = ("text", "json")
_DEVICE_RE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
# Settings field -> Hl7Addressing field.
_HL7_FIELDS = {
    "hl7_sending_application": "sending_application",
    "hl7_sending_facility": "sending_facility",
    "hl7_receiving_application": "receiving_application",
    "hl7_receiving_facility": "receiving_facility",
    "hl7_processing_id": "processing_id",
}


@dataclass(frozen=True)
class Settings:
    """The node's configuration. Field docs are the README's configuration table."""

    ae_title: str = "LUMBAR_NODE"
    host: str = "127.0.0.1"
    port: int = 11112
    # Calling AE titles accepted; ("*",) accepts any.
    allowed_aes: tuple[str, ...] = ("*",)
    # Refuse associations whose called AE title is not ``ae_title`` (off: answer any).
    check_called_ae: bool = True
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None
    spool_dir: Path = Path("var/spool")
    database_url: str = "sqlite:///./var/pacs-node.db"
    broker_url: str = "embedded"
    # DICOM destinations (kinds dicom, dicom-key-images) and the RIS (kind hl7).
    destinations: tuple[Destination, ...] = ()
    hl7_endpoint: Destination | None = None
    # Credentials of DICOMweb destinations by name (NAME=bearer:TOKEN or NAME=basic:USER:PASSWORD),
    # and a TOML file of them ([NAME] token, or username and password); never logged or shown.
    dicomweb_credentials: Mapping[str, Secret] = field(default_factory=dict)
    dicomweb_credentials_file: Path | None = None
    # CA bundle the https certificates of DICOMweb destinations are checked against (None: certifi).
    dicomweb_ca_file: Path | None = None
    # PACS the node queries and retrieves from (C-FIND, then C-MOVE or C-GET), by name.
    sources: tuple[Source, ...] = ()
    # Compare each analysed study with the patient's latest earlier lumbar MRI on a source.
    priors: bool = False
    # The source priors are looked for on ("" = the only configured source).
    priors_source: str = ""
    # How far back a prior may be, in days.
    prior_lookback_days: int = 1825
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
    # Processes accepting DICOM associations on the port (the kernel spreads connections).
    scp_processes: int = 1
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
    # OHIF's prebuilt app (its dist/ folder), served at /viewer/ when it is there.
    viewer_dir: Path = Path("vendor/ohif/dist")
    # Job control limits, set by the PACS_NODE_* names of JobPolicy's fields.
    policy: JobPolicy = field(default_factory=JobPolicy)

    def __post_init__(self) -> None:
        """Check every value.

        Raises:
            SettingError: naming the first setting whose value is malformed or out of range.
        """
        check_limits(self, _POSITIVE, _AT_LEAST)
        self._check_dicomweb()
        self._check_network()
        self._check_site_identity()
        if self.log_level.upper() not in _LOG_LEVELS:
            raise SettingError(
                "log_level", f"must be one of {', '.join(_LOG_LEVELS)}, not {self.log_level!r}"
            )
        if self.log_format not in _LOG_FORMATS:
            raise SettingError("log_format", f"must be text or json, not {self.log_format!r}")
        if _DEVICE_RE.fullmatch(self.device) is None:
            raise SettingError("device", f"{self.device!r} is not auto, cpu, cuda or cuda:N")
        if self.viewer_dir.exists() and not (self.viewer_dir / "index.html").is_file():
            raise SettingError(
                "viewer_dir", f"{self.viewer_dir} has no index.html: give OHIF's dist folder"
            )

    def _check_network(self) -> None:
        for setting in _NOT_EMPTY:
            if not getattr(self, setting).strip():
                raise SettingError(setting, "must not be empty")
        for setting in ("port", "api_port"):
            with _about(setting):
                _port(getattr(self, setting))
        with _about("ae_title"):
            validate_ae_title(self.ae_title)
        with _about("allowed_aes"):
            for ae in self.allowed_aes:
                if ae != "*":
                    validate_ae_title(ae)
        if (self.tls_cert is None) != (self.tls_key is None):
            setting = "tls_key" if self.tls_cert is None else "tls_cert"
            raise SettingError(setting, "tls_cert and tls_key must be set together")
        if self.tls_ca is not None and self.tls_cert is None:
            raise SettingError("tls_ca", "needs tls_cert and tls_key")
        if any(d.kind is DestinationKind.HL7 for d in self.destinations):
            raise SettingError("destinations", "the HL7 endpoint is set by hl7_endpoint")
        if self.hl7_endpoint is not None and self.hl7_endpoint.kind is not DestinationKind.HL7:
            raise SettingError("hl7_endpoint", "must be an HL7 (MLLP) endpoint")
        with _about("destinations"):
            self.registry  # noqa: B018 - built to be validated
        with _about("sources"):
            Sources(self.sources)
        if self.priors_source and self.prior_source is None:
            raise SettingError("priors_source", f"no source is named {self.priors_source!r}")
        if self.priors and self.prior_source is None:
            raise SettingError(
                "priors", "needs exactly one source in sources, or priors_source naming one"
            )

    def _check_site_identity(self) -> None:
        for setting, part in _HL7_FIELDS.items():
            with _about(setting):
                Hl7Addressing(**{part: getattr(self, setting)})
        if self.uid_root:
            with _about("uid_root"):
                validate_uid_root(self.uid_root)
        if len(self.institution_name) > MAX_LO_CHARS or not _is_dicom_text(self.institution_name):
            raise SettingError(
                "institution_name",
                f"must be at most {MAX_LO_CHARS} printable characters without a backslash",
            )

    @property
    def hl7_addressing(self) -> Hl7Addressing:
        """The MSH fields of the node's HL7 messages."""
        return Hl7Addressing(
            **{part: getattr(self, setting) for setting, part in _HL7_FIELDS.items()}
        )

    @property
    def registry(self) -> Destinations:
        """Every destination by name: the DICOM ones and the HL7 endpoint."""
        hl7 = () if self.hl7_endpoint is None else (self.hl7_endpoint,)
        return Destinations((*map(self._with_access, self.destinations), *hl7))

    def _check_dicomweb(self) -> None:
        """Credentials only for DICOMweb destinations, each given once; a loadable CA bundle."""
        web = {d.name for d in self.destinations if d.kind is DestinationKind.DICOMWEB}
        given = {
            "dicomweb_credentials": self.dicomweb_credentials,
            "dicomweb_credentials_file": self._file_credentials,
        }
        for setting, credentials in given.items():
            with _about(setting):
                if not all(isinstance(c, Secret) for c in credentials.values()):
                    raise TypeError("credentials must be Secret values")
                unknown = sorted(set(credentials) - web)
                if unknown:
                    raise ValueError(f"no DICOMweb destination is named {', '.join(unknown)}")
        twice = sorted(set(self.dicomweb_credentials) & set(self._file_credentials))
        if twice:
            raise SettingError(
                "dicomweb_credentials",
                f"{', '.join(twice)} also in dicomweb_credentials_file: give credentials once",
            )
        if self.dicomweb_ca_file is not None:
            with _about("dicomweb_ca_file"):
                _check_ca_file(self.dicomweb_ca_file)

    @cached_property
    def _file_credentials(self) -> Mapping[str, Secret]:
        """The credentials in ``dicomweb_credentials_file``, read once."""
        if self.dicomweb_credentials_file is None:
            return {}
        with _about("dicomweb_credentials_file"):
            return _read_credentials_file(self.dicomweb_credentials_file)

    def _with_access(self, destination: Destination) -> Destination:
        """``destination`` with its credentials and CA bundle when it is a DICOMweb server."""
        if destination.kind is not DestinationKind.DICOMWEB:
            return destination
        credentials = {**self._file_credentials, **self.dicomweb_credentials}
        return dataclasses.replace(
            destination,
            authorization=credentials.get(destination.name),
            ca_file=self.dicomweb_ca_file,
        )

    @property
    def source_registry(self) -> Sources:
        """Every source by name."""
        return Sources(self.sources)

    @property
    def prior_source(self) -> Source | None:
        """The source priors are looked for on (None when it is not configured)."""
        if self.priors_source:
            return self.source_registry.named(self.priors_source)
        return self.sources[0] if len(self.sources) == 1 else None

    @property
    def accepts_any_ae(self) -> bool:
        """True when any calling AE title is accepted."""
        return "*" in self.allowed_aes

    @property
    def embedded(self) -> bool:
        """True when the worker runs in-process (no broker)."""
        return self.broker_url == "embedded"

    def doubts(self) -> list[str]:
        """Valid settings that a production site most likely did not mean (for start-up
        warnings)."""
        doubts = []
        if self.database_url.startswith("postgresql") and not self.uid_root:
            doubts.append(
                "PACS_NODE_UID_ROOT is not set: result UIDs use pydicom's shared root; "
                "set the site's own organisation root for production"
            )
        if not self.destinations and self.hl7_endpoint is None:
            doubts.append(
                "no PACS_NODE_DESTINATIONS and no PACS_NODE_HL7_ENDPOINT: results are made and "
                "kept in the spool but sent nowhere"
            )
        doubts.extend(
            f"DICOMweb destination {d} gets its credentials over plain http: use https"
            for d in self.registry
            if d.authorization is not None and d.url.startswith("http://")
        )
        return doubts

    def replace(self, **changes: Any) -> Settings:
        """Return a copy with ``changes`` applied (validated again).

        Raises:
            SettingError: naming the first changed or unchanged setting that is invalid.
        """
        return dataclasses.replace(self, **changes)


# Every setting by name: the fields of Settings, with the policy's fields in place of ``policy``.
_FIELDS = {f.name: f for f in dataclasses.fields(Settings) if f.name != "policy"} | {
    f.name: f for f in dataclasses.fields(JobPolicy)
}


def _convert(name: str, raw: Any) -> Any:
    """Turn a TOML, environment or keyword value into the field's type.

    Raises:
        SettingError: naming ``name`` if the value is not of that type.
    """
    kind = str(_FIELDS[name].type)
    if isinstance(raw, str):
        raw = raw.strip()
    if raw == "" and "None" in kind:
        return None
    with _about(name):
        match name:
            case "allowed_aes":
                items = raw.split(",") if isinstance(raw, str) else list(raw)
                return tuple(a.strip() for a in items if a.strip())
            case "destinations":
                items = raw.split(",") if isinstance(raw, str) else list(raw)
                return tuple(Destination.parse(d) for d in items if d.strip())
            case "dicomweb_credentials":
                return _web_credentials(raw)
            case "hl7_endpoint":
                return Destination.parse_hl7(raw)
            case "sources":
                items = raw.split(",") if isinstance(raw, str) else list(raw)
                return tuple(Source.parse(item) for item in items if item.strip())
        if kind.startswith("bool"):
            return _boolean(raw)
        if kind.startswith("Path"):
            return Path(raw)
        if kind.startswith("int"):
            return _integer(raw)
        if kind.startswith("float"):
            return _number(raw)
        return str(raw)


_BOOLEANS = {"true": True, "yes": True, "on": True, "1": True}
_BOOLEANS |= {"false": False, "no": False, "off": False, "0": False}


def _boolean(raw: Any) -> bool:
    """A TOML boolean or one of true/false, yes/no, on/off, 1/0 (any case).

    Raises:
        ValueError: for any other value.
    """
    if isinstance(raw, bool):
        return raw
    value = _BOOLEANS.get(str(raw).lower())
    if value is None:
        raise ValueError(f"must be true or false, not {raw!r}")
    return value


_CREDENTIALS_FORM = "NAME=bearer:TOKEN or NAME=basic:USER:PASSWORD"
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")


def _bearer(token: object) -> Secret:
    """The ``Authorization`` header of a bearer token.

    Raises:
        ValueError: if the token is not one (the message never quotes it).
    """
    if not isinstance(token, str) or _TOKEN_RE.fullmatch(token) is None:
        raise ValueError("the token must be letters, digits and - . _ ~ + / (then any =)")
    return Secret(f"Bearer {token}")


def _basic(username: object, password: object) -> Secret:
    """The ``Authorization`` header of HTTP basic authentication.

    Raises:
        ValueError: if the user name or password is empty, not text or holds control characters
            (the message never quotes them).
    """
    for what, value in (("user name", username), ("password", password)):
        if not isinstance(value, str) or not value or not value.isprintable():
            raise ValueError(f"the {what} must be printable text, not empty")
    if ":" in str(username):
        raise ValueError("the user name must not contain ':'")
    pair = f"{username}:{password}".encode()
    return Secret(f"Basic {base64.b64encode(pair).decode('ascii')}")


def _web_credentials(raw: Any) -> dict[str, Secret]:
    """``NAME=bearer:TOKEN`` and ``NAME=basic:USER:PASSWORD`` entries (comma-separated text or a
    list) as ``Authorization`` headers by destination name.

    Raises:
        ValueError: naming a malformed entry by its position, never quoting it.
    """
    items = raw.split(",") if isinstance(raw, str) else list(raw)
    entries = [str(item).strip() for item in items if str(item).strip()]
    credentials: dict[str, Secret] = {}
    for number, entry in enumerate(entries, 1):
        try:
            name, authorization = _credential_entry(entry)
            if name in credentials:
                raise ValueError(f"{name} is named twice")
        except ValueError as exc:
            raise ValueError(f"entry {number}: {exc}") from None
        credentials[name] = authorization
    return credentials


def _credential_entry(entry: str) -> tuple[str, Secret]:
    """One ``NAME=bearer:TOKEN`` or ``NAME=basic:USER:PASSWORD``.

    Raises:
        ValueError: if it is malformed (the message never quotes it).
    """
    name, equals, credential = entry.partition("=")
    scheme, _, secret = credential.partition(":")
    if not (equals and name.strip()) or scheme not in ("bearer", "basic"):
        raise ValueError(f"it is not {_CREDENTIALS_FORM}")
    if scheme == "bearer":
        return name.strip(), _bearer(secret)
    username, _, password = secret.partition(":")
    return name.strip(), _basic(username, password)


_FILE_KEYS = {frozenset({"token"}), frozenset({"username", "password"})}


def _read_credentials_file(path: Path) -> dict[str, Secret]:
    """A TOML file of ``[NAME]`` tables holding ``token``, or ``username`` and ``password``.

    Raises:
        ValueError: if it cannot be read or a table is malformed (never quoting a secret).
    """
    try:
        tables = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{path} is not TOML: {exc}") from None
    credentials = {}
    for name, table in tables.items():
        if not isinstance(table, dict) or frozenset(table) not in _FILE_KEYS:
            raise ValueError(f"[{name}] in {path} must hold token, or username and password")
        try:
            if "token" in table:
                credentials[name] = _bearer(table["token"])
            else:
                credentials[name] = _basic(table["username"], table["password"])
        except ValueError as exc:
            raise ValueError(f"[{name}] in {path}: {exc}") from None
    return credentials


def _check_ca_file(path: Path) -> None:
    """Raises ValueError if ``path`` is not a readable bundle of CA certificates."""
    try:
        ssl.create_default_context(cafile=path)
    except OSError as exc:  # ssl.SSLError included
        raise ValueError(f"cannot load CA certificates from {path}: {exc.strerror}") from None


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build settings from defaults, an optional TOML file, the environment and overrides.

    A malformed or out-of-range value is reported under the name it was given by: the
    ``PACS_NODE_*`` variable, the TOML key and its file, or the keyword of ``overrides``.

    Raises:
        ConfigError: if a setting is unknown, or a value is malformed or inconsistent.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}  # field -> the name its value was given by
    if config_file is not None:
        try:
            table = tomllib.loads(Path(config_file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read config file {config_file}: {exc}") from exc
        for key, raw in table.items():
            name = key.lower()
            if name not in _FIELDS:
                raise ConfigError(f"unknown setting {key!r} in {config_file}")
            values[name], sources[name] = raw, f"{key} in {config_file}"
    for key, raw in environ.items():
        name = key.removeprefix(ENV_PREFIX).lower()
        if key.startswith(ENV_PREFIX) and name in _FIELDS:
            values[name], sources[name] = raw, key
    for name, raw in overrides.items():
        if name not in _FIELDS:
            raise ConfigError(f"unknown setting {name!r}")
        values[name], sources[name] = raw, name
    try:
        converted = {name: _convert(name, raw) for name, raw in values.items()}
        policy = JobPolicy(**{n: converted.pop(n) for n in POLICY_NAMES if n in converted})
        return Settings(**converted, policy=policy)
    except SettingError as exc:
        raise ConfigError(f"{sources.get(exc.setting, exc.setting)}: {exc.problem}") from exc


SETTING_NAMES: tuple[str, ...] = tuple(_FIELDS)
__all__ = [
    "SETTING_NAMES",
    "SettingError",
    "Settings",
    "load_settings",
]
