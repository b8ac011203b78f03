"""Settings and ConnectionConfig: every variable, the one-line URL, aliases, secrets files, checks, secrecy."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from mailsc.config import ConnectionConfig, Settings, is_loopback
from mailsc.errors import ConfigError, MailscError
from mailsc.message import DEFAULT_MAX_RECIPIENTS, DEFAULT_MAX_SIZE, Address

SECRET = "s3cr3t-P4ss"
_OUR_PREFIXES = ("MAILSC_", "SMTP_", "MAIL_")
_OUR_NAMES = ("USE_CREDENTIALS", "VALIDATE_CERTS", "TIMEOUT", "SUPPRESS_SEND", "LOCAL_HOSTNAME")

Load = Callable[..., Settings]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No MAILSC_/SMTP_/MAIL_ variable from the outside, and no stray .env: the cwd is an empty directory."""
    for name in list(os.environ):
        upper = name.upper()
        if upper.startswith(_OUR_PREFIXES) or upper.removesuffix("_FILE") in _OUR_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def load(monkeypatch: pytest.MonkeyPatch) -> Load:
    """Set the given environment variables and build ``Settings()`` from them."""

    def _load(**env: str) -> Settings:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return Settings()

    return _load


def config_error(load: Load, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(**env)
    return info.value


def variables(error: ConfigError) -> list[str]:
    return [p.variable for p in error.problems]


def messages_for(error: ConfigError, variable: str) -> str:
    return " | ".join(p.message for p in error.problems if p.variable == variable)


def connection_error(**fields: Any) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        ConnectionConfig(**fields)
    return info.value


def smtp_of(settings: Settings) -> ConnectionConfig:
    assert settings.smtp is not None
    return settings.smtp


def password_of(config: ConnectionConfig) -> str | None:
    return config.password.get_secret_value() if config.password is not None else None


# --- defaults and every MAILSC_* variable ---------------------------------------------------------------------


def test_defaults_with_an_empty_environment(load: Load) -> None:
    settings = load()
    assert settings.smtp is None  # no SMTP configured: mail is captured
    assert settings.sender is None
    assert settings.smtp_url is None
    assert settings.database_url.get_secret_value() == "sqlite:///./mailsc.db"
    assert settings.api_key is None
    assert settings.retry_max_age == timedelta(hours=24)
    assert settings.log_format == "json"
    assert settings.log_level == "info"
    assert settings.log_file is None
    assert settings.templates_dir == Path("templates/email")
    assert settings.max_message_size == DEFAULT_MAX_SIZE
    assert settings.max_recipients == DEFAULT_MAX_RECIPIENTS
    assert settings.smtp_timeout == 30.0
    assert settings.smtp_pool_size == 4
    assert settings.smtp_verify_certs is True
    assert settings.smtp_allow_insecure is False


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    [
        ("MAILSC_RETRY_MAX_AGE", "PT2H", "retry_max_age", timedelta(hours=2)),
        ("MAILSC_RETRY_MAX_AGE", "01:30:00", "retry_max_age", timedelta(minutes=90)),
        ("MAILSC_LOG_FORMAT", "console", "log_format", "console"),
        ("MAILSC_LOG_LEVEL", "debug", "log_level", "debug"),
        ("MAILSC_LOG_LEVEL", "warning", "log_level", "warning"),
        ("MAILSC_LOG_FILE", "/var/log/mailsc.log", "log_file", Path("/var/log/mailsc.log")),
        ("MAILSC_TEMPLATES_DIR", "emails", "templates_dir", Path("emails")),
        ("MAILSC_MAX_MESSAGE_SIZE", "2048", "max_message_size", 2048),
        ("MAILSC_MAX_RECIPIENTS", "7", "max_recipients", 7),
        ("mailsc_log_level", "error", "log_level", "error"),  # names are case-insensitive
    ],
)
def test_plain_variables(load: Load, variable: str, value: str, attribute: str, expected: object) -> None:
    assert getattr(load(**{variable: value}), attribute) == expected


