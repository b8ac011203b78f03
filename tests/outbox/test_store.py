"""The store contract, run on SQLite and on PostgreSQL (the ``store`` fixture is parametrised over both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event

from mailsc import Message, render
from mailsc.errors import (
    IdempotencyConflictError,
    InvalidStateError,
    MessageNotFoundError,
    OutboxUnavailableError,
)
from mailsc.outbox import NewMessage, OutboxStore, Settled, fingerprint, new_id


def new(
    n: int = 0,
    *,
    key: str | None = None,
    send_at: datetime | None = None,
    tags: tuple[str, ...] = (),
    to: str | None = None,
    content: str | None = None,
) -> NewMessage:
    envelope = render(
        Message(**{"from": "app@example.com"}, to=to or f"user{n}@example.org", subject=f"message {n}", text="body")
    )
    return NewMessage(envelope, fingerprint(content or f"message {n}"), key, send_at, None, tags, {"n": str(n)})


async def test_add_is_durable_and_starts_the_timeline(store: OutboxStore, database_url: str) -> None:
    result = await store.add(new(1))
    assert len(result.id) == 26
    assert not result.replayed
    reopened = await OutboxStore.open(database_url)
    record = await reopened.get(result.id)
    await reopened.close()
    assert record.status == "queued"
    assert record.recipients == ["user1@example.org"]
    assert record.metadata == {"n": "1"}
    assert [e["type"] for e in record.events] == ["queued"]


async def test_concurrent_adds_are_group_committed(store: OutboxStore) -> None:
    commits = 0

    def count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    # SQLite writes go through the store's blocking writer engine; PostgreSQL's through the async engine.
    writes = store._writer or store.engine.sync_engine
    event.listen(writes, "commit", count)
    results = await asyncio.gather(*(store.add(new(i)) for i in range(200)))
    event.remove(writes, "commit", count)
    assert len({r.id for r in results}) == 200
    assert (await store.counts()) == {"queued": 200}
    assert 1 <= commits <= 5  # 200 callers, a handful of transactions


async def test_idempotent_replay_and_conflict(store: OutboxStore) -> None:
    first = await store.add(new(1, key="order-42"))
    replay = await store.add(new(1, key="order-42"))
    assert replay.id == first.id
    assert replay.replayed
    with pytest.raises(IdempotencyConflictError) as info:
        await store.add(new(2, key="order-42"))
    assert info.value.existing_id == first.id
    assert (await store.counts()) == {"queued": 1}


async def test_same_key_in_one_batch_stores_one_row(store: OutboxStore) -> None:
    results = await asyncio.gather(*(store.add(new(7, key="same")) for _ in range(5)))
    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert (await store.counts()) == {"queued": 1}


async def test_add_many_fails_only_the_conflicting_item(store: OutboxStore) -> None:
    await store.add(new(1, key="taken"))
    results = await store.add_many([new(2), new(3, key="taken", content="other"), new(4)])
    assert isinstance(results[1], IdempotencyConflictError)
    assert not isinstance(results[0], Exception)
    assert not isinstance(results[2], Exception)
    assert (await store.counts()) == {"queued": 3}


async def test_claim_leases_counts_attempts_and_never_hands_out_twice(store: OutboxStore) -> None:
    await store.add_many([new(i) for i in range(30)])
    first, second = await asyncio.gather(store.claim("a", 20), store.claim("b", 20))
    ids_a, ids_b = {m.id for m in first}, {m.id for m in second}
    assert not ids_a & ids_b
    assert len(ids_a | ids_b) == 30
    assert all(m.attempts == 1 for m in first + second)
    assert await store.claim("c", 10) == []
    assert first[0].envelope.recipients[0].startswith("user")


async def test_scheduled_message_is_not_due_early(store: OutboxStore) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    result = await store.add(new(1, send_at=later))
    assert await store.claim("w", 10) == []
    record = await store.get(result.id)
    assert record.send_at == later.replace(microsecond=record.send_at.microsecond if record.send_at else 0)
    due = await store.next_due_at()
    assert due is not None
    assert abs((due - later).total_seconds()) < 1


async def test_expired_lease_is_claimed_again(store: OutboxStore) -> None:
    await store.add(new(1))
    [first] = await store.claim("dead-worker", 1, lease=timedelta(milliseconds=50))
    await asyncio.sleep(0.1)
    [again] = await store.claim("live-worker", 1)
    assert again.id == first.id
    assert again.attempts == 2
    assert not await store.settle("dead-worker", Settled(first.id, "sent"))  # the lease was lost
    assert await store.settle("live-worker", Settled(first.id, "sent"))
    record = await store.get(first.id)
    assert record.status == "sent"
    assert record.sent_at is not None


async def test_outcomes_are_recorded_with_events(store: OutboxStore) -> None:
    await store.add_many([new(i) for i in range(3)])
    claimed = await store.claim("w", 3)
    started = datetime.now(UTC)
    retry_at = started + timedelta(minutes=1)
    outcomes = [
        Settled(claimed[0].id, "sent", {"reply": "250 ok"}, attempt_started_at=started),
        Settled(
            claimed[1].id,
            "deferred",
            {"code": 451},
            next_attempt_at=retry_at,
            error="451 later",
            smtp_code=451,
            attempt_started_at=started,
        ),
        Settled(claimed[2].id, "failed", {"code": 550}, error="550 no", smtp_code=550, attempt_started_at=started),
    ]
    assert await asyncio.gather(*(store.settle("w", o) for o in outcomes)) == [True, True, True]
    sent, deferred, failed = [await store.get(m.id) for m in claimed]
    assert [e["type"] for e in sent.events] == ["queued", "attempt", "sent"]
    assert sent.events[-1]["detail"] == {"reply": "250 ok"}
    assert deferred.status == "deferred"
    assert deferred.smtp_code == 451
    assert deferred.next_attempt_at is not None
    assert abs((deferred.next_attempt_at - retry_at).total_seconds()) < 0.01
    assert failed.status == "failed"
    assert failed.last_error == "550 no"
    assert await store.claim("w", 10) == []  # the deferred one is not due yet


async def test_alike_and_unlike_outcomes_in_one_batch_are_each_recorded(store: OutboxStore) -> None:
    # Alike outcomes are written with one grouped UPDATE, the rest row by row: both must record every field.
    await store.add_many([new(i) for i in range(7)])
    claimed = await store.claim("w", 6)
    [theirs] = await store.claim("other", 1)
    retry_at = datetime.now(UTC) + timedelta(minutes=5)
    outcomes = [
        *(Settled(m.id, "sent", {"n": i}, transport="smtp", smtp_code=250) for i, m in enumerate(claimed[:3])),
        Settled(claimed[3].id, "sent", transport="ses", provider_message_id="ses-1"),
        *(Settled(m.id, "deferred", next_attempt_at=retry_at, error="paused", uncounted=True) for m in claimed[4:]),
        Settled(theirs.id, "sent", transport="smtp", smtp_code=250),  # not this owner's lease
    ]
    owners = ["w"] * 6 + ["w"]
    results = await asyncio.gather(*(store.settle(o, s) for o, s in zip(owners, outcomes, strict=True)))
    assert results == [True] * 6 + [False]
    records = [await store.get(m.id) for m in claimed]
    for i, record in enumerate(records[:3]):
        assert (record.status, record.transport, record.smtp_code, record.attempts) == ("sent", "smtp", 250, 1)
        assert record.sent_at is not None
        assert record.events[-1] == {"type": "sent", "at": record.events[-1]["at"], "detail": {"n": i}}
    assert (records[3].status, records[3].transport, records[3].provider_message_id) == ("sent", "ses", "ses-1")
    for record in records[4:]:
        assert (record.status, record.last_error, record.attempts, record.sent_at) == ("deferred", "paused", 0, None)
        assert record.next_attempt_at is not None
        assert abs((record.next_attempt_at - retry_at).total_seconds()) < 0.01
    other = await store.get(theirs.id)
    assert (other.status, other.sent_at, [e["type"] for e in other.events]) == ("sending", None, ["queued"])


async def test_poison_message_fails_after_the_attempt_limit(store: OutboxStore) -> None:
    result = await store.add(new(1))
    for _ in range(3):  # three workers each die holding it
        assert [m.id for m in await store.claim("w", 1, lease=timedelta(milliseconds=20), max_attempts=3)] == [
            result.id
        ]
        await asyncio.sleep(0.05)
    assert await store.claim("w", 1, max_attempts=3) == []
    record = await store.get(result.id)
    assert record.status == "failed"
    assert "3 attempts" in (record.last_error or "")


async def test_release_gives_leases_back_uncounted(store: OutboxStore) -> None:
    await store.add(new(1))
    [claimed] = await store.claim("w", 1)
    assert await store.release("w", [claimed.id]) == 1
    [again] = await store.claim("w2", 1)
    assert again.attempts == 1


async def test_cancel_until_claimed(store: OutboxStore) -> None:
    queued = await store.add(new(1))
    await store.cancel(queued.id)
    assert (await store.get(queued.id)).status == "cancelled"
    claimed_one = await store.add(new(2))
    await store.claim("w", 10)
    with pytest.raises(InvalidStateError) as info:
        await store.cancel(claimed_one.id)
    assert info.value.status == "sending"
    with pytest.raises(MessageNotFoundError):
        await store.cancel(new_id())


async def test_retry_a_failed_message(store: OutboxStore) -> None:
    result = await store.add(new(1))
    [claimed] = await store.claim("w", 1)
    await store.settle("w", Settled(claimed.id, "failed", error="550"))
    await store.retry(result.id)
    record = await store.get(result.id)
    assert record.status == "queued"
    assert record.last_error is None
    assert [m.id for m in await store.claim("w", 1)] == [result.id]
    with pytest.raises(InvalidStateError):
        await store.retry(result.id)


async def test_list_filters_and_pages(store: OutboxStore) -> None:
    for i in range(7):
        await store.add(new(i, tags=("welcome",) if i % 2 == 0 else ("reset",), to=f"p{i}@example.org"))
    first = await store.list_messages(limit=3)
    assert len(first.items) == 3
    assert first.next_cursor is not None
    second = await store.list_messages(limit=3, cursor=first.next_cursor)
    third = await store.list_messages(limit=3, cursor=second.next_cursor)
    ids = [m.id for m in first.items + second.items + third.items]
    assert len(ids) == len(set(ids)) == 7
    assert ids == sorted(ids, reverse=True)
    assert third.next_cursor is None
    welcome = await store.list_messages(tag="welcome")
    assert {m.subject for m in welcome.items} == {"message 0", "message 2", "message 4", "message 6"}
    assert [m.subject for m in (await store.list_messages(recipient="p3@example.org")).items] == ["message 3"]
    assert (await store.list_messages(status="sent")).items == []
    assert len((await store.list_messages(tag="wel%")).items) == 0  # LIKE wildcards are escaped


async def test_purge_removes_old_finished_messages_only(store: OutboxStore) -> None:
    results = await store.add_many([new(i) for i in range(3)])
    claimed = await store.claim("w", 2)
    for message in claimed:
        await store.settle("w", Settled(message.id, "sent"))
    assert await store.purge(timedelta(hours=1)) == 0
    assert await store.purge(timedelta(seconds=-1)) == 2
    assert (await store.counts()) == {"queued": 1}
    remaining = [r for r in results if not isinstance(r, Exception)]
    assert len(remaining) == 3


async def test_concurrent_migrations_are_safe(database_url: str) -> None:
    stores = await asyncio.gather(*(OutboxStore.open(database_url) for _ in range(3)))
    await stores[0].add(new(1))
    for opened in stores:
        await opened.close()


async def test_unreachable_database_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(OutboxUnavailableError):
        await OutboxStore.open("postgresql://postgres@127.0.0.1:1/nothing")
    with pytest.raises(OutboxUnavailableError):
        await OutboxStore.open(f"sqlite:///{tmp_path}/missing-folder/outbox.db")


async def test_same_key_from_two_processes_stores_one_row(store: OutboxStore, database_url: str) -> None:
    other = await OutboxStore.open(database_url)  # a second process's store: its own pool and batches
    results = await asyncio.gather(*(s.add(new(9, key="race")) for s in (store, other, store, other)))
    await other.close()
    assert len({r.id for r in results}) == 1
    assert (await store.counts()) == {"queued": 1}
