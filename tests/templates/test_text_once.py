"""The text part noted while a template inlined once renders (``text_once``): always ``html_to_text`` of the HTML
sent (checked inside ``compiled_and_rendered``), and not noted where a value could change how the HTML's text is
read. The cases are those an adversarial review found against the first version."""

from __future__ import annotations

from typing import Any

import pytest

from tests.templates.test_inline_once import compiled_and_rendered, same_document

STYLE = "<style>p{color:red}</style>"

CONSTANT_OUTPUTS = [
    '<p>{{ "<b>x</b>" }} c</p>',
    '<p>{{ "a  b" }} c</p>',
    '<p>{{ "x" if true else "y" }} {{ none }}</p>',
    '<ul>{% for i in [1, 2] %}<li>{{ "item" }} {{ i }}</li>{% endfor %}</ul>',
    '<p>{{ "abc"|upper }}</p>',
    '<a href="{{ \'x" onclick="alert(1)\' }}">go</a>',
    "<a href=\"{{ 'http://a/?q=1&b=2' }}\">go</a>",
]


@pytest.mark.parametrize("html", CONSTANT_OUTPUTS)
def test_constant_outputs_are_escaped_and_noted(html: str) -> None:
    compiled, once, each = compiled_and_rendered(STYLE + html, {})
    assert compiled.inlined["html"].derives_text
    assert "<b>" not in once
    assert 'onclick="' not in once
    assert same_document(once, each)


NOT_NOTED: dict[str, tuple[str, dict[str, Any], str]] = {
    "a block rendered into a value": (
        "{% block b %}<p>Hidden {{ u }}</p>{% endblock %}<p>{% if self.b() %}yes{% endif %}</p>",
        {"u": "U"},
        "'self'",
    ),
    "a recursive loop": (
        "<div>{% for i in items recursive %}<p>{{ i.n }}</p>{% if loop(i.c) %}{% endif %}{% endfor %}</div>",
        {"items": [{"n": "A", "c": [{"n": "B", "c": []}]}]},
        "recursive loop",
    ),
    "an output in a comment": ("<p>a</p><!-- {{ x }} > hidden --><p>b</p>", {"x": "--"}, "HTML comment"),
    "an output in <script>": ("<p>a</p><script>a<{{ x }}>TEXT</script><p>b</p>", {"x": "/script"}, "<script>"),
    "an output in <noscript>": ("<noscript>q<{{ x }}>hid</noscript><p>b</p>", {"x": "/noscript"}, "<noscript>"),
    "an output in <xmp>": ("<p>a</p><xmp>q<{{ x }}>hid</xmp><p>z</p>", {"x": "b"}, "<xmp>"),
    "an output in <iframe>": ("<p>a</p><iframe>q<{{ x }}>hid</iframe><p>z</p>", {"x": "style"}, "<iframe>"),
}


@pytest.mark.parametrize("case", NOT_NOTED.values(), ids=list(NOT_NOTED))
def test_where_a_value_could_change_how_text_is_read_the_text_is_derived_from_the_html(
    case: tuple[str, dict[str, Any], str],
) -> None:
    html, variables, reason = case
    document = f"<!doctype html><html><head>{STYLE}</head><body>{html}</body></html>"
    compiled, _, _ = compiled_and_rendered(document, variables)
    inlined = compiled.inlined["html"]  # inlined once: only its text is left to html_to_text
    assert not inlined.derives_text
    assert reason in inlined.not_text