@pytest.mark.parametrize(
    ("variable", "field"),
    [
        ("MAILSC_DATABASE_URL", "database_url"),
        ("MAILSC_API_KEY", "api_key"),
        ("MAILSC_SMTP_URL", "smtp_url"),
    ],
)
def test_secret_variables_are_secretstr(load: Load, variable: str, field: str) -> None:
    value = f"smtp://u:{SECRET}@h.example.com" if field == "smtp_url" else f"postgresql://u:{SECRET}@db/x"
    secret = getattr(load(**{variable: value}), field)
    assert secret.get_secret_value() == value
    assert SECRET not in str(secret)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("MAILSC_LOG_LEVEL", "loud"),
        ("MAILSC_LOG_FORMAT", "xml"),
        ("MAILSC_RETRY_MAX_AGE", "soon"),
        ("MAILSC_MAX_MESSAGE_SIZE", "10"),
        ("MAILSC_MAX_RECIPIENTS", "0"),
        ("MAILSC_MAX_RECIPIENTS", "1001"),
        ("MAILSC_SMTP_TIMEOUT", "0"),
        ("MAILSC_SMTP_POOL_SIZE", "0"),
        ("MAILSC_SMTP_POOL_SIZE", "101"),
        ("MAILSC_SMTP_VERIFY_CERTS", "perhaps"),
        ("MAILSC_SMTP_SECURITY", "ssl"),
    ],
)
def test_an_invalid_value_names_its_variable_and_shows_the_value(load: Load, variable: str, value: str) -> None:
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", **{variable: value})
    assert variables(error) == [variable]
    assert repr(value) in str(error)  # not a secret: shown so a person can see what was wrong
    assert isinstance(error, MailscError)


def test_smtp_fields_variable_by_variable(load: Load, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    cert = tmp_path / "client.pem"
    key = tmp_path / "client.key"
    for path in (ca, cert, key):
        path.write_text("-----BEGIN-----\n")
    settings = load(
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_PORT="2525",
        MAILSC_SMTP_USERNAME="user",
        MAILSC_SMTP_PASSWORD=SECRET,
        MAILSC_SMTP_SECURITY="starttls",
        MAILSC_SMTP_VERIFY_CERTS="false",
        MAILSC_SMTP_CA_FILE=str(ca),
        MAILSC_SMTP_CLIENT_CERT=str(cert),
        MAILSC_SMTP_CLIENT_KEY=str(key),
        MAILSC_SMTP_TIMEOUT="12",
        MAILSC_SMTP_POOL_SIZE="8",
        MAILSC_SMTP_LOCAL_HOSTNAME="client.example.com",
        MAILSC_MAIL_FROM="noreply@example.com",
        MAILSC_MAIL_FROM_NAME="Example App",
    )
    smtp = smtp_of(settings)
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.example.com", 2525, "starttls")
    assert smtp.username == "user"
    assert password_of(smtp) == SECRET
    assert smtp.verify_certs is False
    assert (smtp.ca_file, smtp.client_cert, smtp.client_key) == (ca, cert, key)
    assert smtp.timeout == 12.0
    assert smtp.pool_size == 8
    assert smtp.local_hostname == "client.example.com"
    assert smtp.mail_from == "noreply@example.com"
    assert settings.sender == Address(email="noreply@example.com", name="Example App")
    assert smtp.sender == settings.sender


def test_allow_insecure_variable(load: Load) -> None:
    smtp = smtp_of(
        load(MAILSC_SMTP_HOST="relay.internal.example", MAILSC_SMTP_SECURITY="none", MAILSC_SMTP_ALLOW_INSECURE="true")
    )
    assert (smtp.security, smtp.port, smtp.allow_insecure) == ("none", 25, True)


def test_sender_without_smtp(load: Load) -> None:
    settings = load(MAILSC_MAIL_FROM="App <noreply@example.com>")
    assert settings.smtp is None
    assert settings.sender == Address(email="noreply@example.com", name="App")
    renamed = load(MAILSC_MAIL_FROM_NAME="Other")
    assert renamed.sender == Address(email="noreply@example.com", name="Other")


def test_variable_names_of_fields() -> None:
    assert Settings.variable("smtp_host") == "MAILSC_SMTP_HOST"
    assert Settings.variable("smtp_password") == "MAILSC_SMTP_PASSWORD"
    assert Settings.variable("api_key") == "MAILSC_API_KEY"
    assert Settings.variable("mail_from") == "MAILSC_MAIL_FROM"


def test_smtp_variables_without_a_server_are_an_error(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_PORT="2525", MAILSC_SMTP_USERNAME="u")
    assert sorted(variables(error)) == ["MAILSC_SMTP_PORT", "MAILSC_SMTP_USERNAME"]
    assert all("MAILSC_SMTP_HOST" in p.hint for p in error.problems)


# --- MAILSC_SMTP_URL ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "host", "port", "security"),
    [
        ("smtp://smtp.example.com", "smtp.example.com", 587, "starttls"),
        ("smtps://smtp.example.com", "smtp.example.com", 465, "tls"),
        ("smtp://smtp.example.com:2525", "smtp.example.com", 2525, "starttls"),
        ("smtps://smtp.example.com:2465", "smtp.example.com", 2465, "tls"),
        ("SMTPS://SMTP.Example.COM", "smtp.example.com", 465, "tls"),
        ("smtps://[::1]", "::1", 465, "tls"),
    ],
)
def test_smtp_url_scheme_gives_security_and_default_port(
    load: Load, url: str, host: str, port: int, security: str
) -> None:
    smtp = smtp_of(load(MAILSC_SMTP_URL=url))
    assert (smtp.host, smtp.port, smtp.security) == (host, port, security)
    assert smtp.username is None
    assert smtp.password is None


