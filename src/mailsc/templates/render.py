"""Compiled templates and rendering one message from them: the three parts within one budget, then the HTML made
email-ready (CSS inlined, a text part derived when the template has none)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import jinja2
from jinja2 import nodes

from ..errors import TemplateError
from . import limits as budget
from . import text_once
from .emailhtml import has_style, inline_css, text_from_html
from .failures import translate
from .inline_checks import NotInlinableError
from .inline_once import Inlined, inline_ahead
from .limits import LimitExceeded, TemplateLimits
from .outputs import MarkupOutputError, PerMessageError

PARTS = ("subject", "html", "text")
EXTENSIONS = {"subject": "subject", "html": "html", "text": "txt"}


class TemplateSource(Protocol):
    """A stored template's source: what ``OutboxStore`` returns, or anything shaped like it."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def subject(self) -> str: ...
    @property
    def html(self) -> str | None: ...
    @property
    def text(self) -> str | None: ...


@dataclass(frozen=True)
class RenderedTemplate:
    """A template rendered for one message: its Subject, its HTML part (CSS inlined) and its text part (derived from
    the HTML when the template has none). ``name`` and ``version`` say what it was rendered from (``version`` is
    ``None`` for a file template)."""

    subject: str
    html: str | None
    text: str | None
    name: str = ""
    version: int | None = None


@dataclass(frozen=True)
class CompiledTemplate:
    """A template's parts compiled once, reused for every message (keyed by name and version)."""

    name: str
    version: int | None
    parts: dict[str, jinja2.Template]
    files: dict[str, str] = field(default_factory=dict)  # part -> its template file name, for error messages
    folder: Path | None = None
    # The HTML part with its CSS inlined once (``inline_once``), dropped after a render that could not use it;
    # or why there is none.
    inlined: dict[str, Inlined] = field(default_factory=dict)
    not_inlined: str = ""


def check_sources(name: str, version: int | None, sources: Mapping[str, str | None], limits: TemplateLimits) -> None:
    """Refuse a template without a subject or without a body, or with a part over the source size limit."""
    if sources.get("subject") is None:
        raise TemplateError("a template needs a subject", template=name, version=version, part="subject")
    if sources.get("html") is None and sources.get("text") is None:
        raise TemplateError("a template needs an html part, a text part, or both", template=name, version=version)
    for part, source in sources.items():
        if source is not None and len(source) > limits.max_source_size:
            raise TemplateError(
                f"the source is {len(source):,} characters; at most {limits.max_source_size:,} are allowed",
                template=name,
                version=version,
                part=part,
            )


_REFERENCES = (nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)


def compile_source(
    env: jinja2.Environment,
    name: str,
    version: int | None,
    sources: Mapping[str, str | None],
    limits: TemplateLimits,
    *,
    inline: bool = True,
) -> CompiledTemplate:
    """Compile a stored template's parts (no includes or inheritance: a stored template stands alone); with
    ``inline``, also the HTML part with its CSS inlined once where that can be (``inline_once``)."""
    check_sources(name, version, sources, limits)
    parts: dict[str, jinja2.Template] = {}
    files: dict[str, str] = {}
    inlined: dict[str, Inlined] = {}
    not_inlined = ""
    for part in PARTS:
        source = sources.get(part)
        if source is None:
            continue
        filename = files[part] = f"{name}.{EXTENSIONS[part]}"  # the extension selects autoescaping
        try:
            tree = env.parse(source, filename, filename)
            for node in tree.find_all(_REFERENCES):
                raise TemplateError(
                    "a stored template cannot extend, include or import other templates (file templates can)",
                    template=name,
                    version=version,
                    part=part,
                    line=node.lineno,
                )
            code = env.compile(tree, filename, filename)
            parts[part] = env.template_class.from_code(env, code, env.make_globals(None), None)
        except TemplateError:
            raise
        except Exception as exc:
            raise translate(exc, template=name, version=version, part=part, own_file=filename) from None
        if inline and part == "html" and has_style(source):
            try:
                inlined["html"] = inline_ahead(env, source, filename, derive_text=sources.get("text") is None)
            except NotInlinableError as exc:
                not_inlined = str(exc)
    return CompiledTemplate(name, version, parts, files, inlined=inlined, not_inlined=not_inlined)


