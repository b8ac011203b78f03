"""examples/notification_app.py tested the way an application tests its own mail: the mailer swapped for one on
the memory transport (``mailer.outbox``, like Django's ``mail.outbox``), no network, no SMTP server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from examples.notification_app import app

from mailsc import Mailer, MemoryTransport
from mailsc.integrations.fastapi import get_mailer


@pytest.fixture
async def mailer(tmp_path: Path) -> AsyncIterator[Mailer]:
    """The pattern for an app's tests: a Mailer on the memory transport with its own outbox file."""
    test_mailer = Mailer(
        transport=MemoryTransport(), default_sender="App <app@example.com>", outbox=f"sqlite:///{tmp_path / 'o.db'}"
    )
    app.dependency_overrides[get_mailer] = lambda: test_mailer
    yield test_mailer
    app.dependency_overrides.clear()
    await test_mailer.aclose()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as test_client:
        yield test_client


async def deliver(mailer: Mailer) -> None:
    """Run the delivery worker until nothing is due (what the app's background worker does)."""
    await (await mailer.worker()).run(burst=True)


async def test_a_notification_is_queued_then_delivered(mailer: Mailer, client: httpx.AsyncClient) -> None:
    response = await client.post("/send-notification/ann@example.org", params={"message": "Hello <Ann>"})
    assert response.status_code == 202
    assert response.json()["status"] == "queued"
    assert mailer.outbox == []  # accepted and stored, not sent yet
    await deliver(mailer)
    assert len(mailer.outbox) == 1
    assert isinstance(mailer.transport, MemoryTransport)
    [sent] = mailer.transport.messages()
    assert sent["To"] == "ann@example.org"
    assert sent["Subject"] == "Notification"
    html = sent.get_body(("html",))
    assert html is not None
    assert "<p>Hello &lt;Ann&gt;</p>" in html.get_content()
    status = await client.get(f"/notifications/{response.json()['id']}")
    assert status.json() == {"id": response.json()["id"], "status": "sent", "attempts": 1}


async def test_a_retried_request_with_the_same_idempotency_key_sends_once(
    mailer: Mailer, client: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "signup-42"}
    first = await client.post("/send-notification/bo@example.org", headers=headers)
    again = await client.post("/send-notification/bo@example.org", headers=headers)
    assert first.json()["id"] == again.json()["id"]
    await deliver(mailer)
    assert len(mailer.outbox) == 1


async def test_bad_input_is_refused_and_nothing_is_queued(mailer: Mailer, client: httpx.AsyncClient) -> None:
    response = await client.post("/send-notification/not-an-address")
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["to", 0]
    assert (await client.get("/notifications/01NOSUCHMESSAGE")).status_code == 404
    await deliver(mailer)
    assert mailer.outbox == []