def test_smtp_url_credentials_are_percent_decoded(load: Load) -> None:
    smtp = smtp_of(load(MAILSC_SMTP_URL="smtp://us%40er.example:p%40ss%2Fw%3Ard%25@smtp.example.com:587"))
    assert smtp.username == "us@er.example"
    assert password_of(smtp) == "p@ss/w:rd%"


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"MAILSC_SMTP_PASSWORD": "override"}, ("password", "override")),
        ({"MAILSC_SMTP_USERNAME": "other"}, ("username", "other")),
        ({"MAILSC_SMTP_PORT": "2525"}, ("port", 2525)),
        ({"MAILSC_SMTP_SECURITY": "tls"}, ("port", 465)),
        ({"MAILSC_SMTP_POOL_SIZE": "2"}, ("pool_size", 2)),
        ({"MAILSC_MAIL_FROM": "a@example.com"}, ("mail_from", "a@example.com")),
    ],
)
def test_smtp_url_plus_a_field_the_field_wins(load: Load, env: dict[str, str], check: tuple[str, object]) -> None:
    smtp = smtp_of(load(MAILSC_SMTP_URL=f"smtp://user:{SECRET}@smtp.example.com", **env))
    attribute, expected = check
    value = password_of(smtp) if attribute == "password" else getattr(smtp, attribute)
    assert value == expected
    assert smtp.host == "smtp.example.com"


def test_smtp_url_plus_password_file(load: Load, tmp_path: Path) -> None:
    secret_file = tmp_path / "password"
    secret_file.write_text("from-the-file\n")
    smtp = smtp_of(load(MAILSC_SMTP_URL="smtp://user:old@smtp.example.com", MAILSC_SMTP_PASSWORD_FILE=str(secret_file)))
    assert smtp.username == "user"
    assert password_of(smtp) == "from-the-file"


def test_smtp_url_and_host_together_are_an_error(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_URL="smtp://smtp.example.com", MAILSC_SMTP_HOST="other.example.com")
    assert variables(error) == ["MAILSC_SMTP_HOST"]


@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@smtp.example.com",
        f"smtp://user:{SECRET}@",
        f"smtp://user:{SECRET}@smtp.example.com:99999",
        f"smtp://user:{SECRET}@smtp.example.com:abc",
        f"smtp://user:{SECRET}@smtp.example.com:0",
        f"smtp://user:{SECRET}@smtp.example.com:465",
        f"smtps://user:{SECRET}@smtp.example.com:587",
        "not a url at all",
    ],
)
def test_a_bad_smtp_url_is_reported_without_its_password(load: Load, url: str) -> None:
    error = config_error(load, MAILSC_SMTP_URL=url)
    assert variables(error) == ["MAILSC_SMTP_URL"]
    assert SECRET not in str(error)
    assert SECRET not in repr(error)
    assert all(SECRET not in str(p) for p in error.problems)


def test_url_port_override_contradiction_names_the_port_variable(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_URL=f"smtp://u:{SECRET}@smtp.example.com", MAILSC_SMTP_PORT="465")
    assert variables(error) == ["MAILSC_SMTP_PORT"]
    assert SECRET not in str(error)


# --- fastapi-mail and other aliases ---------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["SMTP_HOST", "SMTP_SERVER", "MAIL_SERVER", "MAILSC_SMTP_HOST"])
def test_host_aliases(load: Load, variable: str) -> None:
    assert smtp_of(load(**{variable: "smtp.example.com"})).host == "smtp.example.com"


@pytest.mark.parametrize("variable", ["SMTP_PORT", "MAIL_PORT"])
def test_port_aliases(load: Load, variable: str) -> None:
    assert smtp_of(load(MAIL_SERVER="smtp.example.com", **{variable: "2525"})).port == 2525


@pytest.mark.parametrize("user_variable", ["SMTP_USER", "SMTP_USERNAME", "MAIL_USERNAME"])
@pytest.mark.parametrize("password_variable", ["SMTP_PASS", "SMTP_PASSWORD", "MAIL_PASSWORD"])
def test_credential_aliases(load: Load, user_variable: str, password_variable: str) -> None:
    smtp = smtp_of(load(SMTP_HOST="smtp.example.com", **{user_variable: "user", password_variable: SECRET}))
    assert smtp.username == "user"
    assert password_of(smtp) == SECRET


def test_mail_from_aliases(load: Load) -> None:
    settings = load(MAIL_SERVER="smtp.example.com", MAIL_FROM="noreply@example.com", MAIL_FROM_NAME="App")
    assert settings.mail_from == "noreply@example.com"
    assert settings.sender == Address(email="noreply@example.com", name="App")


