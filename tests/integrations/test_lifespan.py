"""``mailsc_lifespan`` and ``MailerDep`` inside an application's own FastAPI app, in this process: the lifespan
builds the mailer from the environment at start-up, runs the worker, wraps the app's own lifespan, and drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

from mailsc import Mailer, MemoryTransport, Message
from mailsc.integrations.fastapi import MailerDep, get_mailer, mailsc_lifespan
from mailsc.outbox import OutboxStore
from tests.smtpd import SmtpServer


def mailsc_env(monkeypatch: pytest.MonkeyPatch, database: Path, port: int) -> str:
    url = f"sqlite:///{database}"
    monkeypatch.setenv("MAILSC_DATABASE_URL", url)
    monkeypatch.setenv("MAILSC_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MAILSC_SMTP_PORT", str(port))
    monkeypatch.setenv("MAILSC_SMTP_SECURITY", "none")
    monkeypatch.setenv("MAILSC_MAIL_FROM", "App <app@example.com>")
    return url


def build_app(**options: Any) -> tuple[FastAPI, list[str]]:
    calls: list[str] = []

    @asynccontextmanager
    async def own_lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        calls.append(f"start, mailer ready: {isinstance(getattr(app.state, 'mailer', None), Mailer)}")
        yield {"greeting": "hello"}
        calls.append("stop")

    app = FastAPI(lifespan=mailsc_lifespan(own_lifespan, **options))

    @app.post("/signup/{email}", status_code=202)
    async def signup(email: str, mailer: MailerDep, request: Request) -> dict[str, str]:
        message_id = await mailer.enqueue(Message(to=email, subject=f"{request.state.greeting} {email}", text="hi"))
        return {"id": message_id}

    return app, calls


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan and an HTTP client to it, in this test's event loop (where the SMTP server runs)."""
    async with app.router.lifespan_context(app) as state:
        transport = httpx.ASGITransport(app=_with_state(app, state or {}))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client


def _with_state(app: FastAPI, state: Mapping[str, Any]) -> Any:
    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        await app({**scope, "state": dict(state)}, receive, send)

    return asgi


async def until(predicate: Any) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise TimeoutError("condition not reached")


async def test_enqueue_from_an_endpoint_is_delivered_by_the_embedded_worker(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = mailsc_env(monkeypatch, tmp_path / "outbox.db", smtp_server.port)
    app, calls = build_app()
    async with running(app) as client:
        response = await client.post("/signup/ann@example.org")
        assert response.status_code == 202
        await until(lambda: len(smtp_server.received) == 1)
    assert calls == ["start, mailer ready: True", "stop"]  # the app's own lifespan ran inside ours
    assert b"Subject: hello ann@example.org" in smtp_server.received[0].data
    store = await OutboxStore.open(url)
    record = await store.get(response.json()["id"])
    assert record.status == "sent"
    await store.close()


async def test_without_a_worker_mail_waits_in_the_outbox(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = mailsc_env(monkeypatch, tmp_path / "outbox.db", smtp_server.port)
    app, _ = build_app(run_worker=False)
    async with running(app) as client:
        assert (await client.post("/signup/bo@example.org")).status_code == 202
    store = await OutboxStore.open(url)
    assert await store.counts() == {"queued": 1}  # for `mailsc worker` processes to deliver
    await store.close()
    assert smtp_server.received == []


async def test_shutdown_finishes_in_flight_sends(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    url = mailsc_env(monkeypatch, tmp_path / "outbox.db", smtp_server.port)
    smtp_server.faults.delay = 0.2  # every SMTP reply is slow: the sends are in flight at shutdown
    app, _ = build_app()
    async with running(app) as client:
        for i in range(3):
            assert (await client.post(f"/signup/u{i}@example.org")).status_code == 202
        await until(lambda: len(smtp_server.commands) > 0)
    store = await OutboxStore.open(url)
    counts = await store.counts()
    await store.close()
    assert "sending" not in counts  # drained: sent, or given back as queued, none left leased
    assert counts.get("sent", 0) == len(smtp_server.received) > 0


async def test_a_test_can_override_the_mailer_with_the_memory_transport(tmp_path: Path) -> None:
    memory = MemoryTransport()
    mailer = Mailer(transport=memory, default_sender="app@example.com", outbox=f"sqlite:///{tmp_path / 'o.db'}")
    app, calls = build_app()
    app.dependency_overrides[get_mailer] = lambda: mailer
    async with running(app) as client:
        assert (await client.post("/signup/cy@example.org")).status_code == 202
    await (await mailer.worker()).run(burst=True)  # deliver what is due, then return
    assert len(mailer.outbox) == 1
    [sent] = memory.messages()
    assert sent["To"] == "cy@example.org"
    assert sent["Subject"] == "hello cy@example.org"
    assert calls == ["start, mailer ready: False", "stop"]  # the lifespan built no mailer of its own
    await mailer.aclose()


async def test_an_app_without_the_lifespan_gets_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def index(mailer: MailerDep) -> str:
        return mailer.transport.name

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        with pytest.raises(RuntimeError, match="mailsc_lifespan"):
            await client.get("/")
