"""CSS inlined once per template version: the same document as inlining every rendered message, refused whenever
rendering could change which elements a rule matches, and a fallback when a render outputs markup."""

from __future__ import annotations

import itertools
import logging
import os
import time
from pathlib import Path
from typing import Any

import css_inline
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailsc.htmltext import html_to_text
from mailsc.templates import FileTemplates, StoredTemplates
from tests.templates.conftest import Source

_versions = itertools.count(1)
# Parse and serialise without inlining: two documents equal after this are the same DOM.
_NORMAL = css_inline.CSSInliner(
    inline_style_tags=False, keep_style_tags=True, keep_link_tags=True, load_remote_stylesheets=False
)
STYLE = """<style>
body { margin: 0; }
.items td { padding: 4px; border-bottom: 1px solid #eee; }
.items .price { text-align: right; }
p { font-size: 15px; }
a.button { background: #1a82e2; color: #fff; }
div > p { margin: 0; }
a:hover { color: red; }
@media (max-width: 600px) { p { font-size: 18px; } }
</style>"""
RECEIPT = (
    "<!doctype html><html><head><title>Receipt {{ order }}</title>"
    + STYLE
    + """</head><body>
<p>Hello {{ name }}, thanks for order #{{ order }}.</p>
<table class="items"><tr><th>Item</th><th>Price</th></tr>
{% for line in lines %}<tr><td>{{ line.title }}</td><td class="price">{{ line.price }}</td></tr>
{% else %}<tr><td>No lines</td></tr>
{% endfor %}</table>
{% if note %}<div><p>{{ note }}</p></div>{% elif extra %}<p>{{ extra }}</p>{% else %}<p>No note.</p>{% endif %}
{% set greeting = "Bye" %}<p>{{ greeting }} &amp; thanks</p>
<p><a class="button" href="https://shop.example/orders/{{ order }}?a=1&amp;b={{ name }}">Your order</a></p>
</body></html>"""
)


def compiled_and_rendered(html: str, variables: dict[str, Any]) -> tuple[Any, str, str]:
    """(the compiled template, its HTML rendered as sent, the HTML when every message is inlined on its own). The
    text part sent is checked too: whichever way it was made, it is ``html_to_text`` of the HTML sent."""
    templates = StoredTemplates()
    source = Source("t", next(_versions), "Hi", html=html)
    compiled = templates.compiled(source)
    rendered = templates.render(source, variables)
    once = rendered.html
    per_message = StoredTemplates()
    per_message.compiled(source).inlined.clear()
    each = per_message.render(source, variables).html
    assert once is not None
    assert each is not None
    assert rendered.text == html_to_text(once)
    return compiled, once, each


def same_document(a: str, b: str) -> bool:
    return str(_NORMAL.inline(a)) == str(_NORMAL.inline(b))


VARIABLES: list[dict[str, Any]] = [
    {"name": "Ada", "order": 1, "lines": [{"title": "Tea", "price": "3.50"}], "note": "", "extra": ""},
    {
        "name": "<b>Eve</b> & 'Mallory' \"x\" &amp;",
        "order": "<script>alert(1)</script>",
        "lines": [{"title": f"<td>item {n}</td>", "price": n} for n in range(5)],
        "note": "ships <tomorrow>\n  twice",
        "extra": "",
    },
    {"name": "", "order": 0, "lines": [], "note": "", "extra": "</p><p class=items>"},
]


@pytest.mark.parametrize("variables", VARIABLES)
def test_a_receipt_is_inlined_once_and_renders_the_document_per_message_inlining_gives(
    variables: dict[str, Any],
) -> None:
    compiled, once, each = compiled_and_rendered(RECEIPT, variables)
    assert "html" in compiled.inlined, compiled.not_inlined
    assert compiled.inlined["html"].derives_text  # the text part noted while the HTML renders
    assert same_document(once, each)
    assert '<td style="padding: 4px;border-bottom: 1px solid #eee;">' in once  # CSS inlined
    if variables["lines"]:
        assert '<td class="price" style="padding: 4px;border-bottom: 1px solid #eee;text-align: right;">' in once
    assert "@media (max-width: 600px)" in once  # kept in a <style> block
    assert "<script>" not in once
    assert "<b>Eve</b>" not in once


def test_variables_are_escaped_text_in_the_template_inlined_once() -> None:
    compiled, once, _ = compiled_and_rendered(RECEIPT, VARIABLES[1])
    assert compiled.inlined
    assert "&lt;b&gt;Eve&lt;/b&gt; &amp; &#39;Mallory&#39;" in once
    assert "orders/&lt;script&gt;alert(1)&lt;/script&gt;?a=1&amp;b=&lt;b&gt;Eve" in once


