"""fastapi-mail's validation errors have equivalents: the same exception classes at the same moments, plus
mailsc's own checks (DESIGN.md §7) reported the same way, never echoing the password."""

from __future__ import annotations

from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from mailsc import TemplateError
from mailsc.compat.fastapi_mail import (
    ConnectionConfig,
    EmptyMessagesList,
    FastMail,
    MessageSchema,
    MessageType,
    MultipartSubtypeEnum,
    NameEmail,
    PydanticClassRequired,
    TemplateFolderDoesNotExist,
    WrongFile,
)

BASE: dict[str, Any] = {
    "MAIL_USERNAME": "user",
    "MAIL_PASSWORD": "hunter2-secret",
    "MAIL_FROM": "noreply@example.com",
    "MAIL_PORT": 587,
    "MAIL_SERVER": "smtp.example.com",
    "MAIL_STARTTLS": True,
    "MAIL_SSL_TLS": False,
}


def config(**changes: Any) -> ConnectionConfig:
    return ConnectionConfig(**{**BASE, **changes})


def locations(exc: ValidationError) -> set[str]:
    return {".".join(str(p) for p in e["loc"]) for e in exc.errors()}


def test_fastapi_mail_defaults() -> None:
    conf = config()
    assert (conf.TIMEOUT, conf.USE_CREDENTIALS, conf.VALIDATE_CERTS, conf.SUPPRESS_SEND, conf.MAIL_DEBUG) == (
        60,
        True,
        True,
        0,
        0,
    )
    assert conf.TEMPLATE_FOLDER is None
    smtp = conf.smtp_config()
    assert (smtp.security, smtp.port, smtp.username, smtp.verify_certs) == ("starttls", 587, "user", True)


def test_required_fields_missing_are_a_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        ConnectionConfig(MAIL_SERVER="smtp.example.com")
    assert locations(caught.value) == {
        "MAIL_USERNAME",
        "MAIL_PASSWORD",
        "MAIL_PORT",
        "MAIL_STARTTLS",
        "MAIL_SSL_TLS",
        "MAIL_FROM",
    }


