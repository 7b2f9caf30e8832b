from __future__ import annotations

import base64
import dataclasses
from dataclasses import replace
from pathlib import Path

import pytest

from pacs_node.config import SETTING_NAMES, Settings, load_settings
from pacs_node.destinations import Destination, Secret
from pacs_node.domain import Channel, ResultKind
from pacs_node.errors import ConfigError
from pacs_node.policy import JobPolicy

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
        Destination.dicom("PACS", "10.0.0.5", 104),
        Destination.dicom("ARCHIVE", "archive.local", 11112),
    )
    assert s.hl7_endpoint == Destination.hl7("ris.local", 2575)
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
    (variable,) = environ
    with pytest.raises(ConfigError, match=rf"^{variable}: "):
        load_settings(environ=environ)


NUMERIC_SETTINGS = [
    f.name
    for f in (*dataclasses.fields(Settings), *dataclasses.fields(JobPolicy))
    if f.type in ("int", "float")
]


def test_a_malformed_environment_value_names_its_variable() -> None:
    with pytest.raises(ConfigError, match=r"^PACS_NODE_PORT: 'abc' is not an integer$"):
        load_settings(environ={"PACS_NODE_PORT": "abc"})


def test_a_malformed_toml_value_names_its_key_and_file(tmp_path: Path) -> None:
    toml = tmp_path / "node.toml"
    toml.write_text('port = "abc"\n')
    with pytest.raises(ConfigError) as raised:
        load_settings(toml, environ={})
    assert str(raised.value) == f"port in {toml}: 'abc' is not an integer"


def test_a_range_check_names_the_variable_it_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^PACS_NODE_QUIET_SECONDS: must be positive, not -1$"):
        load_settings(environ={"PACS_NODE_QUIET_SECONDS": "-1"})
    toml = tmp_path / "node.toml"
    toml.write_text("tls_ca = '/ca.pem'\n")
    with pytest.raises(ConfigError, match=r"^tls_ca in .*node\.toml: needs tls_cert and tls_key$"):
        load_settings(toml, environ={})
    with pytest.raises(ConfigError, match=r"^max_attempts: must be at least 1, not 0$"):
        load_settings(environ={}, max_attempts=0)


def test_settings_built_directly_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^quiet_seconds: must be positive, not -1$"):
        Settings(quiet_seconds=-1)
    with pytest.raises(ConfigError, match=r"^hl7_processing_id: "):
        Settings().replace(hl7_processing_id="Q")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1"])
def test_device_syntax_is_accepted(device: str) -> None:
    assert load_settings(environ={"PACS_NODE_DEVICE": device}).device == device


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:-1", "CUDA", "mps"])
def test_an_unknown_device_names_its_variable(device: str) -> None:
    with pytest.raises(
        ConfigError, match=r"^PACS_NODE_DEVICE: .* is not auto, cpu, cuda or cuda:N$"
    ):
        load_settings(environ={"PACS_NODE_DEVICE": device})


@pytest.mark.parametrize("level", ["debug", "Warning", "CRITICAL"])
def test_log_levels_are_accepted_in_any_case(level: str) -> None:
    assert load_settings(environ={"PACS_NODE_LOG_LEVEL": level}).log_level == level


@pytest.mark.parametrize(
    ("name", "raw"), [("LOG_LEVEL", "VERBOSE"), ("HOST", " "), ("API_HOST", "")]
)
def test_bad_text_settings_name_their_variable(name: str, raw: str) -> None:
    with pytest.raises(ConfigError, match=rf"^PACS_NODE_{name}: "):
        load_settings(environ={f"PACS_NODE_{name}": raw})


@pytest.mark.parametrize("raw", ["ten", "nan", "-1"])
@pytest.mark.parametrize("name", NUMERIC_SETTINGS)
def test_every_numeric_setting_refuses_a_bad_value_by_name(name: str, raw: str) -> None:
    variable = f"PACS_NODE_{name.upper()}"
    with pytest.raises(ConfigError, match=rf"^{variable}: .*{raw}"):
        load_settings(environ={variable: raw})


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


def test_doubtful_production_settings_are_named() -> None:
    production = Settings(
        database_url="postgresql+psycopg2://node@db/pacs",
        destinations=(Destination.dicom("PACS", "pacs", 104),),
    )
    (doubt,) = production.doubts()
    assert "PACS_NODE_UID_ROOT" in doubt
    assert production.replace(uid_root="1.2.3.").doubts() == []
    (nowhere,) = Settings().doubts()
    assert "PACS_NODE_DESTINATIONS" in nowhere and "PACS_NODE_HL7_ENDPOINT" in nowhere
    assert Settings(hl7_endpoint=Destination.hl7("ris", 2575)).doubts() == []