@pytest.mark.parametrize(
    ("env", "security", "port"),
    [
        ({"MAIL_STARTTLS": "true", "MAIL_SSL_TLS": "false", "MAIL_PORT": "587"}, "starttls", 587),
        ({"MAIL_STARTTLS": "false", "MAIL_SSL_TLS": "true", "MAIL_PORT": "465"}, "tls", 465),
        ({"MAIL_SSL_TLS": "true"}, "tls", 465),
        ({"MAIL_STARTTLS": "true"}, "starttls", 587),
        ({"MAILSC_SMTP_SSL_TLS": "true"}, "tls", 465),
    ],
)
def test_fastapi_mail_tls_flags(load: Load, env: dict[str, str], security: str, port: int) -> None:
    smtp = smtp_of(load(MAIL_SERVER="smtp.example.com", **env))
    assert (smtp.security, smtp.port) == (security, port)


def test_both_tls_flags_false_means_plaintext_which_needs_loopback(load: Load) -> None:
    smtp = smtp_of(load(MAIL_SERVER="localhost", MAIL_STARTTLS="false", MAIL_SSL_TLS="false"))
    assert (smtp.security, smtp.port) == ("none", 25)


def test_use_credentials_false_drops_the_credentials(load: Load) -> None:
    smtp = smtp_of(
        load(MAIL_SERVER="smtp.example.com", MAIL_USERNAME="u", MAIL_PASSWORD=SECRET, USE_CREDENTIALS="false")
    )
    assert smtp.use_credentials is False
    assert smtp.username is None
    assert smtp.password is None


def test_validate_certs_alias(load: Load) -> None:
    assert smtp_of(load(MAIL_SERVER="smtp.example.com", VALIDATE_CERTS="false")).verify_certs is False
    assert smtp_of(load(VALIDATE_CERTS="true")).verify_certs is True


def test_alias_values_that_are_invalid_are_reported(load: Load) -> None:
    error = config_error(load, SMTP_SERVER="smtp.example.com", MAIL_PORT="abc")
    assert variables(error) == ["MAILSC_SMTP_PORT"]
    assert "'abc'" in str(error)


def test_connection_config_accepts_fastapi_mail_names() -> None:
    fields: dict[str, Any] = {
        "MAIL_SERVER": "smtp.example.com",
        "MAIL_PORT": 465,
        "MAIL_USERNAME": "user",
        "MAIL_PASSWORD": SECRET,
        "MAIL_FROM": "noreply@example.com",
        "MAIL_FROM_NAME": "App",
        "MAIL_STARTTLS": False,
        "MAIL_SSL_TLS": True,
        "USE_CREDENTIALS": True,
        "VALIDATE_CERTS": False,
        "TIMEOUT": 5,
        "SUPPRESS_SEND": True,
    }
    config = ConnectionConfig(**fields)
    assert (config.host, config.port, config.security) == ("smtp.example.com", 465, "tls")
    assert config.username == "user"
    assert password_of(config) == SECRET
    assert config.verify_certs is False
    assert config.timeout == 5.0
    assert config.suppress_send is True
    assert config.sender == Address(email="noreply@example.com", name="App")


def test_connection_config_refuses_unknown_fields() -> None:
    error = connection_error(host="smtp.example.com", hostname="typo.example.com")
    assert variables(error) == ["hostname"]


# --- .env -----------------------------------------------------------------------------------------------------


