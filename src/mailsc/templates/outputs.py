"""What an output may be in an HTML template whose CSS was inlined once (``inline_once``): text, never markup.

Markup (``|safe``, ``|tojson``, a macro's result) could add elements the inlined rules would have matched, or bring
quotes and '&' that mean something else in the re-serialised attribute or text around the output. Such a template
writes its outputs through ``escape_text_output``, which refuses markup with ``MarkupOutputError``; the message is
then rendered from the template as written and inlined on its own (``render.render_parts``).
"""

from __future__ import annotations

from typing import Any

from markupsafe import escape

from .sandbox import GuardedCodeGenerator, escape_str

# Prepended to the generated module of a template written by ``TextOutputCodeGenerator``.
HEADER = "from mailsc.templates.outputs import escape_text_output as mailsc_escape_text\n"


class PerMessageError(Exception):
    """A value a template inlined once cannot take as it is: render this message from the template as written."""


class MarkupOutputError(PerMessageError):
    """An output of markup: the template's version is rendered as written from now on (markup comes from the
    template's own code, so it would come again)."""


class NulOutputError(PerMessageError):
    """A value with a NUL character, which an HTML parser drops or replaces depending on where it stands: this one
    message is rendered as written, so it gets what inlining it would give (a variable's data, so only this one)."""


def escape_text_output(value: Any) -> str:
    """``sandbox.escape_output`` for a template inlined once: the same for every value except markup and NUL."""
    if type(value) is str:
        if "\0" in value:
            raise NulOutputError
        return escape_str(value)
    if hasattr(value, "__html__"):
        raise MarkupOutputError
    return escape(value)


class TextOutputCodeGenerator(GuardedCodeGenerator):
    """The bounded sandbox's code generator, writing every output through ``escape_text_output`` (``HEADER``)."""

    escape_call = "mailsc_escape_text("
