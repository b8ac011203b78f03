"""A plain-text rendering of an HTML body, for the text part every HTML message should carry.

Written by hand because the well-known converter (html2text) is GPL-licensed and mailsc is MIT; this covers what
transactional mail contains: paragraphs, line breaks, headings, lists, tables as lines, and links kept as
``text (url)`` so a reader of the text part can still follow them.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCKS = frozenset(
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
_SKIPPED = frozenset({"script", "style", "head", "title", "template", "noscript"})
_SPACES = re.compile(r"[ \t\r\f\v]+")
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
        if tag in _SKIPPED:
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
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skip_depth = max(0, self._skip_depth - 1)
        elif tag == "a" and self._links:
            href, start = self._links.pop()
            label = "".join(self.parts[start:]).strip()
            shown = href.removeprefix("mailto:") if href else ""
            if href and not href.startswith(("#", "javascript:")) and shown != label:
                self.parts.append(f" ({shown})" if label else shown)
        elif tag in _BLOCKS:
            self.parts.append("\n\n")
            if tag == "pre":
                self._pre_depth = max(0, self._pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self._skip_depth:
            return
        if self._pre_depth:  # keep <pre> layout: shield its spaces and line breaks from the clean-up below
            self.parts.append(data.replace(" ", _PRE_SPACE).replace("\n", _PRE_NEWLINE))
        else:
            self.parts.append(_SPACES.sub(" ", data.replace("\n", " ")))


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML email body."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    lines = [line.strip() for line in "".join(parser.parts).split("\n")]
    text = _MANY_NEWLINES.sub("\n\n", "\n".join(lines)).strip()
    return text.replace(_PRE_SPACE, " ").replace(_PRE_NEWLINE, "\n") + "\n"
