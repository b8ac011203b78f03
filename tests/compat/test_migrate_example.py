"""examples/migrate_from_fastapi_mail.py, the fastapi-mail guide app with one import changed, run as written against
an in-process SMTP server: every request's ``FastMail(conf)`` shares one connection pool."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from mailsc.compat.fastapi_mail import FastMail
from tests.smtpd import SmtpServer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "migrate_from_fastapi_mail.py"


def load_example(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of the module, so its import-time ``ConnectionConfig`` sees this test's environment."""
    spec = importlib.util.spec_from_file_location("migrate_from_fastapi_mail_under_test", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # pydantic resolves the module's annotations through it
    spec.loader.exec_module(module)
    return module


async def test_the_guide_app_sends_through_one_pool(smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
        "MAIL_FROM": "me@example.com",
        "MAIL_STARTTLS": "False",
        "USE_CREDENTIALS": "False",
    }.items():
        monkeypatch.setenv(name, value)
    example = load_example(monkeypatch)
    transport = httpx.ASGITransport(app=example.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        for i in range(10):
            response = await client.post("/email", json={"email": [f"a{i}@example.org", f"b{i}@example.org"]})
            assert response.status_code == 200
            assert response.json() == {"message": "email has been sent"}
    await FastMail(example.conf).aclose()  # at shutdown: QUIT on the pooled connections
    assert len(smtp_server.received) == 10
    assert smtp_server.received[3].rcpt_tos == ["a3@example.org", "b3@example.org"]
    assert b"Thanks for using Fastapi-mail" in smtp_server.received[0].data
    assert b"From: Desired Name <me@example.com>" in smtp_server.received[0].data
    assert smtp_server.connections == 1  # fastapi-mail opens (and logs in on) one connection per request