def test_dotenv_in_the_working_directory_is_read(load: Load, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(
        "MAILSC_SMTP_HOST=smtp.example.com\nMAILSC_SMTP_PORT=2525\nMAILSC_SMTP_USERNAME=u\n"
        f"MAILSC_SMTP_PASSWORD={SECRET}\nMAILSC_LOG_LEVEL=debug\n"
    )
    settings = load()
    smtp = smtp_of(settings)
    assert (smtp.host, smtp.port, smtp.username, password_of(smtp)) == ("smtp.example.com", 2525, "u", SECRET)
    assert settings.log_level == "debug"


def test_dotenv_accepts_aliases(load: Load, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAIL_SERVER=smtp.example.com\nMAIL_PORT=465\nMAIL_FROM=a@example.com\n")
    smtp = smtp_of(load())
    assert (smtp.host, smtp.port, smtp.security, smtp.mail_from) == ("smtp.example.com", 465, "tls", "a@example.com")


def test_environment_beats_dotenv(load: Load, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILSC_SMTP_HOST=smtp.example.com\nMAILSC_SMTP_PORT=2525\n")
    assert smtp_of(load(MAILSC_SMTP_PORT="2526")).port == 2526


def test_explicit_env_file_and_no_env_file(tmp_path: Path) -> None:
    other = tmp_path / "other.env"
    other.write_text("MAILSC_SMTP_HOST=from-other.example.com\n")
    (tmp_path / ".env").write_text("MAILSC_SMTP_HOST=from-default.example.com\n")
    assert smtp_of(Settings(_env_file=other)).host == "from-other.example.com"
    assert smtp_of(Settings()).host == "from-default.example.com"
    assert Settings(_env_file=None).smtp is None


def test_dotenv_problems_name_the_variable(load: Load, tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("MAILSC_SMTP_HOST=smtp.example.com\nMAILSC_SMTP_POOL_SIZE=zero\n")
    assert variables(config_error(load)) == ["MAILSC_SMTP_POOL_SIZE"]


# --- <NAME>_FILE secrets --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (f"{SECRET}\n", SECRET),
        (f"{SECRET}\r\n", SECRET),
        (f"{SECRET}\n\n", SECRET),
        (SECRET, SECRET),
        ("  spaced out \n", "  spaced out "),  # only the line break goes; spaces may be part of a password
    ],
)
def test_password_file_trailing_newline_is_stripped(load: Load, tmp_path: Path, content: str, expected: str) -> None:
    secret_file = tmp_path / "smtp_password"
    secret_file.write_text(content, newline="")
    smtp = smtp_of(
        load(MAILSC_SMTP_HOST="smtp.example.com", MAILSC_SMTP_USERNAME="u", MAILSC_SMTP_PASSWORD_FILE=str(secret_file))
    )
    assert password_of(smtp) == expected


@pytest.mark.parametrize("variable", ["SMTP_PASS_FILE", "SMTP_PASSWORD_FILE", "MAIL_PASSWORD_FILE"])
def test_password_file_through_an_alias(load: Load, tmp_path: Path, variable: str) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(f"{SECRET}\n")
    smtp = smtp_of(load(SMTP_HOST="smtp.example.com", SMTP_USER="u", **{variable: str(secret_file)}))
    assert password_of(smtp) == SECRET


def test_value_and_file_both_set_is_an_error(load: Load, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("other\n")
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_USERNAME="u",
        MAILSC_SMTP_PASSWORD=SECRET,
        MAILSC_SMTP_PASSWORD_FILE=str(secret_file),
    )
    assert variables(error) == ["MAILSC_SMTP_PASSWORD_FILE"]
    assert SECRET not in str(error)
    assert "other" not in str(error)


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_secret_file_is_an_error(load: Load, tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope" if kind == "missing" else tmp_path
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", MAILSC_SMTP_PASSWORD_FILE=str(path))
    assert variables(error) == ["MAILSC_SMTP_PASSWORD_FILE"]
    assert "cannot read" in str(error)


@pytest.mark.parametrize(
    ("variable", "field", "value"),
    [
        ("MAILSC_API_KEY_FILE", "api_key", SECRET),
        ("MAILSC_DATABASE_URL_FILE", "database_url", f"postgresql://u:{SECRET}@db/mailsc"),
        ("MAILSC_SMTP_URL_FILE", "smtp_url", f"smtps://u:{SECRET}@smtp.example.com"),
    ],
)
def test_every_secret_can_come_from_a_file(load: Load, tmp_path: Path, variable: str, field: str, value: str) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(value + "\n")
    secret = getattr(load(**{variable: str(secret_file)}), field)
    assert secret is not None
    assert secret.get_secret_value() == value


def test_secret_file_variable_in_dotenv(load: Load, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(f"{SECRET}\n")
    (tmp_path / ".env").write_text(
        f"MAILSC_SMTP_HOST=smtp.example.com\nMAILSC_SMTP_USERNAME=u\nMAILSC_SMTP_PASSWORD_FILE={secret_file}\n"
    )
    assert password_of(smtp_of(load())) == SECRET


def test_secret_file_problem_is_listed_with_the_others(load: Load, tmp_path: Path) -> None:
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_PASSWORD_FILE=str(tmp_path / "missing"),
        MAILSC_SMTP_POOL_SIZE="0",
    )
    assert sorted(variables(error)) == ["MAILSC_SMTP_PASSWORD_FILE", "MAILSC_SMTP_POOL_SIZE"]


# --- security and port inference -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "security", "port"),
    [
        ({}, "starttls", 587),
        ({"port": 465}, "tls", 465),
        ({"port": 587}, "starttls", 587),
        ({"port": 25}, "starttls", 25),
        ({"port": 2525}, "starttls", 2525),
        ({"security": "tls"}, "tls", 465),
        ({"security": "starttls"}, "starttls", 587),
        ({"security": "tls", "port": 2465}, "tls", 2465),
        ({"security": "none", "host": "localhost"}, "none", 25),
        ({"security": "none", "host": "127.0.0.1", "port": 1025}, "none", 1025),
    ],
)
def test_security_and_port_inference(fields: dict[str, Any], security: str, port: int) -> None:
    config = ConnectionConfig(**{"host": "smtp.example.com", **fields})
    assert (config.security, config.port) == (security, port)


@pytest.mark.parametrize(
    ("env", "security", "port"),
    [
        ({"MAILSC_SMTP_PORT": "465"}, "tls", 465),
        ({"MAILSC_SMTP_PORT": "587"}, "starttls", 587),
        ({"MAILSC_SMTP_SECURITY": "tls"}, "tls", 465),
        ({}, "starttls", 587),
    ],
)
def test_security_and_port_inference_from_the_environment(
    load: Load, env: dict[str, str], security: str, port: int
) -> None:
    smtp = smtp_of(load(MAILSC_SMTP_HOST="smtp.example.com", **env))
    assert (smtp.security, smtp.port) == (security, port)


@pytest.mark.parametrize(
    ("fields", "variable", "words"),
    [
        ({"port": 465, "security": "starttls"}, "port", "465"),
        ({"port": 587, "security": "tls"}, "port", "587"),
        ({"port": 25, "security": "tls"}, "port", "25"),
        ({"starttls": True, "ssl_tls": True}, "starttls", "both"),
        ({"security": "starttls", "ssl_tls": True}, "security", "contradicts"),
        ({"security": "tls", "starttls": True}, "security", "contradicts"),
        ({"MAIL_STARTTLS": True, "MAIL_SSL_TLS": True}, "starttls", "both"),
    ],
)
def test_port_and_mode_contradictions(fields: dict[str, Any], variable: str, words: str) -> None:
    error = connection_error(host="smtp.example.com", **fields)
    assert variable in variables(error)
    assert words in messages_for(error, variable)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"MAILSC_SMTP_PORT": "465", "MAILSC_SMTP_SECURITY": "starttls"}, "MAILSC_SMTP_PORT"),
        ({"MAILSC_SMTP_PORT": "587", "MAILSC_SMTP_SECURITY": "tls"}, "MAILSC_SMTP_PORT"),
        ({"MAIL_STARTTLS": "true", "MAIL_SSL_TLS": "true"}, "MAILSC_SMTP_STARTTLS"),
    ],
)
def test_contradictions_from_the_environment_carry_a_hint(load: Load, env: dict[str, str], variable: str) -> None:
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", **env)
    assert variables(error) == [variable]
    assert error.problems[0].hint


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.5", "192.168.1.1", "mail"])
def test_plaintext_to_a_remote_host_is_refused(host: str) -> None:
    error = connection_error(host=host, security="none")
    assert variables(error) == ["security"]
    assert host in str(error)
    assert "allow_insecure" in error.problems[0].hint


