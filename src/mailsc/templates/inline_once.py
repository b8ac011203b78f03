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
A value with a NUL character (which the parser drops or replaces depending on where it stands) sends just that
message the same way (``outputs.NulOutputError``).
Two adversarial reviews found sixteen ways around earlier versions of these rules; each is a test now.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import css_inline
import jinja2
from jinja2 import nodes
from jinja2.nodes import EvalContext

from . import outputs, text_once
from .emailhtml import INLINER
from .inline_checks import (
    ATTRIBUTE_SELECTOR,
    BLOCK_MARK,
    MARKS,
    PRIVATE,
    STYLE_BLOCK,
    TEXT_MARK,
    NotInlinableError,
    check_css,
    check_document,
    check_skeleton,
    events,
    styles,
)

_BODIES: dict[type[nodes.Node], tuple[str, ...]] = {
    nodes.For: ("body", "else_"),
    nodes.If: ("body", "elif_", "else_"),
    nodes.With: ("body",),
    nodes.Block: ("body",),
}
_SILENT = (nodes.Assign, nodes.ExprStmt)  # statements with no output: a position to keep, nothing to wrap


@dataclass
class _Walk:
    """The template flattened in output order: static text and stand-ins, alternating, starting and ending with
    static text; and for each block tag construct, the stand-in numbers of its tags."""

    data: list[nodes.TemplateData]
    marks: list[str]
    constructs: list[list[int]]
    context: EvalContext
    places: list[tuple[list[nodes.Expr], int]] = field(default_factory=list)  # where each static piece is
    outputs: dict[int, tuple[list[nodes.Expr], int]] = field(default_factory=dict)  # where each output is

    def static(self, node: nodes.TemplateData, place: tuple[list[nodes.Expr], int]) -> None:
        self.data.append(node)
        self.places.append(place)

    def mark(self, template: str, place: tuple[list[nodes.Expr], int] | None = None) -> int:
        number = len(self.marks)
        self.marks.append(template.format(number))
        if place is not None:
            self.outputs[number] = place
        return number


@dataclass(frozen=True)
class Inlined:
    """An HTML template with its CSS inlined once; ``derives_text`` when a render also notes its text part
    (``text_once``), or why not (``not_text``)."""

    template: jinja2.Template
    derives_text: bool = False
    not_text: str = ""


def inline_ahead(env: jinja2.Environment, source: str, filename: str, *, derive_text: bool = False) -> Inlined:
    """The HTML template ``source`` with its CSS inlined, compiled so that an output of markup with a tag in it
    raises ``MarkupOutputError``. Raises ``NotInlinableError`` (why) when inlining it ahead would not give what
    inlining each message gives."""
    if PRIVATE.search(source):
        raise NotInlinableError("the template contains the private-use characters the stand-ins are made of")
    tree = env.parse(source, filename, filename)
    walk = _Walk([], [], [], EvalContext(env, filename))
    _pad_body(tree.body, tree.lineno)
    _walk_body(tree.body, walk)
    if len(walk.data) != len(walk.marks) + 1:  # pragma: no cover - _pad_body makes them alternate
        raise NotInlinableError("internal: static text and stand-ins do not alternate")
    skeleton = "".join(node.data + mark for node, mark in zip(walk.data, [*walk.marks, ""], strict=True))
    if not STYLE_BLOCK.search(skeleton):
        raise NotInlinableError("no <style> block: nothing to inline")
    check_css(skeleton)
    check_skeleton(skeleton, walk.marks, walk.constructs)
    try:
        inlined = str(INLINER.inline(skeleton))
    except (css_inline.InlineError, ValueError) as exc:
        raise NotInlinableError(f"css-inline refused the markup: {exc}") from None
    pieces = MARKS.split(inlined)
    found = [int(pieces[i] or pieces[i + 1]) for i in range(1, len(pieces), 3)]
    if found != list(range(len(walk.marks))):
        raise NotInlinableError("the parser moved or dropped a Jinja tag")
    check_document(inlined, walk.constructs, any(ATTRIBUTE_SELECTOR.search(css) for css in styles(skeleton)))
    if events(skeleton) != events(inlined):
        raise NotInlinableError("the parser reordered the document (content foster-parented out of a table?)")
    statics = pieces[::3]
    if derive_text:
        try:
            _check_renders_once(tree)
            plan = text_once.plan(inlined, len(walk.marks))
        except text_once.NotTextableError as exc:
            return Inlined(_compiled(env, tree, filename, walk, statics), not_text=str(exc))
        return Inlined(_noting(env, tree, filename, walk, statics, plan), derives_text=True)
    return Inlined(_compiled(env, tree, filename, walk, statics))


