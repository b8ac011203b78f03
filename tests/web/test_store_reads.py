"""The outbox reads and deletes the pages need (raw MIME, delete, search), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from mailsc import Message, render
from mailsc.errors import InvalidStateError, MessageNotFoundError
from mailsc.outbox import NewMessage, OutboxStore, fingerprint


async def add(store: OutboxStore, to: str, subject: str) -> str:
    envelope = render(Message(**{"from": "app@example.com"}, to=to, subject=subject, text="hi"))
    result = await store.add(NewMessage(envelope, fingerprint(to, subject)))
    return result.id


async def test_raw_returns_the_stored_bytes(store: OutboxStore) -> None:
    envelope = render(Message(**{"from": "app@example.com"}, to="a@example.org", subject="raw", text="body"))
    result = await store.add(NewMessage(envelope, fingerprint("raw")))
    assert await store.raw(result.id) == envelope.data
    with pytest.raises(MessageNotFoundError):
        await store.raw("0000000000000000000000000X")


async def test_delete_only_finished_messages_with_their_events(store: OutboxStore) -> None:
    message_id = await add(store, "a@example.org", "one")
    with pytest.raises(InvalidStateError):
        await store.delete(message_id)  # still queued
    await store.cancel(message_id)
    assert len((await store.get(message_id)).events) == 2
    await store.delete(message_id)
    with pytest.raises(MessageNotFoundError):
        await store.get(message_id)
    with pytest.raises(MessageNotFoundError):
        await store.delete(message_id)
    assert await store.counts() == {}


async def test_search_matches_subject_or_recipient_ignoring_case(store: OutboxStore) -> None:
    invoice = await add(store, "Alice@Example.org", "Invoice 42")
    welcome = await add(store, "bob@example.org", "Welcome_aboard")
    other = await add(store, "carol@example.org", "Welcome-aboard 100%")

    async def found(text: str) -> set[str]:
        return {m.id for m in (await store.list_messages(search=text)).items}

    assert await found("alice@") == {invoice}
    assert await found("INVOICE") == {invoice}
    assert await found("welcome") == {welcome, other}
    assert await found("e_a") == {welcome}  # _ is literal, not a wildcard
    assert await found("100%") == {other}
    assert await found("example.org") == {invoice, welcome, other}
    assert {m.id for m in (await store.list_messages(search="welcome", status="queued", limit=1)).items} <= {
        welcome,
        other,
    }