@pytest.mark.parametrize("host", ["smtp.example.com", "10.0.0.5"])
def test_plaintext_to_a_remote_host_with_allow_insecure(host: str) -> None:
    config = ConnectionConfig(host=host, security="none", allow_insecure=True)
    assert (config.security, config.port) == ("none", 25)


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.0.53", "::1", "[::1]", "a.localhost"])
def test_plaintext_to_loopback_is_allowed(host: str) -> None:
    assert is_loopback(host)
    config = ConnectionConfig(host=host, security="none", username="u", password=SECRET)
    assert config.security == "none"
    assert config.username == "u"


@pytest.mark.parametrize("host", ["smtp.example.com", "127.example.com", "::2", "localhost.example.com", "10.0.0.1"])
def test_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_credentials_over_plaintext_to_a_remote_host_are_refused_even_when_insecure_is_allowed() -> None:
    error = connection_error(
        host="relay.example.com", security="none", allow_insecure=True, username="u", password=SECRET
    )
    assert variables(error) == ["security"]
    assert "credentials" in str(error)
    assert SECRET not in str(error)


def test_plaintext_from_the_environment(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", MAILSC_SMTP_SECURITY="none")
    assert variables(error) == ["MAILSC_SMTP_SECURITY"]
    assert smtp_of(load(MAILSC_SMTP_ALLOW_INSECURE="true")).security == "none"


def test_username_without_password_and_password_without_username() -> None:
    assert variables(connection_error(host="smtp.example.com", username="u")) == ["password"]
    assert variables(connection_error(host="smtp.example.com", password=SECRET)) == ["username"]
    assert variables(connection_error(host="smtp.example.com", username="", password=SECRET)) == ["username"]


def test_credential_mismatch_from_the_environment(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", MAILSC_SMTP_USERNAME="u")
    assert variables(error) == ["MAILSC_SMTP_PASSWORD"]
    error = config_error(load, MAILSC_SMTP_USERNAME="", MAILSC_SMTP_PASSWORD=SECRET)
    assert variables(error) == ["MAILSC_SMTP_USERNAME"]
    assert SECRET not in str(error)


def test_missing_certificate_files(tmp_path: Path) -> None:
    error = connection_error(host="smtp.example.com", ca_file=tmp_path / "ca.pem")
    assert variables(error) == ["ca_file"]
    assert "ca.pem" in str(error)
    error = connection_error(host="smtp.example.com", ca_file=tmp_path)  # a directory is not a file
    assert variables(error) == ["ca_file"]
    error = connection_error(host="smtp.example.com", client_key=tmp_path / "k.pem")
    assert variables(error) == ["client_key", "client_key"]  # no certificate, and no such file


def test_missing_ca_file_from_the_environment(load: Load, tmp_path: Path) -> None:
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", MAILSC_SMTP_CA_FILE=str(tmp_path / "no.pem"))
    assert variables(error) == ["MAILSC_SMTP_CA_FILE"]


def test_existing_ca_file_is_accepted(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert ConnectionConfig(host="smtp.example.com", ca_file=ca).ca_file == ca


@pytest.mark.parametrize("mail_from", ["not an address", "a@", "App <noreply@>", "x@y.org\r\nBcc: z@y.org"])
def test_bad_mail_from(load: Load, mail_from: str) -> None:
    assert variables(connection_error(host="smtp.example.com", mail_from=mail_from)) == ["mail_from"]
    error = config_error(load, MAILSC_SMTP_HOST="smtp.example.com", MAILSC_MAIL_FROM=mail_from)
    assert variables(error) == ["MAILSC_MAIL_FROM"]
    assert error.problems[0].hint


def test_bad_mail_from_without_smtp_is_a_config_error(load: Load) -> None:
    assert variables(config_error(load, MAILSC_MAIL_FROM="not an address")) == ["MAILSC_MAIL_FROM"]


def test_host_and_port_field_checks() -> None:
    error = connection_error(host="", port=70000)
    assert sorted(variables(error)) == ["host", "port"]
    assert variables(connection_error(host="smtp.example.com", port=0)) == ["port"]
    assert variables(connection_error(host="smtp.example.com", timeout=0)) == ["timeout"]
    assert variables(connection_error(host="smtp.example.com", pool_size=101)) == ["pool_size"]


def test_connection_config_is_frozen() -> None:
    config = ConnectionConfig(host="smtp.example.com")
    with pytest.raises(Exception, match="frozen"):
        config.host = "other.example.com"  # type: ignore[misc]


# --- every problem at once ------------------------------------------------------------------------------------


def test_every_problem_at_once_from_the_environment(load: Load) -> None:
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_PORT="abc",
        MAILSC_SMTP_POOL_SIZE="0",
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM="not an address",
        MAILSC_LOG_LEVEL="loud",
    )
    assert set(variables(error)) == {
        "MAILSC_SMTP_PORT",
        "MAILSC_SMTP_POOL_SIZE",
        "MAILSC_SMTP_SECURITY",
        "MAILSC_MAIL_FROM",
        "MAILSC_LOG_LEVEL",
    }
    text = str(error)
    assert text.startswith("invalid configuration, 5 problems:")
    for variable in variables(error):
        assert f"  - {variable}: " in text


def test_every_combination_problem_at_once(load: Load, tmp_path: Path) -> None:
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_STARTTLS="true",
        MAILSC_SMTP_SSL_TLS="true",
        MAILSC_SMTP_USERNAME="u",
        MAILSC_SMTP_CA_FILE=str(tmp_path / "missing.pem"),
        MAILSC_MAIL_FROM="bad",
    )
    assert set(variables(error)) == {
        "MAILSC_SMTP_STARTTLS",
        "MAILSC_SMTP_PASSWORD",
        "MAILSC_SMTP_CA_FILE",
        "MAILSC_MAIL_FROM",
    }


def test_connection_config_lists_every_combination_problem() -> None:
    error = connection_error(
        host="smtp.example.com", port=465, security="starttls", username="u", mail_from="bad", ca_file="/no/such.pem"
    )
    assert set(variables(error)) == {"port", "password", "mail_from", "ca_file"}


def test_connection_config_lists_field_and_combination_problems_together() -> None:
    error = connection_error(host="smtp.example.com", port=70000, security="none", mail_from="bad")
    assert set(variables(error)) == {"port", "security", "mail_from"}


def test_out_of_range_port_is_listed_with_the_other_problems(load: Load) -> None:
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_PORT="70000",
        MAILSC_SMTP_SECURITY="none",
        MAILSC_MAIL_FROM="bad",
    )
    assert set(variables(error)) == {"MAILSC_SMTP_PORT", "MAILSC_SMTP_SECURITY", "MAILSC_MAIL_FROM"}


