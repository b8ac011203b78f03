"""CSS inlined into an HTML template once per version, instead of into every message rendered from it.

``css-inline`` parses and re-serialises the whole document: for a 10 KB receipt that is as much CPU as rendering it.
Most transactional templates are static markup with holes in it (``{{ name }}``, a ``{% for %}`` over order lines),
and for those the result of inlining the rendered HTML is the template's own markup inlined once, holes kept. So at
compile time the template's markup is inlined with each Jinja construct replaced by a stand-in (a private-use
character pair for an output, an HTML comment for a block tag, which an HTML5 parser never moves out of a table),
and the inlined text between the stand-ins becomes the template's new static text: the Jinja tree itself (its
loops, tests and expressions) is not touched.

That is only equivalent when rendering can neither change which elements a CSS rule matches nor make the parser
read the markup differently, so it is done only when every one of these holds, and the template is inlined per
message as before otherwise:

- the rules (comments and strings aside) use type, class, id and attribute selectors with descendant or child
  combinators, and pseudo-classes that never match in an email (``:hover`` ...): no ``:first-child``/``:nth-*``/
  ``+``/``~``/``:empty``, which depend on how many times a loop ran; no at-rule but ``@media`` (kept, never
  inlined) and the declaration-only ones;
- no output lands in a tag or attribute name, an unquoted attribute value, a ``<style>``/``<link>`` tag, or a
  ``class``/``id``/``style``/``data-css-inline`` value (nor in any attribute when a rule selects on attributes);
  none comes before the end of the document's head (the stand-in is text, which would end ``<head>`` early) except
  in ``<title>`` and in attributes; no Jinja tag directly follows a bare ``&`` or a ``<pre>``/``<textarea>``;
- each ``{% for %}``/``{% if %}``/``{% with %}``/``{% block %}`` wraps whole elements: its tags end up side by side
  under one parent in the parsed document, so repeating or dropping what is between them repeats or drops subtrees;
  and none wraps a ``<style>``, ``<html>``, ``<head>`` or ``<body>`` tag or the doctype;
- the parser kept the document in source order (nothing foster-parented out of a table, nothing dropped);
- the template uses no macros, call/filter blocks, ``{% set %}`` blocks, includes or autoescape switches (they
  produce markup elsewhere than they appear).

An output whose value is markup (``|safe``, ``|tojson``, a macro's result) could still add elements, or quotes and
'&' that mean something else in the re-serialised markup around it: the inlined template's outputs go through
``escape_text_output``, which refuses any markup with ``MarkupOutputError``, and the message is rendered from the
template as written and inlined on its own (``render.render_parts``), as is every later message of that version.
An adversarial review found eleven ways around an earlier version of these rules; each is a test now.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

import css_inline
import jinja2
from jinja2 import nodes
from jinja2.nodes import EvalContext

from .emailhtml import INLINER
from .sandbox import TextOutputCodeGenerator

_TEXT_MARK = "\ue000{}\ue001"  # stands in for an output: text wherever it is, in content or in an attribute value
_BLOCK_MARK = "<!--\ue002{}\ue003-->"  # stands in for a block tag: a comment, kept in place by an HTML5 parser
_MARKS = re.compile("\ue000(\\d+)\ue001|<!--\ue002(\\d+)\ue003-->")
_PRIVATE = re.compile("[\ue000-\ue003]")
_ENTITY_START = re.compile("&[#\\w]*(?:\ue000|<!--\ue002)")  # a stand-in could complete a character reference
_AFTER_NEWLINE_DROPPING = re.compile("<(?:pre|textarea|listing)(?=[\\s>])[^<>]*>(?:\ue000|<!--\ue002)", re.I)
_SOURCE_TAG = re.compile(r"<[a-zA-Z][^<>]*>")
_UNQUOTED_VALUE = re.compile(r"""=[ \t\n\r\f]*(?:"[^"]*"|'[^']*'|([^\s"'>]*))""")
_TITLE_ELEMENT = re.compile(r"<title(?=[\s>])[^<>]*>.*?</title\s*>", re.IGNORECASE | re.DOTALL)
# Tags the parser puts in or around <head>, or merges into an element it made already: what a construct may not
# wrap, and what no output may come before (the stand-in is text, which ends <head> early and opens <body>).
_DOCUMENT_TAGS = re.compile(r"</?(?:html|head|body|style)(?=[\s/>])|<!doctype", re.IGNORECASE)
_HEAD_TAGS = re.compile(r"<(?:html|head|body|style|meta|title|link|base)(?=[\s/>])|</head(?=[\s>])|<!doctype", re.I)

