"""A text template derived once from an HTML template's source, so a message's text part is a render, not a parse.

Today's text part of an HTML-only template is ``html_to_text`` on each rendered HTML (a third of a message's CPU).
With autoescaping, a ``{{ }}`` can only ever add text: its value is escaped, so it never opens a tag. The tags of a
rendered message are therefore the template's own tags, repeated or left out by ``{% for %}`` and ``{% if %}``;
what each tag adds to the text is known when the template is stored. ``derive_text_source`` works it out once and
writes a text template: the tags' contributions as constants, the ``{{ }}`` in text positions and in ``href`` and
``alt`` as themselves, the same ``{% %}`` control flow. ``finish_text`` then does per message what is left, in C
where it can: collapsing the whitespace of each text run, the ``text (url)`` of links, the line clean-up.

Derivation is refused (``None``: the message takes today's path) unless the source is provably in the subset where
this equals ``html_to_text(rendered html)``: only ``for``/``if``/``set`` tags and comments, no whitespace control,
every tag and comment in the plain markup ``htmltext``'s fast path reads, ``{{ }}`` only in text or in quoted
attribute values, no Jinja in a tag otherwise, no ``<pre>``, the text state (skipped region, open links) the same at
every ``{% %}`` of a block as at its start, and no '&' whose entity could run into a value. At render time a value
that could change the markup (``Markup``, ``|safe``) or that carries the private-use marks used here makes the text
render give up (``NotDerivable``), and that message takes today's path too.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import jinja2

from .. import htmltext
from .sandbox import StoredTemplateEnvironment

# Marks in a derived text template's output (a value containing one gives up: see ``check_value``).
_WHITE = dict(zip(" \t\n\r\f\v", "\ue010\ue011\ue012\ue013\ue014\ue015", strict=True))
_BOUNDARY = "\ue016"  # between two tags' text runs: whitespace is collapsed within one run only
_LINK, _END_LINK, _HREF_END, _NO_HREF = "\ue017", "\ue018", "\ue019", "\ue01b"  # <a> href </a>
_BOUNDARIES = re.compile(f"{_BOUNDARY}+")
_MARKS = re.compile("[\ue010-\ue01b]")
_DECODE = [(mark, white) for white, mark in _WHITE.items()] + [(_BOUNDARY, "")]
_COLLAPSIBLE = re.compile(r"[ \t\n\r\f\v]+")
_KEEP = str.maketrans(_WHITE)

_JINJA = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_VAR, _BLOCK = "\ue100", "\ue101"  # stand-ins for a {{ }} and a {% %} / {# #} while the markup is read
_QUOTED = re.compile(r"\"[^\"]*\"|'[^']*'")
_OPEN_ENTITY = re.compile(r"&(?:#[xX]?[0-9a-fA-F]*|[^\t\n\f <&#;]*)\Z")  # an entity a value could complete
_CONTROL = re.compile(r"\{%\s*(\w+)")
_RANDOM = re.compile(r"\brandom\b")
_OPENS, _MIDDLES, _CLOSES = {"for", "if"}, {"elif", "else"}, {"endfor", "endif"}


class NotDerivable(Exception):  # noqa: N818 - a signal, caught by the renderer
    """This message's text cannot come from the derived template; derive it from the rendered HTML instead."""


def check_value(value: Any) -> Any:
    """A value output by a derived text template, unless it could change the HTML's markup (it has ``__html__``:
    ``Markup``, ``|safe``). (A value carrying one of the marks used here is caught once, on the rendered HTML,
    which holds every value the text template outputs: ``has_marks``.)"""
    if type(value) is not str and hasattr(value, "__html__"):
        raise NotDerivable
    return value


def keep(value: Any) -> str:
    """A value in an ``href`` or ``alt``: whitespace kept as it is (encoded past the collapsing)."""
    if type(value) is not str and hasattr(value, "__html__"):
        raise NotDerivable
    return str(value).translate(_KEEP)


_PLAIN = (str, int, float, bool, type(None))


def plain_data(variables: Any) -> bool:
    """Whether ``variables`` are JSON-shaped data (what the API receives): strings, numbers, booleans, None, lists,
    tuples and dicts of them. Anything else (an iterator the HTML render would use up, an object whose attributes
    run code) could give the text render other values than the HTML render had, so such a message keeps today's
    path."""
    pending = [variables]
    while pending:
        value = pending.pop()
        kind = type(value)
        if kind is dict:
            pending.extend(value.values())
        elif kind is list or kind is tuple:
            pending.extend(value)
        elif kind not in _PLAIN:
            return False
    return True


def has_marks(html: str) -> bool:
    """Whether the rendered HTML holds a character this module uses as a mark (then the text is not derived)."""
    return _MARKS.search(html) is not None


def hidden(value: Any) -> str:
    """A ``{{ }}`` that adds nothing to the text (in a skipped region, a class, a src...), still checked."""
    check_value(value)
    return ""


