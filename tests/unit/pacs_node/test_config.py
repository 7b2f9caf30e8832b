from __future__ import annotations

from pathlib import Path

import pytest

from pacs_node.config import SETTING_NAMES, Destination, HostPort, Settings, load_settings
from pacs_node.errors import ConfigError

README = Path(__file__).resolve().parents[3] / "README.md"


def test_defaults_serve_the_embedded_mode() -> None:
    s = load_settings(environ={})
    assert s.ae_title == "LUMBAR_NODE"
    assert (s.host, s.port) == ("127.0.0.1", 11112)
    assert s.accepts_any_ae and s.embedded
    assert s.database_url == "sqlite:///./var/pacs-node.db"
    assert s.spool_dir == Path("var/spool")
    assert s.quiet_seconds == 30
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8080)
    assert s.destinations == () and s.hl7_endpoint is None and s.device == "auto"


def test_environment_wins_over_toml(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('ae_title = "FROM_TOML"\nport = 104\nquiet_seconds = 5\n')
    s = load_settings(
        toml, environ={"PACS_NODE_AE_TITLE": "FROM_ENV", "PACS_NODE_QUIET_SECONDS": "7.5"}
    )
    assert s.ae_title == "FROM_ENV"
    assert s.port == 104
    assert s.quiet_seconds == 7.5


def test_lists_and_addresses_are_parsed() -> None:
    s = load_settings(
        environ={
            "PACS_NODE_ALLOWED_AES": "PACS1, PACS2",
            "PACS_NODE_DESTINATIONS": "PACS@10.0.0.5:104,ARCHIVE@archive.local:11112",
            "PACS_NODE_HL7_ENDPOINT": "ris.local:2575",
            "PACS_NODE_BROKER_URL": "redis://127.0.0.1:6379/0",
        }
    )
    assert s.allowed_aes == ("PACS1", "PACS2") and not s.accepts_any_ae
    assert s.destinations == (
        Destination("PACS", "10.0.0.5", 104),
        Destination("ARCHIVE", "archive.local", 11112),
    )
    assert s.hl7_endpoint == HostPort("ris.local", 2575)
    assert not s.embedded and not s.hl7_not_analysed


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("ON", True), ("0", False)])
def test_switches_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    settings = load_settings(environ={"PACS_NODE_HL7_NOT_ANALYSED": raw})
    assert settings.hl7_not_analysed is expected


def test_switches_accept_toml_booleans(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text("hl7_not_analysed = true\n")
    assert load_settings(config, environ={}).hl7_not_analysed is True


@pytest.mark.parametrize(
    "environ",
    [
        {"PACS_NODE_AE_TITLE": "WAY_TOO_LONG_AE_TITLE"},
        {"PACS_NODE_PORT": "seventy"},
        {"PACS_NODE_PORT": "70000"},
        {"PACS_NODE_DESTINATIONS": "PACS-without-address"},
        {"PACS_NODE_HL7_ENDPOINT": "nohostport"},
        {"PACS_NODE_QUIET_SECONDS": "0"},
        {"PACS_NODE_TLS_CERT": "/c.pem"},
        {"PACS_NODE_LOG_FORMAT": "xml"},
        {"PACS_NODE_ALLOWED_AES": "GOOD,BAD\\AE"},
        {"PACS_NODE_HL7_NOT_ANALYSED": "maybe"},
        {"PACS_NODE_HL7_RECEIVING_APPLICATION": "RIS^EPIC"},
        {"PACS_NODE_HL7_SENDING_FACILITY": "A_FACILITY_NAME_TOO_LONG"},
        {"PACS_NODE_HL7_PROCESSING_ID": "Q"},
        {"PACS_NODE_UID_ROOT": "1.2.3"},
        {"PACS_NODE_INSTITUTION_NAME": "Back\\slash"},
    ],
)
def test_bad_values_give_a_clear_error(environ: dict[str, str]) -> None:
    with pytest.raises(ConfigError):
        load_settings(environ=environ)


def test_unknown_toml_key_is_an_error(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('ae_titel = "TYPO"\n')
    with pytest.raises(ConfigError, match="ae_titel"):
        load_settings(toml, environ={})


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.port = 1  # type: ignore[misc]


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    missing = [n for n in SETTING_NAMES if f"PACS_NODE_{n.upper()}" not in text]
    assert not missing, f"undocumented settings: {missing}"
