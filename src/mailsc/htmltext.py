"""A plain-text rendering of an HTML body, for the text part every HTML message should carry.

Written by hand because the well-known converter (html2text) is GPL-licensed and mailsc is MIT; this covers what
transactional mail contains: paragraphs, line breaks, headings, lists, tables as lines, and links kept as
``text (url)`` so a reader of the text part can still follow them.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser

BLOCKS = frozenset(
    {
        "p",
        "div",
        "section",
        "article",
        "header",
        "footer",
        "table",
        "tr",
        "ul",
        "ol",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "hr",
        "center",
        "main",
        "nav",
        "aside",
        "form",
        "dl",
        "dt",
        "dd",
    }
)
SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript"})
SPACES = re.compile(r"[ \t\r\f\v]+")
_MANY_NEWLINES = re.compile(r"\n{3,}")
_PRE_SPACE, _PRE_NEWLINE = "\ue000", "\ue001"  # private-use stand-ins while lines are stripped


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._links: list[tuple[str | None, int]] = []
        self._pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self._skip_depth += 1
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "a":
            self._links.append((dict(attrs).get("href"), len(self.parts)))
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self.parts.append(alt)
        elif tag in BLOCKS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "a" and self._links:
            end_link(self.parts, *self._links.pop())
        elif tag in BLOCKS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:  # keep <pre> layout: shield its spaces and line breaks from the clean-up below
            self.parts.append(data.replace(" ", _PRE_SPACE).replace("\n", _PRE_NEWLINE))
        else:
            self.parts.append(SPACES.sub(" ", data.replace("\n", " ")))


def end_link(parts: list[str], href: str | None, start: int) -> None:
    """At a link's end: its URL after its label (``parts[start:]``), unless the label is the URL itself, the link
    has no URL, or it points within the page or to script; a ``mailto:`` link shows the bare address."""
    label = "".join(parts[start:]).strip()
    shown = href.removeprefix("mailto:") if href else ""
    if href and not href.startswith(("#", "javascript:")) and shown != label:
        parts.append(f" ({shown})" if label else shown)


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML body."""
    parts = _simple_parts(html)
    return joined_text(parts if parts is not None else _parse(html).parts)


def _parse(html: str) -> _TextExtractor:
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return parser


def joined_text(parts: list[str]) -> str:
    """The extracted pieces joined into the text part: lines stripped, runs of blank lines cut to one."""
    lines = [line.strip() for line in "".join(parts).split("\n")]
    text = _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()
    return text.replace(_PRE_SPACE, " ").replace(_PRE_NEWLINE, "\n") + "\n"


def html_to_text_by_htmlparser(html: str) -> str:
    """``html_to_text`` without the fast path: what the fast path must always equal (the tests compare them)."""
    return joined_text(_parse(html).parts)


# The fast path. ``HTMLParser`` costs about 3 µs a token in pure Python (2.5 ms for a 10 KB receipt); most email HTML
# is plain, well-formed markup, for which one regular expression finds the tags, attributes, text and comments
# ``HTMLParser`` would, and a loop applies ``_TextExtractor``'s handling to them (inlined: half the cost was calls).
# Anything outside that plain subset (a stray '<', an unquoted value touching '/>', a tag name or a character the
# subset does not cover, '<' inside <style>, the elements newer Pythons parse as raw text) makes ``_simple_parts``
# give up, and ``HTMLParser`` does the whole document. So the fast path only ever gives HTMLParser's answer, faster:
# the tests compare the two on generated markup.
_WS = r"[ \t\n\r\f]"
_NAME = r"[a-zA-Z][-a-zA-Z0-9:]*"
_VALUE = rf"""{_WS}*={_WS}*("[^"]*"|'[^']*'|[^ \t\n\r\f"'=<>`/]+(?={_WS}|>|\Z))"""  # unquoted: never '/>'
_ATTRIBUTE = re.compile(rf"{_WS}+([a-zA-Z_:][-a-zA-Z0-9_:.]*)(?:{_VALUE})?")  # in a _TAG's group 2
_TAG = re.compile(
    rf"<({_NAME})((?:{_WS}+[a-zA-Z_:][-a-zA-Z0-9_:.]*(?:{_VALUE.replace('(', '(?:', 1)})?)*){_WS}*(/?)>"  # 1-3
    rf"|</({_NAME}){_WS}*>"  # 4: end tag
    r"|<!--(?!-?>)(?:[^-]|-(?!-))*-->"  # a comment with no '--' inside
    r"|<![dD][oO][cC][tT][yY][pP][eE][^>]*>"  # <!doctype ...>
)
# Cuts a document into text, tag, text, ..., text. A piece cut wrongly (a '>' inside a quoted value, a stray '<')
# is not a whole _TAG, so the document leaves the fast path.
_PIECES = re.compile(r"(<!--.*?-->|<[^>]*>)", re.DOTALL)
# What a start tag adds to the text (``_TextExtractor.handle_starttag``); end tags add "\n\n" for blocks only.
START_TEXT = {"br": "\n", "li": "\n- ", "td": " ", "th": " ", **{tag: "\n\n" for tag in BLOCKS}}
# Content HTMLParser reads as raw text (script, style), or newer versions do (title): taken when it is text alone.
_RAW = frozenset({"script", "style", "title"})
# Parsed differently by newer Pythons' HTMLParser (raw text or RCDATA): left to it whatever it does with them.
_NOT_SIMPLE = frozenset({"textarea", "xmp", "iframe", "noembed", "noframes", "plaintext"})
_STATEFUL = frozenset({"a", "img", "pre", *SKIPPED})
_BLANK = " \t\n\r\f\v"

