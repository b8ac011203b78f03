"""The /v1/messages API against create_app(settings): every endpoint and its answers."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from mailsc.outbox import OutboxStore
from tests.api.conftest import make_settings, running
from tests.smtpd import SmtpServer

MESSAGE: dict[str, Any] = {"to": "ada@example.org", "subject": "Welcome", "text": "Hello Ada", "tags": ["welcome"]}


async def wait_for_status(client: httpx.AsyncClient, message_id: str, *statuses: str) -> dict[str, Any]:
    for _ in range(300):
        body: dict[str, Any] = (await client.get(f"/v1/messages/{message_id}")).json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.02)
    raise AssertionError(f"message {message_id} stayed {body['status']}")


async def test_accept_deliver_and_timeline(client: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    response = await client.post("/v1/messages", json=MESSAGE)
    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert response.headers["x-request-id"]
    record = await wait_for_status(client, accepted["id"], "sent")
    assert [e["type"] for e in record["events"]] == ["queued", "attempt", "sent"]
    assert record["to"] == ["ada@example.org"]
    assert record["attempts"] == 1
    [received] = smtp_server.received
    parsed = email.message_from_bytes(received.data, policy=email.policy.default)
    assert parsed["Message-ID"] == record["message_id"]
    assert parsed["From"] == "App <app@example.com>"
    assert parsed.get_content().strip() == "Hello Ada"


async def test_request_id_is_kept_when_given(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    response = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert response.headers["x-request-id"] != "bad id\twith spaces"


async def test_idempotency_replay_and_conflict(client: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    headers = {"Idempotency-Key": "signup-42"}
    first = await client.post("/v1/messages", json=MESSAGE, headers=headers)
    replay = await client.post("/v1/messages", json=MESSAGE, headers=headers)
    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    conflict = await client.post("/v1/messages", json={**MESSAGE, "subject": "Other"}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.headers["content-type"] == "application/problem+json"
    assert first.json()["id"] in conflict.json()["detail"]
    await wait_for_status(client, first.json()["id"], "sent")
    assert len(smtp_server.received) == 1


async def test_batch_accepts_valid_items_and_reports_the_others(client: httpx.AsyncClient) -> None:
    items = [
        {**MESSAGE, "to": "a@example.org"},
        {**MESSAGE, "to": "not-an-address"},
        {**MESSAGE, "subject": "x\r\nBcc: victim@example.net"},
        {**MESSAGE, "unknown": 1},
        {**MESSAGE, "to": "b@example.org", "idempotency_key": "batch-1"},
    ]
    response = await client.post("/v1/messages/batch", json={"messages": items})
    assert response.status_code == 207
    body = response.json()
    assert body["accepted"] == 2
    assert body["refused"] == 3
    statuses = [r["status"] for r in body["results"]]
    assert statuses == [202, 422, 422, 422, 202]
    assert body["results"][1]["errors"][0]["loc"] == ["to", 0]
    again = await client.post("/v1/messages/batch", json={"messages": [items[4]]})
    assert again.json()["results"][0]["status"] == 200
    assert again.json()["results"][0]["id"] == body["results"][4]["id"]


async def test_batch_limit(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages/batch", json={"messages": [MESSAGE] * 501})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["messages"]


async def test_list_filter_and_paginate(client: httpx.AsyncClient) -> None:
    ids = []
    for i in range(5):
        tags = ["welcome"] if i % 2 else ["reset"]
        response = await client.post("/v1/messages", json={**MESSAGE, "to": f"u{i}@example.org", "tags": tags})
        ids.append(response.json()["id"])
    page = (await client.get("/v1/messages", params={"limit": 2})).json()
    assert [m["id"] for m in page["items"]] == ids[::-1][:2]
    rest = (await client.get("/v1/messages", params={"limit": 10, "cursor": page["next_cursor"]})).json()
    assert [m["id"] for m in rest["items"]] == ids[::-1][2:]
    assert rest["next_cursor"] is None
    welcome = (await client.get("/v1/messages", params={"tag": "welcome"})).json()
    assert sorted(m["id"] for m in welcome["items"]) == sorted([ids[1], ids[3]])
    one = (await client.get("/v1/messages", params={"recipient": "u2@example.org"})).json()
    assert [m["id"] for m in one["items"]] == [ids[2]]
    bad = await client.get("/v1/messages", params={"status": "bogus"})
    assert bad.status_code == 422


async def test_cancel_before_claim_and_not_after(client: httpx.AsyncClient) -> None:
    later = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    scheduled = (await client.post("/v1/messages", json={**MESSAGE, "send_at": later})).json()["id"]
    cancelled = await client.post(f"/v1/messages/{scheduled}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = await client.post(f"/v1/messages/{scheduled}/cancel")
    assert again.status_code == 409
    assert "cancelled" in again.json()["detail"]
    sent = (await client.post("/v1/messages", json=MESSAGE)).json()["id"]
    await wait_for_status(client, sent, "sent")
    assert (await client.post(f"/v1/messages/{sent}/cancel")).status_code == 409


async def test_retry_a_failed_message(client: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    smtp_server.faults.rcpt_any.append("550 5.1.1 no such user")
    message_id = (await client.post("/v1/messages", json=MESSAGE)).json()["id"]
    failed = await wait_for_status(client, message_id, "failed")
    assert failed["smtp_code"] == 550
    assert (await client.post(f"/v1/messages/{message_id}/retry")).status_code == 200
    await wait_for_status(client, message_id, "sent")
    assert (await client.post(f"/v1/messages/{message_id}/retry")).status_code == 409


async def test_unknown_message_and_route(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/messages/01ARZ3NDEKTSV4RRFFQ69G5FAV")
    assert missing.status_code == 404
    assert missing.json()["status"] == 404
    assert (await client.get("/v1/messages/not-an-id")).status_code == 422
    assert (await client.get("/nowhere")).status_code == 404
    wrong = await client.delete("/v1/messages")
    assert wrong.status_code == 405
    assert wrong.json()["type"] == "about:blank"


async def test_attachment_and_scheduling_fields(client: httpx.AsyncClient, smtp_server: SmtpServer) -> None:
    body = {
        **MESSAGE,
        "attachments": [{"filename": "../../etc/report.pdf", "content": base64.b64encode(b"%PDF-1.4").decode()}],
    }
    message_id = (await client.post("/v1/messages", json=body)).json()["id"]
    await wait_for_status(client, message_id, "sent")
    parsed = email.message_from_bytes(smtp_server.received[0].data, policy=email.policy.default)
    [attachment] = list(parsed.iter_attachments())
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content() == b"%PDF-1.4"


async def test_capture_mode_without_smtp(tmp_path: Path) -> None:
    async with running(make_settings(tmp_path, None)) as client:
        message_id = (await client.post("/v1/messages", json=MESSAGE)).json()["id"]
        record = await wait_for_status(client, message_id, "sent")
        assert record["events"][-1]["detail"]["transport"] == "capture"
        ready = (await client.get("/readyz")).json()
        assert ready["checks"]["transport"] == "capture"


async def test_api_only_mode_leaves_delivery_to_workers(tmp_path: Path, smtp_server: SmtpServer) -> None:
    async with running(make_settings(tmp_path, smtp_server), run_worker=False) as client:
        message_id = (await client.post("/v1/messages", json=MESSAGE)).json()["id"]
        await asyncio.sleep(0.2)
        assert (await client.get(f"/v1/messages/{message_id}")).json()["status"] == "queued"
    assert smtp_server.received == []
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    assert await store.counts() == {"queued": 1}
    await store.close()