# DICOMweb destinations: URLs in PACS_NODE_DESTINATIONS, credentials kept apart and never shown.

PASSWORD = "hunter2-pw"
TOKEN = "tok.EN-42"
WEB_DESTINATIONS = (
    "archive=https://pacs.example.org/dicom-web/,http://10.0.0.9:8042/dw,PACS@pacs:104"
)


def test_dicomweb_destinations_are_urls_named_after_their_host() -> None:
    s = load_settings(environ={"PACS_NODE_DESTINATIONS": WEB_DESTINATIONS})
    assert [(d.name, d.kind, d.host, d.port, d.url, d.ae_title) for d in s.registry] == [
        ("archive", "dicomweb", "pacs.example.org", 443, "https://pacs.example.org/dicom-web", ""),
        ("10.0.0.9", "dicomweb", "10.0.0.9", 8042, "http://10.0.0.9:8042/dw", ""),
        ("PACS", "dicom", "pacs", 104, "", "PACS"),
    ]
    assert str(s.registry.named("archive")) == "archive (https://pacs.example.org/dicom-web)"
    assert {d.name for d in s.registry.taking(ResultKind.SEG)} == {"archive", "10.0.0.9", "PACS"}
    assert [d.name for d in s.registry.on(Channel.DICOM)] == ["archive", "10.0.0.9", "PACS"]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"https://node:{PASSWORD}@pacs/dw", "credentials do not go in the URL: set them in "),
        (f"https://node:{PASSWORD}/x@pacs/dw", "credentials do not go in the URL"),
        (f"https://pacs/dw?token={PASSWORD}", "must not have a query or fragment"),
        (f"https://pacs/dw#{PASSWORD}", "must not have a query or fragment"),
        ("ftp://pacs/dw", "must start with http:// or https://"),
        ("https:///dw", "has no host"),
        (f"https://pacs:{PASSWORD}/dw", "port is not a number"),
        ("https://pacs:0/dw", "port 0 is out of range"),
    ],
)
def test_a_bad_dicomweb_url_is_refused_without_quoting_it(url: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"^PACS_NODE_DESTINATIONS: .*{problem}") as raised:
        load_settings(environ={"PACS_NODE_DESTINATIONS": f"archive={url}"})
    assert PASSWORD not in str(raised.value)


def write_credentials_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "dicomweb-credentials.toml"
    path.write_text(text)
    return path


def test_dicomweb_credentials_come_from_the_variable_and_the_file(tmp_path: Path) -> None:
    file = write_credentials_file(tmp_path, f'["10.0.0.9"]\ntoken = "{TOKEN}"\n')
    s = load_settings(
        environ={
            "PACS_NODE_DESTINATIONS": WEB_DESTINATIONS,
            "PACS_NODE_DICOMWEB_CREDENTIALS": f"archive=basic:node:{PASSWORD}",
            "PACS_NODE_DICOMWEB_CREDENTIALS_FILE": str(file),
            "PACS_NODE_DICOMWEB_CA_FILE": "/etc/ssl/certs/ca-certificates.crt",
        }
    )
    headers = {d.name: d.authorization.reveal() for d in s.registry if d.authorization}
    assert headers == {
        "archive": "Basic " + base64.b64encode(f"node:{PASSWORD}".encode()).decode(),
        "10.0.0.9": f"Bearer {TOKEN}",
    }
    ca = Path("/etc/ssl/certs/ca-certificates.crt")
    assert [d.ca_file for d in s.registry] == [ca, ca, None]
    for shown in (repr(s), str(s), repr(s.registry), *map(str, s.registry)):
        assert PASSWORD not in shown and TOKEN not in shown and "Basic " not in shown
    (doubt,) = s.doubts()
    assert doubt.startswith("DICOMweb destination 10.0.0.9 (http://10.0.0.9:8042/dw) gets its")


