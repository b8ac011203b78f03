"""render(): MIME structure, envelope, headers, encodings and the wire format (CRLF, line length, no Bcc)."""

from __future__ import annotations

import email
import email.policy
import re
from datetime import UTC, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from typing import Any, cast

import pytest

from mailsc.envelope import Envelope
from mailsc.errors import MessageError
from mailsc.message import Address, Message
from mailsc.mime import render

SENDER = "App <noreply@sender.example>"


def message(**changes: Any) -> Message:
    fields: dict[str, Any] = {"from": SENDER, "to": ["a@example.org"], "subject": "Hello", "text": "Hi"}
    fields.update(changes)
    return Message(**fields)


def rendered(**changes: Any) -> Envelope:
    return render(message(**changes))


def parse(data: bytes) -> EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def parse_utf8(data: bytes) -> EmailMessage:
    """An SMTPUTF8 message has raw UTF-8 in its headers, which the bytes parser leaves as surrogate escapes."""
    return email.message_from_string(data.decode("utf-8"), policy=email.policy.default)


def header_block(data: bytes) -> bytes:
    return data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def assert_wire_format(data: bytes) -> None:
    """Every line ends in CRLF, there is no bare CR or LF, and no line is longer than 998 octets."""
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines[:-1]:
        assert b"\r" not in line
        assert b"\n" not in line
        assert len(line) <= 998


def text_of(part: EmailMessage) -> str:
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


def body_text(parsed: EmailMessage, subtype: str) -> str:
    body = parsed.get_body(preferencelist=(subtype,))
    assert body is not None
    assert body.get_content_type() == f"text/{subtype}"
    return text_of(cast(EmailMessage, body))


# --- structure ------------------------------------------------------------------------------------------------


def test_text_only_is_text_plain() -> None:
    envelope = rendered(text="Hello there\n")
    parsed = parse(envelope.data)
    assert parsed.get_content_type() == "text/plain"
    assert not parsed.is_multipart()
    assert parsed.get_content_charset() == "utf-8"
    assert text_of(parsed) == "Hello there\n"
    assert parsed["MIME-Version"] == "1.0"
    assert_wire_format(envelope.data)


def test_html_only_gets_a_derived_text_part_with_the_links() -> None:
    html = '<p>Hello <b>you</b>,</p><p>please <a href="https://example.com/confirm?t=42">confirm</a>.</p>'
    parsed = parse(rendered(text=None, html=html).data)
    assert parsed.get_content_type() == "multipart/alternative"
    parts = [cast(EmailMessage, p) for p in parsed.iter_parts()]
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    plain = text_of(parts[0])
    assert "confirm (https://example.com/confirm?t=42)" in plain
    assert "Hello you," in plain
    assert "<" not in plain
    assert text_of(parts[1]) == html + "\n"


def test_text_and_html_are_alternatives() -> None:
    parsed = parse(rendered(text="Plain version\n", html="<p>HTML version</p>\n").data)
    assert parsed.get_content_type() == "multipart/alternative"
    assert body_text(parsed, "plain") == "Plain version\n"
    assert body_text(parsed, "html") == "<p>HTML version</p>\n"


def test_attachments_make_multipart_mixed() -> None:
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * 4
    envelope = rendered(
        attachments=[
            {"filename": "../invoices/report 2024.pdf", "content": pdf},
            {"filename": "notes.txt", "content": "ünïcode notes\n".encode(), "content_type": "text/plain"},
        ]
    )
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    assert parsed.get_content_type() == "multipart/mixed"
    assert body_text(parsed, "plain") == "Hi\n"
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["report 2024.pdf", "notes.txt"]
    assert attachments[0].get_content_type() == "application/pdf"
    assert attachments[0].get_content_disposition() == "attachment"
    assert attachments[0].get_payload(decode=True) == pdf
    assert attachments[1].get_payload(decode=True) == "ünïcode notes\n".encode()


def test_non_ascii_attachment_filename_round_trips() -> None:
    envelope = rendered(attachments=[{"filename": "résumé 履歴書.pdf", "content": b"%PDF"}])
    assert envelope.data.isascii()
    assert_wire_format(envelope.data)
    attachment = next(parse(envelope.data).iter_attachments())
    assert attachment.get_filename() == "résumé 履歴書.pdf"


