"""Property: the hand-written builder for mail without attachments (``mime._build_fast``) produces exactly the bytes
of the stdlib builder it replaces (``mime._build_compat``), for any text, HTML, subject, names and custom headers
``Message`` accepts. And the short-header shortcut of ``_Compat32`` equals ``email.header.Header`` folding, and the
quoted-printable encoder equals the stdlib's and decodes back to the text."""

from __future__ import annotations

import email.quoprimime
import quopri
import re
from datetime import UTC, datetime
from email.header import Header

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from mailsc.errors import MessageError
from mailsc.message import Address, Message
from mailsc.mime import _COMPAT, _PLAIN_HEADER, _build_compat, _build_fast, _qp

NOW = datetime(2026, 11, 24, 3, 0, tzinfo=UTC)
text_st = st.text(st.characters(exclude_categories=["Cs"]), max_size=400)
header_st = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]), min_size=1, max_size=120)
name_st = st.one_of(st.none(), st.text(st.characters(exclude_categories=["Cs", "Cc", "Zl", "Zp"]), max_size=40))


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(st.none(), text_st),
    html=st.one_of(st.none(), text_st),
    subject=header_st,
    name=name_st,
    header=st.one_of(st.none(), header_st),
    cc=st.booleans(),
)
def test_fast_builder_is_byte_identical_to_the_stdlib_builder(
    text: str | None, html: str | None, subject: str, name: str | None, header: str | None, cc: bool
) -> None:
    if text is None and html is None:
        text = ""
    try:
        message = Message(
            to=[Address(email="a@example.org", name=name)],
            cc=["c@example.org"] if cc else [],
            subject=subject,
            text=text,
            html=html,
            headers={"X-Custom": header} if header else {},
        )
    except MessageError:
        assume(False)  # refused at the edge (CR/LF, encoded-words, ...): never rendered
    sender = Address.parse("Sender <s@example.com>")
    expected, message_id = _build_compat(message, sender, NOW)
    boundary = re.search(rb'boundary="([^"]+)"', expected)
    actual, _ = _build_fast(
        message, sender, NOW, boundary=boundary.group(1).decode() if boundary else None, message_id=message_id
    )
    assert actual == expected


_word = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=20)


@settings(max_examples=300, deadline=None)
@given(
    name=st.sampled_from(["Subject", "To", "X-A-Rather-Long-Header-Name"]),
    words=st.lists(_word, min_size=1, max_size=8),
)
def test_plain_header_shortcut_equals_header_folding(name: str, words: list[str]) -> None:
    value = " ".join(words)
    assume(len(name) + len(value) <= 76)
    assert _PLAIN_HEADER.fullmatch(value)
    folded = Header(value, header_name=name).encode(linesep="\r\n", maxlinelen=78)
    assert _COMPAT.fold(name, value) == f"{name}: {folded}\r\n"


# Text shaped to reach every branch of the quoted-printable wrapping: lines around the 76-character limit, '=' and
# non-ASCII characters (3-character escapes) near where a line breaks, trailing spaces and tabs, dense non-Latin text.
_qp_piece = st.one_of(
    st.sampled_from(["=", " ", "\t", "\n", ".", "é", "€", "日本", "😀", "\x00", "\x0b", "\x7f", "\x85", "\u2028"]),
    st.integers(min_value=60, max_value=160).map(lambda n: "x" * n),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=30),
)
qp_text_st = st.lists(_qp_piece, max_size=20).map("".join)


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(qp_text_st, text_st))
def test_quoted_printable_equals_the_stdlib_encoder(text: str) -> None:
    assert _qp(text) == email.quoprimime.body_encode(text.encode("utf-8").decode("latin1"))


@settings(max_examples=500, deadline=None)
@given(text=st.one_of(qp_text_st, text_st).map(lambda t: t.replace("\r", "")))
def test_quoted_printable_decodes_to_the_text_and_is_valid_rfc_2045(text: str) -> None:
    """Bodies reach ``_qp`` with their line breaks normalised to LF (so without CR)."""
    encoded = _qp(text)
    assert quopri.decodestring(encoded.encode("ascii")) == text.encode("utf-8")
    for line in encoded.split("\n"):
        assert len(line) <= 76
        assert not line.endswith((" ", "\t"))
        assert all(" " <= char <= "~" or char == "\t" for char in line)


def test_quoted_printable_wrapping_at_every_boundary_equals_the_stdlib_encoder() -> None:
    """Exhaustively around the break points (which random text reaches only by chance): lines of 70-80 and
    145-155 characters, an escape ('=' or 'é') or none at each position near the first break, a trailing space,
    tab or nothing."""
    for length in [*range(70, 81), *range(145, 156)]:
        for position in [None, *range(68, 78)]:
            for special in ("=", "é"):
                for ending in ("", " ", "\t"):
                    chars = ["x"] * length
                    if position is not None and position < length:
                        chars[position] = special
                    text = "".join(chars) + ending
                    for body in (text, text + "\n", "a\n" + text + "\nb"):
                        expected = email.quoprimime.body_encode(body.encode("utf-8").decode("latin1"))
                        assert _qp(body) == expected, (length, position, special, ending)
