"""Message, Address and Attachment validation: addresses, header injection, custom headers, attachments."""

from __future__ import annotations

from typing import Any

import pytest

from mailsc.errors import MailscError, MessageError
from mailsc.message import Address, Attachment, Message, check_header_value, ensure_limits, safe_filename

BASE: dict[str, Any] = {"to": ["a@example.org"], "subject": "Hello", "text": "Hi"}


def build(**changes: Any) -> Message:
    return Message(**{**BASE, **changes})


def refused(**changes: Any) -> MessageError:
    with pytest.raises(MessageError) as info:
        build(**changes)
    return info.value


def locs(error: MessageError) -> list[list[Any]]:
    return [e["loc"] for e in error.errors]


def parse_refused(value: str) -> MessageError:
    with pytest.raises(MessageError) as info:
        Address.parse(value)
    return info.value


# --- addresses ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "email", "name"),
    [
        ("a@b.org", "a@b.org", ""),
        ("  a@b.org  ", "a@b.org", ""),
        ("<a@b.org>", "a@b.org", ""),
        ("Name <a@b.org>", "a@b.org", "Name"),
        ("  Spaced Name   <a@b.org> ", "a@b.org", "Spaced Name"),
        ('"Doe, John" <j@example.com>', "j@example.com", "Doe, John"),
        ('"He said \\"hi\\"" <j@example.com>', "j@example.com", 'He said "hi"'),
        ('"Back\\\\slash" <j@example.com>', "j@example.com", "Back\\slash"),
        ('"O\'Brien; <Team>" <j@example.com>', "j@example.com", "O'Brien; <Team>"),
        ("Jöhn Dœ <j@example.com>", "j@example.com", "Jöhn Dœ"),
        ("A@EXAMPLE.COM", "A@example.com", ""),  # the domain is case-insensitive, the local part is kept
        ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk", ""),
        ("Na\tme <a@b.org>", "a@b.org", "Na\tme"),  # a tab is allowed in a header
    ],
)
def test_address_parse(text: str, email: str, name: str) -> None:
    address = Address.parse(text)
    assert (address.email, address.name, address.smtputf8) == (email, name, False)


def test_address_forms() -> None:
    assert Address.parse("a@b.org") == Address(email="a@b.org")
    assert Address.model_validate(("Doe, Jane", "jane@example.com")) == Address(
        email="jane@example.com", name="Doe, Jane"
    )
    assert Address.model_validate({"email": "x@example.com", "name": "X"}).name == "X"
    same = Address(email="a@b.org")
    assert Address.parse(same) is same


def test_idn_domain_becomes_punycode_and_needs_no_smtputf8() -> None:
    address = Address.parse("Jörg <user@bücher.example>")
    assert address.email == "user@xn--bcher-kva.example"
    assert address.domain == "xn--bcher-kva.example"
    assert address.name == "Jörg"
    assert address.smtputf8 is False


@pytest.mark.parametrize("text", ["jöhn@example.com", "用户@例子.广告", "Ñame <ñ@example.com>"])
def test_non_ascii_local_part_needs_smtputf8(text: str) -> None:
    address = Address.parse(text)
    assert address.smtputf8 is True
    assert not address.email.isascii()


def test_smtputf8_is_not_serialised() -> None:
    assert "smtputf8" not in Address.parse("jöhn@example.com").model_dump()


def test_address_str_quotes_the_display_name() -> None:
    assert str(Address.parse("a@b.org")) == "a@b.org"
    assert str(Address(email="j@example.com", name='Doe, "J" \\')) == '"Doe, \\"J\\" \\\\" <j@example.com>'
    round_trip = Address.parse(str(Address(email="j@example.com", name='Doe, "J" \\')))
    assert round_trip.name == 'Doe, "J" \\'


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        "a@",
        "@b.org",
        "a@b",  # no dot in the domain
        "a@localhost",
        "a b@example.org",
        "a@@example.org",
        "a@example..org",
        "Name <a@b.org> extra",
        "a@example.org, b@example.org",
        "Name <>",
    ],
)
def test_invalid_addresses(text: str) -> None:
    error = parse_refused(text)
    assert error.errors
    assert "invalid email address" in str(error)
    assert isinstance(error, MailscError)


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00", "\x07", "\x1b", "\x7f", "\x85", "\x0b", "\x0c"])
def test_control_characters_in_addresses_and_display_names(bad: str) -> None:
    parse_refused(f"a@b.org{bad}Bcc: victim@example.org")
    parse_refused(f"Na{bad}me <a@b.org>")
    parse_refused(f'"Quoted{bad}Name" <a@b.org>')


