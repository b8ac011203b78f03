"""The text part of a message derived while its HTML renders, from a plan made once per template version.

``html_to_text`` walks every tag and piece of text of the rendered HTML in Python: for a 10 KB receipt that costs
more than rendering it. A template whose CSS is inlined once (``inline_once``) is static markup with outputs in it,
so the text each piece of static markup gives can be worked out once, by running the same extractor
(``htmltext._TextExtractor``'s rules, through ``HTMLParser``) over the inlined markup with its stand-ins. What a
render adds is known too: an output in text is its value as text; one in an ``<a href>`` or ``<img alt>`` is part of
a link's URL or an image's text; any other is not text at all.

So the compiled template yields each piece of static markup through ``text_piece`` and each output through
``text_output``/``attr_output``, which also note, in a per-render ``TextSink``, the piece's plan or the output's
value; ``assemble`` then applies the plan with the values, as the extractor would have: a run of text between two
tags (which may span loop iterations and outputs) has its white space collapsed as a whole, links get their
``(url)`` when their label differs. ``html_to_text(html)`` of the same render is the reference: tests compare the two
on generated templates. Templates with ``<pre>`` are left to ``html_to_text``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any, cast

from jinja2 import nodes
from jinja2.compiler import Frame

from ..htmltext import _BLOCKS, _SKIPPED, _SPACES, _text
from .sandbox import MarkupOutputError, TextOutputCodeGenerator, escape_text_output

_TEXT_MARK = re.compile("\ue000(\\d+)\ue001")
_BLOCK_MARK = re.compile("\ue002(\\d+)\ue003")
_RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"})
_EFFECTS = {"br": "\n", "li": "\n- ", "td": " ", "th": " ", **{tag: "\n\n" for tag in _BLOCKS}}

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


@dataclass
class TextSink:
    """What one render noted for its text part: piece plans and text values in order, attribute values apart."""

    items: list[Piece] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)


_SINK: ContextVar[TextSink | None] = ContextVar("mailsc_text_sink", default=None)


def start() -> tuple[TextSink, Any]:
    sink = TextSink()
    return sink, _SINK.set(sink)


def finish(token: Any) -> None:
    _SINK.reset(token)


def text_piece(piece: tuple[str, Piece]) -> str:
    """A piece of static markup (its HTML, its plan): notes the plan, gives the HTML."""
    sink = _SINK.get()
    if sink is not None:
        sink.items.append(piece[1])
    return piece[0]


def _as_text(value: Any) -> str:
    if hasattr(value, "__html__"):
        raise MarkupOutputError
    return value if type(value) is str else str(value)


def text_output(value: Any) -> str:
    """An output in text: escaped for the HTML, its value noted as text."""
    sink = _SINK.get()
    if sink is not None:
        sink.items.append(_as_text(value))
    return escape_text_output(value)


def attr_output(value: Any) -> str:
    """An output in a link's URL or an image's text: escaped for the HTML, its value noted apart."""
    sink = _SINK.get()
    if sink is not None:
        sink.attributes.append(_as_text(value))
    return escape_text_output(value)


def assemble(sink: TextSink) -> str:
    """The text part, as ``html_to_text`` gives it for the HTML whose render filled ``sink``."""
    parts: list[str] = []
    add = parts.append
    run: list[str] = []  # the current run of text: static pieces and values, collapsed as one when a tag ends it
    extend = run.append
    links: list[tuple[str | None, int]] = []
    values = iter(sink.attributes)
    for item in sink.items:
        if type(item) is str:
            extend(item)
            continue
        lead, middle, trail = item  # type: ignore[str-unpack]  # not a str: checked above
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
                        _end_link(parts, *links.pop())
                else:
                    alt = _value(op[1], values)
                    if alt:
                        add(alt)
        if trail:
            extend(trail)
    text = "".join(run)
    if text:
        add(_collapsed(text))
    return _text(parts)


def _collapsed(text: str) -> str:
    """``_SPACES.sub(" ", text.replace("\n", " "))``, skipping the regular expression for text with nothing to
    collapse (most runs: a few words between two tags)."""
    if "\n" in text:
        text = text.replace("\n", " ")
    if "  " in text or "\t" in text or "\r" in text or "\f" in text or "\v" in text:
        return _SPACES.sub(" ", text)
    return text


def _value(static: Any, values: Iterator[str]) -> str | None:
    """An attribute's value: its static parts with the rendered values between them."""
    if static is None:
        return None
    if len(static) == 1:
        return str(static[0])
    out = [static[0]]
    for part in static[1:]:
        value = next(values, None)
        if value is None:  # pragma: no cover - every such output is noted; never a wrong text if one was not
            raise NotTextableError("an attribute value was not noted")
        out.append(value)
        out.append(part)
    return "".join(out)


def _end_link(parts: list[str], href: str | None, start: int) -> None:
    """``_TextExtractor.handle_endtag("a")``."""
    label = "".join(parts[start:]).strip()
    shown = href.removeprefix("mailto:") if href else ""
    if href and not href.startswith(("#", "javascript:")) and shown != label:
        parts.append(f" ({shown})" if label else shown)


# Jinja forbids new node types, so two node types no stored template can produce carry these, with a mark only
# ``NotingCodeGenerator`` reads: ExtensionAttribute (extensions are off) for a piece of static markup, and a Filter
# of a name no environment has around an output the text part needs. Neither can be evaluated while compiling
# (``as_const`` raises ``Impossible``), so Jinja never folds one into a constant that skips the call.
def piece_node(index: int, lineno: int) -> nodes.Expr:
    """A piece of static markup that notes its plan (``text_piece``): entry ``index`` of ``mailsc_pieces``."""
    node = nodes.ExtensionAttribute("mailsc", str(index), lineno=lineno)
    node.mailsc_piece = index  # type: ignore[attr-defined]
    return node


def noted_node(expression: nodes.Expr, what: str) -> nodes.Expr:
    """An output whose value the text part needs (``text_output``, or ``attr_output`` for ``ATTRIBUTE``)."""
    node = nodes.Filter(expression, _NOTED_FILTER, [], [], None, None, lineno=expression.lineno)
    node.mailsc_what = what  # type: ignore[attr-defined]
    return node


_NOTED_FILTER = "mailsc noted output"  # not a name a filter can have


def _ours(node: nodes.Node) -> bool:
    return hasattr(node, "mailsc_piece") or hasattr(node, "mailsc_what")


# Prepended to the template's generated module: what its TextPiece and NotedOutput nodes call.
HEADER = (
    "from mailsc.templates.text_once import text_piece as mailsc_piece, text_output as mailsc_text, "
    "attr_output as mailsc_attr\n"
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
        index = getattr(node, "mailsc_piece", None)
        if index is None:  # pragma: no cover - stored templates have no extensions
            super().visit_ExtensionAttribute(node, frame)
            return
        self.write(f"mailsc_piece(mailsc_pieces[{index}])")

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
        if tag in _RAW_TEXT:
            self._raw.append(tag)
        if tag in _SKIPPED:
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
            self._boundary(_EFFECTS.get(tag, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._raw:
            del self._raw[len(self._raw) - 1 - self._raw[::-1].index(tag)]
        if tag in _SKIPPED:
            self._skip = max(0, self._skip - 1)
            self._boundary()
        elif tag == "a":
            self._boundary()
            self.ops[self.slot].append((END_LINK, None))
        else:
            self._boundary("\n\n" if tag in _BLOCKS else "")

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
            ops.append(_SPACES.sub(" ", text.replace("\n", " ")))
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