# Selectors whose matches do not depend on what a render repeats or leaves out.
_PLAIN_SELECTOR = re.compile(r"[-\w\s.#*>,\[\]=\"'^$|~:]*")
_STRUCTURAL = re.compile(r"[+~]|:(?!hover\b|active\b|focus\b|visited\b|link\b|root\b)|::")
_ATTRIBUTE_SELECTOR = re.compile(r"\[")
_CSS_COMMENT_OR_STRING = re.compile(r"""/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""", re.DOTALL)
# At-rules with no selectors css-inline could inline: @media (kept in the <style> block), and the declaration-only ones.
_UNINLINED_AT_RULE = re.compile(
    r"@media\b[^{};]*\{(?:[^{}]|\{[^{}]*\})*\}|@(?:import|charset|namespace)\b[^{};]*;|@(?:font-face|page)\b[^{};]*\{[^{}]*\}",
    re.IGNORECASE,
)
_RULE = re.compile(r"([^{}]+)\{[^{}]*\}")
_STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)

# The serialised output of html5ever: double-quoted values with '"' escaped, end tags for every non-void element.
_TOKEN = re.compile(
    r"<!--(.*?)-->"  # 1: comment
    r"|<!DOCTYPE[^>]*>"
    r"|</([a-zA-Z][^\s/>]*)\s*>"  # 2: end tag
    r"|<([a-zA-Z][^\s/>]*)((?:\s+[^\s=/>]+(?:=\"[^\"]*\")?)*)\s*/?>"  # 3, 4: start tag, attributes
    r"|[^<]+|<",
    re.DOTALL,
)
_ATTRIBUTE = re.compile(r"\s+([^\s=/>]+)(?:=\"([^\"]*)\")?")
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"}
    | {"basefont", "bgsound", "frame", "keygen"}
)
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"})
# Attributes a rule reads whatever its selector, or css-inline itself reads.
_NEVER_SHAPED = frozenset({"class", "id", "style", "data-css-inline"})
_IMPLIED = frozenset({"html", "head", "body", "tbody"})  # elements the parser adds where the source has none
_BODIES: dict[type[nodes.Node], tuple[str, ...]] = {
    nodes.For: ("body", "else_"),
    nodes.If: ("body", "elif_", "else_"),
    nodes.With: ("body",),
    nodes.Block: ("body",),
}
_SILENT = (nodes.Assign, nodes.ExprStmt)  # statements with no output: a position to keep, nothing to wrap


class NotInlinableError(Exception):
    """The template's markup cannot be inlined ahead of rendering (the reason); it is inlined per message."""


@dataclass
class _Walk:
    """The template flattened in output order: static text and stand-ins, alternating, starting and ending with
    static text; and for each block tag construct, the stand-in numbers of its tags."""

    data: list[nodes.TemplateData]
    marks: list[str]
    constructs: list[list[int]]
    context: EvalContext

    def static(self, node: nodes.TemplateData) -> None:
        self.data.append(node)

    def mark(self, template: str) -> int:
        number = len(self.marks)
        self.marks.append(template.format(number))
        return number


def inline_ahead(env: jinja2.Environment, source: str, filename: str) -> jinja2.Template:
    """The HTML template ``source`` with its CSS inlined, compiled so that an output of markup with a tag in it
    raises ``MarkupOutputError``. Raises ``NotInlinableError`` (why) when inlining it ahead would not give what
    inlining each message gives."""
    if _PRIVATE.search(source):
        raise NotInlinableError("the template contains the private-use characters the stand-ins are made of")
    tree = env.parse(source, filename, filename)
    walk = _Walk([], [], [], EvalContext(env, filename))
    _pad_body(tree.body, tree.lineno)
    _walk_body(tree.body, walk)
    if len(walk.data) != len(walk.marks) + 1:  # pragma: no cover - _pad_body makes them alternate
        raise NotInlinableError("internal: static text and stand-ins do not alternate")
    skeleton = "".join(node.data + mark for node, mark in zip(walk.data, [*walk.marks, ""], strict=True))
    if not _STYLE_BLOCK.search(skeleton):
        raise NotInlinableError("no <style> block: nothing to inline")
    _check_css(skeleton)
    _check_skeleton(skeleton, walk)
    try:
        inlined = str(INLINER.inline(skeleton))
    except (css_inline.InlineError, ValueError) as exc:
        raise NotInlinableError(f"css-inline refused the markup: {exc}") from None
    pieces = _MARKS.split(inlined)
    found = [int(pieces[i] or pieces[i + 1]) for i in range(1, len(pieces), 3)]
    if found != list(range(len(walk.marks))):
        raise NotInlinableError("the parser moved or dropped a Jinja tag")
    _check_document(inlined, walk, any(_ATTRIBUTE_SELECTOR.search(css) for css in _styles(skeleton)))
    if _events(skeleton) != _events(inlined):
        raise NotInlinableError("the parser reordered the document (content foster-parented out of a table?)")
    for node, text in zip(walk.data, pieces[::3], strict=True):
        node.data = text
    tree.set_environment(env)
    generator = TextOutputCodeGenerator(env, filename, filename, None, False, env.optimized)
    generator.visit(tree)
    assert isinstance(generator.stream, io.StringIO)
    code = compile(generator.stream.getvalue(), filename, "exec")
    return env.template_class.from_code(env, code, env.make_globals(None), None)


