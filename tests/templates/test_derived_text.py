"""The text part rendered from a text template derived at compile time equals the text derived from each rendered
HTML (``html_to_text``, today's path), for the templates it accepts; the others keep today's path."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from bench.templates import HTML as RECEIPT
from bench.templates import variables as receipt_variables
from hypothesis import given, settings
from hypothesis import strategies as st
from markupsafe import Markup

from mailsc.htmltext import html_to_text
from mailsc.templates import StoredTemplates
from mailsc.templates.derived import derive_text_source
from mailsc.templates.sandbox import StoredTemplateEnvironment
from tests.templates.conftest import Source

_versions = itertools.count(1)

DERIVABLE = {
    "receipt": RECEIPT,
    "greeting": "<p>Hello {{ name }},</p>\n<p>Your code is <b>{{ code }}</b>.</p>",
    "link": '<p><a href="{{ url }}">Confirm</a> or <a href="{{ url }}">{{ url }}</a></p>',
    "mailto": '<p>Write to <a href="mailto:{{ email }}">{{ email }}</a>.</p>',
    "query": '<a href="https://x.example/?a={{ a }}&amp;b={{ name }}&c=1">go</a>',
    "image": '<p><img src="{{ url }}" alt="{{ name }}"> <img alt="static  alt"></p>',
    "conditional": "<p>Hi {% if vip %}dear {% endif %}{{ name }}{% if vip %}<br>VIP{% else %}.{% endif %}</p>",
    "loop": "<ul>{% for item in items %}<li>{{ item }}</li>{% else %}<li>none</li>{% endfor %}</ul>",
    "nested": "<table>{% for row in rows %}<tr>{% for cell in row %}<td>{{ cell }}</td>{% endfor %}</tr>"
    "{% endfor %}</table>",
    "head": "<html><head><title>{{ name }}</title><style>p { color: red; }</style></head>"
    '<body class="{{ code }}"><p>{{ name }}</p></body></html>',
    "set": "{% set greeting = 'Hello ' ~ name %}<p>{{ greeting }}</p>{# a comment #}<div>{{ code|upper }}</div>",
    "entities": "<p>Tom &amp; Jerry &middot; {{ name }} &lt;3 &nbsp; {{ code }};</p>",
    "spaces": "<p>  a  {{ name }}  b  </p>\n\n<div>\t{{ code }}\t</div><span> </span>{{ name }} <i></i> {{ code }}",
}
NOT_DERIVABLE = {
    "whitespace control": "<p>{{- name }}</p>",
    "macro": "{% macro m() %}<b>x</b>{% endmacro %}<p>{{ m() }}</p>",
    "unquoted attribute": "<a href={{ url }}>x</a>",
    "tag name": "<{{ name }}>x</{{ name }}>",
    "block in tag": '<p {% if vip %}class="v"{% endif %}>x</p>',
    "pre": "<pre>{{ name }}</pre>",
    "unbalanced": '{% if vip %}<a href="{{ url }}">{% endif %}x</a>',
    "open entity": "<p>&{{ name }}</p>",
    "random": "<p>{{ [1, 2]|random }}</p>",
    "block set": "{% set x %}<b>{{ name }}</b>{% endset %}{{ x }}",
    "nested links": '<a href="a"><a href="b">x</a></a>',
    "string with braces": '<p>{{ "}}" }}</p>',
}
VALUES: list[dict[str, Any]] = [
    {"name": "Ada", "code": "X1", "url": "https://example.com/c?t=1", "email": "ada@example.org", "a": 1},
    {"name": "<b>bold</b> & 'q' \"dq\"", "code": "a\nb\t c  d", "url": "https://e.x/?a=1&b=<2>", "email": "", "a": ""},
    {"name": "", "code": "", "url": "", "email": "x@y", "a": "&amp;"},
    {"name": " lead", "code": "trail ", "url": "#top", "email": "a b", "a": "  "},
    {"name": "https://example.com/c?t=1", "code": "&#39;", "url": "javascript:alert(1)", "email": "e", "a": 0},
]


def extra(values: dict[str, Any]) -> dict[str, Any]:
    return {"vip": bool(values["name"]), "items": [values["name"], values["code"]], "rows": [[1, values["code"]]]}


def both(html: str, values: dict[str, Any]) -> tuple[str | None, str | None, bool]:
    templates = StoredTemplates()
    source = Source("t", next(_versions), "Subject", html=html)
    rendered = templates.render(source, values)
    assert rendered.html is not None
    compiled = templates.compiled(source)
    return rendered.text, compiled_html_text(templates, source, values), compiled.derived_text is not None


def compiled_html_text(templates: StoredTemplates, source: Source, values: dict[str, Any]) -> str:
    """Today's path: the text derived from the rendered (not yet CSS-inlined) HTML."""
    from mailsc.templates import limits
    from mailsc.templates.render import render_part

    compiled = templates.compiled(source)
    token = limits.start(templates.limits)
    try:
        html = render_part(compiled, "html", values, templates.limits.max_rendered_size)
    finally:
        limits.finish(token)
    return html_to_text(html)


@pytest.mark.parametrize("name", sorted(DERIVABLE))
@pytest.mark.parametrize("values", VALUES)
def test_derived_text_equals_the_text_of_the_rendered_html(name: str, values: dict[str, Any]) -> None:
    variables = values | extra(values)
    if name == "receipt":
        variables = receipt_variables(3) | values
    text, expected, derived = both(DERIVABLE[name], variables)
    assert derived, name
    assert text == expected


@pytest.mark.parametrize("name", sorted(NOT_DERIVABLE))
def test_templates_outside_the_subset_keep_the_render_time_path(name: str) -> None:
    assert derive_text_source(StoredTemplateEnvironment(), NOT_DERIVABLE[name]) is None


@pytest.mark.parametrize("value", [Markup("<i>x</i>"), "\ue012 a mark", "\ue017\ue019", Markup("<a href='u'>l</a>")])
def test_values_that_could_change_the_markup_fall_back_per_message(value: object) -> None:
    values = VALUES[0] | {"name": value}
    text, expected, derived = both(DERIVABLE["greeting"], values)
    assert derived
    assert text == expected


def test_an_iterator_is_rendered_once_and_the_text_still_matches() -> None:
    values = VALUES[0] | extra(VALUES[0]) | {"items": iter(["one", "two"])}
    text, _, derived = both(DERIVABLE["loop"], values)
    assert derived
    assert text == "- one\n- two\n"


def test_autoescaped_markup_shows_as_literal_text() -> None:
    text, expected, _ = both(DERIVABLE["greeting"], VALUES[1])
    assert text == expected
    assert text is not None
    assert "<b>bold</b> & 'q' \"dq\"" in text


_pieces = st.sampled_from([*"ab <>&;#'\"\n\t\r\f\v\xa0=/:.", "&amp;", "&lt;", "http://", "  ", "mailto:"])
_text = st.lists(_pieces, max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(name=_text, code=_text, url=_text, email=_text, a=_text)
def test_derived_text_equals_for_any_values(name: str, code: str, url: str, email: str, a: str) -> None:
    values = {"name": name, "code": code, "url": url, "email": email, "a": a}
    variables = values | extra(values)
    for template in ("greeting", "link", "mailto", "query", "image", "conditional", "loop", "entities", "spaces"):
        text, expected, derived = both(DERIVABLE[template], variables)
        assert derived
        assert text == expected, template