@pytest.mark.parametrize(
    ("field", "value", "loc"),
    [
        ("to", ["Bad\nName <a@example.org>"], ["to", 0]),
        ("to", ["a@example.org", "b@example.org\r\nBcc: c@example.org"], ["to", 1]),
        ("cc", ["ok@example.org", "Bad\rName <c@example.org>"], ["cc", 1]),
        ("bcc", ["Bad\x00Name <c@example.org>"], ["bcc", 0]),
        ("reply_to", ["R\x1b <r@example.org>"], ["reply_to", 0]),
        ("from", "Evil\r\nBcc: x@example.org <f@example.org>", ["from"]),
        ("to", ["not-an-address"], ["to", 0]),
        ("from", "not-an-address", ["from"]),
    ],
)
def test_bad_address_fields_are_named(field: str, value: Any, loc: list[Any]) -> None:
    assert locs(refused(**{field: value})) == [loc]


def test_single_strings_and_lists_are_accepted() -> None:
    message = build(to="a@example.org", cc="Cee <c@example.org>", bcc=None, reply_to=["r@example.org"])
    assert [a.email for a in message.to] == ["a@example.org"]
    assert message.cc == [Address(email="c@example.org", name="Cee")]
    assert message.bcc == []
    assert [a.email for a in message.reply_to] == ["r@example.org"]


def test_from_is_accepted_by_alias_and_by_name() -> None:
    assert build(**{"from": "f@example.com"}).from_ == Address(email="f@example.com")
    assert build(from_="f@example.com").from_ == Address(email="f@example.com")
    assert Message.from_dict({**BASE, "from": "F <f@example.com>"}).from_ == Address(email="f@example.com", name="F")


# --- subject and other header values --------------------------------------------------------------------------


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\x00", "\x01", "\x08", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"])
def test_control_characters_in_the_subject(bad: str) -> None:
    error = refused(subject=f"Hello{bad}Bcc: victim@example.org")
    assert locs(error) == [["subject"]]
    assert "subject" in error.errors[0]["msg"]


def test_ordinary_subjects_are_kept_as_given() -> None:
    for subject in ["", "Hi\tthere", "  spaced  ", "Grüße 👋 from 東京", "a" * 5000, "=?not encoded", "50% off: 100$"]:
        assert build(subject=subject).subject == subject


@pytest.mark.parametrize("bad", ["\r", "\n", "\x00", "\x1b", "\x7f"])
def test_control_characters_in_header_values_and_tags(bad: str) -> None:
    error = refused(headers={"X-Campaign": f"a{bad}b"})
    assert locs(error) == [["headers"]]
    assert "X-Campaign" in error.errors[0]["msg"]
    error = refused(tags=["fine", f"bad{bad}tag"])
    assert locs(error) == [["tags"]]


@pytest.mark.parametrize("tag", ["", "x" * 101])
def test_tag_length(tag: str) -> None:
    assert locs(refused(tags=[tag])) == [["tags"]]


def test_tags_and_metadata_accepted() -> None:
    message = build(tags=["welcome", "x" * 100], metadata={"user_id": "42"})
    assert message.tags == ["welcome", "x" * 100]
    assert message.metadata == {"user_id": "42"}


def test_check_header_value_directly() -> None:
    assert check_header_value("plain\tvalue ünïcode") == "plain\tvalue ünïcode"
    with pytest.raises(ValueError, match="line break"):
        check_header_value("a\nb", "thing")
    with pytest.raises(ValueError, match="NUL"):
        check_header_value("a\x00b")
    with pytest.raises(ValueError, match="U\\+001B"):
        check_header_value("a\x1bb")


def is_refused(**changes: Any) -> bool:
    try:
        build(**changes)
    except MessageError:
        return True
    return False