REFUSED = {
    "a class from a variable": ('<style>p{color:red}</style><p class="{{ c }}">x</p>', "class= value"),
    "an id from a variable": ('<style>p{color:red}</style><p id="x{{ c }}">x</p>', "id= value"),
    "a style attribute from a variable": ('<style>p{color:red}</style><p style="color: {{ c }}">x</p>', "style= value"),
    "Jinja in the <style> block": ("<style>p { color: {{ c }}; }</style><p>x</p>", "<style> block"),
    "a sibling selector": ("<style>p + p { color: red; }</style><p>a</p><p>b</p>", "p + p"),
    "a structural pseudo-class": ("<style>tr:nth-child(2n) td { color: red; }</style><p>x</p>", "nth-child"),
    "an unbalanced if": ('<style>p{color:red}</style>{% if c %}<div class="a">{% endif %}<p>x</p>', "whole elements"),
    "a loop that opens a table's body": (
        "<style>td{color:red}</style><table>{% for c in cs %}<tr><td>{{ c }}</td></tr>{% endfor %}</table>",
        "whole elements",
    ),
    "text foster-parented out of a table": (
        "<style>td{color:red}</style><table><tr><td>a</td></tr>{% for c in cs %}x{% endfor %}</table>",
        "reordered",
    ),
    "a block tag in an HTML comment": (
        "<style>p{color:red}</style><!-- {% if c %} -->x<!-- {% endif %} -->",
        "comment",
    ),
    "a block tag inside a tag": ('<style>p{color:red}</style><p {% if c %}title="t"{% endif %}>x</p>', "tag"),
    "a macro": ("<style>p{color:red}</style>{% macro m() %}<p>x</p>{% endmacro %}{{ m() }}", "Macro"),
    "an output after a bare &": ("<style>p{color:red}</style><p>&{{ c }};</p>", "bare '&'"),
    "an output as a tag name": ("<style>p{color:red}</style><h{{ c }}>x</h{{ c }}>", "tag"),
    "constant markup": ("<style>p{color:red}</style>{{ '<p>x</p>'|safe }}", "constant markup"),
    # Found by review: each was accepted once and rendered differently.
    "a <style> block inside an if": (
        "<style>p{margin:0}</style>{% if not c %}<style>p{color:red}</style>{% endif %}<p>x</p>",
        "around <style>",
    ),
    "a <body> tag inside an if": (
        '<style>.dark p{color:white}</style>{% if not c %}<body class="dark">{% endif %}<p>x</p>',
        "around <style>, <head>, <body>",
    ),
    "an '@' in a CSS string hiding a rule": (
        '<style>a{content:"@"} li:first-child{color:red}</style><ul>{% for x in cs %}<li>{{ x }}</li>{% endfor %}</ul>',
        "first-child",
    ),
    "a CSS comment opened inside a string": (
        '<style>a{content:"/*"} li:first-child{color:red} b{content:"*/"}</style>'
        "<ul>{% for x in cs %}<li>{{ x }}</li>{% endfor %}</ul>",
        "first-child",
    ),
    "an at-rule whose rules might be inlined": (
        "<style>@supports (x:y) { p { color: red } }</style><p>x</p>",
        "at-rule",
    ),
    "an output before the doctype": (
        "{{ c }}<!doctype html><html><head><style>p td{color:red}</style></head><body><p>x</p></body></html>",
        "before the document's head ends",
    ),
    "an output in <head>": (
        '<html><head>{{ c }}<meta charset="utf-8"><style>p{color:red}</style></head><body><p>x</p></body></html>',
        "before the document's head ends",
    ),
    "a character reference split by a block tag": (
        "<style>p{color:red}</style><p>&am{% set z = 1 %}p;</p>",
        "bare '&'",
    ),
    "an output in an unquoted attribute value": (
        "<style>.evil{color:red}</style><a href={{ c }}>x</a>",
        "unquoted attribute value",
    ),
    "an output css-inline reads itself": (
        '<style>p{color:red}</style><p data-css-inline="{{ c }}">x</p>',
        "data-css-inline= value",
    ),
    "an output right after <pre>": ("<style>p{color:red}</style><pre>{{ c }}</pre>", "right after <pre>"),
}


@pytest.mark.parametrize("case", REFUSED.values(), ids=list(REFUSED))
def test_templates_rendering_could_reshape_are_inlined_per_message(case: tuple[str, str]) -> None:
    html, reason = case
    variables = {"c": "2", "cs": ["1", "2"]}
    compiled, once, each = compiled_and_rendered(html, variables)
    assert not compiled.inlined
    assert reason in compiled.not_inlined
    assert once == each


