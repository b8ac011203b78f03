"""File templates: NAME.subject + NAME.html/.txt, inheritance and includes inside the folder only, escaping, CSS
inlining and the derived text part."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsc import FileTemplates, TemplateError, TemplateNotFoundError

VARIABLES = {"name": "Ada", "url": "https://example.com/confirm?t=1&u=2", "email": "ada@example.org"}


def test_inheritance_include_and_inlined_css(folder: Path) -> None:
    rendered = FileTemplates(folder).render("welcome", VARIABLES)
    assert rendered.subject == "Welcome, Ada!"
    assert rendered.name == "welcome"
    assert rendered.version is None
    html = rendered.html
    assert html is not None
    assert '<p style="color: #333333;">Hello Ada,</p>' in html  # the base's rule, inlined on the child's element
    assert 'class="button"' in html
    assert "background: #00aa77;" in html
    assert 'class="footer" style="color: #333333;"' in html  # the include, styled too
    # @media cannot be inlined: it stays in a <style> block; the inlined rules are gone from it
    assert "@media (max-width: 600px)" in html
    assert "#00aa77 }" not in html
    assert 'href="https://example.com/confirm?t=1&amp;u=2"' in html


def test_text_part_derived_from_html_keeps_link_urls(folder: Path) -> None:
    text = FileTemplates(folder).render("welcome", VARIABLES).text
    assert text is not None
    assert "Hello Ada," in text
    assert "Confirm your address (https://example.com/confirm?t=1&u=2)" in text
    assert "Unsubscribe (https://example.com/unsubscribe)" in text
    assert "color" not in text  # the style block is not text


def test_html_escapes_variables_text_and_subject_do_not(folder: Path) -> None:
    name = "<b>Ada & Co</b>"
    both = FileTemplates(folder).render("both", {"name": name})
    assert both.html == "<p>HTML for &lt;b&gt;Ada &amp; Co&lt;/b&gt;</p>"
    assert both.text == f"Text for {name}\n"
    assert both.subject == f"Both for {name}"


def test_text_only_template_has_no_html(folder: Path) -> None:
    items = [{"title": "Tea", "price": "3.00"}, {"title": "<Cake>", "price": "4.50"}]
    rendered = FileTemplates(folder).render("receipt", {"number": 42, "name": "Ada", "items": items})
    assert rendered.html is None
    assert rendered.text == "Hello Ada,\n- Tea: 3.00\n- <Cake>: 4.50\n"
    assert rendered.subject == "Receipt 42"


def test_missing_variable_names_it_the_template_and_the_line(folder: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        FileTemplates(folder).render("welcome", {"name": "Ada", "email": "a@example.org"})
    error = caught.value
    assert error.template == "welcome"
    assert error.variable == "url"
    assert error.part == "html"
    assert error.line == 3
    assert "'url'" in str(error)
    assert error.errors[0]["loc"] == ["variables", "url"]


def test_error_inside_an_included_file_names_that_file(folder: Path) -> None:
    with pytest.raises(TemplateError) as caught:
        FileTemplates(folder).render("welcome", {"name": "Ada", "url": "https://example.com"})
    assert caught.value.variable == "email"
    assert caught.value.file == "partials/footer.html"
    assert caught.value.line == 1


def test_syntax_error_names_file_and_line(folder: Path) -> None:
    (folder / "broken.subject").write_text("Hi")
    (folder / "broken.html").write_text("<p>fine</p>\n<p>{% if name %}unclosed</p>\n")
    with pytest.raises(TemplateError, match="syntax error") as caught:
        FileTemplates(folder).render("broken", {"name": "x"})
    assert caught.value.template == "broken"
    assert caught.value.line is not None


@pytest.mark.parametrize(
    "reference",
    ['{% include "../secret.txt" %}', '{% extends "../secret.txt" %}', '{% include "/etc/passwd" %}'],
)
def test_includes_cannot_leave_the_folder(folder: Path, reference: str) -> None:
    (folder.parent / "secret.txt").write_text("TOP SECRET")
    (folder / "escape.subject").write_text("s")
    (folder / "escape.txt").write_text(reference)
    with pytest.raises(TemplateError) as caught:
        FileTemplates(folder).render("escape", {})
    assert "TOP SECRET" not in str(caught.value)
    assert "root:" not in str(caught.value)


def test_a_template_needs_a_subject_file_and_a_known_name(folder: Path) -> None:
    (folder / "nosubject.html").write_text("<p>x</p>")
    with pytest.raises(TemplateError, match=r"no nosubject\.subject"):
        FileTemplates(folder).render("nosubject", {})
    with pytest.raises(TemplateNotFoundError, match="no stored template and no template files"):
        FileTemplates(folder).render("nothing", {})
    with pytest.raises(TemplateNotFoundError):
        FileTemplates(folder).render("../welcome", {})


def test_rendered_subject_with_a_line_break_is_refused(folder: Path) -> None:
    with pytest.raises(TemplateError, match="line break") as caught:
        FileTemplates(folder).render("both", {"name": "Ada\r\nBcc: victim@example.org"})
    assert caught.value.part == "subject"


def test_render_file_renders_one_file_as_fastapi_mail_does(folder: Path) -> None:
    templates = FileTemplates(folder)
    assert templates.render_file("both.html", {"name": "<i>"}) == "<p>HTML for &lt;i&gt;</p>"
    assert templates.render_file("both.txt", {"name": "<i>"}) == "Text for <i>\n"
    with pytest.raises(TemplateNotFoundError):
        templates.render_file("missing.html", {})


def test_an_edited_file_is_picked_up(folder: Path) -> None:
    templates = FileTemplates(folder)
    assert templates.render("both", {"name": "A"}).text == "Text for A\n"
    path = folder / "both.txt"
    path.write_text("Changed for {{ name }}\n")
    import os

    stat = path.stat()
    os.utime(path, (stat.st_atime, stat.st_mtime + 5))  # a clearly newer mtime, whatever the clock resolution
    assert templates.render("both", {"name": "A"}).text == "Changed for A\n"
