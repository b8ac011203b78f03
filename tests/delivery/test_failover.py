"""Failover between transports (delivery/router.py): against loopback contract servers and a real SMTP server, and
end to end through the service (MAILSC_TRANSPORTS=postmark,smtp)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsc.delivery.router import FailoverTransport
from mailsc.errors import ConnectionSetupError, DeliveryError, ProviderError
from mailsc.transports.base import Outcome, classify
from mailsc.transports.memory import MemoryTransport
from mailsc.transports.providers import HttpProviderTransport
from tests.api.conftest import make_settings, running
from tests.smtpd import SmtpServer
from tests.transports.providers.conftest import build, transport_url
from tests.transports.providers.contract import ContractServer
from tests.transports.providers.httpd import Reply, Request
from tests.transports.providers.messages import envelope_of, rich_message, simple_envelope

UNAUTHORIZED = Reply(401, {"ErrorCode": 10, "Message": "Bad or missing Server API token."})


def inactive(address: str) -> Reply:
    return Reply(
        422,
        {
            "ErrorCode": 406,
            "Message": f"You tried to send to recipient(s) that have been marked as "
            f"inactive. Found inactive addresses: {address}.",
        },
    )


@pytest.fixture
async def postmark() -> AsyncIterator[tuple[ContractServer, HttpProviderTransport]]:
    async with ContractServer("postmark") as server:
        assert isinstance(server, ContractServer)
        transport = build("postmark", server.url)
        yield server, transport
        await transport.aclose()


async def test_a_refused_account_fails_over_and_is_not_asked_again(
    postmark: tuple[ContractServer, HttpProviderTransport],
) -> None:
    server, primary = postmark
    server.script = lambda request: UNAUTHORIZED
    backup = MemoryTransport()
    router = FailoverTransport([primary, backup], probe_base=60)
    results = [await router.send(simple_envelope()) for _ in range(3)]
    assert [r.transport for r in results] == ["memory"] * 3
    assert len(backup.outbox) == 3
    assert len(server.requests) == 1  # paused after the first 401, not asked per message
    [(first, cause), (second, healthy)] = router.health()
    assert (first, second, healthy) == ("postmark", "memory", None)
    assert cause is not None
    assert "HTTP 401" in str(cause)


async def test_a_permanent_refusal_is_never_failed_over(postmark: tuple[ContractServer, HttpProviderTransport]) -> None:
    server, primary = postmark
    server.script = lambda request: inactive("ada@example.org")
    backup = MemoryTransport()
    router = FailoverTransport([primary, backup])
    with pytest.raises(ProviderError) as info:
        await router.send(simple_envelope("ada@example.org"))
    assert classify(info.value) is Outcome.PERMANENT
    assert backup.outbox == []


async def test_a_message_too_large_for_the_backup_waits_for_the_primary(
    postmark: tuple[ContractServer, HttpProviderTransport],
) -> None:
    server, primary = postmark
    server.script = lambda request: UNAUTHORIZED
    async with ContractServer("resend") as resend_server:
        assert isinstance(resend_server, ContractServer)
        backup = build("resend", resend_server.url, max_size=4096)
        router = FailoverTransport([primary, backup], probe_base=60)
        small = await router.send(simple_envelope())
        with pytest.raises(DeliveryError) as info:
            await router.send(envelope_of(rich_message()))
        await backup.aclose()
    assert small.transport == "resend"
    assert len(resend_server.sent) == 1
    # Deferred as a retry (the backup is healthy: the worker must not pause everything for this one message).
    assert classify(info.value) is Outcome.RETRY
    assert "larger than its limit" in str(info.value)


async def test_a_message_too_large_for_every_transport_fails() -> None:
    small = MemoryTransport()
    small.max_size = 100  # type: ignore[attr-defined]
    router = FailoverTransport([small])
    with pytest.raises(DeliveryError) as info:
        await router.send(simple_envelope())
    assert classify(info.value) is Outcome.PERMANENT


async def test_repeated_retry_later_moves_to_the_next_transport(
    postmark: tuple[ContractServer, HttpProviderTransport],
) -> None:
    server, primary = postmark
    server.script = lambda request: Reply(
        429, {"ErrorCode": 429, "Message": "Rate limit exceeded"}, {"Retry-After": "60"}
    )
    backup = MemoryTransport()
    router = FailoverTransport([primary, backup], retry_streak=2)
    with pytest.raises(ProviderError) as first:
        await router.send(simple_envelope())
    assert classify(first.value) is Outcome.RETRY
    assert first.value.retry_after == 60.0
    second = await router.send(simple_envelope())  # the second retry-later in a row: this one fails over
    third = await router.send(simple_envelope())  # the primary rests for its Retry-After
    assert (second.transport, third.transport) == ("memory", "memory")
    assert len(server.requests) == 2


async def test_every_transport_unavailable_pauses_and_a_probe_recovers(
    postmark: tuple[ContractServer, HttpProviderTransport],
) -> None:
    server, primary = postmark
    server.script = lambda request: UNAUTHORIZED
    server.account = UNAUTHORIZED
    router = FailoverTransport([primary], probe_base=60)
    with pytest.raises(ConnectionSetupError):
        await router.send(simple_envelope())
    with pytest.raises(ConnectionSetupError):
        await router.check()  # the worker's probe: still refused
    server.script, server.account = None, None  # the token was fixed
    await router.check()
    assert (await router.send(simple_envelope())).transport == "postmark"


async def _wait_for(client: httpx.AsyncClient, message_id: str, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(250):
        body = (await client.get(f"/v1/messages/{message_id}")).json()
        if body["status"] == status:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"message {message_id} is {body.get('status')}, not {status}: {body}")


async def test_end_to_end_a_refused_primary_delivers_through_smtp(tmp_path: Path, smtp_server: SmtpServer) -> None:
    async with ContractServer("postmark") as server:
        assert isinstance(server, ContractServer)
        server.script = lambda request: UNAUTHORIZED
        settings = make_settings(
            tmp_path, smtp_server, transports="postmark,smtp", postmark_url=transport_url("postmark", server.url)
        )
        async with running(settings) as client:
            ids = [
                (
                    await client.post("/v1/messages", json={"to": f"u{i}@example.org", "subject": "Hi", "text": "x"})
                ).json()["id"]
                for i in range(5)
            ]
            bodies = [await _wait_for(client, i, "sent") for i in ids]
            ready = await client.get("/readyz")
    assert len(smtp_server.received) == 5
    assert server.sent == []
    sent_events = [e for b in bodies for e in b["events"] if e["type"] == "sent"]
    assert {e["detail"]["transport"] for e in sent_events} == {"smtp"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    checks = ready.json()["checks"]
    assert checks["transport.smtp"] == "ok"
    assert "HTTP 401" in checks["transport.postmark"]
    assert checks["transport"] == "failover(postmark,smtp)"


async def test_end_to_end_an_inactive_recipient_fails_and_is_not_sent_through_smtp(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    def answer(request: Request) -> Reply | None:
        return inactive("gone@example.org") if "gone@example.org" in request.json()["To"] else None

    async with ContractServer("postmark") as server:
        assert isinstance(server, ContractServer)
        server.script = answer
        settings = make_settings(
            tmp_path, smtp_server, transports="postmark,smtp", postmark_url=transport_url("postmark", server.url)
        )
        async with running(settings) as client:
            gone = await client.post("/v1/messages", json={"to": "gone@example.org", "subject": "Hi", "text": "x"})
            fine = await client.post("/v1/messages", json={"to": "ada@example.org", "subject": "Hi", "text": "x"})
            failed = await _wait_for(client, gone.json()["id"], "failed")
            sent = await _wait_for(client, fine.json()["id"], "sent")
    assert smtp_server.received == []
    assert "Found inactive addresses: gone@example.org" in failed["last_error"]
    assert [e["detail"]["transport"] for e in sent["events"] if e["type"] == "sent"] == ["postmark"]
    assert sent["events"][-1]["detail"]["provider_message_id"] == "pm-1"