@pytest.mark.parametrize(
    ("changes", "location"),
    [
        ({"MAIL_FROM": "not-an-address"}, "MAIL_FROM"),
        ({"MAIL_DEBUG": 2}, "MAIL_DEBUG"),
        ({"SUPPRESS_SEND": 3}, "SUPPRESS_SEND"),
        ({"TEMPLATE_FOLDER": "/no/such/folder"}, "TEMPLATE_FOLDER"),
        ({"MAIL_PORT": "smtp"}, "MAIL_PORT"),
        ({"UNKNOWN_SETTING": 1}, "UNKNOWN_SETTING"),
    ],
)
def test_field_errors_as_in_fastapi_mail(changes: dict[str, Any], location: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert location in locations(caught.value)


@pytest.mark.parametrize(
    ("changes", "location", "words"),
    [
        ({"MAIL_PORT": 465}, "MAIL_PORT", "465 speaks implicit TLS"),
        ({"MAIL_SSL_TLS": True}, "MAIL_STARTTLS", "both switched on"),
        ({"MAIL_STARTTLS": False}, "MAIL_STARTTLS", "plaintext SMTP"),
        ({"CERT_BUNDLE": "/no/such/ca.pem"}, "CERT_BUNDLE", "does not exist"),
    ],
)
def test_mailsc_checks_are_validation_errors_naming_fastapi_mail_fields(
    changes: dict[str, Any], location: str, words: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert location in locations(caught.value)
    assert words in str(caught.value)
    assert "hunter2-secret" not in str(caught.value)


def test_plaintext_is_allowed_to_loopback_or_with_allow_insecure() -> None:
    assert config(MAIL_SERVER="127.0.0.1", MAIL_STARTTLS=False).smtp_config().security == "none"
    assert config(MAIL_STARTTLS=False, ALLOW_INSECURE=True, USE_CREDENTIALS=False).smtp_config().security == "none"
    with pytest.raises(ValidationError, match="credentials would cross the network"):
        config(MAIL_STARTTLS=False, ALLOW_INSECURE=True)  # a password in clear to a remote host: never


def test_old_tls_names_warn_and_still_work() -> None:
    old = {k: v for k, v in BASE.items() if k not in ("MAIL_STARTTLS", "MAIL_SSL_TLS")}
    with pytest.deprecated_call(match="MAIL_TLS is deprecated"), pytest.deprecated_call(match="MAIL_SSL is"):
        conf = ConnectionConfig(**old, MAIL_TLS=True, MAIL_SSL=False)
    assert (conf.MAIL_STARTTLS, conf.MAIL_SSL_TLS) == (True, False)


def test_old_tls_names_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {**BASE, "MAIL_TLS": "false", "MAIL_SSL": "true", "MAIL_PORT": "465"}.items():
        if name not in ("MAIL_STARTTLS", "MAIL_SSL_TLS"):
            monkeypatch.setenv(name, str(value))
    with pytest.deprecated_call(match="MAIL_TLS is deprecated"), pytest.deprecated_call(match="MAIL_SSL is"):
        conf = ConnectionConfig()
    assert conf.smtp_config().security == "tls"


def message(**changes: Any) -> MessageSchema:
    values: dict[str, Any] = {"subject": "s", "recipients": ["to@example.com"], "body": "x", "subtype": "plain"}
    return MessageSchema(**{**values, **changes})


def test_message_schema_fields_and_defaults() -> None:
    built = message(recipients=[], cc=["cc@example.com"], bcc=["B <bcc@example.com>"])
    assert built.recipients == []
    assert built.bcc == [NameEmail(name="B", email="bcc@example.com")]
    assert (built.charset, built.multipart_subtype, built.headers, built.subject) == (
        "utf-8",
        MultipartSubtypeEnum.mixed,
        None,
        "s",
    )
    assert message(subtype=MessageType.html).subtype is MessageType.html


@pytest.mark.parametrize(
    "changes",
    [
        {"subtype": None},
        {"subtype": "markdown"},
        {"recipients": ["not an address"]},
        {"cc": ["x@"]},
        {"from_email": "nope"},
        {"multipart_subtype": "weird"},
        {"attachments": [5]},
    ],
)
def test_message_field_errors_are_validation_errors(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        message(**changes)


def test_missing_subtype_is_required() -> None:
    with pytest.raises(ValidationError) as caught:
        MessageSchema(subject="s", recipients=["to@example.com"], body="x")  # type: ignore[call-arg]
    assert locations(caught.value) == {"subtype"}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.org"}, "line break"),
        ({"headers": {"X-Tag": "a\nb"}}, "line break"),
        ({"headers": {"Message-ID": "<mine@example.com>"}}, "Message-ID"),
        ({"headers": {"Content-Type": "text/html"}}, "Content-Type"),
        ({"from_name": "Evil\nName", "from_email": "a@example.com"}, "line break"),
    ],
)
def test_header_injection_and_owned_headers_are_refused(changes: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        message(**changes)


def test_attachment_errors_are_wrong_file(tmp_path: Path) -> None:
    with pytest.raises(WrongFile, match="incorrect file path"):
        message(attachments=[str(tmp_path / "missing.pdf")])
    with pytest.raises(WrongFile, match='missing "file" key'):
        message(attachments=[{"headers": {}}])
    with pytest.raises(WrongFile, match="must be UploadFile or path"):
        message(attachments=[{"file": 5}])
    upload = UploadFile(BytesIO(b"x"), filename="x.txt")
    [item] = message(attachments=[{"file": upload, "mime_type": "text", "mime_subtype": "plain"}]).attachments
    assert isinstance(item, tuple)
    kept, meta = item
    assert kept is upload
    assert meta == {"mime_type": "text", "mime_subtype": "plain"}


async def test_send_message_argument_errors() -> None:
    fm = FastMail(config(SUPPRESS_SEND=1))
    with pytest.raises(PydanticClassRequired, match="MessageSchema"):
        await fm.send_message({"subject": "s"})  # type: ignore[arg-type]
    with pytest.raises(EmptyMessagesList):
        await fm.send_message([])
    with pytest.raises(TemplateFolderDoesNotExist):
        await fm.send_message(message(template_body={"a": 1}), template_name="welcome.html")
    not_a_config = FastMail(BASE)  # type: ignore[arg-type]
    with pytest.raises(PydanticClassRequired, match="ConnectionConfig"):
        await not_a_config.send_message(message())


async def test_template_errors(tmp_path: Path) -> None:
    (tmp_path / "t.html").write_text("{{ name }}")
    fm = FastMail(config(SUPPRESS_SEND=1, TEMPLATE_FOLDER=str(tmp_path)))
    with pytest.raises(TemplateError, match=r"missing\.html"):
        await fm.send_message(message(template_body={}), template_name="missing.html")
    engine = config(TEMPLATE_FOLDER=str(tmp_path)).template_engine()  # fastapi-mail's accessor
    assert engine.get_template("t.html").render(name="<b>") == "&lt;b&gt;"
    with pytest.raises(ValueError, match="TEMPLATE_FOLDER"):
        config().template_engine()
    with pytest.raises(TemplateError, match="name"):  # fastapi-mail would render it blank
        await fm.send_message(message(template_body={"other": 1}), template_name="t.html")
    with pytest.raises(ValueError, match="Unable to build template data dictionary"):
        await fm.send_message(message(template_body=None), html_template="t.html", plain_template="t.html")