def test_bad_url_is_listed_with_the_other_smtp_problems(load: Load) -> None:
    error = config_error(load, MAILSC_SMTP_URL="http://smtp.example.com", MAILSC_MAIL_FROM="bad")
    assert set(variables(error)) == {"MAILSC_SMTP_URL", "MAILSC_MAIL_FROM"}


# --- secrets never appear -------------------------------------------------------------------------------------


def assert_hidden(text: str) -> None:
    assert SECRET not in text
    assert SECRET.lower() not in text.lower()


def test_secrets_are_hidden_in_settings(load: Load) -> None:
    settings = load(
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_USERNAME="u",
        MAILSC_SMTP_PASSWORD=SECRET,
        MAILSC_API_KEY=SECRET,
        MAILSC_DATABASE_URL=f"postgresql://mailsc:{SECRET}@db.example.com/mailsc",
    )
    smtp = smtp_of(settings)
    assert password_of(smtp) == SECRET  # the value is there...
    assert settings.api_key is not None
    assert settings.api_key.get_secret_value() == SECRET
    for text in (  # ...but never shown
        repr(settings),
        str(settings),
        settings.model_dump_json(),
        str(settings.model_dump()),
        repr(smtp),
        str(smtp),
        smtp.model_dump_json(),
    ):
        assert_hidden(text)