def test_inline_image_makes_multipart_related_with_content_id() -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
    envelope = rendered(
        text=None,
        html='<p><img src="cid:logo@sender.example" alt="Logo"></p>',
        attachments=[
            {"filename": "logo.png", "content": png, "inline": True, "content_id": "logo@sender.example"},
            {"filename": "terms.pdf", "content": b"%PDF"},
        ],
    )
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, pdf = (cast(EmailMessage, p) for p in parsed.iter_parts())
    assert alternative.get_content_type() == "multipart/alternative"
    assert pdf.get_filename() == "terms.pdf"
    plain, related = (cast(EmailMessage, p) for p in alternative.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert "Logo" in text_of(plain)
    assert related.get_content_type() == "multipart/related"
    html, image = (cast(EmailMessage, p) for p in related.iter_parts())
    assert html.get_content_type() == "text/html"
    assert "cid:logo@sender.example" in text_of(html)
    assert image.get_content_type() == "image/png"
    assert image["Content-ID"] == "<logo@sender.example>"
    assert image.get_content_disposition() == "inline"
    assert image.get_filename() == "logo.png"
    assert image.get_payload(decode=True) == png


# --- envelope and the headers mailsc owns ---------------------------------------------------------------------


def test_bcc_is_in_the_envelope_only() -> None:
    envelope = rendered(
        to=["To <to@example.org>"],
        cc=["cc@example.org"],
        bcc=["Hidden Person <hidden@example.net>", "other-hidden@example.net"],
        html="<p>x</p>",
        attachments=[{"filename": "a.txt", "content": b"x"}],
    )
    assert envelope.recipients == ("to@example.org", "cc@example.org", "hidden@example.net", "other-hidden@example.net")
    assert b"bcc" not in envelope.data.lower()
    assert b"hidden" not in envelope.data.lower()
    parsed = parse(envelope.data)
    assert parsed["Bcc"] is None
    assert parsed["To"].addresses[0].addr_spec == "to@example.org"
    assert parsed["Cc"].addresses[0].addr_spec == "cc@example.org"


def test_bcc_only_message_has_no_to_header() -> None:
    envelope = rendered(to=[], bcc=["hidden@example.net"])
    assert envelope.recipients == ("hidden@example.net",)
    parsed = parse(envelope.data)
    assert parsed["To"] is None
    assert b"hidden" not in envelope.data


def test_envelope_fields() -> None:
    envelope = rendered(subject="Your receipt")
    assert envelope.sender == "noreply@sender.example"
    assert envelope.recipients == ("a@example.org",)
    assert envelope.subject == "Your receipt"
    assert envelope.smtputf8 is False


def test_message_id_and_date() -> None:
    now = datetime(2024, 5, 17, 12, 30, 45, tzinfo=UTC)
    envelope = render(message(), now=now)
    parsed = parse(envelope.data)
    assert parsed["Message-ID"] == envelope.message_id
    assert re.fullmatch(r"<[^<>@\s]+@sender\.example>", envelope.message_id)
    assert parsedate_to_datetime(parsed["Date"]) == now
    assert len(parsed.get_all("Message-ID") or []) == 1
    assert len(parsed.get_all("Date") or []) == 1


def test_date_defaults_to_now() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    parsed = parse(rendered().data)
    assert before - timedelta(seconds=1) <= parsedate_to_datetime(parsed["Date"]) <= datetime.now(UTC)


def test_date_keeps_the_given_offset() -> None:
    now = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    assert parsedate_to_datetime(parse(render(message(), now=now).data)["Date"]) == now


def test_message_ids_are_unique() -> None:
    ids = {rendered().message_id for _ in range(50)}
    assert len(ids) == 50


def test_message_id_domain_of_an_idn_sender_is_punycode() -> None:
    envelope = rendered(**{"from": "noreply@bücher.example"})
    assert envelope.message_id.endswith("@xn--bcher-kva.example>")
    assert envelope.message_id.isascii()


def test_message_id_stays_ascii_for_a_utf8_sender() -> None:
    envelope = rendered(**{"from": "jöhn@exämple.example"})
    assert envelope.smtputf8 is True
    assert envelope.message_id.isascii()
    assert parse(envelope.data)["Message-ID"] == envelope.message_id


def test_no_sender_and_no_default() -> None:
    with pytest.raises(MessageError) as info:
        render(message(**{"from": None}))
    assert info.value.errors[0]["loc"] == ["from"]
    assert "MAILSC_MAIL_FROM" in str(info.value)


def test_default_sender_is_used_when_the_message_has_none() -> None:
    default = Address.parse("Default <default@default.example>")
    envelope = render(message(**{"from": None}), default_sender=default)
    assert envelope.sender == "default@default.example"
    sender = parse(envelope.data)["From"].addresses[0]
    assert (sender.display_name, sender.addr_spec) == ("Default", "default@default.example")
    assert envelope.message_id.endswith("@default.example>")


def test_the_message_sender_beats_the_default() -> None:
    envelope = render(message(), default_sender=Address.parse("default@default.example"))
    assert envelope.sender == "noreply@sender.example"
    assert b"default.example" not in envelope.data


def test_duplicate_recipients_appear_once_in_the_envelope() -> None:
    envelope = rendered(
        to=["a@example.org", "A <A@EXAMPLE.ORG>", "b@example.org"],
        cc=["b@example.org", "c@example.org"],
        bcc=["a@example.org", "c@example.org", "d@example.org"],
    )
    assert envelope.recipients == ("a@example.org", "b@example.org", "c@example.org", "d@example.org")


def test_max_recipients() -> None:
    fifty = [f"user{i}@example.org" for i in range(50)]
    assert len(render(message(to=fifty)).recipients) == 50
    with pytest.raises(MessageError) as info:
        render(message(to=fifty, bcc=["one-more@example.org"]))
    assert info.value.errors[0]["loc"] == ["to"]
    with pytest.raises(MessageError):
        render(message(to=["a@example.org", "b@example.org"]), max_recipients=1)
    # duplicates count once
    assert render(message(to=["a@example.org"], cc=["a@example.org"]), max_recipients=1).recipients == (
        "a@example.org",
    )


def test_max_size() -> None:
    small = message()
    size = len(render(small).data)
    render(small, max_size=size + 200)
    with pytest.raises(MessageError) as info:
        render(small, max_size=size // 2)
    assert info.value.errors[0]["loc"] == ["text"]
    assert "bytes" in str(info.value)
    with pytest.raises(MessageError) as info:
        render(message(attachments=[{"filename": "big.bin", "content": b"\x00" * 10_000}]), max_size=10_000)
    assert info.value.errors[0]["loc"] == ["attachments"]


def test_reply_to_and_cc_headers() -> None:
    parsed = parse(rendered(cc=["C <c@example.org>"], reply_to=["Support <help@sender.example>"]).data)
    assert [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses] == [("C", "c@example.org")]
    assert [(a.display_name, a.addr_spec) for a in parsed["Reply-To"].addresses] == [("Support", "help@sender.example")]


def test_custom_headers_are_written() -> None:
    headers = {
        "List-Unsubscribe": "<mailto:unsubscribe@sender.example?subject=stop>, <https://sender.example/u/1>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
        "Feedback-ID": "c1:c2:c3:sender",
        "X-Campaign": "spring-sale",
        "References": "<a@sender.example> <b@sender.example>",
        "In-Reply-To": "<b@sender.example>",
    }
    envelope = rendered(headers=headers)
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    for name, value in headers.items():
        assert str(parsed[name]) == value


# --- encodings ------------------------------------------------------------------------------------------------


def test_non_ascii_names_and_subject_are_rfc2047_encoded_and_parse_back() -> None:
    envelope = rendered(
        **{"from": "Jöhn Dœ <john@sender.example>"},
        to=["Ünïcode Name <a@example.org>", '"Doe, Jane" <jane@example.org>'],
        cc=["Zoë <z@example.org>"],
        reply_to=["Ŝupport <help@sender.example>"],
        subject="Grüße aus Köln 👋",
        headers={"X-Note": "naïve café"},
        text="Grüße\n",
    )
    assert envelope.smtputf8 is False
    assert envelope.data.isascii()
    headers = header_block(envelope.data)
    assert b"=?utf-8?" in headers
    assert "Jöhn".encode() not in envelope.data
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    assert [(a.display_name, a.addr_spec) for a in parsed["From"].addresses] == [("Jöhn Dœ", "john@sender.example")]
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ("Ünïcode Name", "a@example.org"),
        ("Doe, Jane", "jane@example.org"),
    ]
    assert [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses] == [("Zoë", "z@example.org")]
    assert [(a.display_name, a.addr_spec) for a in parsed["Reply-To"].addresses] == [("Ŝupport", "help@sender.example")]
    assert str(parsed["Subject"]) == "Grüße aus Köln 👋"
    assert str(parsed["X-Note"]) == "naïve café"
    assert body_text(parsed, "plain") == "Grüße\n"


@pytest.mark.parametrize(
    "name", ['Doe, "Jimmy" \\ Jr.', "a;b", "<angle>", "(comment)", "at@sign", "trailing.dot.", "x=?y"]
)
def test_ascii_display_names_with_specials_round_trip(name: str) -> None:
    envelope = rendered(to=[{"name": name, "email": "a@example.org"}])
    address = parse(envelope.data)["To"].addresses[0]
    assert (address.display_name, address.addr_spec) == (name, "a@example.org")


def test_idn_recipient_is_punycode_on_the_wire() -> None:
    envelope = rendered(to=["user@bücher.example"])
    assert envelope.recipients == ("user@xn--bcher-kva.example",)
    assert envelope.smtputf8 is False
    assert envelope.data.isascii()
    assert parse(envelope.data)["To"].addresses[0].addr_spec == "user@xn--bcher-kva.example"


def test_utf8_local_part_needs_smtputf8() -> None:
    envelope = rendered(to=["Jöhn <jöhn@example.org>"], cc=["plain@example.org"])
    assert envelope.smtputf8 is True
    assert envelope.recipients == ("jöhn@example.org", "plain@example.org")
    assert "jöhn@example.org".encode() in envelope.data
    assert_wire_format(envelope.data)
    to = parse_utf8(envelope.data)["To"].addresses[0]
    assert (to.display_name, to.addr_spec) == ("Jöhn", "jöhn@example.org")


def test_smtputf8_from_a_bcc_recipient_only() -> None:
    envelope = rendered(bcc=["jöhn@example.org"])
    assert envelope.smtputf8 is True
    assert "jöhn".encode() not in envelope.data


def test_non_ascii_body_is_transfer_encoded_to_ascii() -> None:
    text = "Grüße, 東京 👋\n" * 10
    envelope = rendered(text=text, html=f"<p>{text}</p>")
    assert envelope.data.isascii()
    parsed = parse(envelope.data)
    assert body_text(parsed, "plain") == text
    assert body_text(parsed, "html") == f"<p>{text}</p>\n"


# --- the wire format ------------------------------------------------------------------------------------------


def test_long_single_line_text() -> None:
    text = "x" * 5000
    envelope = rendered(text=text)
    assert_wire_format(envelope.data)
    assert body_text(parse(envelope.data), "plain").rstrip("\n") == text


def test_long_single_line_html_and_non_ascii_text() -> None:
    html = "<p>" + "word " * 2000 + "</p>"
    text = "ü" * 3000
    envelope = rendered(text=text, html=html)
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    assert body_text(parsed, "plain").rstrip("\n") == text
    assert body_text(parsed, "html").rstrip("\n") == html


def test_long_subject_without_spaces() -> None:
    subject = "S" * 2000
    envelope = rendered(subject=subject)
    assert_wire_format(envelope.data)
    assert str(parse(envelope.data)["Subject"]) == subject


def test_long_non_ascii_subject_without_spaces() -> None:
    subject = "é" * 1000
    envelope = rendered(subject=subject)
    assert_wire_format(envelope.data)
    assert envelope.data.isascii()
    assert str(parse(envelope.data)["Subject"]) == subject


@pytest.mark.parametrize("value", ["v" * 3000, "word " * 600 + "end", "<https://example.com/" + "a" * 2500 + ">"])
def test_long_header_value(value: str) -> None:
    envelope = rendered(headers={"X-Long": value})
    assert_wire_format(envelope.data)
    assert str(parse(envelope.data)["X-Long"]) == value


def test_long_display_name_and_many_recipients() -> None:
    envelope = rendered(
        to=[{"name": "N" * 300, "email": "a@example.org"}, *[f"user{i}@example.org" for i in range(45)]],
    )
    assert_wire_format(envelope.data)
    addresses = parse(envelope.data)["To"].addresses
    assert len(addresses) == 46
    assert addresses[0].display_name == "N" * 300


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        ("a\rb\rc", ["a", "b", "c"]),
        ("a\nb\nc", ["a", "b", "c"]),
        ("a\r\nb\r\nc", ["a", "b", "c"]),
        ("a\r\n\rb\n\r\nc", ["a", "", "b", "", "c"]),
        ("a\r\rb", ["a", "", "b"]),
        ("a\n\nb", ["a", "", "b"]),
    ],
)
def test_line_endings_are_normalised(text: str, lines: list[str]) -> None:
    envelope = rendered(text=text, html=text.replace("a", "<p>a</p>"))
    assert_wire_format(envelope.data)
    parsed = parse(envelope.data)
    assert body_text(parsed, "plain").rstrip("\n").split("\n") == lines
    assert body_text(parsed, "html").rstrip("\n").split("\n")[1:] == lines[1:]


