"""Probes, metrics, and the service riding out a database outage."""

from __future__ import annotations

import asyncio
import email
import email.policy
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.api.conftest import make_settings, running
from tests.databases import require_postgres, reset_postgres
from tests.smtpd import SmtpServer

MESSAGE = {"to": "ada@example.org", "subject": "Hi", "text": "Hello"}


async def test_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "transport": "smtp"}


async def test_metrics_count_what_happened(client: httpx.AsyncClient) -> None:
    before = (await client.get("/metrics")).text
    message_id = (await client.post("/v1/messages", json=MESSAGE)).json()["id"]
    for _ in range(200):
        if (await client.get(f"/v1/messages/{message_id}")).json()["status"] == "sent":
            break
        await asyncio.sleep(0.02)
    after = (await client.get("/metrics")).text
    assert "mailsc_messages_accepted_total" in after

    def value(text: str, name: str) -> float:
        lines = [line for line in text.splitlines() if line.startswith(name + " ")]
        return float(lines[0].split()[1]) if lines else 0.0

    assert value(after, "mailsc_messages_accepted_total") == value(before, "mailsc_messages_accepted_total") + 1
    assert value(after, "mailsc_messages_sent_total") == value(before, "mailsc_messages_sent_total") + 1
    assert 'mailsc_queue_depth{status="sent"} 1.0' in after


def metric(text: str, name: str) -> float:
    lines = [line for line in text.splitlines() if line.startswith(name + " ")]
    return float(lines[0].split()[1]) if lines else 0.0


async def test_a_batch_counts_only_newly_accepted_items(client: httpx.AsyncClient) -> None:
    first = {"messages": [{**MESSAGE, "idempotency_key": "k1"}]}
    assert (await client.post("/v1/messages/batch", json=first)).status_code == 207
    before = metric((await client.get("/metrics")).text, "mailsc_messages_accepted_total")
    items = [{**MESSAGE, "idempotency_key": "k1"}, {**MESSAGE, "idempotency_key": "k2"}, MESSAGE, {"to": "bad"}]
    results = (await client.post("/v1/messages/batch", json={"messages": items})).json()["results"]
    assert [r["status"] for r in results] == [200, 202, 202, 422]
    after = metric((await client.get("/metrics")).text, "mailsc_messages_accepted_total")
    assert after == before + 2  # the replay and the refused item are not counted


async def test_openapi_describes_the_api(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    assert {"/v1/messages", "/v1/messages/batch", "/v1/messages/{message_id}", "/healthz", "/readyz"} <= set(
        schema["paths"]
    )
    create = schema["components"]["schemas"]["MessageCreate"]
    assert create["examples"][0]["subject"] == "Welcome, Ada"


async def test_database_outage_gives_503s_then_recovers_and_delivers_every_202(
    tmp_path: Path, smtp_server: SmtpServer
) -> None:
    url = await require_postgres()
    await reset_postgres(url)
    database = url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    accepted: list[str] = []
    statuses: list[int] = []
    try:
        async with running(make_settings(tmp_path, smtp_server, database_url=url)) as client:

            async def load(count: int) -> None:
                for i in range(count):
                    response = await client.post("/v1/messages", json={**MESSAGE, "to": f"u{i}@example.org"})
                    statuses.append(response.status_code)
                    if response.status_code == 202:
                        accepted.append(response.json()["id"])
                    else:
                        assert response.status_code == 503, response.text
                        assert response.headers["retry-after"]
                        assert response.json()["type"].endswith("/database-unavailable")

            await load(30)
            # The database goes away: no new connections, and every open one is cut.
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)
            await load(20)
            assert (await client.get("/readyz")).status_code == 503
            await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
            await asyncio.sleep(0.5)
            await load(30)  # recovered without a restart
            assert (await client.get("/readyz")).status_code == 200
            for _ in range(500):
                ids = {
                    str(email.message_from_bytes(r.data, policy=email.policy.default)["Message-ID"])
                    for r in smtp_server.received
                }
                if len(ids) >= len(accepted):
                    break
                await asyncio.sleep(0.05)
            expected = set()
            for message_id in accepted:
                expected.add((await client.get(f"/v1/messages/{message_id}")).json()["message_id"])
    finally:
        await admin.execute(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
        await admin.close()
    assert 503 in statuses
    assert statuses.count(202) == len(accepted) >= 60
    assert expected <= ids  # every 202 ever returned was delivered


async def test_one_access_line_per_request_with_id_and_latency(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="mailsc.api.access")
    await client.post("/v1/messages", json=MESSAGE, headers={"X-Request-ID": "req-42"})
    [line] = [r for r in caplog.records if r.name == "mailsc.api.access"]
    assert line.getMessage() == "http.request"
    assert line.method == "POST"  # type: ignore[attr-defined]
    assert line.path == "/v1/messages"  # type: ignore[attr-defined]
    assert line.status == 202  # type: ignore[attr-defined]
    assert line.latency_ms >= 0  # type: ignore[attr-defined]
    assert "ada@example.org" not in str(line.__dict__)


async def test_an_unexpected_error_is_a_500_problem_without_internals(tmp_path: Path, smtp_server: SmtpServer) -> None:
    async with running(make_settings(tmp_path, smtp_server)) as client:
        app = client.app  # type: ignore[attr-defined]

        async def boom() -> None:
            raise RuntimeError("secret internals: password=hunter2")

        app.add_api_route("/boom", boom)
        # As a real server would: the ASGI server sees the exception, the client sees only the problem document.
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://mailsc.test") as raw:
            response = await raw.get("/boom", headers={"X-Request-ID": "req-500"})
    assert response.status_code == 500
    problem = response.json()
    assert problem["request_id"] == "req-500"
    assert "hunter2" not in response.text
    assert "RuntimeError" not in response.text