def _pad_body(body: list[nodes.Node], lineno: int) -> None:
    """Give every gap between two stand-ins a ``TemplateData`` to hold the inlined text that lands there: a body
    starts and ends with one, an ``Output``'s expressions are separated by them."""
    padded: list[nodes.Node] = [nodes.Output([], lineno=lineno)]
    for node in body:
        if isinstance(node, nodes.Output):
            assert isinstance(padded[-1], nodes.Output)
            padded[-1].nodes.extend(node.nodes)
            continue
        for field in _BODIES.get(type(node), ()):
            value = getattr(node, field)
            if field == "elif_":
                for branch in value:
                    _pad_body(branch.body, branch.lineno)
            elif field != "else_" or value:
                _pad_body(value, node.lineno)
        padded.append(node)
        padded.append(nodes.Output([], lineno=node.lineno))
    for output in padded:
        if isinstance(output, nodes.Output):
            output.nodes = _alternate(output.nodes, output.lineno)
    body[:] = padded


def _alternate(children: list[nodes.Expr], lineno: int) -> list[nodes.Expr]:
    """``children`` as static text, expression, static text, ..., static text (adjacent texts merged)."""
    out: list[nodes.Expr] = []
    for child in children:
        last = out[-1] if out else None
        if isinstance(child, nodes.TemplateData):
            if isinstance(last, nodes.TemplateData):
                out[-1] = nodes.TemplateData(last.data + child.data, lineno=last.lineno)
            else:
                out.append(child)
            continue
        if not isinstance(last, nodes.TemplateData):
            out.append(nodes.TemplateData("", lineno=lineno))
        out.append(child)
    if not out or not isinstance(out[-1], nodes.TemplateData):
        out.append(nodes.TemplateData("", lineno=lineno))
    return out


def _walk_body(body: list[nodes.Node], walk: _Walk) -> None:
    for node in body:
        if isinstance(node, nodes.Output):
            for child in node.nodes:
                if isinstance(child, nodes.TemplateData):
                    walk.static(child)
                else:
                    _check_output(child, walk.context)
                    walk.mark(_TEXT_MARK)
        elif isinstance(node, _SILENT):
            walk.mark(_BLOCK_MARK)
        elif type(node) in _BODIES:
            construct = [walk.mark(_BLOCK_MARK)]  # the opening tag, each {% elif %}/{% else %}, the closing tag
            for field in _BODIES[type(node)]:
                value = getattr(node, field)
                for branch in [branch.body for branch in value] if field == "elif_" else [value]:
                    if field != "body" and (field == "elif_" or branch):
                        construct.append(walk.mark(_BLOCK_MARK))
                    _walk_body(branch, walk)
            construct.append(walk.mark(_BLOCK_MARK))
            walk.constructs.append(construct)
        else:
            raise NotInlinableError(f"a {type(node).__name__} statement on line {node.lineno}")


def _check_output(expression: nodes.Expr, context: EvalContext) -> None:
    """Jinja writes an output it can evaluate while compiling as a constant, past ``escape_text_output``: refuse
    one that is markup."""
    try:
        value: Any = expression.as_const(context)
    except Exception:  # evaluated at render time (Jinja's own rule), through escape_text_output
        return
    if hasattr(value, "__html__"):
        raise NotInlinableError(f"constant markup output on line {expression.lineno}")


def _styles(document: str) -> list[str]:
    return [match.group(1) for match in _STYLE_BLOCK.finditer(document)]


def _check_css(skeleton: str) -> None:
    for css in _styles(skeleton):
        if "\ue000" in css or "\ue002" in css:
            raise NotInlinableError("a <style> block contains Jinja")
        css = _CSS_COMMENT_OR_STRING.sub(lambda m: " " if m.group().startswith("/*") else '""', css)
        css = _UNINLINED_AT_RULE.sub(" ", css)
        if "@" in css:
            raise NotInlinableError("an at-rule other than @media, @import, @charset, @font-face or @page")
        for rule in _RULE.finditer(css):
            selectors = rule.group(1)
            if not _PLAIN_SELECTOR.fullmatch(selectors) or _STRUCTURAL.search(selectors.replace("~=", "")):
                raise NotInlinableError(f"a selector that depends on the rendered structure: {selectors.strip()}")
        if _RULE.sub("", css).strip():
            raise NotInlinableError("CSS that is not a plain list of rules (nesting?)")