def test_line_endings_are_normalised_in_non_ascii_text() -> None:
    envelope = rendered(text="é\rü\nö\r\n.")
    assert_wire_format(envelope.data)
    assert body_text(parse(envelope.data), "plain").rstrip("\n").split("\n") == ["é", "ü", "ö", "."]


@pytest.mark.parametrize("text", [".", "a\n.\nb", "a\r\n.\r\nb", "a\r.\rb", ".\n", "..\n.\n", "x\n.", "é\n.\nü"])
def test_a_line_with_a_single_dot_comes_out_as_a_line(text: str) -> None:
    envelope = rendered(text=text)
    assert_wire_format(envelope.data)
    expected = text.replace("\r\n", "\n").replace("\r", "\n")
    assert body_text(parse(envelope.data), "plain").rstrip("\n") == expected.rstrip("\n")
    if text.isascii():  # the dot is a line of its own (SMTP dot-stuffing is the client's job), CRLF on both sides
        assert b"\r\n.\r\n" in envelope.data


def test_body_is_ascii_and_crlf_for_a_mix_of_everything() -> None:
    envelope = rendered(
        to=["Zoë <z@example.org>"],
        subject="Ünïcode " * 40,
        text=("line\r" * 50) + "é" * 1200 + "\n.\n",
        html="<p>" + "ß" * 2000 + "</p>\r.\r",
        headers={"X-Long": "a " * 700},
        attachments=[{"filename": "x.bin", "content": bytes(range(256)) * 40}],
    )
    assert envelope.data.isascii()
    assert_wire_format(envelope.data)


