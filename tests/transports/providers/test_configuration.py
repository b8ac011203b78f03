"""Transport URLs, field-by-field provider variables, AWS_* and *_FILE secrets, MAILSC_TRANSPORTS: every problem
at once, never a secret in the message."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mailsc.config import Settings
from mailsc.delivery.router import FailoverTransport
from mailsc.errors import ConfigError
from mailsc.mailer import Mailer
from mailsc.transports.providers import MailgunTransport, PostmarkTransport, SesTransport
from mailsc.transports.smtp import SmtpTransport

SECRET = "sEcReT-t0ken-value"


@pytest.fixture(autouse=True)
def _empty_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in list(os.environ):
        if name.upper().startswith(("POSTMARK", "SENDGRID", "RESEND", "MAILGUN")):
            monkeypatch.delenv(name)


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def problems(monkeypatch: pytest.MonkeyPatch, **env: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(monkeypatch, **env)
    assert SECRET not in str(info.value)
    return info.value


@pytest.mark.parametrize(
    ("url", "kind", "endpoint"),
    [
        ("sendgrid://KEY@", "sendgrid", "https://api.sendgrid.com"),
        ("postmark://KEY@", "postmark", "https://api.postmarkapp.com"),
        ("resend://KEY@", "resend", "https://api.resend.com"),
        ("mailgun://KEY@mg.example.com", "mailgun", "https://api.mailgun.net"),
        ("mailgun://KEY@mg.example.com?region=eu", "mailgun", "https://api.eu.mailgun.net"),
        ("sendgrid+api://KEY@default", "sendgrid", "https://api.sendgrid.com"),
    ],
)
def test_transport_urls(monkeypatch: pytest.MonkeyPatch, url: str, kind: str, endpoint: str) -> None:
    settings = load(monkeypatch, MAILSC_TRANSPORT_URL=url)
    assert settings.transport_plan is not None
    assert settings.transport_plan.order == (kind,)
    config = settings.providers[kind]
    assert config.endpoint == endpoint
    assert config.api_key is not None
    assert config.api_key.get_secret_value() == "KEY"
    assert "KEY" not in repr(settings)


def test_ses_url_with_credentials_from_aws_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secret_file = tmp_path / "aws_secret"
    secret_file.write_text(SECRET + "\n")
    settings = load(
        monkeypatch,
        MAILSC_TRANSPORT_URL="ses://?region=eu-west-1&configuration_set=transactional",
        AWS_ACCESS_KEY_ID="AKIDEXAMPLE",
        AWS_SECRET_ACCESS_KEY_FILE=str(secret_file),
        AWS_SESSION_TOKEN="session",
    )
    config = settings.providers["ses"]
    assert (config.region, config.configuration_set) == ("eu-west-1", "transactional")
    assert config.endpoint == "https://email.eu-west-1.amazonaws.com"
    assert config.secret_access_key is not None
    assert config.secret_access_key.get_secret_value() == SECRET
    assert config.session_token is not None
    assert isinstance(Mailer.transport_for(settings), SesTransport)


def test_field_by_field_and_a_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(SECRET)
    settings = load(
        monkeypatch,
        MAILSC_POSTMARK_TOKEN_FILE=str(token),
        MAILSC_POSTMARK_MESSAGE_STREAM="broadcast",
        MAILSC_PROVIDER_TIMEOUT="5",
    )
    config = settings.providers["postmark"]
    assert config.api_key is not None
    assert config.api_key.get_secret_value() == SECRET
    assert (config.message_stream, config.timeout) == ("broadcast", 5.0)
    assert isinstance(Mailer.transport_for(settings), PostmarkTransport)


def test_mailgun_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch, MAILSC_MAILGUN_API_KEY="k", MAILSC_MAILGUN_DOMAIN="mg.example.com", MAILSC_MAILGUN_REGION="eu"
    )
    assert settings.providers["mailgun"].endpoint == "https://api.eu.mailgun.net"
    assert isinstance(Mailer.transport_for(settings), MailgunTransport)


def test_failover_order(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch,
        MAILSC_TRANSPORTS="postmark, smtp",
        MAILSC_POSTMARK_URL="postmark://KEY@",
        MAILSC_SMTP_URL="smtp://u:p@smtp.example.com:587",
    )
    transport = Mailer.transport_for(settings)
    assert isinstance(transport, FailoverTransport)
    assert transport.name == "failover(postmark,smtp)"
    assert [type(r.transport) for r in transport.routes] == [PostmarkTransport, SmtpTransport]
    assert [r.max_size for r in transport.routes] == [10 * 1024 * 1024, None]


def test_smtp_transport_url_is_the_smtp_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, MAILSC_TRANSPORT_URL="smtps://u:p@smtp.example.com")
    assert settings.smtp is not None
    assert settings.smtp.port == 465
    assert isinstance(Mailer.transport_for(settings), SmtpTransport)


def test_aws_variables_alone_configure_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch, AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY=SECRET, AWS_REGION="eu-west-1")
    assert settings.transport_plan is None
    assert settings.providers == {}


def test_every_problem_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(
        monkeypatch,
        MAILSC_TRANSPORTS="postmark,ses,smtp,pigeon,postmark",
        MAILSC_POSTMARK_URL=f"postmark://{SECRET}@somehost?colour=blue",
        MAILSC_RESEND_API_KEY=SECRET,
        MAILSC_MAILGUN_URL=f"sendgrid://{SECRET}@",
    )
    text = [str(p) for p in error.problems]
    expected = [
        "MAILSC_TRANSPORTS: unknown transport 'pigeon'",
        "MAILSC_TRANSPORTS: postmark is listed twice",
        "MAILSC_POSTMARK_URL: a postmark:// URL names no host",
        "MAILSC_POSTMARK_URL: unknown option 'colour'",
        "MAILSC_TRANSPORTS: names smtp, but no SMTP server is configured",
        "MAILSC_SES_REGION: the ses transport needs an AWS region",
        "AWS_ACCESS_KEY_ID: the ses transport needs an access key id",
        "AWS_SECRET_ACCESS_KEY: the ses transport needs a secret access key",
        "MAILSC_MAILGUN_URL: must start with mailgun://",
        "MAILSC_TRANSPORTS: resend is configured but not listed",
    ]
    for line in expected:
        assert any(t.startswith(line) for t in text), (line, text)


def test_several_transports_without_an_order_is_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(monkeypatch, MAILSC_POSTMARK_TOKEN=SECRET, MAILSC_SMTP_URL="smtp://u:p@smtp.example.com:587")
    [problem] = error.problems
    assert problem.variable == "MAILSC_TRANSPORTS"
    assert "smtp,postmark" in problem.hint


def test_plain_http_only_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(monkeypatch, MAILSC_TRANSPORT_URL=f"resend://{SECRET}@?endpoint=http://api.example.com")
    assert "https" in error.problems[0].message
    settings = load(monkeypatch, MAILSC_TRANSPORT_URL="resend://k@?endpoint=http://127.0.0.1:9")
    assert settings.providers["resend"].endpoint == "http://127.0.0.1:9"


def test_both_url_forms_for_one_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(monkeypatch, MAILSC_TRANSPORT_URL="resend://a@", MAILSC_RESEND_URL="resend://b@")
    assert [p.variable for p in error.problems] == ["MAILSC_RESEND_URL"]


def test_url_and_field_giving_the_same_key(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(monkeypatch, MAILSC_TRANSPORT_URL=f"sendgrid://{SECRET}@", MAILSC_SENDGRID_API_KEY=SECRET)
    assert [p.variable for p in error.problems] == ["MAILSC_SENDGRID_API_KEY"]


def test_bad_options(monkeypatch: pytest.MonkeyPatch) -> None:
    error = problems(monkeypatch, MAILSC_TRANSPORT_URL="mailgun://k@mg.example.com?region=asia&timeout=-1&http2=maybe")
    messages = " | ".join(p.message for p in error.problems)
    assert "region 'asia' is not us or eu" in messages
    assert "timeout must be a number" in messages
    assert "http2 must be true or false" in messages