@pytest.mark.parametrize(
    ("field", "bad"),
    [
        *[(field, bad) for field in ("subject", "header") for bad in ("\u2028", "\u2029", chr(0xD800), chr(0xDFFF))],
        ("display_name", chr(0xD800)),  # a display name with U+2028 renders fine (encoded); a surrogate crashes
        ("display_name", chr(0xDFFF)),
    ],
)
def test_line_separators_and_surrogates_are_refused(field: str, bad: str) -> None:
    cases: dict[str, dict[str, Any]] = {
        "subject": {"subject": f"a{bad}b"},
        "header": {"headers": {"X-A": f"a{bad}b"}},
        "display_name": {"to": [{"name": f"N{bad}N", "email": "a@example.org"}]},
    }
    changes = cases[field]
    assert is_refused(**changes)


@pytest.mark.parametrize("part", ["text", "html"])
@pytest.mark.parametrize("bad", [chr(0xD800), chr(0xDFFF), "caf\u00e9 \U0001f600 " + chr(0xDC80)])
def test_a_body_with_a_lone_surrogate_is_refused(part: str, bad: str) -> None:
    with pytest.raises(MessageError, match="lone surrogate"):
        build(**{part: f"<p>Hello {bad}</p>"})


@pytest.mark.parametrize("part", ["text", "html"])
def test_a_body_in_any_script_is_accepted(part: str) -> None:
    body = "caf\u00e9, \u65e5\u672c\u8a9e, \U0001f600, \u2028, ASCII"
    assert getattr(build(**{part: body}), part) == body


# --- custom headers -------------------------------------------------------------------------------------------


def test_allowed_custom_headers() -> None:
    headers = {
        "List-Unsubscribe": "<mailto:unsubscribe@example.com?subject=unsubscribe>, <https://example.com/u/42>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        "Precedence": "bulk",
        "Auto-Submitted": "auto-generated",
        "Feedback-ID": "campaign:customer:mail:example",
        "X-Anything": "1",
        "X-Mailer": "mailsc",
        "References": "<a@example.com> <b@example.com>",
        "In-Reply-To": "<a@example.com>",
        "Keywords": "weekly",
        "Organization": "Example Ltd",
        "x": "",
        "X~!#$%&'*+-.^_`|": "odd but legal field name",
        "N" * 76: "76 characters is the limit",
    }
    assert build(headers=headers).headers == headers


@pytest.mark.parametrize(
    ("name", "instead"),
    [
        ("From", "`from`"),
        ("from", "`from`"),
        ("Sender", "`from`"),
        ("To", "`to`"),
        ("TO", "`to`"),
        ("Cc", "`cc`"),
        ("Bcc", "`bcc`"),
        ("bCc", "`bcc`"),
        ("Reply-To", "`reply_to`"),
        ("reply-to", "`reply_to`"),
        ("Subject", "`subject`"),
        ("SUBJECT", "`subject`"),
        ("Date", "mailsc sets Date"),
        ("Message-ID", "mailsc sets Message-ID"),
        ("message-id", "mailsc sets Message-ID"),
        ("MIME-Version", "MIME structure"),
        ("Content-Type", "`attachments`"),
        ("content-transfer-encoding", "`attachments`"),
        ("Content-Disposition", "`attachments`"),
        ("Content-Anything", "`attachments`"),
        ("CONTENT-ID", "`attachments`"),
        ("Return-Path", "`from`"),
        ("Received", "servers add Received"),
        ("DKIM-Signature", "DKIM signing"),
        ("dkim-signature", "DKIM signing"),
    ],
)
def test_owned_headers_are_refused_with_what_to_use_instead(name: str, instead: str) -> None:
    error = refused(headers={name: "x"})
    assert locs(error) == [["headers"]]
    msg = error.errors[0]["msg"]
    assert repr(name) in msg
    assert "set by mailsc" in msg
    assert instead in msg


@pytest.mark.parametrize(
    "name",
    ["X:Colon", "X Space", "X\tTab", "N" * 77, "X-Ünïcode", "", "X-\x7f", "X-\x00", "X-\r\n", ":", "X-Ä"],
)
def test_bad_header_names(name: str) -> None:
    error = refused(headers={name: "x"})
    assert locs(error) == [["headers"]]
    assert "header name" in error.errors[0]["msg"]


@pytest.mark.parametrize("name", ["X-A\n", "List-Unsubscribe\n"])
def test_header_name_with_trailing_newline_is_refused(name: str) -> None:
    assert is_refused(headers={name: "v"})


def test_header_names_are_unique_case_insensitively() -> None:
    error = refused(headers={"X-Campaign": "1", "x-campaign": "2"})
    assert locs(error) == [["headers"]]
    assert "twice" in error.errors[0]["msg"]


