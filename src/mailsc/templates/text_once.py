"""The text part of a message derived while its HTML renders, from a plan made once per template version.

``html_to_text`` walks every tag and piece of text of the rendered HTML in Python: for a 10 KB receipt that costs
more than rendering it. A template whose CSS is inlined once (``inline_once``) is static markup with outputs in it,
so the text each piece of static markup gives can be worked out once, by running the same extractor
(``htmltext._TextExtractor``'s rules, through ``HTMLParser``) over the inlined markup with its stand-ins. What a
render adds is known too: an output in text is its value as text; one in an ``<a href>`` or ``<img alt>`` is part of
a link's URL or an image's text; any other is not text at all.

So the compiled template yields, instead of a string, a pair: each piece of static markup as a constant (its HTML,
its plan), each output the text needs as ``text_output``/``attr_output`` make it (its escaped HTML, its value);
``render.render_part`` joins the HTML and keeps the second halves in order (the notes), and ``assemble`` applies
the plans with the values, as the extractor would have: a run of text between two tags (which may span loop
iterations and outputs) has its white space collapsed as a whole, links get their ``(url)`` when their label
differs. No call per piece of markup and no per-render state: the notes travel with the output. ``html_to_text``
of the same HTML is the reference: tests compare the two on generated templates. Templates with ``<pre>``, outputs
in comments or raw-text elements, ``self`` or recursive loops are left to ``html_to_text``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import Frame

from ..htmltext import BLOCKS, SKIPPED, SPACES, START_TEXT, end_link, joined_text
from . import outputs
from .inline_checks import RAW_TEXT
from .outputs import MarkupOutputError, TextOutputCodeGenerator, escape_text_output
from .sandbox import escape_str

_TEXT_MARK = re.compile("\ue000(\\d+)\ue001")
_BLOCK_MARK = re.compile("\ue002(\\d+)\ue003")

# Plan items, what ``assemble`` does with them. A plain str in a piece's plan is text continuing the current run.
LINK, END_LINK, IMAGE = 1, 2, 3
Op = str | tuple[int, tuple[str, ...] | None]  # final text, or (LINK | IMAGE, static parts of the value), (END_LINK,)
# A gap's plan: text only, continuing the run; or (text ending the run, the text or ops after it, text starting the
# next run).
Piece = str | tuple[str, str | tuple[Op, ...], str]

TEXT, ATTRIBUTE, IGNORED = "text", "attribute", "ignored"  # what an output is to the text part


class NotTextableError(Exception):
    """The text part of this template is derived from each rendered HTML instead (the reason)."""


@dataclass
class Plan:
    """Per static piece (by stand-in gap), its plan; per output (by stand-in number), what it is to the text."""

    pieces: list[Piece]
    outputs: dict[int, str]


def _as_text(value: Any) -> str:
    if hasattr(value, "__html__"):
        raise MarkupOutputError
    return value if type(value) is str else str(value)


def text_output(value: Any) -> tuple[str, str]:
    """An output in text: (escaped for the HTML, its value as text). ``escape_text_output`` and ``_as_text`` in
    one, for the plain string most values are (one call per output, not three)."""
    if type(value) is str and "\0" not in value:
        return escape_str(value), value
    return escape_text_output(value), _as_text(value)


def attr_output(value: Any) -> tuple[str, tuple[str]]:
    """An output in a link's URL or an image's text: (escaped for the HTML, its value in a 1-tuple, kept for the
    link or image that follows)."""
    return escape_text_output(value), (_as_text(value),)


def assemble(notes: list[Any]) -> str:
    """The text part, as ``html_to_text`` gives it for the HTML of the render that made ``notes``."""
    parts: list[str] = []
    add = parts.append
    run: list[str] = []  # the current run of text: static pieces and values, collapsed as one when a tag ends it
    extend = run.append
    links: list[tuple[str | None, int]] = []
    pending: list[str] = []  # attribute values, for the link or image their tag opens
    values = _Values(pending)
    for item in notes:
        if type(item) is str:
            extend(item)
            continue
        if len(item) == 1:
            pending.append(item[0])
            continue
        lead, middle, trail = item
        if lead:
            extend(lead)
        if run:
            text = "".join(run)
            if text:
                add(_collapsed(text))
            run.clear()
        if type(middle) is str:
            if middle:
                add(middle)
        else:
            for op in middle:
                if type(op) is str:
                    add(op)
                elif op[0] == LINK:
                    links.append((_value(op[1], values), len(parts)))
                elif op[0] == END_LINK:
                    if links:
                        end_link(parts, *links.pop())
                else:
                    alt = _value(op[1], values)
                    if alt:
                        add(alt)
        if trail:
            extend(trail)
    text = "".join(run)
    if text:
        add(_collapsed(text))
    return joined_text(parts)


def _collapsed(text: str) -> str:
    """``SPACES.sub(" ", text.replace("\n", " "))``, skipping the regular expression for text with nothing to
    collapse (most runs: a few words between two tags)."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if "  " in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        return SPACES.sub(" ", text)
    return text


