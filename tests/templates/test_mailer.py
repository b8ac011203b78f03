"""Mailer.send / enqueue with template= and variables=: file templates, stored templates, recorded versions."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailsc import Mailer, MemoryTransport, Message, MessageError, TemplateError, TemplateNotFoundError


def mailer(tmp_path: Path, folder: Path, *, outbox: bool = True) -> Mailer:
    return Mailer(
        transport=MemoryTransport(),
        default_sender="App <app@example.com>",
        outbox=f"sqlite:///{tmp_path / 'outbox.db'}" if outbox else None,
        templates_dir=folder,
    )


async def test_send_with_a_file_template_without_an_outbox(tmp_path: Path, folder: Path) -> None:
    async with mailer(tmp_path, folder, outbox=False) as m:
        await m.send(
            {"to": "ada@example.org"},
            template="welcome",
            variables={"name": "Ada", "url": "https://example.com/c", "email": "ada@example.org"},
        )
        assert isinstance(m.transport, MemoryTransport)
        [sent] = m.transport.messages()
    assert sent["Subject"] == "Welcome, Ada!"
    assert sent.get_content_type() == "multipart/alternative"
    text = sent.get_body(("plain",))
    assert text is not None
    assert "Confirm your address (https://example.com/c)" in text.get_content()


async def test_enqueue_records_the_stored_template_and_version(tmp_path: Path, folder: Path) -> None:
    async with mailer(tmp_path, folder) as m:
        store = await m.outbox_store()
        await store.put_template("both", subject="Stored {{ name }}", html=None, text="stored {{ name }}")
        stored_id = await m.enqueue({"to": "a@example.org"}, template="both", variables={"name": "A"})
        await store.delete_template("both")  # the file template of the same name is used again
        file_id = await m.enqueue({"to": "b@example.org"}, template="both", variables={"name": "B"})
        stored, from_file = await m.status(stored_id), await m.status(file_id)
    assert (stored.template_name, stored.template_version, stored.subject) == ("both", 1, "Stored A")
    assert (from_file.template_name, from_file.template_version, from_file.subject) == ("both", None, "Both for B")


async def test_template_errors_store_nothing(tmp_path: Path, folder: Path) -> None:
    async with mailer(tmp_path, folder) as m:
        with pytest.raises(TemplateError) as caught:
            await m.enqueue({"to": "a@example.org"}, template="both", variables={})
        assert caught.value.variable == "name"
        with pytest.raises(TemplateNotFoundError):
            await m.enqueue({"to": "a@example.org"}, template="nope")
        with pytest.raises(MessageError, match="either a template or a text/html body"):
            await m.enqueue({"to": "a@example.org", "text": "t"}, template="both", variables={"name": "x"})
        with pytest.raises(MessageError, match="only used with a template"):
            await m.enqueue(Message(to="a@example.org", subject="s", text="t"), variables={"x": 1})
        assert await (await m.outbox_store()).counts() == {}


async def test_idempotent_replay_of_a_templated_request(tmp_path: Path, folder: Path) -> None:
    async with mailer(tmp_path, folder) as m:
        first = await m.enqueue_with_result(
            {"to": "a@example.org"}, template="both", variables={"name": "A"}, idempotency_key="k1"
        )
        again = await m.enqueue_with_result(
            {"to": "a@example.org"}, template="both", variables={"name": "A"}, idempotency_key="k1"
        )
    assert again.replayed
    assert again.id == first.id
