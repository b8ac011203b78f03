"""File templates: ``NAME.subject``, ``NAME.html`` and/or ``NAME.txt`` in a templates folder (``MAILSC_TEMPLATES_DIR``,
default ``templates/email``), with Jinja2 inheritance and includes confined to that folder."""

from __future__ import annotations

import logging
import os
import re
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from ..errors import TemplateError, TemplateNotFoundError
from . import limits as budget
from .emailhtml import has_style
from .failures import translate
from .inline_checks import NotInlinableError
from .inline_once import Inlined, inline_ahead
from .limits import TemplateLimits
from .render import EXTENSIONS, CompiledTemplate, RenderedTemplate, render, render_part
from .sandbox import FileTemplateEnvironment

logger = logging.getLogger(__name__)
# Letters, digits, '_', '-', '.', and '/' for subfolders; Jinja's loader also refuses any '..' path segment.
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,199}")


class FileTemplates:
    """The templates of one folder, for sending and for code that renders templates itself.

    ::

        templates = FileTemplates("templates/email")
        rendered = templates.render("welcome", {"name": "Ada"})   # welcome.subject + welcome.html/.txt
        rendered.subject, rendered.html, rendered.text               # html has its CSS inlined; text always set

        body = templates.render_file("email.html", {"name": "Ada"})  # one file, as fastapi-mail's template_name

    ``NAME.subject`` is required, with ``NAME.html``, ``NAME.txt`` or both. The HTML is autoescaped, the text and the
    subject are not; an undefined variable, a syntax error or a limit exceeded raises ``TemplateError`` naming the
    file and line. Templates may ``{% extends %}``, ``{% include %}`` and ``{% import %}`` other files of the folder
    and nothing outside it. They render in a bounded sandbox (``TemplateLimits``); compiled templates are cached and
    recompiled when their file changes.
    """

    def __init__(self, folder: str | os.PathLike[str], *, limits: TemplateLimits | None = None) -> None:
        self.folder = Path(folder)
        self.limits = limits or TemplateLimits()
        self.environment = FileTemplateEnvironment(self.folder)
        # Per compiled HTML file (Jinja recompiles a changed file into a new object): the file with its CSS inlined
        # once, or why not. The dict is shared with every CompiledTemplate made from it, so a render that drops it
        # (``render_parts``, after an output of markup) drops it for the later ones too.
        self._inlined: weakref.WeakKeyDictionary[jinja2.Template, tuple[dict[str, Inlined], str]] = (
            weakref.WeakKeyDictionary()
        )

    def _template(self, name: str, filename: str, part: str) -> jinja2.Template | None:
        try:
            return self.environment.get_template(filename)
        except Exception as exc:
            if isinstance(exc, jinja2.TemplateNotFound) and exc.name == filename:
                return None  # this part does not exist (an include it names would be another name)
            raise translate(
                exc, template=name, version=None, part=part, own_file=filename, folder=self.folder
            ) from None

    def _check_name(self, name: str) -> None:
        if not _FILE_NAME.fullmatch(name) or ".." in name.split("/"):
            raise TemplateNotFoundError(
                "a template name is letters, digits, '_', '-', '.' and '/' (subfolders), at most 200 characters",
                template=name,
            )

    def compiled(self, name: str) -> CompiledTemplate:
        """The parts of template ``name`` compiled (Jinja's cache; recompiled when a file changes)."""
        self._check_name(name)
        parts: dict[str, jinja2.Template] = {}
        files: dict[str, str] = {}
        for part, extension in EXTENSIONS.items():
            filename = f"{name}.{extension}"
            found = self._template(name, filename, part)
            if found is not None:
                parts[part], files[part] = found, filename
        if "subject" not in parts:
            if parts:
                raise TemplateError(f"the template has no {name}.subject file", template=name, part="subject")
            raise TemplateNotFoundError(
                f"no stored template and no template files {name}.subject/.html/.txt in {self.folder}",
                template=name,
            )
        if len(parts) == 1:
            raise TemplateError(f"the template needs {name}.html, {name}.txt or both", template=name)
        inlined, not_inlined = (
            self._inlined_once(parts["html"], files["html"], "text" not in parts) if "html" in parts else ({}, "")
        )
        return CompiledTemplate(name, None, parts, files, self.folder, inlined=inlined, not_inlined=not_inlined)

    def _inlined_once(
        self, template: jinja2.Template, filename: str, derive_text: bool
    ) -> tuple[dict[str, Inlined], str]:
        """The HTML file with its CSS inlined once (``inline_once``; not for a file that extends or includes
        others), from the cache while Jinja keeps the same compiled file."""
        found = self._inlined.get(template)
        if found is None:
            try:
                assert self.environment.loader is not None
                source = self.environment.loader.get_source(self.environment, filename)[0]
                if has_style(source):
                    found = ({"html": inline_ahead(self.environment, source, filename, derive_text=derive_text)}, "")
                else:
                    found = ({}, "")  # nothing to inline
            except NotInlinableError as exc:
                found = ({}, str(exc))
                logger.info("template.css_inlined_per_message", extra={"template": filename, "reason": str(exc)})
            except Exception as exc:  # the file changed or went away since Jinja compiled it: inline per message
                found = ({}, f"the file could not be read again: {exc}")
            self._inlined[template] = found
        return found

    def exists(self, name: str) -> bool:
        """Whether ``NAME.subject`` exists in the folder."""
        try:
            self._check_name(name)
        except TemplateError:
            return False
        return self._template(name, f"{name}.subject", "subject") is not None

    def render(self, name: str, variables: Mapping[str, Any] | None = None) -> RenderedTemplate:
        """Render template ``name`` (subject, HTML with CSS inlined, text) with ``variables``."""
        return render(self.compiled(name), variables or {}, self.limits)

    def render_file(self, filename: str, variables: Mapping[str, Any] | None = None) -> str:
        """Render one file of the folder as it is (``email.html`` is autoescaped, ``email.txt`` is not), with the
        same sandbox and limits; no CSS inlining. Raises ``TemplateNotFoundError`` when the file does not exist."""
        self._check_name(filename)
        part = "html" if filename.endswith((".html", ".htm")) else "text"
        template = self._template(filename, filename, part)
        if template is None:
            raise TemplateNotFoundError(f"no template file {filename} in {self.folder}", template=filename)
        compiled = CompiledTemplate(filename, None, {part: template}, {part: filename}, self.folder)
        token = budget.start(self.limits)
        try:
            return render_part(compiled, part, variables or {}, self.limits.max_rendered_size)
        finally:
            budget.finish(token)
