"""html_to_text: the plain-text part derived from an HTML body."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsc.htmltext import _simple_parts, html_to_text, html_to_text_by_htmlparser


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # paragraphs and blocks
        ("<p>One</p><p>Two</p>", "One\n\nTwo\n"),
        ("<div>One</div><div>Two</div>", "One\n\nTwo\n"),
        ("<h1>Title</h1>Body text", "Title\n\nBody text\n"),
        ("<p>a</p><p></p><p></p><p>b</p>", "a\n\nb\n"),  # never more than one blank line
        ("<blockquote>quoted</blockquote>after", "quoted\n\nafter\n"),
        ("before<hr>after", "before\n\nafter\n"),
        # line breaks
        ("a<br>b<br/>c<br />d", "a\nb\nc\nd\n"),
        ("<p>line one<br>line two</p>", "line one\nline two\n"),
        # lists
        ("<ul><li>x</li><li>y</li></ul>", "- x\n- y\n"),
        ("<ol><li>first</li><li>second</li></ol>", "- first\n- second\n"),
        ("<p>Items:</p><ul><li>a</li></ul><p>End</p>", "Items:\n\n- a\n\nEnd\n"),
        # tables as lines
        ("<table><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></table>", "a b\n\nc\n"),
        # whitespace as a browser would collapse it
        ("  lots   of\n\n  space\t here  ", "lots of space here\n"),
        ("<p>\n   Hello\n   world\n</p>", "Hello world\n"),
        ("", "\n"),
        # images
        ('<img src="logo.png" alt="Company logo">', "Company logo\n"),
        ('<img src="spacer.gif">text', "text\n"),
        # unclosed and odd markup
        ("<p>unclosed", "unclosed\n"),
        ("<!-- a comment -->visible", "visible\n"),
        ("<P>Upper<BR>case</P>", "Upper\ncase\n"),
    ],
)
def test_structure(html: str, text: str) -> None:
    assert html_to_text(html) == text


@pytest.mark.parametrize(
    ("html", "text"),
    [
        (
            '<a href="https://example.com/confirm?t=1&amp;u=2">Confirm</a>',
            "Confirm (https://example.com/confirm?t=1&u=2)\n",
        ),
        ('Read <a href="https://example.com/p">the post</a> now.', "Read the post (https://example.com/p) now.\n"),
        ('<a href="https://example.com/a">A <b>bold</b> link</a>', "A bold link (https://example.com/a)\n"),
        ('<a href="https://example.com/p">https://example.com/p</a>', "https://example.com/p\n"),  # not twice
        ('<a href="https://example.com/empty"></a>', "https://example.com/empty\n"),
        ('<a href="https://example.com/a"><img alt="Logo" src="x"></a>', "Logo (https://example.com/a)\n"),
        ('<a href="#top">Back to top</a>', "Back to top\n"),
        ('<a href="javascript:alert(1)">Click</a>', "Click\n"),
        ("<a>no href</a>", "no href\n"),
        ('<a name="anchor">named</a>', "named\n"),
    ],
)
def test_links_keep_their_urls(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_several_links_in_one_paragraph() -> None:
    html = '<p><a href="https://a.example/">A</a> and <a href="https://b.example/">B</a></p>'
    assert html_to_text(html) == "A (https://a.example/) and B (https://b.example/)\n"


def test_mailto_links_show_the_address() -> None:
    assert html_to_text('<a href="mailto:help@example.com">Write to us</a>') == "Write to us (help@example.com)\n"


def test_mailto_link_whose_text_is_the_address_is_not_repeated() -> None:
    assert html_to_text('<a href="mailto:help@example.com">help@example.com</a>') == "help@example.com\n"


@pytest.mark.parametrize(
    "html",
    [
        "<script>var secret = 'x';</script>Hello<style>p { color: red }</style>",
        "<head><title>Title</title><style>.a{}</style></head><body>Hello</body>",
        "<SCRIPT type='text/javascript'>alert(1)</SCRIPT>Hello",
        "<noscript>Enable JS</noscript><template><p>tpl</p></template>Hello",
        "<script>if (a < b) { document.write('<p>x</p>') }</script>Hello",
    ],
)
def test_script_style_and_head_are_skipped(html: str) -> None:
    assert html_to_text(html) == "Hello\n"


@pytest.mark.parametrize(
    ("html", "text"),
    [
        ("&amp; &lt;b&gt; &quot;q&quot; &#39;s&#39;", "& <b> \"q\" 's'\n"),
        ("caf&eacute; &#233; &#xE9;", "café é é\n"),
        ("&#x263A; &hearts; &euro;5", "☺ ♥ €5\n"),
        ("a&nbsp;b", "a\xa0b\n"),
        ("AT&amp;T <b>&lt;not a tag&gt;</b>", "AT&T <not a tag>\n"),
    ],
)
def test_entities_are_decoded(html: str, text: str) -> None:
    assert html_to_text(html) == text


def test_preformatted_text_keeps_its_line_breaks_and_inner_spaces() -> None:
    assert html_to_text("<pre>a   b\nc</pre>after") == "a   b\nc\n\nafter\n"


def test_preformatted_text_keeps_its_indentation() -> None:
    assert html_to_text("<pre>def f():\n    return 1</pre>") == "def f():\n    return 1\n"


def test_a_typical_transactional_email() -> None:
    html = """
    <html><head><style>body { font-family: sans-serif }</style></head>
    <body>
      <h1>Welcome, Ada!</h1>
      <p>Thanks for signing up. Please
         <a href="https://app.example.com/verify?token=abc">verify your address</a>.</p>
      <ul><li>Fast</li><li>Reliable</li></ul>
      <p>Questions? <a href="mailto:support@example.com">Contact support</a><br>
         &mdash; The Team</p>
    </body></html>
    """
    assert html_to_text(html) == (
        "Welcome, Ada!\n\n"
        "Thanks for signing up. Please verify your address (https://app.example.com/verify?token=abc).\n\n"
        "- Fast\n- Reliable\n\n"
        "Questions? Contact support (support@example.com)\n"
        "— The Team\n"
    )


def test_output_has_no_leading_or_trailing_blank_lines_and_ends_with_one_newline() -> None:
    text = html_to_text("<p></p><br><div><p>content</p></div><br><br><p></p>")
    assert text == "content\n"


# The fast path (a regular-expression tokenizer for plain markup) must give exactly what HTMLParser gives. Markup is
# generated from pieces that cover the plain subset and what leaves it (stray '<', odd comments, unquoted values
# touching '/>', raw-text elements, declarations, processing instructions, entities cut by tags).
_TAG_NAMES = ["p", "P", "div", "a", "A", "img", "br", "li", "td", "th", "tr", "table", "pre", "b", "span", "o:p"]
_TAG_NAMES += ["style", "script", "title", "head", "noscript", "textarea", "iframe", "h1", "my-tag"]
_VALUES = ['"https://example.com/a?x=1&amp;y=2"', "'mailto:a@example.org'", "x", '""', '"#top"', '"a>b"', "u/"]
_VALUES += ['"javascript:alert(1)"', '"Logo &amp; co"', "'it''s'", "&amp;"]
_attribute_st = st.tuples(
    st.sampled_from([" ", "  ", "\n", "\t", ""]),
    st.sampled_from(["href", "HREF", "alt", "class", "name", "data-x"]),
    st.one_of(st.none(), st.tuples(st.sampled_from(["=", " = ", "=="]), st.sampled_from(_VALUES))),
).map(lambda a: f"{a[0]}{a[1]}" + ("" if a[2] is None else a[2][0] + a[2][1]))
_start_st = st.tuples(
    st.sampled_from(_TAG_NAMES), st.lists(_attribute_st, max_size=3), st.sampled_from(["", " ", "/", " /", "\n"])
).map(lambda t: f"<{t[0]}{''.join(t[1])}{t[2]}>")
_end_st = st.tuples(st.sampled_from(_TAG_NAMES), st.sampled_from(["", " ", "\n"])).map(lambda t: f"</{t[0]}{t[1]}>")
_text_st = st.one_of(
    st.sampled_from([" ", "\n", "  x  ", "a&amp;b", "&lt;", "&amp", "&#32;", "&#10;", "&nbsp;", "&", "caf&eacute;"]),
    st.sampled_from(["Hello", "Back to top", "https://example.com/a?x=1&y=2", "a@example.org", "Logo"]),
    st.text(st.characters(exclude_categories=["Cs"]), max_size=12),
)
_odd_st = st.sampled_from(
    [
        *("<", "< b", "<!-- c -->", "<!---->", "<!-->", "<!-- a -- b -->", "<!DOCTYPE html>", "<!doctype>"),
        *("<?php ?>", "<![CDATA[x]]>", "<!--[if mso]><table><![endif]-->", "</ p>", "</>", "<a href=x/>", "a<b"),
        "<p\u3000>",
    ]
)
markup_st = st.lists(st.one_of(_text_st, _start_st, _end_st, _odd_st), max_size=25).map("".join)


@settings(max_examples=1500, deadline=None)
@given(html=markup_st)
def test_the_fast_path_equals_htmlparser_on_generated_markup(html: str) -> None:
    assert html_to_text(html) == html_to_text_by_htmlparser(html)


@settings(max_examples=300, deadline=None)
@given(html=st.text(st.characters(exclude_categories=["Cs"]), max_size=200))
def test_the_fast_path_equals_htmlparser_on_any_text(html: str) -> None:
    assert html_to_text(html) == html_to_text_by_htmlparser(html)


@pytest.mark.parametrize(
    "html",
    [
        '<p>Receipt</p><table><tr><td>1 x Book <br><small>SKU 1</small></td><td class="price">3.50 EUR</td></tr>'
        '</table><a class="button" href="https://shop.example.com/orders/1?a=1&amp;b=2">View</a>',
        "<!doctype html><html><head><meta charset='utf-8'><title>T</title><style>p > a { color: red }</style>"
        "</head><body><!-- note --><p>Hi&nbsp;there</p></body></html>",
        '<pre>a   b\n  c</pre><img src="x.png" alt="Logo"/><ul><li>one<li>two</ul>',
        "<!--[if mso]><table><tr><td><![endif]-->text",
    ],
)
def test_plain_email_markup_takes_the_fast_path(html: str) -> None:
    parts = _simple_parts(html)
    assert parts is not None
    assert html_to_text(html) == html_to_text_by_htmlparser(html)


@pytest.mark.parametrize(
    "html",
    [
        "a < b <p>c</p>",
        '<a title="x>y" href="https://example.com/">link</a>',
        "<style>a < b { }</style>visible",
        "<style>p { }",
        "<textarea><p>raw?</p></textarea>",
        "<a href=https://example.com/x/>link</a>",
    ],
)
def test_markup_outside_the_plain_subset_goes_to_htmlparser(html: str) -> None:
    assert _simple_parts(html) is None
    assert html_to_text(html) == html_to_text_by_htmlparser(html)