class _Values:
    """The attribute values noted so far, taken in order."""

    def __init__(self, pending: list[str]) -> None:
        self.pending = pending
        self.taken = 0

    def take(self) -> str:
        if self.taken >= len(self.pending):  # pragma: no cover - every such output is noted
            raise NotTextableError("an attribute value was not noted")
        self.taken += 1
        return self.pending[self.taken - 1]


def _value(static: Any, values: _Values) -> str | None:
    """An attribute's value: its static parts with the rendered values between them."""
    if static is None:
        return None
    if len(static) == 1:
        return str(static[0])
    out = [static[0]]
    for part in static[1:]:
        out.append(values.take())
        out.append(part)
    return "".join(out)


# Jinja forbids new node types, so two node types no stored template can produce carry these, with a mark only
# ``NotingCodeGenerator`` reads: ExtensionAttribute (extensions are off) for a piece of static markup, and a Filter
# of a name no environment has around an output the text part needs. Neither can be evaluated while compiling
# (``as_const`` raises ``Impossible``), so Jinja never folds one into a constant that skips the call.
def piece_node(html: str, plan: Piece, lineno: int) -> nodes.Expr:
    """A piece of static markup yielded with its plan: the constant ``(html, plan)``."""
    node = nodes.ExtensionAttribute("mailsc", "piece", lineno=lineno)
    node.mailsc_piece = (html, plan)  # type: ignore[attr-defined]
    return node


def noted_node(expression: nodes.Expr, what: str) -> nodes.Expr:
    """An output whose value the text part needs (``text_output``, or ``attr_output`` for ``ATTRIBUTE``)."""
    node = nodes.Filter(expression, _NOTED_FILTER, [], [], None, None, lineno=expression.lineno)
    node.mailsc_what = what  # type: ignore[attr-defined]
    return node


_NOTED_FILTER = "mailsc noted output"  # not a name a filter can have


def _ours(node: nodes.Node) -> bool:
    return hasattr(node, "mailsc_piece") or hasattr(node, "mailsc_what")


# Prepended to the template's generated module: what its noted outputs call.
HEADER = (
    outputs.HEADER + "from mailsc.templates.text_once import text_output as mailsc_text, attr_output as mailsc_attr\n"
)