def test_markup_output_at_render_time_falls_back_to_inlining_that_message() -> None:
    html = "<style>p.note { color: red; }</style><div>{{ note|safe }}</div><p>{{ name }}</p>"
    templates = StoredTemplates()
    source = Source("t", next(_versions), "Hi", html=html)
    assert templates.compiled(source).inlined
    rendered = templates.render(source, {"note": '<p class="note">hi</p>', "name": "Ada"}).html
    assert rendered is not None
    assert '<p class="note" style="color: red;">hi</p>' in rendered  # the rule reached the element from the variable
    assert not templates.compiled(source).inlined  # this version is inlined per message from now on


@pytest.mark.parametrize(
    ("html", "value"),
    [
        ("<p data-x='{{ d|tojson }}'>x</p>", "x onmouseover=alert(1) style=background:url(//evil) y"),
        ("<a href='{{ d|safe }}'>x</a>", 'a"onclick="alert(1)'),
        ("<p>{{ d|safe }}&#108;t;</p>", "&"),
        ("<p>{{ d|safe }}</p>", "no tags, but markup all the same"),
    ],
)
def test_any_markup_output_falls_back_so_quotes_and_ampersands_keep_their_meaning(html: str, value: str) -> None:
    compiled, once, each = compiled_and_rendered("<style>p{color:red}</style>" + html, {"d": value})
    assert not compiled.inlined  # dropped at the first render
    assert once == each


# Generated templates: balanced pieces of markup around loops, tests and outputs, rendered both ways.
_ELEMENTS = [
    "<p>{x}</p>",
    '<p class="a">{x}</p>',
    "<div>{x}</div>",
    '<div class="b"><p>{x}</p></div>',
    "{x}",
    '<a class="button" href="https://e.example/{{ v }}">{x}</a>',
    "<br>",
    "<ul><li>{x}</li></ul>",
    '<img alt="{{ w }}" src="x.png">',
    '<table class="b"><tr><td>{x}</td></tr>{% for r in vs %}<tr><td class="a">{{ r }}</td></tr>{% endfor %}</table>',
]
_INNER = ["{{ v }}", "text", "a &amp; b", "{{ v }} and {{ w }}", ""]
_CSS = (
    "<style>p { color: red; } .a { margin: 0; } div p { padding: 1px; } .b > p { border: 0; } a { color: blue; }"
    " li { margin: 2px; } @media (max-width: 9px) { p { color: blue; } }</style>"
)


@st.composite
def _templates(draw: st.DrawFn) -> str:
    def piece(depth: int) -> str:
        element = draw(st.sampled_from(_ELEMENTS)).replace("{x}", draw(st.sampled_from(_INNER)))
        wrap = draw(st.sampled_from(["", "for", "if", "ifelse", "with", "set"])) if depth < 2 else ""
        inner = element + (piece(depth + 1) if draw(st.booleans()) else "")
        if wrap == "for":
            return "{% for v in vs %}" + inner + "{% else %}<p>none</p>{% endfor %}"
        if wrap == "if":
            return "{% if v %}" + inner + "{% endif %}"
        if wrap == "ifelse":
            return "{% if w %}" + inner + "{% elif v %}<p>{{ v }}</p>{% else %}" + element + "{% endif %}"
        if wrap == "with":
            return "{% with v = w %}" + inner + "{% endwith %}"
        if wrap == "set":
            return "{% set v = w %}" + inner
        return inner

    body = "".join(piece(0) for _ in range(draw(st.integers(1, 4))))
    return "<!doctype html><html><head><title>{{ w }}</title>" + _CSS + "</head><body>" + body + "</body></html>"


@settings(max_examples=150, deadline=None)
@given(
    _templates(),
    st.lists(st.sampled_from(["x", "<i>y</i>", "a & b", " ", "", "&amp;"]), max_size=3),
    st.sampled_from(["", "w", "<p>", "&lt;"]),
)
def test_generated_templates_render_the_same_document_either_way(html: str, vs: list[str], w: str) -> None:
    variables = {"v": vs[0] if vs else "", "vs": vs, "w": w}
    compiled, once, each = compiled_and_rendered(html, variables)
    assert compiled.inlined, compiled.not_inlined  # every generated template is one that can be inlined once
    assert compiled.inlined["html"].derives_text, compiled.inlined["html"].not_text
    assert same_document(once, each)