def _check_skeleton(skeleton: str, walk: _Walk) -> None:
    """What the parser of the skeleton would read differently from a rendered message's."""
    if _ENTITY_START.search(skeleton):
        raise NotInlinableError("a Jinja tag right after a bare '&' (it could complete a character reference)")
    if _AFTER_NEWLINE_DROPPING.search(skeleton):
        raise NotInlinableError("a Jinja tag right after <pre> or <textarea> (a leading newline would be dropped)")
    for tag in _SOURCE_TAG.finditer(skeleton):
        values = _UNQUOTED_VALUE.finditer(tag.group()) if "\ue000" in tag.group() else ()
        if any("\ue000" in (value.group(1) or "") for value in values):
            raise NotInlinableError("a Jinja output in an unquoted attribute value")
    for construct in walk.constructs:
        start, end = skeleton.index(walk.marks[construct[0]]), skeleton.index(walk.marks[construct[-1]])
        if _DOCUMENT_TAGS.search(skeleton, start, end):
            raise NotInlinableError("a {% for %}/{% if %} around <style>, <head>, <body>, <html> or the doctype")
    blank = _SOURCE_TAG.sub(_spaces, _TITLE_ELEMENT.sub(_spaces, skeleton))
    first_output = blank.find("\ue000")  # the first output in text: outside tags and <title>
    if first_output >= 0 and any(tag.start() > first_output for tag in _HEAD_TAGS.finditer(skeleton)):
        raise NotInlinableError("a Jinja output before the document's head ends")


def _spaces(match: re.Match[str]) -> str:
    return " " * len(match.group())


def _check_document(inlined: str, walk: _Walk, attribute_selectors: bool) -> None:
    """The stand-ins of block tags are comments of their own, each construct's side by side under one parent; the
    stand-ins of outputs are in text or in values no rule reads."""
    depth = 0
    depths: list[int] = []  # after each token
    where: dict[int, tuple[int, int]] = {}  # block stand-in -> (token index, depth)
    raw: str | None = None
    for token in _TOKEN.finditer(inlined):
        comment, end, start, attributes = token.group(1, 2, 3, 4)
        if raw is not None:  # inside <script>, <style>: text until its end tag
            if end is not None and end.lower() == raw:
                raw = None
                depth -= 1
            elif "\ue002" in token.group() or (raw == "style" and "\ue000" in token.group()):
                raise NotInlinableError("a Jinja tag inside <script> or <style>")
        elif comment is not None:
            match = _MARKS.fullmatch(token.group())
            if match is not None and match.group(2) is not None:
                where[int(match.group(2))] = (len(depths), depth)
            elif "\ue002" in comment:
                raise NotInlinableError("a Jinja block tag inside an HTML comment")
        elif end is not None:
            depth -= 1
        elif start is not None:
            name = start.lower()
            if "\ue000" in start or "\ue002" in token.group():
                raise NotInlinableError(f"Jinja inside the <{_PRIVATE.sub('', start)}> tag itself")
            for attribute in _ATTRIBUTE.finditer(attributes or ""):
                key, value = attribute.group(1), attribute.group(2) or ""
                if "\ue000" in key:
                    raise NotInlinableError("a Jinja output as an attribute name")
                if "\ue000" in value and (attribute_selectors or key.lower() in _NEVER_SHAPED):
                    raise NotInlinableError(f"a Jinja output in a {key}= value, which a CSS rule may read")
            if name in ("style", "link") and "\ue000" in token.group():
                raise NotInlinableError(f"a Jinja output in a <{name}> tag's attributes")
            if name not in _VOID and not token.group().endswith("/>"):
                depth += 1
                if name in _RAW_TEXT:
                    raw = name
        depths.append(depth)
    for construct in walk.constructs:
        if any(number not in where for number in construct):
            raise NotInlinableError("a Jinja block tag the parser did not keep as a comment")
        first, level = where[construct[0]]
        last = where[construct[-1]][0]
        if any(where[number][1] != level for number in construct) or min(depths[first : last + 1]) < level:
            raise NotInlinableError(
                "a {% for %}/{% if %} that does not wrap whole elements (rows right inside <table>? write its <tbody>)"
            )


class _Events(HTMLParser):
    """The order of a document's elements and text, the parts a parser could move (``<style>`` blocks aside: the
    inliner empties or removes them)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.events: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_style = tag == "style"
        if tag not in _IMPLIED and tag != "style":
            self.events.append("<" + tag)

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and not self._in_style:
            self.events.append(text)

    def handle_comment(self, data: str) -> None:
        if data.startswith("\ue002"):
            self.events.append(data)


def _events(document: str) -> list[str]:
    parser = _Events()
    parser.feed(document)
    parser.close()
    return parser.events