def _check_renders_once(tree: nodes.Template) -> None:
    """Refuse noting the text of a template that can render a block or a loop body into a value (``self.b()``,
    ``loop(...)``): its pieces would be noted although that output is not the message's."""
    if any(name.name == "self" for name in tree.find_all(nodes.Name)):
        raise text_once.NotTextableError("the template uses 'self'")
    if any(loop.recursive for loop in tree.find_all(nodes.For)):
        raise text_once.NotTextableError("a recursive loop")


def _compiled(env: jinja2.Environment, tree: nodes.Template, filename: str, walk: _Walk, statics: list[str]) -> Any:
    for node, text in zip(walk.data, statics, strict=True):
        node.data = text
    return _generate(env, tree, filename, outputs.TextOutputCodeGenerator, outputs.HEADER)


def _noting(
    env: jinja2.Environment,
    tree: nodes.Template,
    filename: str,
    walk: _Walk,
    statics: list[str],
    plan: text_once.Plan,
) -> Any:
    """The template with each static piece a ``piece_node`` and each output the text part needs a ``noted_node``."""
    for node, (children, index), text, piece in zip(walk.data, walk.places, statics, plan.pieces, strict=True):
        if not piece:  # adds nothing to the text: plain static markup
            node.data = text
            continue
        children[index] = text_once.piece_node(text, piece, node.lineno)
    for number, (children, index) in walk.outputs.items():
        what = plan.outputs.get(number, text_once.IGNORED)
        if what != text_once.IGNORED:
            children[index] = text_once.noted_node(children[index], what)
    return _generate(env, tree, filename, text_once.NotingCodeGenerator, text_once.HEADER)


def _generate(env: jinja2.Environment, tree: nodes.Template, filename: str, generator_class: Any, header: str) -> Any:
    tree.set_environment(env)
    generator = generator_class(env, filename, filename, None, False, env.optimized)
    generator.visit(tree)
    assert isinstance(generator.stream, io.StringIO)
    code = compile(header + generator.stream.getvalue(), filename, "exec")
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
        for name in _BODIES.get(type(node), ()):
            value = getattr(node, name)
            if name == "elif_":
                for branch in value:
                    _pad_body(branch.body, branch.lineno)
            elif name != "else_" or value:
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
            for index, child in enumerate(node.nodes):
                if isinstance(child, nodes.TemplateData):
                    walk.static(child, (node.nodes, index))
                else:
                    _check_output(child, walk.context)
                    walk.mark(TEXT_MARK, (node.nodes, index))
        elif isinstance(node, _SILENT):
            walk.mark(BLOCK_MARK)
        elif type(node) in _BODIES:
            construct = [walk.mark(BLOCK_MARK)]  # the opening tag, each {% elif %}/{% else %}, the closing tag
            for field in _BODIES[type(node)]:
                value = getattr(node, field)
                for branch in [branch.body for branch in value] if field == "elif_" else [value]:
                    if field != "body" and (field == "elif_" or branch):
                        construct.append(walk.mark(BLOCK_MARK))
                    _walk_body(branch, walk)
            construct.append(walk.mark(BLOCK_MARK))
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
