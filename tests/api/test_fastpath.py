"""The fast path of ``POST /v1/messages`` and its batch (``mailsc.api.fastpath``) answers exactly as FastAPI's own
handler does: the same request sent as ``application/json`` (fast path) and as a ``+json`` type (FastAPI's handler)
gets the same statuses, headers and bodies; a request the fast path cannot take is handed over without a side
effect."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import event
from starlette.requests import Request
from starlette.types import Message

from mailsc.api.routes.messages import _accept_batch_fast, _accept_fast
from mailsc.outbox import OutboxStore
from tests.api.conftest import make_settings, running

FAST = {"content-type": "application/json"}
SLOW = {"content-type": "application/vnd.mailsc+json"}  # JSON to both, but only FastAPI's handler takes it
MESSAGE: dict[str, Any] = {"to": "ada@example.org", "subject": "Welcome", "text": "Hello Ada"}
ACCEPTED = re.compile(rb'\{"id":"[0-9A-Z]{26}","status":"queued","created_at":"\d{4}-\d\d-\d\dT[0-9:.]+Z"\}')


def _request(app: Any, body: bytes, headers: dict[str, str]) -> Request:
    """A Starlette request for ``app`` carrying ``body``, as the route handler receives it."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v1/messages",
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
        "app": app,
        "state": {},
    }
    return Request(scope, receive)


def _comparable(response: httpx.Response) -> tuple[int, str, str | None, dict[str, Any]]:
    body = response.json()
    body.pop("request_id", None)
    if "id" in body:
        body["id"] = body["created_at"] = "<varies>"
    return response.status_code, response.headers["content-type"], response.headers.get("idempotent-replayed"), body


async def test_accept_replay_and_conflict_answer_alike_on_both_paths(client: httpx.AsyncClient) -> None:
    answers: dict[str, list[tuple[int, str, str | None, dict[str, Any]]]] = {}
    for name, headers in (("fast", FAST), ("slow", SLOW)):
        keyed = {**headers, "Idempotency-Key": f"welcome-{name}"}
        first = await client.post("/v1/messages", json=MESSAGE, headers=keyed)
        assert ACCEPTED.fullmatch(first.content), first.content
        replay = await client.post("/v1/messages", json=MESSAGE, headers=keyed)
        assert replay.json()["id"] == first.json()["id"]
        conflict = await client.post("/v1/messages", json={**MESSAGE, "subject": "Other"}, headers=keyed)
        assert first.json()["id"] in conflict.json()["detail"]
        plain = await client.post("/v1/messages", json={**MESSAGE, "to": "bob@example.org"}, headers=headers)
        invalid = await client.post("/v1/messages", json={**MESSAGE, "to": "not-an-address"}, headers=headers)
        answers[name] = [_comparable(r) for r in (first, replay, plain, invalid)] + [
            (conflict.status_code, conflict.headers["content-type"], None, {})
        ]
    assert [a[0] for a in answers["fast"]] == [202, 200, 202, 422, 409]
    assert answers["fast"][1][2] == "true"
    assert answers["fast"] == answers["slow"]


async def test_batch_answers_alike_on_both_paths(client: httpx.AsyncClient) -> None:
    items = [MESSAGE, {**MESSAGE, "to": "nope"}, {**MESSAGE, "extra": 1}]
    bodies = []
    for headers in (FAST, SLOW):
        response = await client.post("/v1/messages/batch", json={"messages": items}, headers=headers)
        assert response.status_code == 207
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        body["results"][0]["id"] = "<id>"
        bodies.append(body)
    assert bodies[0] == bodies[1]
    assert [r["status"] for r in bodies[0]["results"]] == [202, 422, 422]


async def test_the_fast_path_takes_a_plain_json_message(client: httpx.AsyncClient, outbox: OutboxStore) -> None:
    body = b'{"to": "ada@example.org", "subject": "Hi", "text": "Hello"}'
    response = await _accept_fast(_request(client.app, body, {**FAST, "idempotency-key": "k-1"}))  # type: ignore[attr-defined]
    assert response is not None
    assert response.status_code == 202
    assert ACCEPTED.fullmatch(bytes(response.body))
    replay = await _accept_fast(_request(client.app, body, {**FAST, "idempotency-key": "k-1"}))  # type: ignore[attr-defined]
    assert replay is not None
    assert (replay.status_code, replay.headers["idempotent-replayed"]) == (200, "true")
    batch = await _accept_batch_fast(_request(client.app, b'{"messages": [' + body + b"]}", FAST))  # type: ignore[attr-defined]
    assert batch is not None
    assert batch.status_code == 207
    assert sum((await outbox.counts()).values()) == 2


async def test_the_fast_path_hands_over_what_it_cannot_take_and_stores_nothing(
    client: httpx.AsyncClient, outbox: OutboxStore
) -> None:
    ok = b'{"to": "ada@example.org", "subject": "Hi", "text": "Hello"}'
    handed_over = [
        (ok, SLOW),  # another JSON type
        (ok, {}),  # no content type
        (ok, {**FAST, "idempotency-key": "has space"}),  # a header FastAPI reports
        (b'{"to": "ada@example.org", "subject": ', FAST),  # not JSON
        (b'{"to": "a@example.org", "subject": "s", "text": "\\ud800"}', FAST),  # json.loads and jiter differ
        (b'{"to": "ada@example.org", "text": "no subject"}', FAST),  # FastAPI locates the error
        (b"", FAST),
    ]
    for body, headers in handed_over:
        assert await _accept_fast(_request(client.app, body, headers)) is None, body  # type: ignore[attr-defined]
    assert await _accept_batch_fast(_request(client.app, b'{"messages": []}', FAST)) is None  # type: ignore[attr-defined]
    assert await outbox.counts() == {}


async def test_generated_request_ids_are_32_hex_digits_and_differ(client: httpx.AsyncClient) -> None:
    ids = {(await client.get("/healthz")).headers["x-request-id"] for _ in range(5)}
    assert len(ids) == 5
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    repeated = await client.get("/healthz", headers=[("X-Request-ID", "first"), ("X-Request-ID", "second")])
    assert repeated.headers["x-request-id"] == "second"


async def test_concurrent_requests_share_one_check_for_stored_keys(client: httpx.AsyncClient) -> None:
    services = client.app.state.services  # type: ignore[attr-defined]
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(services.store.engine.sync_engine, "before_cursor_execute", record)
    try:
        services._keys_exist_until = 0.0  # the cached answer has expired
        assert await asyncio.gather(*(services.keys_required() for _ in range(20))) == [False] * 20
    finally:
        event.remove(services.store.engine.sync_engine, "before_cursor_execute", record)
    assert len([s for s in statements if "api_keys" in s]) == 1


async def test_a_body_streaming_past_the_limit_is_refused_with_413(tmp_path: Path) -> None:
    async def oversize() -> AsyncIterator[bytes]:  # chunked: no Content-Length to refuse it by
        yield b'{"to": "ada@example.org", "subject": "Hi", "text": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    async with running(make_settings(tmp_path, None, max_request_size=2048), run_worker=False) as api:
        for path in ("/v1/messages", "/v1/messages/batch"):
            for headers in (FAST, SLOW, {"content-type": "text/plain"}):
                response = await api.post(path, content=oversize(), headers=headers)
                assert response.status_code == 413, (path, headers, response.text)
                assert response.json()["type"] == "https://mailsc.dev/problems/too-large"
        assert await api.app.state.services.store.counts() == {}  # type: ignore[attr-defined]
