"""The sandbox's shortcuts (a dict key read without a failed ``getattr`` first, escaping to a plain ``str``) give
what Jinja's own paths give, and refuse what they refuse."""

from __future__ import annotations

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup, escape

from mailsc import TemplateError
from mailsc.templates import StoredTemplates
from mailsc.templates.sandbox import escape_output
from tests.templates.conftest import Source

CASES = [
    ("{{ d.title }}", {"d": {"title": "T<b>"}}),
    ("{{ d.items }}", {"d": {"items": "shadowed by the method"}}),  # dict.items wins, as in Jinja
    ("{{ d.keys()|list }}", {"d": {"a": 1, "b": 2}}),
    ("{{ d.get('a') }}", {"d": {"a": 1}}),
    ("{{ d._private }}", {"d": {"_private": "a key, not an attribute"}}),
    ("{{ d.missing is defined }}", {"d": {}}),
    ("{{ d.nested.deeper }}", {"d": {"nested": {"deeper": "&'\""}}}),
    ("{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 2, "a": "<x>"}}),
    ("{{ d.n * 2 }} {{ d.s|upper }}", {"d": {"n": 21, "s": "up"}}),
]


@pytest.mark.parametrize(("source", "variables"), CASES)
def test_dict_attribute_shortcut_renders_as_jinjas_sandbox(source: str, variables: dict[str, object]) -> None:
    expected = ImmutableSandboxedEnvironment(autoescape=True).from_string(source).render(variables)
    rendered = StoredTemplates().render(Source("t", 1, "s", html=source), variables)
    assert rendered.html == expected


@pytest.mark.parametrize("source", ["{{ d.__class__ }}", "{{ d.__class__.__mro__ }}", "{{ d.update }}"])
def test_dict_attribute_shortcut_keeps_the_sandbox(source: str) -> None:
    with pytest.raises(TemplateError, match=r"sandbox|unsafe"):
        StoredTemplates().render(Source("t", 1, "s", html=source), {"d": {"update": 1}})


@pytest.mark.parametrize("value", ["", "plain", "<b>&'\"", Markup("<b>safe</b>"), 7, 2.5, None, ["<x>"]])
def test_escape_output_is_markupsafe_escape(value: object) -> None:
    assert escape_output(value) == escape(value)
