"""A ``Message`` from a rendered template and the message's other fields (recipients, headers, attachments, ...)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import MessageError
from ..message import Message
from .render import RenderedTemplate


def check_template_fields(fields: Mapping[str, Any]) -> None:
    """Refuse a ``text`` or ``html`` body next to a template (before spending a render on it)."""
    for body in ("text", "html"):
        if fields.get(body) is not None:
            raise MessageError.single(body, "give either a template or a text/html body, not both")


def message_from_template(fields: Mapping[str, Any], rendered: RenderedTemplate) -> Message:
    """``fields`` (the ``Message`` fields, ``"from"`` as the key) completed with the rendered subject, HTML and text.

    A ``subject`` in ``fields`` replaces the template's; ``text`` or ``html`` next to a template is refused (the
    template is the body). Raises ``MessageError``.
    """
    check_template_fields(fields)
    data = dict(fields)
    if data.get("subject") is None:
        data["subject"] = rendered.subject
    data["html"], data["text"] = rendered.html, rendered.text
    return Message.from_dict(data)