# --- bodies ---------------------------------------------------------------------------------------------------


def test_text_or_html_is_required() -> None:
    error = refused(text=None)
    assert "text or an html" in str(error)
    assert build(text=None, html="<p>Hi</p>").html == "<p>Hi</p>"
    assert build(text="", html=None).text == ""


@pytest.mark.parametrize("field", ["text", "html"])
def test_nul_in_a_body_is_refused(field: str) -> None:
    assert locs(refused(**{field: "a\x00b"})) == [[field]]


def test_bodies_keep_line_breaks() -> None:
    message = build(text="a\r\nb\rc\n.\n", html="<p>a</p>\r\n")
    assert message.text == "a\r\nb\rc\n.\n"


# --- recipients -----------------------------------------------------------------------------------------------


def test_at_least_one_recipient() -> None:
    error = refused(to=[])
    assert "at least one recipient" in str(error)
    assert locs(refused(to=None)) == [[]]
    assert build(to=[], cc=["c@example.org"]).recipients == [Address(email="c@example.org")]
    assert build(to=[], bcc=["b@example.org"]).recipients == [Address(email="b@example.org")]


def test_reply_to_alone_is_not_a_recipient() -> None:
    refused(to=[], reply_to=["r@example.org"])


def test_recipients_are_unique_and_ordered() -> None:
    message = build(
        to=["a@example.org", "B <b@example.org>"],
        cc=["A@example.org", "c@example.org"],
        bcc=["b@example.org", "d@example.org"],
    )
    assert [a.email for a in message.recipients] == ["a@example.org", "b@example.org", "c@example.org", "d@example.org"]


def test_ensure_limits() -> None:
    message = build(to=[f"u{i}@example.org" for i in range(3)], bcc=["u0@example.org", "x@example.org"])
    ensure_limits(message, max_recipients=4)
    with pytest.raises(MessageError) as info:
        ensure_limits(message, max_recipients=3)
    assert info.value.errors[0]["loc"] == ["to"]
    assert "4 recipients" in str(info.value)


# --- attachments ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "cleaned"),
    [
        ("../../etc/passwd", "passwd"),
        ("C:\\x\\y.pdf", "y.pdf"),
        ("/absolute/path/report.csv", "report.csv"),
        ("a\x00b\nc.txt", "abc.txt"),
        ("  .hidden.txt ", "hidden.txt"),
        ("..\\..\\win.ini", "win.ini"),
        ("\u202egnp.exe", "gnp.exe"),  # right-to-left override (a format character) removed
        ("résumé 2024.pdf", "résumé 2024.pdf"),
        ("x" * 300, "x" * 200),
    ],
)
def test_attachment_filename_is_cleaned(given: str, cleaned: str) -> None:
    assert safe_filename(given) == cleaned
    message = build(attachments=[{"filename": given, "content": b"x"}])
    assert message.attachments[0].filename == cleaned


@pytest.mark.parametrize("given", ["", "...", "/", "dir/", "C:\\dir\\", "\x00\x01", " . "])
def test_attachment_filename_empty_after_cleaning(given: str) -> None:
    error = refused(attachments=[{"filename": given, "content": b"x"}])
    assert locs(error) == [["attachments", 0, "filename"]]
    assert "empty" in str(error)


@pytest.mark.parametrize(
    ("filename", "content_type"),
    [
        ("logo.png", "image/png"),
        ("report.pdf", "application/pdf"),
        ("notes.txt", "text/plain"),
        ("page.HTML", "text/html"),
        ("data.csv", "text/csv"),
        ("archive.unknownext", "application/octet-stream"),
        ("no-extension", "application/octet-stream"),
    ],
)
def test_content_type_guessed_from_the_name(filename: str, content_type: str) -> None:
    attachment = Attachment(filename=filename, content=b"")
    assert attachment.content_type == content_type
    assert f"{attachment.maintype}/{attachment.subtype}" == content_type


def test_explicit_content_type_is_kept() -> None:
    attachment = Attachment(filename="data.bin", content=b"", content_type="Application/VND.Example+JSON")
    assert attachment.content_type == "Application/VND.Example+JSON"
    assert (attachment.maintype, attachment.subtype) == ("application", "vnd.example+json")