def test_a_standalone_template_file_is_inlined_once_and_an_edit_is_picked_up(folder: Path) -> None:
    (folder / "order.subject").write_text("Order {{ order }}")
    (folder / "order.html").write_text(RECEIPT)
    templates = FileTemplates(folder)
    compiled = templates.compiled("order")
    assert "html" in compiled.inlined, compiled.not_inlined
    assert templates.compiled("order").inlined is compiled.inlined  # cached while the file is unchanged
    rendered = templates.render("order", VARIABLES[1]).html
    per_message = FileTemplates(folder)
    per_message.compiled("order").inlined.clear()
    expected = per_message.render("order", VARIABLES[1]).html
    assert rendered is not None
    assert expected is not None
    assert same_document(rendered, expected)

    edited = RECEIPT.replace("padding: 4px;", "padding: 9px;")
    (folder / "order.html").write_text(edited)
    os.utime(folder / "order.html", (time.time() + 5, time.time() + 5))  # a new mtime even within one second
    again = templates.render("order", VARIABLES[1]).html
    assert again is not None
    assert '<td style="padding: 9px;border-bottom: 1px solid #eee;">' in again


def test_a_template_file_that_extends_or_includes_others_is_inlined_per_message(folder: Path) -> None:
    assert not FileTemplates(folder).compiled("welcome").inlined  # {% extends "base.html" %}, its <style> there
    (folder / "note.subject").write_text("Note")
    (folder / "note.html").write_text('<style>p{color:red}</style><p>x</p>{% include "partials/footer.html" %}')
    compiled = FileTemplates(folder).compiled("note")
    assert not compiled.inlined
    assert "Include" in compiled.not_inlined


def test_a_template_inlined_per_message_is_logged_once_with_the_reason(caplog: pytest.LogCaptureFixture) -> None:
    templates = StoredTemplates()
    source = Source("promo", next(_versions), "Hi", html='<style>p{color:red}</style><p class="{{ c }}">x</p>')
    with caplog.at_level(logging.INFO, logger="mailsc.templates"):
        templates.render(source, {"c": "a"})
        templates.render(source, {"c": "b"})
        templates.render(Source("plain", next(_versions), "Hi", html="<p>{{ c }}</p>"), {"c": "a"})  # no <style>
    logged = [r for r in caplog.records if r.msg == "template.css_inlined_per_message"]
    assert len(logged) == 1
    assert logged[0].__dict__["template"] == "promo"
    assert "class= value" in logged[0].__dict__["reason"]


_TEXT_CASES = {
    "a link whose label is its URL": ('<a href="{{ u }}">{{ u }}</a>', {"u": "https://x.example/a?b=1&c=2"}),
    "a link to a mail address": ('<p>Write to <a href="mailto:{{ u }}">{{ u }}</a>.</p>', {"u": "a@example.org"}),
    "a link to an anchor": ('<a href="#{{ u }}">Back to top</a>', {"u": "top"}),
    "a link with an empty label": ('<a href="https://x.example/{{ u }}"><img alt="" src="x.png"></a>', {"u": "p"}),
    "an image text": ('<p><img alt="{{ u }}" src="x.png"> and <img alt="{{ w }}" src="y.png"></p>', {"u": "Logo & co"}),
    "a run of text across a loop": (
        "<p>Items: {% for x in xs %}{{ x }}, {% endfor %}done</p>",
        {"xs": [" a ", "b\n c"]},
    ),
    "white space only": ("<p>{{ u }}</p><p>{% for x in xs %}{{ x }}{% endfor %}</p>", {"u": "  \n ", "xs": ["", " "]}),
    "a comment between texts": ("<p>a <!-- note --> {{ u }} b</p>", {"u": " x "}),
    "a title and a link": ('<title>{{ u }}</title><p><a class="button" href="{{ u }}">Go</a></p>', {"u": "T & U"}),
}


@pytest.mark.parametrize("case", _TEXT_CASES.values(), ids=list(_TEXT_CASES))
def test_the_text_part_noted_while_rendering_equals_the_text_of_the_html(case: tuple[str, dict[str, Any]]) -> None:
    html, variables = case
    compiled, _, _ = compiled_and_rendered("<style>p{color:red}</style>" + html, {"w": "", "xs": [], **variables})
    assert compiled.inlined["html"].derives_text, compiled.inlined["html"].not_text  # compared in the helper


def test_a_template_with_pre_is_inlined_once_and_its_text_derived_from_each_message() -> None:
    compiled, _, _ = compiled_and_rendered("<style>p{color:red}</style><p>x</p><pre>a  {{ c }}\n b</pre>", {"c": 1})
    assert compiled.inlined
    assert not compiled.inlined["html"].derives_text
    assert "<pre>" in compiled.inlined["html"].not_text


def test_a_value_with_nul_renders_that_message_as_written_and_keeps_the_version_inlined_once() -> None:
    html = "<style>p{color:red}</style><p>a{{ x }}b</p>"
    compiled, once, each = compiled_and_rendered(html, {"x": "N\x00U"})
    assert once == each  # the parser's treatment of NUL, whatever it is, is what the message gets
    assert "\x00" not in once
    assert compiled.inlined  # a variable's NUL drops only that render to per-message inlining