# What a tag does, worked out once per distinct tag string (a template repeats the same few tags): a string to
# append (maybe empty); or (start tag name, its href or alt, end tag name) for the tags that touch the state; or
# None when the tag is not in the simple subset.
_Effect = str | tuple[str, str | None, str] | None
_effects: dict[str, _Effect] = {}
_EFFECTS_KEPT = 4096


def _attribute(source: str, wanted: str) -> str | None:
    """The last ``wanted`` attribute's value as ``HTMLParser`` gives it (unquoted, unescaped), as ``dict(attrs)``."""
    value: str | None = None
    for attribute in _ATTRIBUTE.finditer(source):
        if attribute.group(1).lower() == wanted:
            value = attribute.group(2)
            if value is not None and value[:1] in ("'", '"'):
                value = value[1:-1]
            value = unescape(value) if value else value
    return value


def _effect(tag: str) -> _Effect:
    match = _TAG.fullmatch(tag)
    if match is None:
        return None
    start, attributes, slash, end = match.groups()
    start = (start or "").lower()
    end = start if slash else (end or "").lower()  # <tag/>: HTMLParser's handle_startendtag, a start then an end
    if start in _NOT_SIMPLE or end in _NOT_SIMPLE:
        return None
    if start in _STATEFUL or end in _STATEFUL:
        value = _attribute(attributes, "href" if start == "a" else "alt") if start in ("a", "img") else None
        return (start, value, end)
    return START_TEXT.get(start, "") + ("\n\n" if end in BLOCKS else "")


def _simple_parts(html: str) -> list[str] | None:
    """``_TextExtractor(...).parts`` for ``html``, or ``None`` when ``html`` is not in the simple subset."""
    pieces = _PIECES.split(html)
    if "<" in pieces[-1]:
        return None
    pieces.append("")
    parts: list[str] = []
    append = parts.append
    skip = pre = 0
    links: list[tuple[str | None, int]] = []
    raw = ""  # inside <script>, <style> or <title>: only text, then its end tag
    effects = _effects
    for index in range(0, len(pieces) - 1, 2):
        text = pieces[index]
        if text and not skip:
            if "&" in text:
                text = unescape(text)
            if pre:
                append(text.replace(" ", _PRE_SPACE).replace("\n", _PRE_NEWLINE))
            elif text.strip(_BLANK):
                append(SPACES.sub(" ", text.replace("\n", " ")))
            else:
                append(" ")
        tag = pieces[index + 1]
        try:
            effect = effects[tag]
        except KeyError:
            if len(effects) >= _EFFECTS_KEPT:
                effects.clear()
            effect = effects[tag] = _effect(tag)
        if raw:
            if not isinstance(effect, tuple) or effect[0] or effect[2] != raw:
                return None
            raw = ""
        if isinstance(effect, str):
            if effect:
                append(effect)
            continue
        if effect is None:
            return None if tag else parts  # the "" after the last text is the end
        start, value, end = effect
        if start:
            added = START_TEXT.get(start)
            if added is not None:
                append(added)
                if start == "pre":
                    pre += 1
            elif start in SKIPPED:
                skip += 1
                raw = start if start in _RAW and not end else ""
            elif start == "a":
                links.append((value, len(parts)))
            elif start == "img" and value:
                append(value)
        if end:
            if end in BLOCKS:
                append("\n\n")
                if end == "pre":
                    pre = max(0, pre - 1)
            elif end in SKIPPED:
                skip = max(0, skip - 1)
            elif end == "a" and links:
                end_link(parts, *links.pop())
    return parts
