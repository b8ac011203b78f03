"""Stored templates in the bounded sandbox: template injection refused, runaway loops and huge values stopped with
a clear TemplateError, the process unharmed; variables are data, never template code."""

from __future__ import annotations

import itertools

import pytest

from mailsc import TemplateError, TemplateLimits
from mailsc.templates import StoredTemplates
from tests.templates.conftest import Source

_versions = itertools.count(1)


def render(
    templates: StoredTemplates, html: str, variables: dict[str, object] | None = None, *, subject: str = "Hi"
) -> str:
    rendered = templates.render(Source("t", next(_versions), subject, html=html), variables or {})
    assert rendered.html is not None
    return rendered.html


def healthy(templates: StoredTemplates) -> None:
    """After a refusal the same objects still render ordinary templates."""
    assert render(templates, "<p>{{ n }}</p>", {"n": 7}) == "<p>7</p>"


SSTI = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ self._TemplateReference__context }}",
    "{{ self.__init__.__globals__ }}",
    "{{ request.application.__globals__ }}",
    "{{ config.items() }}",
    "{{ lipsum.__globals__ }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
    "{{ 'abc'|attr('__class__') }}",
    "{{ '{0.__class__}'.format('') }}",
    "{% set x = [] %}{{ x.append(1) }}",
]


@pytest.mark.parametrize("source", SSTI)
def test_template_injection_in_a_stored_template_is_refused(source: str) -> None:
    templates = StoredTemplates()
    with pytest.raises(TemplateError) as caught:
        render(templates, source)
    assert caught.value.template == "t"
    assert caught.value.part == "html"
    assert caught.value.line == 1
    healthy(templates)


@pytest.mark.parametrize("value", [*SSTI, "{% for x in range(10**9) %}{% endfor %}", "{{ 'a' * 10**9 }}", "{{ 7*7 }}"])
def test_variables_are_data_never_template_code(value: str) -> None:
    templates = StoredTemplates()
    rendered = templates.render(
        Source("t", next(_versions), "S: {{ v }}", html="<p>{{ v }}</p>", text="T: {{ v }}"), {"v": value}
    )
    assert rendered.text == f"T: {value}"
    assert rendered.subject == f"S: {value}"
    assert rendered.html is not None
    assert "49" not in rendered.html
    assert rendered.html == "<p>" + value.replace("&", "&amp;").replace("'", "&#39;").replace('"', "&#34;") + "</p>"


LIMITS = [
    ("{% for x in range(10**9) %}{% endfor %}", "range() of 1,000,000,000 items"),
    ("{{ 'a' * 10**9 }}", "repeated string"),
    ("{{ ['a'] * 10**9 }}", "repeated string or list"),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}", "loop iterations"),
    ("{% for a in range(10000) %}{% for b in range(10000) %}{{ b }}{% endfor %}{% endfor %}", "stopped"),
    ("{{ 10 ** 100000 }}", "bits"),
    ("{% set ns = namespace(n=2) %}{% for i in range(40) %}{% set ns.n = ns.n * ns.n %}{% endfor %}", "bits"),
    ("{{ 'a'|center(10**9) }}", "center()"),
    ("{{ 'a'|indent(10**9) }}", "indent()"),
    ("{{ '%1000000000s'|format('a') }}", "format width"),
    ("{{ '%*s' % (10**9, 'a') }}", "'*' width"),
    ("{{ '{:>1000000000}'.format(1) }}", "format width"),
    ("{{ 'x'.ljust(10**9) }}", "str.ljust()"),
    ("{{ 'x'.zfill(10**9) }}", "str.zfill()"),
    ("{{ ('b' * 100000).join(range(10000)|map('string')) }}", "joined string"),
    ("{{ range(10000)|join('b' * 100000) }}", "joined string"),
    ("{{ ('a' * 1000)|replace('a', 'b' * 10000) }}", "replaced string"),
    ("{{ [1]|batch(10**9, 0)|list }}", "batch()"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}", "characters"),
    ("{% set ns = namespace(s='ab') %}{% for i in range(40) %}{% set ns.s = ns.s + ns.s %}{% endfor %}", "characters"),
    ("{% macro f() %}{{ f() }}{{ f() }}{% endmacro %}{{ f() }}", "stopped"),
    ("{% for x in [1] recursive %}{{ loop([1, 1]) }}{% endfor %}", "stopped"),
    ("{% for x in range(10000) %}{{ 'a' * 1000 }}{% endfor %}", "rendered html is over"),
]