def test_smtp_url_secret_is_hidden(load: Load) -> None:
    settings = load(MAILSC_SMTP_URL=f"smtps://user:{SECRET}@smtp.example.com")
    smtp = smtp_of(settings)
    assert password_of(smtp) == SECRET
    for text in (repr(settings), str(settings), settings.model_dump_json(), repr(smtp), str(smtp)):
        assert_hidden(text)


@pytest.mark.parametrize(
    "env",
    [
        {"MAILSC_SMTP_HOST": "smtp.example.com", "MAILSC_SMTP_PASSWORD": SECRET},
        {"MAILSC_SMTP_HOST": "smtp.example.com", "MAILSC_SMTP_PASSWORD": SECRET, "MAILSC_SMTP_SECURITY": "none"},
        {"MAILSC_SMTP_PASSWORD": SECRET, "MAILSC_SMTP_PORT": "2525"},
        {"MAILSC_SMTP_URL": f"smtp://u:{SECRET}@smtp.example.com", "MAILSC_SMTP_SECURITY": "none"},
        {"MAILSC_SMTP_URL": f"smtp://u:{SECRET}@smtp.example.com", "MAILSC_SMTP_HOST": "smtp.example.com"},
        {"MAILSC_SMTP_URL": f"smtp://u:{SECRET}@smtp.example.com", "MAILSC_SMTP_POOL_SIZE": "0"},
        {"MAILSC_API_KEY": SECRET, "MAILSC_LOG_LEVEL": "loud"},
        {"MAILSC_DATABASE_URL": f"postgresql://u:{SECRET}@db/x", "MAILSC_MAX_RECIPIENTS": "0"},
        {"SMTP_PASS": SECRET, "SMTP_SERVER": "smtp.example.com", "MAIL_PORT": "x"},
    ],
)
def test_secrets_are_hidden_in_config_errors(load: Load, env: dict[str, str]) -> None:
    error = config_error(load, **env)
    assert_hidden(str(error))
    assert_hidden(repr(error))
    for problem in error.problems:
        assert_hidden(str(problem))
        assert_hidden(repr(problem))


def test_an_invalid_password_value_is_not_echoed() -> None:
    error = connection_error(host="smtp.example.com", username="u", password=[SECRET])
    assert variables(error) == ["password"]
    assert_hidden(str(error))
    error = connection_error(host="smtp.example.com", username="u", password=987654321)
    assert "987654321" not in str(error)


def test_an_invalid_secret_setting_is_not_echoed(load: Load) -> None:
    with pytest.raises(ConfigError) as info:
        Settings(smtp_host="smtp.example.com", smtp_username="u", smtp_password=[SECRET])
    assert_hidden(str(info.value))
    with pytest.raises(ConfigError) as info:
        Settings(api_key=12345678)
    assert "12345678" not in str(info.value)


@pytest.mark.parametrize("build", ["connection_config", "settings"])
def test_an_invalid_password_given_by_alias_is_not_echoed(build: str) -> None:
    model: type[ConnectionConfig | Settings]
    if build == "connection_config":
        model = ConnectionConfig
        fields: dict[str, Any] = {"MAIL_SERVER": "smtp.example.com", "MAIL_USERNAME": "u", "MAIL_PASSWORD": 987654321}
    else:
        model = Settings
        fields = {"SMTP_SERVER": "smtp.example.com", "SMTP_USER": "u", "SMTP_PASS": 987654321}
    with pytest.raises(ConfigError) as info:
        model(**fields)
    assert "987654321" not in str(info.value)


def test_secret_file_content_is_not_echoed(load: Load, tmp_path: Path) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(f"{SECRET}\n")
    error = config_error(
        load,
        MAILSC_SMTP_HOST="smtp.example.com",
        MAILSC_SMTP_PASSWORD_FILE=str(secret_file),
        MAILSC_SMTP_SECURITY="none",
    )
    assert set(variables(error)) == {"MAILSC_SMTP_USERNAME", "MAILSC_SMTP_SECURITY"}
    assert_hidden(str(error))