def derive_text_source(env: jinja2.Environment, html: str) -> str | None:
    """The text template for the HTML template ``html``, or ``None`` when it is outside the provable subset."""
    constructs = [match.group() for match in _JINJA.finditer(html)]
    data = _JINJA.split(html)
    if any(not _plain_construct(c) for c in constructs) or not _same_as_jinja(env, html, data, constructs):
        return None
    if _MARKS.search(html) or _VAR in html or _BLOCK in html:
        return None
    standins = data[0] + "".join(
        (_VAR if construct.startswith("{{") else _BLOCK) + after
        for construct, after in zip(constructs, data[1:], strict=True)
    )
    try:
        return _Writer(constructs).write(standins)
    except _Refused:
        return None


class _Refused(Exception):  # noqa: N818 - internal signal
    pass


def _same_as_jinja(env: jinja2.Environment, html: str, data: list[str], constructs: list[str]) -> bool:
    """Whether Jinja's own lexer cuts ``html`` where the regular expression did (not so for ``{{ "}}" }}``)."""
    try:
        tokens = [(kind, value) for _, kind, value in env.lex(html)]
    except jinja2.TemplateSyntaxError:
        return False
    begins = [kind for kind, _ in tokens if kind.endswith("_begin")]
    expected = [{"{{": "variable_begin", "{%": "block_begin", "{#": "comment_begin"}[c[:2]] for c in constructs]
    return begins == expected and "".join(value for kind, value in tokens if kind == "data") == "".join(data)


def _plain_construct(construct: str) -> bool:
    if _RANDOM.search(construct):
        return False  # the HTML and the text template would each draw their own
    if construct[2:3] in ("-", "+") or construct[-3:-2] in ("-", "+"):
        return False  # whitespace control changes the data next to it
    if construct.startswith("{%"):
        match = _CONTROL.match(construct)
        name = match.group(1) if match else ""
        if name == "set":
            return "=" in construct  # {% set x %}...{% endset %} builds Markup
        return name in _OPENS or name in _MIDDLES or name in _CLOSES
    return True


class _Writer:
    """Walks the markup with stand-ins as ``htmltext._simple_parts`` walks rendered HTML, writing the text
    template: constants for what tags add, the {{ }} and {% %} in their places."""

    def __init__(self, constructs: list[str]) -> None:
        self.constructs = iter(constructs)
        self.out: list[str] = []
        self.skip = 0
        self.links = 0
        self.raw = ""
        self.blocks: list[tuple[int, int, str]] = []

    def write(self, standins: str) -> str:
        pieces = htmltext._PIECES.split(standins)
        if "<" in pieces[-1]:
            raise _Refused
        pieces.append("")
        for index in range(0, len(pieces) - 1, 2):
            self.text(pieces[index])
            tag = pieces[index + 1]
            if tag:
                self.tag(tag)
        if self.blocks or self.links or self.skip or self.raw:
            raise _Refused
        return _BOUNDARIES.sub(_BOUNDARY, "".join(self.out))

    def state(self) -> tuple[int, int, str]:
        return (self.skip, self.links, self.raw)

    def text(self, text: str) -> None:
        segments = re.split(f"([{_VAR}{_BLOCK}])", text)
        for position, segment in enumerate(segments):
            if segment in (_VAR, _BLOCK) and position and _OPEN_ENTITY.search(segments[position - 1]):
                raise _Refused  # '&amp' + a value: the entity would take the value's first characters
            if segment == _VAR:
                construct = next(self.constructs)
                self.out.append(construct if not self.skip else "{{ (" + construct[2:-2] + ")|mailsc_hidden }}")
            elif segment == _BLOCK:
                self.block(next(self.constructs))
            elif segment and not self.skip:
                text = unescape(segment) if "&" in segment else segment
                self.out.append(self.constant(_COLLAPSIBLE.sub(" ", text)))

    def block(self, construct: str) -> None:
        match = _CONTROL.match(construct)
        name = match.group(1) if match else ""
        if name in _OPENS:
            self.blocks.append(self.state())
        elif name in _MIDDLES or name in _CLOSES:
            if not self.blocks or self.blocks[-1] != self.state():
                raise _Refused
            if name in _CLOSES:
                self.blocks.pop()
        self.out.append(construct)

    def constant(self, text: str) -> str:
        if "{" in text or "}" in text or _MARKS.search(text):
            raise _Refused
        return text

    def encoded(self, text: str) -> str:
        """Text a tag adds (not collapsed at render time)."""
        return "".join(_WHITE.get(char, char) for char in self.constant(text))

    def tag(self, tag: str) -> None:
        """What ``_simple_parts`` does for ``tag`` (it applies tag effects inside skipped regions too)."""
        if _BLOCK in tag or _VAR in _QUOTED.sub("", tag):
            raise _Refused  # Jinja in a tag: only {{ }} inside a quoted attribute value
        values = [next(self.constructs) for _ in range(tag.count(_VAR))]
        effect = htmltext._effect(tag.replace(_VAR, "x"))  # what it adds depends on no attribute value but these
        if self.raw:
            if not isinstance(effect, tuple) or effect[0] or effect[2] != self.raw:
                raise _Refused
            self.raw = ""
        if effect is None or (isinstance(effect, tuple) and "pre" in (effect[0], effect[2])):
            raise _Refused
        used: range = range(0)
        parts = [_BOUNDARY]
        if isinstance(effect, str):
            parts.append(self.encoded(effect))
        else:
            start, _, end = effect
            if start in htmltext._SKIPPED:
                self.skip += 1
                self.raw = start if start in htmltext._RAW and not end else ""
            elif start in ("a", "img"):
                value, used = self.attribute(tag, "href" if start == "a" else "alt", values)
                if start == "a":
                    if self.links:
                        raise _Refused  # a link inside a link
                    parts.append(_LINK + (value + _HREF_END if value is not None else _NO_HREF))
                    self.links += 1
                elif value:
                    parts.append(value)
            if end:
                if end in htmltext._SKIPPED:
                    self.skip = max(0, self.skip - 1)
                elif end == "a" and self.links:
                    self.links -= 1
                    parts.append(_END_LINK)
        parts.extend(self.hidden(value) for n, value in enumerate(values) if n not in used)
        parts.append(_BOUNDARY)
        self.out.append("".join(parts))

    @staticmethod
    def kept(construct: str) -> str:
        return "{{ (" + construct[2:-2] + ")|mailsc_keep }}"

    @staticmethod
    def hidden(construct: str) -> str:
        return "{{ (" + construct[2:-2] + ")|mailsc_hidden }}"

    def attribute(self, tag: str, wanted: str, values: list[str]) -> tuple[str | None, range]:
        """The text-template source of the last ``wanted`` attribute's value as ``htmltext._attribute`` reads it
        (or None), and which of the tag's {{ }} it holds."""
        match = htmltext._TAG.fullmatch(tag)
        if match is None:
            raise _Refused
        found: str | None = None
        used = range(0)
        offset = 0
        for attribute in htmltext._ATTRIBUTE.finditer(match.group(2)):
            raw = attribute.group(2) or ""
            count = raw.count(_VAR)
            if attribute.group(1).lower() == wanted:
                if attribute.group(2) is None:
                    found, used = None, range(0)
                else:
                    segments = (raw[1:-1] if raw[:1] in ("'", '"') else raw).split(_VAR)
                    if any(_OPEN_ENTITY.search(segment) for segment in segments[:-1]):
                        raise _Refused
                    chosen = iter(values[offset : offset + count])
                    found = "".join(
                        self.encoded(unescape(segment)) + (self.kept(next(chosen)) if n < count else "")
                        for n, segment in enumerate(segments)
                    )
                    used = range(offset, offset + count)
            offset += count
        if offset != len(values):
            raise _Refused
        return found, used