@pytest.mark.parametrize(("source", "message"), LIMITS)
def test_runaway_templates_are_stopped_with_a_clear_error(source: str, message: str) -> None:
    templates = StoredTemplates()
    with pytest.raises(TemplateError, match="stopped") as caught:
        render(templates, source)
    assert message in str(caught.value)
    assert caught.value.template == "t"
    healthy(templates)


def test_the_time_budget_stops_what_the_iteration_budget_allows() -> None:
    templates = StoredTemplates(TemplateLimits(max_iterations=10**12, render_timeout=0.05))
    source = "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}"
    with pytest.raises(TemplateError, match=r"rendering took longer than 0\.05 s"):
        render(templates, source)
    healthy(templates)


@pytest.mark.parametrize("limit", [2, 15, 16, 17, 20, 33])
def test_the_iteration_budget_is_exact(limit: int) -> None:
    """The clock is read every few steps, but every step is counted: a loop spends one step to start (the call
    that guards it) and one per item, so ``limit - 1`` items render and one more is stopped."""
    templates = StoredTemplates(TemplateLimits(max_iterations=limit))
    source = "{% for x in items %}.{% endfor %}"
    assert render(templates, source, {"items": list(range(limit - 1))}) == "." * (limit - 1)
    with pytest.raises(TemplateError, match=f"more than {limit:,} loop iterations"):
        render(templates, source, {"items": list(range(limit))})


def test_printf_widths_are_checked_on_every_render_of_a_cached_format() -> None:
    """Format strings are parsed once and cached; the width check still applies each time, against the limits of
    the render in progress."""
    small = StoredTemplates(TemplateLimits(max_rendered_size=50))
    large = StoredTemplates()
    source = "{{ spec|format(1) }}"  # a variable: Jinja folds a constant format at compile time
    assert render(large, source, {"spec": "%60d"}) == " " * 59 + "1"
    with pytest.raises(TemplateError, match="format width or precision would have 60"):
        render(small, source, {"spec": "%60d"})  # refused before formatting
    assert render(large, source, {"spec": "%60d"}) == " " * 59 + "1"
    with pytest.raises(TemplateError, match=r"'\*' width"):
        render(large, source, {"spec": "%*d"})


def test_sizes_of_source_and_output_are_limited() -> None:
    templates = StoredTemplates(TemplateLimits(max_source_size=100, max_rendered_size=50))
    with pytest.raises(TemplateError, match="at most 100 are allowed") as caught:
        render(templates, "x" * 101)
    assert caught.value.part == "html"
    with pytest.raises(TemplateError, match="over 50 characters"):
        render(templates, "{{ v }}", {"v": "y" * 51})
    assert render(templates, "{{ v }}", {"v": "y" * 50}) == "y" * 50


def test_stored_templates_cannot_include_other_templates() -> None:
    templates = StoredTemplates()
    for source in ('{% include "base.html" %}', '{% extends "base.html" %}', '{% import "m.html" as m %}'):
        with pytest.raises(TemplateError, match="cannot extend, include or import"):
            templates.check("t", "s", source, None)


def test_check_reports_syntax_errors_with_part_and_line() -> None:
    with pytest.raises(TemplateError, match="syntax error") as caught:
        StoredTemplates().check("t", "Hi", "<p>ok</p>\n{% for %}", None)
    assert (caught.value.part, caught.value.line) == ("html", 2)
    with pytest.raises(TemplateError, match="needs a subject"):
        StoredTemplates().check("t", None, "<p>x</p>", None)
    with pytest.raises(TemplateError, match="html part, a text part, or both"):
        StoredTemplates().check("t", "s", None, None)


def test_compiled_once_per_version_and_replaced_by_a_new_version() -> None:
    templates = StoredTemplates()
    v1, v2 = Source("news", 1, "s", text="one {{ x }}"), Source("news", 2, "s", text="two {{ x }}")
    first = templates.compiled(v1)
    assert templates.compiled(v1) is first
    assert templates.render(v1, {"x": 1}).text == "one 1"
    assert templates.render(v2, {"x": 1}).text == "two 1"
    assert templates.compiled(v2) is templates.compiled(v2)
    assert templates.compiled(v1) is not first  # dropped when v2 arrived: compiled afresh