def test_credentials_in_a_toml_config_file_use_the_same_syntax(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'destinations = ["archive=https://pacs/dw"]\n'
        f'dicomweb_credentials = ["archive=bearer:{TOKEN}"]\n'
    )
    (archive,) = load_settings(config, environ={}).registry
    assert archive.authorization is not None
    assert archive.authorization.reveal() == f"Bearer {TOKEN}"


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        (f"archive=bearer:{TOKEN}x y", "entry 1: the token must be"),
        (f"archive:basic:{PASSWORD}", "entry 1: it is not NAME=bearer:TOKEN or NAME=basic"),
        (f"archive=digest:{PASSWORD}", "entry 1: it is not NAME=bearer"),
        (f"archive=basic:{PASSWORD}", "entry 1: the password must be printable text"),
        (f"archive=basic:node:{PASSWORD}\x07", "entry 1: the password must be printable text"),
        (f"archive=bearer:{TOKEN},archive=bearer:{TOKEN}", "entry 2: archive is named twice"),
        (f"PACS=bearer:{TOKEN}", "no DICOMweb destination is named PACS"),
        (f"nowhere=bearer:{TOKEN}", "no DICOMweb destination is named nowhere"),
    ],
)
def test_bad_dicomweb_credentials_name_the_variable_not_the_secret(
    credentials: str, problem: str
) -> None:
    environ = {
        "PACS_NODE_DESTINATIONS": WEB_DESTINATIONS,
        "PACS_NODE_DICOMWEB_CREDENTIALS": credentials,
    }
    with pytest.raises(ConfigError, match=f"^PACS_NODE_DICOMWEB_CREDENTIALS: {problem}") as raised:
        load_settings(environ=environ)
    assert PASSWORD not in str(raised.value) and TOKEN not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "cannot read .*: No such file or directory"),
        (f'[archive]\ntoken = "{PASSWORD}\n', "is not TOML"),
        (f'[archive]\ntoken = "{TOKEN}"\npassword = "{PASSWORD}"\n', r"\[archive\] in .* must"),
        (f'archive = "{TOKEN}"\n', r"\[archive\] in .* must hold token, or username and password"),
        (f'[archive]\nusername = "a:b"\npassword = "{PASSWORD}"\n', "must not contain ':'"),
        ("[archive]\ntoken = 42\n", "the token must be"),
        (f'[nowhere]\ntoken = "{TOKEN}"\n', "no DICOMweb destination is named nowhere"),
    ],
)
def test_a_bad_credentials_file_names_its_variable_not_the_secret(
    tmp_path: Path, text: str | None, problem: str
) -> None:
    path = tmp_path / "missing.toml" if text is None else write_credentials_file(tmp_path, text)
    environ = {
        "PACS_NODE_DESTINATIONS": WEB_DESTINATIONS,
        "PACS_NODE_DICOMWEB_CREDENTIALS_FILE": str(path),
    }
    with pytest.raises(
        ConfigError, match=rf"^PACS_NODE_DICOMWEB_CREDENTIALS_FILE: .*{problem}"
    ) as e:
        load_settings(environ=environ)
    assert PASSWORD not in str(e.value) and TOKEN not in str(e.value)


def test_credentials_for_one_destination_are_given_once(tmp_path: Path) -> None:
    file = write_credentials_file(tmp_path, f'[archive]\ntoken = "{TOKEN}"\n')
    environ = {
        "PACS_NODE_DESTINATIONS": WEB_DESTINATIONS,
        "PACS_NODE_DICOMWEB_CREDENTIALS": f"archive=bearer:{TOKEN}",
        "PACS_NODE_DICOMWEB_CREDENTIALS_FILE": str(file),
    }
    with pytest.raises(ConfigError, match=r"^PACS_NODE_DICOMWEB_CREDENTIALS: archive also in"):
        load_settings(environ=environ)


def test_an_unloadable_ca_bundle_names_its_variable(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match=r"^PACS_NODE_DICOMWEB_CA_FILE: cannot load CA cert"):
        load_settings(environ={"PACS_NODE_DICOMWEB_CA_FILE": str(bundle)})


def test_credentials_given_directly_must_be_secrets() -> None:
    archive = Destination.dicomweb("https://pacs/dw", name="archive")
    with pytest.raises(ConfigError, match=r"^dicomweb_credentials: credentials must be Secret"):
        Settings(destinations=(archive,), dicomweb_credentials={"archive": "Bearer x"})  # type: ignore[dict-item]
    settings = Settings(destinations=(archive,), dicomweb_credentials={"archive": Secret("B x")})
    assert settings.registry.named("archive") == replace(archive, authorization=Secret("B x"))
    assert repr(Secret("B x")) == "Secret('***')" and f"{Secret('B x')}" == "***"
