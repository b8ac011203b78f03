"""What makes an HTML template safe to inline once (``inline_once``): checks on its CSS, on its markup with Jinja's
constructs replaced by stand-ins (the skeleton), and on what css-inline made of it. Each refuses with
``NotInlinableError`` naming the reason; the template is then inlined per message."""

from __future__ import annotations

import re
from html.parser import HTMLParser

TEXT_MARK = "\ue000{}\ue001"  # stands in for an output: text wherever it is, in content or in an attribute value
BLOCK_MARK = "<!--\ue002{}\ue003-->"  # stands in for a block tag: a comment, kept in place by an HTML5 parser
MARKS = re.compile("\ue000(\\d+)\ue001|<!--\ue002(\\d+)\ue003-->")
PRIVATE = re.compile("[\ue000-\ue003]")
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
ATTRIBUTE_SELECTOR = re.compile(r"\[")
_CSS_COMMENT_OR_STRING = re.compile(r"""/\*.*?\*/|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'""", re.DOTALL)
# At-rules with no selectors css-inline could inline: @media (kept in the <style> block), and the declaration-only ones.
_UNINLINED_AT_RULE = re.compile(
    r"@media\b[^{};]*\{(?:[^{}]|\{[^{}]*\})*\}|@(?:import|charset|namespace)\b[^{};]*;|@(?:font-face|page)\b[^{};]*\{[^{}]*\}",
    re.IGNORECASE,
)
_RULE = re.compile(r"([^{}]+)\{[^{}]*\}")
STYLE_BLOCK = re.compile(r"<style\b[^>]*>(.*?)</style\s*>", re.IGNORECASE | re.DOTALL)

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
# Elements whose text html5ever writes out raw: a static '<' in them stays '<'.
RAW_TEXT = frozenset({"script", "style", "xmp", "iframe", "noembed", "noframes", "noscript", "plaintext"})
# Attributes a rule reads whatever its selector, or css-inline itself reads.
_NEVER_SHAPED = frozenset({"class", "id", "style", "data-css-inline"})
_IMPLIED = frozenset({"html", "head", "body", "tbody"})  # elements the parser adds where the source has none


class NotInlinableError(Exception):
    """The template's markup cannot be inlined ahead of rendering (the reason); it is inlined per message."""


def styles(document: str) -> list[str]:
    return [match.group(1) for match in STYLE_BLOCK.finditer(document)]


def check_css(skeleton: str) -> None:
    for css in styles(skeleton):
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


def check_skeleton(skeleton: str, marks: list[str], constructs: list[list[int]]) -> None:
    """What the parser of the skeleton would read differently from a rendered message's."""
    if _ENTITY_START.search(skeleton):
        raise NotInlinableError("a Jinja tag right after a bare '&' (it could complete a character reference)")
    if _AFTER_NEWLINE_DROPPING.search(skeleton):
        raise NotInlinableError("a Jinja tag right after <pre> or <textarea> (a leading newline would be dropped)")
    for tag in _SOURCE_TAG.finditer(skeleton):
        values = _UNQUOTED_VALUE.finditer(tag.group()) if "\ue000" in tag.group() else ()
        if any("\ue000" in (value.group(1) or "") for value in values):
            raise NotInlinableError("a Jinja output in an unquoted attribute value")
    for construct in constructs:
        start, end = skeleton.index(marks[construct[0]]), skeleton.index(marks[construct[-1]])
        if _DOCUMENT_TAGS.search(skeleton, start, end):
            raise NotInlinableError("a {% for %}/{% if %} around <style>, <head>, <body>, <html> or the doctype")
    blank = _SOURCE_TAG.sub(_spaces, _TITLE_ELEMENT.sub(_spaces, skeleton))
    first_output = blank.find("\ue000")  # the first output in text: outside tags and <title>
    if first_output >= 0 and any(tag.start() > first_output for tag in _HEAD_TAGS.finditer(skeleton)):
        raise NotInlinableError("a Jinja output before the document's head ends")


def _spaces(match: re.Match[str]) -> str:
    return " " * len(match.group())


def check_document(inlined: str, constructs: list[list[int]], attribute_selectors: bool) -> None:
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
            match = MARKS.fullmatch(token.group())
            if match is not None and match.group(2) is not None:
                where[int(match.group(2))] = (len(depths), depth)
            elif "\ue002" in comment:
                raise NotInlinableError("a Jinja block tag inside an HTML comment")
        elif end is not None:
            depth -= 1
        elif start is not None:
            name = start.lower()
            if "\ue000" in start or "\ue002" in token.group():
                raise NotInlinableError(f"Jinja inside the <{PRIVATE.sub('', start)}> tag itself")
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
                if name in RAW_TEXT:
                    raw = name
        depths.append(depth)
    for construct in constructs:
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


def events(document: str) -> list[str]:
    parser = _Events()
    parser.feed(document)
    parser.close()
    return parser.events