def render_part(
    compiled: CompiledTemplate,
    part: str,
    variables: Mapping[str, Any],
    limit: int,
    template: jinja2.Template | None = None,
    notes: list[Any] | None = None,
) -> str:
    """One part rendered (from ``template``, by default the part as written), refused once its output passes
    ``limit`` characters. Jinja's render function is driven directly (``Template.generate`` adds a generator frame
    to each of the ~500 chunks of a receipt), and its exceptions get the template-line traceback ``generate`` would
    give them (``translate`` reads it). ``PerMessageError`` passes through. With ``notes``, the template is one
    that notes its text part (``text_once``): a chunk may be a pair (HTML, note), and the notes go to ``notes``."""
    template = template or compiled.parts[part]
    chunks: list[str] = []
    try:
        stream = template.root_render_func(template.new_context(dict(variables)))
        if _drain(stream, chunks, limit) if notes is None else _drain_noting(stream, chunks, limit, notes):
            return "".join(chunks)
        failure: BaseException = LimitExceeded(f"the rendered {part} is over {limit:,} characters")
    except PerMessageError:
        raise
    except Exception:
        try:
            template.environment.handle_exception()  # re-raises with the template's lines in the traceback
        except Exception as exc:  # every failure becomes a TemplateError
            failure = exc
    own = compiled.files.get(part, part)
    raise translate(
        failure, template=compiled.name, version=compiled.version, part=part, own_file=own, folder=compiled.folder
    ) from None


def _drain(stream: Iterator[str], chunks: list[str], limit: int) -> bool:
    """``stream``'s chunks into ``chunks`` until they pass ``limit`` characters (False) or end (True)."""
    append = chunks.append
    total = 0
    for chunk in stream:
        total += len(chunk)
        if total > limit:
            return False
        append(chunk)
    return True


def _drain_noting(stream: Iterator[Any], chunks: list[str], limit: int, notes: list[Any]) -> bool:
    """``_drain`` for a template that notes its text part: a pair's HTML to ``chunks``, its note to ``notes``."""
    append = chunks.append
    note = notes.append
    total = 0
    for chunk in stream:
        if type(chunk) is tuple:
            note(chunk[1])
            chunk = chunk[0]
        total += len(chunk)
        if total > limit:
            return False
        append(chunk)
    return True


@dataclass
class RenderedParts:
    """The parts of one render; ``inlined`` when the HTML came from the template inlined once (CSS already in it),
    ``notes`` when that render also noted the HTML's text part (``text_once``)."""

    parts: dict[str, str]
    inlined: bool = False
    notes: list[Any] | None = None


def render_parts(compiled: CompiledTemplate, variables: Mapping[str, Any], limits: TemplateLimits) -> RenderedParts:
    """Every part of ``compiled`` rendered with ``variables`` within one budget."""
    token = budget.start(limits)
    limit = limits.max_rendered_size
    result = RenderedParts({})
    try:
        for part in compiled.parts:
            ahead = compiled.inlined.get(part)
            if ahead is not None:
                notes: list[Any] | None = [] if ahead.derives_text else None
                try:
                    result.parts[part] = render_part(compiled, part, variables, limit, ahead.template, notes)
                    result.inlined, result.notes = True, notes
                    continue
                except PerMessageError as exc:
                    if isinstance(exc, MarkupOutputError):  # markup from |safe or a macro: per message from now on
                        compiled.inlined.pop(part, None)
            result.parts[part] = render_part(compiled, part, variables, limit)
    finally:
        budget.finish(token)
    return result


def _noted_text(notes: list[Any]) -> str | None:
    try:
        return text_once.assemble(notes)
    except text_once.NotTextableError:  # pragma: no cover - a render that noted too little: derive it the slow way
        return None


def render(compiled: CompiledTemplate, variables: Mapping[str, Any], limits: TemplateLimits) -> RenderedTemplate:
    """Render every part of ``compiled`` with ``variables`` within one budget; the HTML gets its CSS inlined, and a
    text part is derived from it when the template has none. Raises ``TemplateError``."""
    result = render_parts(compiled, variables, limits)
    rendered = result.parts
    subject = rendered["subject"].strip()
    if "\r" in subject or "\n" in subject:
        raise TemplateError(
            "the rendered subject contains a line break (CR or LF)",
            template=compiled.name,
            version=compiled.version,
            part="subject",
        )
    html = rendered.get("html")
    text = rendered.get("text")
    if html is not None:
        if not result.inlined:
            try:
                html = inline_css(html)
            except TemplateError as exc:
                raise TemplateError(exc.reason, template=compiled.name, version=compiled.version, part="html") from None
        if text is None:
            text = _noted_text(result.notes) if result.notes is not None else None
            text = text if text is not None else text_from_html(html)
    return RenderedTemplate(subject, html, text, compiled.name, compiled.version)
