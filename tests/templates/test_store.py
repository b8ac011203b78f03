"""Stored template versions in the outbox, on SQLite and PostgreSQL."""

from __future__ import annotations

from mailsc.outbox import OutboxStore


async def test_every_put_is_a_new_version_and_delete_never_frees_a_number(store: OutboxStore) -> None:
    first = await store.put_template("welcome", subject="Hi {{ name }}", html="<p>one</p>", text=None)
    second = await store.put_template("welcome", subject="Hi {{ name }}", html="<p>two</p>", text="two")
    other = await store.put_template("receipt", subject="Receipt", html=None, text="r")
    assert (first.version, second.version, other.version) == (1, 2, 1)

    latest = await store.get_template("welcome")
    assert latest is not None
    assert (latest.version, latest.html, latest.text) == (2, "<p>two</p>", "two")
    old = await store.get_template("welcome", 1)
    assert old is not None
    assert old.html == "<p>one</p>"
    assert await store.get_template("welcome", 3) is None
    assert [(t.name, t.version) for t in await store.list_templates()] == [("receipt", 1), ("welcome", 2)]

    assert await store.delete_template("welcome") is True
    assert await store.delete_template("welcome") is False
    assert await store.get_template("welcome") is None
    assert await store.get_template("welcome", 1) is None
    assert [t.name for t in await store.list_templates()] == ["receipt"]

    again = await store.put_template("welcome", subject="Back", html="<p>three</p>", text=None)
    assert again.version == 3  # numbers are never reused: a message's recorded version stays unambiguous
    assert await store.get_template("welcome", 2) is None  # the deleted versions stay deleted


async def test_concurrent_puts_get_distinct_versions(store: OutboxStore) -> None:
    import asyncio

    made = await asyncio.gather(*(store.put_template("race", subject="s", html=None, text=str(i)) for i in range(8)))
    assert sorted(t.version for t in made) == list(range(1, 9))
