"""An async client against ``create_app(settings)`` with its lifespan running: a real SQLite outbox, the embedded
worker, and a real in-process SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsc.api.app import create_app
from mailsc.config import Settings
from mailsc.outbox import OutboxStore
from tests.smtpd import SmtpServer

AppFactory = Callable[..., Any]


def make_settings(tmp_path: Path, server: SmtpServer | None, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'outbox.db'}",
        "mail_from": "App <app@example.com>",
    }
    if server is not None:
        fields.update(smtp_host="127.0.0.1", smtp_port=server.port, smtp_security="none", smtp_timeout=5)
    fields.update(overrides)
    return Settings(_env_file=None, **fields)


@asynccontextmanager
async def running(settings: Settings, *, run_worker: bool = True) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, run_worker=run_worker)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsc.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


@pytest.fixture
async def client(tmp_path: Path, smtp_server: SmtpServer) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_settings(tmp_path, smtp_server)) as api:
        yield api


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[OutboxStore]:
    """A second handle on the client's outbox file, to look at rows directly."""
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield store
    await store.close()