@pytest.mark.parametrize(
    "content_type",
    ["text", "text/", "/plain", "text/plain; charset=utf-8", "a b/c", "text/plain\r\nX-Evil: 1", "text/plain\r\n"],
)
def test_bad_content_type(content_type: str) -> None:
    error = refused(attachments=[{"filename": "a.txt", "content": b"x", "content_type": content_type}])
    assert locs(error) == [["attachments", 0]]
    assert "content_type" in str(error)


@pytest.mark.parametrize("content_type", ["text/plain\n", "image/png\n", "tëxt/plain", "text/plaïn"])
def test_content_type_with_trailing_newline_or_non_ascii_is_refused(content_type: str) -> None:
    assert is_refused(attachments=[{"filename": "a.txt", "content": b"x", "content_type": content_type}])


def test_inline_attachment_needs_a_content_id() -> None:
    error = refused(
        html="<img src='cid:logo'>", attachments=[{"filename": "logo.png", "content": b"x", "inline": True}]
    )
    assert locs(error) == [["attachments", 0]]
    assert "content_id" in str(error)


def test_inline_attachment_content_id_is_normalised() -> None:
    message = build(
        html="<img src='cid:logo@example'>",
        attachments=[{"filename": "logo.png", "content": b"x", "inline": True, "content_id": " <logo@example> "}],
    )
    assert message.attachments[0].content_id == "logo@example"


@pytest.mark.parametrize("content_id", ["lo go", "a<b", "a>b>", "ä", "x\r\ny", ""])
def test_bad_content_id(content_id: str) -> None:
    error = refused(
        html="<p>x</p>",
        attachments=[{"filename": "logo.png", "content": b"x", "inline": True, "content_id": content_id}],
    )
    assert locs(error) == [["attachments", 0, "content_id"]]


def test_inline_attachment_without_html_is_refused() -> None:
    error = refused(attachments=[{"filename": "logo.png", "content": b"x", "inline": True, "content_id": "logo"}])
    assert "html" in str(error)


def test_two_inline_attachments_with_one_content_id() -> None:
    inline = {"content": b"x", "inline": True, "content_id": "same"}
    error = refused(html="<p>x</p>", attachments=[{"filename": "a.png", **inline}, {"filename": "b.png", **inline}])
    assert "share a content_id" in str(error)


def test_attachment_objects_are_accepted() -> None:
    attachment = Attachment(filename="a.txt", content=b"hello")
    assert build(attachments=[attachment]).attachments == [attachment]


def test_attachment_refuses_unknown_fields() -> None:
    assert locs(refused(attachments=[{"filename": "a.txt", "content": b"", "size": 1}])) == [["attachments", 0, "size"]]


def test_attachment_built_directly_raises_message_error() -> None:
    with pytest.raises(MessageError):
        Attachment(filename="../", content=b"")


# --- several problems at once and the error shape -------------------------------------------------------------


def test_every_bad_field_is_reported_at_once() -> None:
    error = refused(
        **{"from": "not-an-address"},
        to=["ok@example.org", "Bad\nName <b@example.org>"],
        subject="Hi\r\nBcc: x@example.org",
        headers={"Subject": "again"},
        tags=["bad\ntag"],
        text="a\x00",
        attachments=[{"filename": "../", "content": b""}],
    )
    assert sorted(map(str, locs(error))) == sorted(
        map(
            str,
            [
                ["from"],
                ["to", 1],
                ["subject"],
                ["headers"],
                ["tags"],
                ["text"],
                ["attachments", 0, "filename"],
            ],
        )
    )
    text = str(error)
    for part in ("from:", "to.1:", "subject:", "headers:", "tags:", "text:", "attachments.0.filename:"):
        assert part in text


def test_unknown_fields_are_refused() -> None:
    assert locs(refused(bogus=1)) == [["bogus"]]


def test_subject_is_required() -> None:
    with pytest.raises(MessageError) as info:
        Message(to=["a@example.org"], text="x")
    assert locs(info.value) == [["subject"]]


def test_message_error_shape() -> None:
    error = MessageError.single("to", "nope")
    assert error.errors == [{"loc": ["to"], "msg": "nope"}]
    assert str(error) == "to: nope"
    assert str(MessageError([{"loc": [], "msg": "whole"}, {"loc": ["a", 0], "msg": "x"}])) == "whole; a.0: x"


def test_messages_are_frozen() -> None:
    message = build()
    with pytest.raises(Exception, match="frozen"):
        message.subject = "changed"  # type: ignore[misc]
