"""A templates folder as an application ships it: a base layout with a <style> block, an include, a template that
extends the base (HTML only, so its text part is derived), a text-only one and one with both parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import make_settings, running
from tests.smtpd import SmtpServer

FILES = {
    "base.html": """<!doctype html>
<html><head><style>
p { color: #333333; }
.button { background: #00aa77; }
@media (max-width: 600px) { p { font-size: 18px; } }
</style></head>
<body>{% block body %}{% endblock %}
{% include "partials/footer.html" %}</body></html>
""",
    "partials/footer.html": '<p class="footer">Sent to {{ email }}. '
    '<a href="https://example.com/unsubscribe">Unsubscribe</a></p>\n',
    "welcome.subject": "Welcome, {{ name }}!\n",
    "welcome.html": """{% extends "base.html" %}
{% block body %}<p>Hello {{ name }},</p>
<p><a class="button" href="{{ url }}">Confirm your address</a></p>{% endblock %}
""",
    "receipt.subject": "Receipt {{ number }}",
    "receipt.txt": "Hello {{ name }},\n{% for item in items %}- {{ item.title }}: {{ item.price }}\n{% endfor %}",
    "both.subject": "Both for {{ name }}",
    "both.html": "<p>HTML for {{ name }}</p>",
    "both.txt": "Text for {{ name }}\n",
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "templates" / "email"
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


@dataclass(frozen=True)
class Source:
    """A stored template's source, shaped like what the outbox returns."""

    name: str
    version: int
    subject: str
    html: str | None = None
    text: str | None = None
    created_at: datetime = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture
async def api(tmp_path: Path, folder: Path, smtp_server: SmtpServer) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP API with the embedded worker, delivering to ``smtp_server``, file templates from ``folder``."""
    async with running(make_settings(tmp_path, smtp_server, templates_dir=folder)) as client:
        yield client