def finish_text(output: str) -> str:
    """The text part from a derived text template's output: what ``html_to_text`` gives for the rendered HTML.

    The constants of text runs were collapsed when derived and the tags' own text is encoded past collapsing, so
    a tab or line break here came from a value (then the whole output is collapsed, rarely), and what is left is
    the spaces where two pieces of a run meet."""
    if "\n" in output or "\t" in output or "\r" in output or "\f" in output or "\v" in output:
        output = _COLLAPSIBLE.sub(" ", output)
    while "  " in output:
        output = output.replace("  ", " ")
    for mark, white in _DECODE:  # str.replace is C; str.translate with a dict is a lookup per character
        if mark in output:
            output = output.replace(mark, white)
    if _LINK not in output:
        return htmltext._text([output])
    first, *links = output.split(_LINK)
    parts = [first]
    for link in links:  # never nested (refused when derived)
        if link.startswith(_NO_HREF):
            href, after = None, link[1:]
        else:
            href, _, after = link.partition(_HREF_END)
        label, closed, rest = after.partition(_END_LINK)
        parts.append(label)
        shown = href.removeprefix("mailto:") if href else ""
        if closed and href and not href.startswith(("#", "javascript:")) and shown != label.strip():
            parts.append(f" ({shown})" if label.strip() else shown)
        parts.append(rest)
    return htmltext._text(parts)


class DerivedTextEnvironment(StoredTemplateEnvironment):
    """The stored templates' sandbox for derived text templates: no autoescaping, every value checked."""

    def __init__(self) -> None:
        super().__init__()
        self.finalize = check_value
        self.filters["mailsc_hidden"] = hidden
        self.filters["mailsc_keep"] = keep


def compile_derived(
    html: str, env: jinja2.Environment, derived_env: DerivedTextEnvironment, name: str
) -> jinja2.Template | None:
    """The derived text template of ``html`` compiled, or ``None`` (outside the subset, or it fails to compile)."""
    source = derive_text_source(env, html)
    if source is None:
        return None
    filename = f"{name}.derived.txt"
    try:
        code = derived_env.compile(source, filename, filename)
    except jinja2.TemplateError:
        return None
    return derived_env.template_class.from_code(derived_env, code, derived_env.make_globals(None), None)
