"""Hostile and malformed requests: each gets its precise 4xx problem, and none of them stores or sends anything."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from mailsc.keys import generate_key, hash_key
from mailsc.outbox import OutboxStore
from tests.api.conftest import make_settings, running
from tests.smtpd import SmtpServer

OK: dict[str, Any] = {"to": "ada@example.org", "subject": "Hi", "text": "Hello"}
KEY = "msc_bootstrap-key-for-tests-0123456789"


def body(**changes: Any) -> dict[str, Any]:
    message = {**OK, **changes}
    return {k: v for k, v in message.items() if v is not ...}


# (name, request kwargs, expected status, a fragment the problem must contain)
CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("CR/LF in subject", {"json": body(subject="Hi\r\nBcc: victim@example.net")}, 422, "subject"),
    ("LF in subject", {"json": body(subject="Hi\nX-Evil: 1")}, 422, "line break"),
    ("NUL in subject", {"json": body(subject="Hi\x00")}, 422, "NUL"),
    (
        "encoded-word CRLF in subject",
        {"json": body(subject="=?utf-8?q?a=0D=0ABcc:_v@example.net?=")},
        422,
        "encoded-word",
    ),
    ("U+2028 in subject", {"json": body(subject="a\u2028b")}, 422, "subject"),
    ("CRLF in display name", {"json": body(to="Eve\r\nBcc: v@example.net <eve@example.org>")}, 422, "to"),
    ("CRLF in address", {"json": body(to="eve@example.org\r\nRCPT TO:<v@example.net>")}, 422, "to"),
    ("CRLF in from", {"json": body(**{"from": "app@example.com\r\nBcc: v@example.net"})}, 422, "from"),
    ("CRLF in header value", {"json": body(headers={"X-Campaign": "a\r\nBcc: v@example.net"})}, 422, "headers"),
    ("Bcc as custom header", {"json": body(headers={"Bcc": "v@example.net"})}, 422, "Bcc"),
    ("From as custom header", {"json": body(headers={"From": "ceo@example.com"})}, 422, "From"),
    ("Content-Type as header", {"json": body(headers={"Content-Type": "text/html"})}, 422, "Content-Type"),
    ("header name with colon", {"json": body(headers={"X-A:B": "1"})}, 422, "header name"),
    ("header name with space", {"json": body(headers={"X A": "1"})}, 422, "header name"),
    ("header name too long", {"json": body(headers={"X-" + "a" * 80: "1"})}, 422, "header name"),
    ("51 recipients", {"json": body(to=[f"u{i}@example.org" for i in range(51)])}, 422, "at most 50"),
    ("invalid address", {"json": body(to="not-an-address")}, 422, "@-sign"),
    ("address with two @", {"json": body(to="a@b@example.org")}, 422, "to"),
    ("address with bad domain", {"json": body(to="a@-example-.org")}, 422, "to"),
    ("empty recipient list", {"json": body(to=[])}, 422, "recipient"),
    ("no recipient at all", {"json": body(to=...)}, 422, "recipient"),
    ("missing text and html", {"json": body(text=...)}, 422, "text or an html"),
    ("missing subject", {"json": body(subject=...)}, 422, "subject"),
    ("unknown field", {"json": body(priority="urgent")}, 422, "priority"),
    ("subject wrong type", {"json": body(subject=42)}, 422, "subject"),
    ("to wrong type", {"json": body(to={"email": 1})}, 422, "to"),
    ("tags wrong type", {"json": body(tags="welcome")}, 422, "tags"),
    ("metadata wrong type", {"json": body(metadata={"a": {"b": 1}})}, 422, "metadata"),
    ("naive send_at", {"json": body(send_at="2030-01-01T00:00:00")}, 422, "send_at"),
    ("bad send_at", {"json": body(send_at="next tuesday")}, 422, "send_at"),
    (
        "bad base64 attachment",
        {"json": body(attachments=[{"filename": "a.txt", "content": "%%%not base64"}])},
        422,
        "content",
    ),
    (
        "attachment name only a path",
        {"json": body(attachments=[{"filename": "../../", "content": "YQ=="}])},
        422,
        "filename",
    ),
    (
        "attachment bad content type",
        {"json": body(attachments=[{"filename": "a", "content": "YQ==", "content_type": "text/plain\r\nX-Evil: 1"}])},
        422,
        "content_type",
    ),
    (
        "inline without content_id",
        {"json": body(html="<img src=cid:x>", attachments=[{"filename": "a.png", "content": "YQ==", "inline": True}])},
        422,
        "content_id",
    ),
    ("NUL in body", {"json": body(text="a\x00b")}, 422, "NUL"),
    (
        "lone surrogate in body",
        {
            "content": b'{"to":"a@example.org","subject":"s","text":"\\ud800"}',
            "headers": {"content-type": "application/json"},
        },
        422,
        "surrogate",
    ),
    (
        "bad JSON",
        {"content": b'{"to": "a@example.org", "subject": ', "headers": {"content-type": "application/json"}},
        400,
        "not valid JSON",
    ),
    ("JSON array body", {"json": [OK]}, 422, "schema"),
    (
        "not JSON content type",
        {"content": b"to=a@example.org", "headers": {"content-type": "text/plain"}},
        415,
        "application/json",
    ),
    ("form content type", {"data": {"to": "a@example.org"}}, 415, "application/json"),
    (
        "11 MB body",
        {
            "content": b'{"to":"a@example.org","subject":"s","text":"' + b"x" * (11 * 1024 * 1024) + b'"}',
            "headers": {"content-type": "application/json"},
        },
        413,
        "larger than",
    ),
    ("bad idempotency key", {"json": OK, "headers": {"Idempotency-Key": "has space"}}, 422, "idempotency-key"),
    (
        "oversize attachment",
        {
            "json": body(
                attachments=[{"filename": "big.bin", "content": base64.b64encode(b"x" * (7 * 1024 * 1024)).decode()}]
            )
        },
        422,
        "bytes",
    ),
]


@pytest.fixture
async def hostile_setup(tmp_path: Path, smtp_server: SmtpServer) -> Any:
    async with running(make_settings(tmp_path, smtp_server, max_message_size=8 * 1024 * 1024)) as client:
        yield client


async def test_hostile_requests_are_refused_and_nothing_is_stored(
    hostile_setup: httpx.AsyncClient, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    client = hostile_setup
    assert len(CASES) >= 40
    failures = []
    for name, request, status, fragment in CASES:
        response = await client.post("/v1/messages", **request)
        problem = response.json()
        text = json.dumps(problem)
        if response.status_code != status or fragment.lower() not in text.lower():
            failures.append(f"{name}: {response.status_code} {text[:300]}")
            continue
        if response.headers["content-type"] != "application/problem+json":
            failures.append(f"{name}: content-type {response.headers['content-type']}")
        if problem.get("status") != status or "detail" not in problem or "title" not in problem:
            failures.append(f"{name}: not a problem document: {text[:200]}")
    assert failures == []
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    assert await store.counts() == {}
    await store.close()
    assert smtp_server.commands == []


async def test_validation_problems_locate_each_bad_field(hostile_setup: httpx.AsyncClient) -> None:
    response = await hostile_setup.post("/v1/messages", json=body(to=["ok@example.org", "bad"], subject="a\nb"))
    assert response.status_code == 422
    locs = [e["loc"] for e in response.json()["errors"]]
    assert ["to", 1] in locs
    assert ["subject"] in locs


async def test_keys_wrong_and_revoked(tmp_path: Path, smtp_server: SmtpServer) -> None:
    settings = make_settings(tmp_path, smtp_server, api_key=KEY)
    async with running(settings) as client:
        store: OutboxStore = client.app.state.services.store  # type: ignore[attr-defined]
        stored_key = generate_key()
        record = await store.add_api_key("ci", hash_key(stored_key))
        missing = await client.post("/v1/messages", json=OK)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"].startswith("Bearer")
        wrong = await client.post("/v1/messages", json=OK, headers={"Authorization": "Bearer msc_wrong"})
        assert wrong.status_code == 401
        basic = await client.post("/v1/messages", json=OK, headers={"Authorization": f"Basic {KEY}"})
        assert basic.status_code == 401
        assert (
            await client.post("/v1/messages", json=OK, headers={"Authorization": f"Bearer {KEY}"})
        ).status_code == 202
        assert (await client.get("/v1/messages", headers={"Authorization": f"Bearer {stored_key}"})).status_code == 200
        await store.revoke_api_key(record.id)
        revoked = await client.get("/v1/messages", headers={"Authorization": f"Bearer {stored_key}"})
        assert revoked.status_code == 401
        assert (await client.get("/healthz")).status_code == 200  # probes need no key
    async with running(settings) as client:
        counts = await client.app.state.services.store.counts()  # type: ignore[attr-defined]
    assert sum(counts.values()) == 1  # only the request with the right key stored anything


async def test_rate_limit(tmp_path: Path, smtp_server: SmtpServer) -> None:
    async with running(make_settings(tmp_path, smtp_server, rate_limit=2)) as client:
        statuses = [(await client.get("/v1/messages")).status_code for _ in range(5)]
    assert statuses[:2] == [200, 200]
    assert 429 in statuses
