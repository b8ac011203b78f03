from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trustme

from mailsc.outbox import OutboxStore
from tests.databases import drop_postgres_database, require_postgres, reset_postgres
from tests.smtpd import SmtpServer


@pytest.fixture(autouse=True)
def _hermetic_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test reads the developer's MAILSC_*/SMTP_*/MAIL_* settings."""
    import os

    for name in list(os.environ):
        if name.upper().startswith(("MAILSC_", "SMTP_", "MAIL_")) or name.upper() in (
            "USE_CREDENTIALS",
            "VALIDATE_CERTS",
        ):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _unconfigured_logging() -> Iterator[None]:
    """A test that configures logging (CLI, service) leaves it as it found it."""
    yield
    from mailsc.logs import reset_logging

    reset_logging()


@pytest.fixture(scope="session", autouse=True)
def _drop_test_database() -> Iterator[None]:
    yield
    import asyncio

    asyncio.run(drop_postgres_database())


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="session")
def server_tls_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 and localhost, signed by the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_file(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
async def smtp_server() -> AsyncIterator[SmtpServer]:
    async with SmtpServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each kind: a SQLite file, and the local PostgreSQL reset to no tables."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'outbox.db'}"
    url = await require_postgres()
    await reset_postgres(url)
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[OutboxStore]:
    opened = await OutboxStore.open(database_url)
    yield opened
    await opened.close()