# --- what must never reach the wire ---------------------------------------------------------------------------

_INJECTIONS = [
    "=?utf-8?q?a=0D=0ABcc:_victim@example.net?=",
    "=?utf-8?b?YQ0KQmNjOiB2aWN0aW1AZXhhbXBsZS5uZXQ=?=",
    "=?us-ascii?q?a=0Ab?=",
    "=?utf-8?q?a=00b?=",
]


@pytest.mark.parametrize("payload", _INJECTIONS)
@pytest.mark.parametrize("field", ["subject", "header", "display_name"])
def test_encoded_word_cannot_smuggle_a_line_break(field: str, payload: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "subject": {"subject": payload},
        "header": {"headers": {"X-Note": payload}},
        "display_name": {"to": [{"name": payload, "email": "a@example.org"}]},
    }
    changes = cases[field]
    try:
        envelope = rendered(**changes)
    except MessageError:
        return  # refused: fine
    headers = header_block(envelope.data)
    assert b"victim" not in headers.lower()
    assert b"\x00" not in envelope.data
    assert_wire_format(envelope.data)
    assert parse(envelope.data)["Bcc"] is None


@pytest.mark.parametrize("field", ["subject", "header"])
def test_encoded_word_lookalike_text_is_refused_with_a_clear_error(field: str) -> None:
    # The email package cannot send "=?utf-8?q?x?=" literally (every reader decodes it), and decoding it before our
    # checks is how an encoded CR/LF would get in: such values are refused with a message that says why.
    value = "Use =?utf-8?q?x?= here"
    with pytest.raises(MessageError, match="encoded-word"):
        rendered(**({"subject": value} if field == "subject" else {"headers": {"X-Note": value}}))
    rendered(**({"subject": "Use =? here"} if field == "subject" else {"headers": {"X-Note": "a=?b"}}))


@pytest.mark.parametrize("field", ["text", "html", "display_name"])
def test_surrogates_are_refused_not_a_crash(field: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "text": {"text": "a\ud800b"},
        "html": {"html": "<p>a\ud800b</p>"},
        "display_name": {"to": [{"name": "N\ud800", "email": "a@example.org"}]},
    }
    changes = cases[field]
    try:
        envelope = rendered(**changes)
    except MessageError:
        return
    assert_wire_format(envelope.data)


@pytest.mark.parametrize("field", ["subject", "header"])
def test_line_separator_characters_are_refused_not_a_crash(field: str) -> None:
    value = "a\u2028b"
    try:
        envelope = rendered(**({"subject": value} if field == "subject" else {"headers": {"X-Note": value}}))
    except MessageError:
        return
    assert_wire_format(envelope.data)