class NotingCodeGenerator(TextOutputCodeGenerator):
    """``TextOutputCodeGenerator`` that also writes ``piece_node`` and ``noted_node`` nodes (bare: they escape)."""

    def _output_child_pre(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if not _ours(node):
            super()._output_child_pre(node, frame, finalize)

    def _output_child_post(self, node: nodes.Expr, frame: Frame, finalize: Any) -> None:
        if not _ours(node):
            super()._output_child_post(node, frame, finalize)

    def visit_ExtensionAttribute(self, node: nodes.ExtensionAttribute, frame: Frame) -> None:  # noqa: N802
        piece = getattr(node, "mailsc_piece", None)
        if piece is None:  # pragma: no cover - stored templates have no extensions
            super().visit_ExtensionAttribute(node, frame)
            return
        self.write(repr(piece))  # a tuple of constants: one constant of the compiled code

    def visit_Filter(self, node: nodes.Filter, frame: Frame) -> None:  # noqa: N802
        what = getattr(node, "mailsc_what", None)
        if what is None:
            super().visit_Filter(node, frame)
            return
        self.write("mailsc_attr(" if what == ATTRIBUTE else "mailsc_text(")
        assert node.node is not None
        self.visit(node.node, frame)
        self.write(")")


def plan(inlined: str, marks: int) -> Plan:
    """The plan for the inlined markup ``inlined`` (with its ``marks`` stand-ins, numbered in order)."""
    planner = _Planner(marks)
    planner.feed(inlined)
    planner.close()
    if planner.slot != marks:
        raise NotTextableError("the stand-ins were not all found in order")
    return Plan([_compact(ops) for ops in planner.ops], planner.outputs)


_Raw = str | tuple[int, Any]  # text of the run; or a boundary: (0, text it adds), or a LINK/END_LINK/IMAGE op


class _Planner(HTMLParser):
    """``_TextExtractor``'s rules over the inlined markup, noting per gap between stand-ins what it adds."""

    def __init__(self, marks: int) -> None:
        super().__init__(convert_charrefs=True)
        self.ops: list[list[_Raw]] = [[] for _ in range(marks + 1)]
        self.outputs: dict[int, str] = {}
        self.slot = 0
        self._skip = 0
        self._raw: list[str] = []  # open elements whose text css-inline writes raw

    def _passed(self, number: int, what: str) -> None:
        if number != self.slot:
            raise NotTextableError("a stand-in out of order")
        self.outputs[number] = what
        self.slot += 1

    def _boundary(self, text: Any = "") -> None:
        self.ops[self.slot].append((0, text))

    def handle_data(self, data: str) -> None:
        if self._raw and _TEXT_MARK.search(data):  # a static '<' stays raw in there: '<' and a value make a tag
            raise NotTextableError(f"a Jinja output inside <{self._raw[-1]}>")
        pieces = _TEXT_MARK.split(data)
        for index, piece in enumerate(pieces):
            if index % 2:
                self._passed(int(piece), IGNORED if self._skip else TEXT)
            elif piece and not self._skip:
                self.ops[self.slot].append(piece)

    def handle_comment(self, data: str) -> None:
        block = _BLOCK_MARK.fullmatch(data)
        if block is not None:
            self._passed(int(block.group(1)), IGNORED)  # not a boundary: a run of text goes on across a block tag
            return
        if _TEXT_MARK.search(data):  # a value could end the comment early for HTMLParser ("--" then a static ">")
            raise NotTextableError("a Jinja output inside an HTML comment")
        self._boundary()

    def _attribute(self, attrs: list[tuple[str, str | None]], wanted: str) -> tuple[str, ...] | None:
        """The static parts of the last ``wanted`` attribute (as ``dict(attrs)`` picks it), passing the stand-ins
        of every attribute in order."""
        chosen: tuple[str, ...] | None = None
        last = max((i for i, (name, _) in enumerate(attrs) if name == wanted), default=-1)
        for index, (_, value) in enumerate(attrs):
            parts = _TEXT_MARK.split(value or "")
            for number in parts[1::2]:
                self._passed(int(number), ATTRIBUTE if index == last else IGNORED)
            if index == last:
                chosen = None if value is None else tuple(parts[::2])
        return chosen

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = "href" if tag == "a" else "alt" if tag == "img" else ""
        value = self._attribute(attrs, wanted)
        if tag == "pre":
            raise NotTextableError("a <pre> element")
        if tag in RAW_TEXT:
            self._raw.append(tag)
        if tag in SKIPPED:
            self._skip += 1
            self._boundary()
        elif tag == "a":
            self._boundary()
            self.ops[self.slot].append((LINK, value))
        elif tag == "img":
            self._boundary()
            if value is not None and (len(value) > 1 or value[0]):
                self.ops[self.slot].append((IMAGE, value))
        else:
            self._boundary(START_TEXT.get(tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._raw:
            del self._raw[len(self._raw) - 1 - self._raw[::-1].index(tag)]
        if tag in SKIPPED:
            self._skip = max(0, self._skip - 1)
            self._boundary()
        elif tag == "a":
            self._boundary()
            self.ops[self.slot].append((END_LINK, None))
        else:
            self._boundary("\n\n" if tag in BLOCKS else "")

    def handle_decl(self, decl: str) -> None:
        self._boundary()

    def handle_pi(self, data: str) -> None:
        self._boundary()

    def unknown_decl(self, data: str) -> None:
        self._boundary()


def _compact(raw: list[_Raw]) -> Piece:
    """A gap's raw plan as ``assemble`` takes it: text only; or the text that ends the current run, the ops after
    it (a run wholly inside the gap collapsed now, effects as text), and the text that starts the next run."""
    first = next((i for i, item in enumerate(raw) if type(item) is not str), None)
    if first is None:
        return "".join(raw)  # type: ignore[arg-type]
    last = max(i for i, item in enumerate(raw) if type(item) is not str)
    ops: list[Op] = []
    run: list[str] = []
    for item in raw[first : last + 1]:
        if type(item) is str:
            run.append(item)
            continue
        text = "".join(run)
        if text:
            ops.append(SPACES.sub(" ", text.replace("\n", " ")))
        run = []
        kind, value = cast(tuple[int, Any], item)
        if kind == 0:
            if value:
                ops.append(value)
        else:
            ops.append((kind, value))
    merged: list[Op] = []
    for op in ops:  # adjacent texts joined: one append at render time
        if merged and type(op) is str and type(merged[-1]) is str:
            merged[-1] = merged[-1] + op
        else:
            merged.append(op)
    lead = "".join(raw[:first])  # type: ignore[arg-type]
    trail = "".join(raw[last + 1 :])  # type: ignore[arg-type]
    if all(type(op) is str for op in merged):
        return (lead, "".join(merged), trail)  # type: ignore[arg-type]
    return (lead, tuple(merged), trail)
