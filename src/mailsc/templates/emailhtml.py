"""Making rendered HTML email-ready: CSS inlined into ``style=`` attributes, and a text part derived from the HTML.

Gmail and Outlook drop ``<style>`` blocks (or most of them), so the rules are copied onto each element with
``css-inline``; ``@media`` rules cannot be inlined and stay in a ``<style>`` block for the clients that read it.
Remote stylesheets are never fetched (a template must not make the server open URLs). A message without a text
part gets one from its HTML, with links kept as ``text (url)``: spam filters score HTML-only mail down, and some
readers only show text.
"""

from __future__ import annotations

import re

import css_inline

from ..errors import TemplateError
from ..htmltext import html_to_text

_STYLE = re.compile(r"<style", re.IGNORECASE)
INLINER = css_inline.CSSInliner(keep_at_rules=True, keep_link_tags=True, load_remote_stylesheets=False)


def has_style(html: str) -> bool:
    """Whether ``html`` has a ``<style>`` block (anything to inline)."""
    return _STYLE.search(html) is not None


def inline_css(html: str) -> str:
    """``html`` with the rules of its ``<style>`` blocks inlined; unchanged when it has none."""
    if not has_style(html):
        return html  # nothing to inline: keep the markup exactly as written (and skip the parse)
    try:
        return str(INLINER.inline(html))
    except (css_inline.InlineError, ValueError) as exc:
        raise TemplateError(f"the CSS of the HTML part could not be inlined: {exc}", part="html") from None


def text_from_html(html: str) -> str:
    """The plain-text part for an HTML body (links as ``text (url)``)."""
    return html_to_text(html)
