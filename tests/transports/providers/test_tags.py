"""A message's tags and metadata reach each provider in that provider's own fields (they are not in the MIME bytes,
so SMTP ignores them): SendGrid categories/custom_args, Postmark Tag/Metadata, Resend tags, Mailgun o:tag/v:,
SES EmailTags."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from mailsc.envelope import Envelope
from mailsc.message import Message
from mailsc.mime import render
from mailsc.outbox import NewMessage, OutboxStore
from mailsc.transports.providers.ses import ses_tags
from tests.transports.providers.conftest import Contract
from tests.transports.providers.httpd import Request
from tests.transports.providers.messages import simple_envelope


def tagged() -> Envelope:
    return replace(simple_envelope(), tags=("welcome", "spring sale"), metadata={"user": "42", "plan": "pro/yearly"})


def form_fields(request: Request) -> list[tuple[str, str]]:
    """The (name, value) text fields of a multipart/form-data request."""
    boundary = request.headers["content-type"].partition("boundary=")[2].strip('"').encode()
    fields = []
    for chunk in request.body.split(b"--" + boundary)[1:-1]:
        head, _, value = chunk.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if b"filename=" not in head:
            name = head.partition(b'name="')[2].partition(b'"')[0].decode()
            fields.append((name, value.removesuffix(b"\r\n").decode()))
    return fields


async def test_sendgrid_gets_categories_and_custom_args(contract: Contract) -> None:
    server, transport = await contract("sendgrid")
    await transport.send(tagged())
    body = server.sent[0].json()
    assert server.violations == []
    assert body["categories"] == ["welcome", "spring sale"]
    assert body["custom_args"] == {"user": "42", "plan": "pro/yearly"}


async def test_postmark_gets_the_first_tag_and_metadata(contract: Contract) -> None:
    server, transport = await contract("postmark")
    await transport.send(tagged())
    body = server.sent[0].json()
    assert server.violations == []
    assert body["Tag"] == "welcome"
    assert body["Metadata"] == {"user": "42", "plan": "pro/yearly", "tags": "welcome,spring sale"}


async def test_resend_gets_name_value_tags(contract: Contract) -> None:
    server, transport = await contract("resend")
    await transport.send(tagged())
    body = server.sent[0].json()
    assert server.violations == []
    assert {"name": "welcome", "value": "true"} in body["tags"]
    assert {"name": "user", "value": "42"} in body["tags"]


async def test_mailgun_gets_o_tag_and_user_variables(contract: Contract) -> None:
    server, transport = await contract("mailgun")
    await transport.send(tagged())
    fields = form_fields(server.sent[0])
    assert server.violations == []
    assert [v for n, v in fields if n == "o:tag"] == ["welcome", "spring sale"]
    assert ("v:user", "42") in fields
    assert ("v:plan", "pro/yearly") in fields


async def test_an_untagged_message_sends_no_tag_fields(contract: Contract) -> None:
    server, transport = await contract("sendgrid")
    await transport.send(simple_envelope())
    body = server.sent[0].json()
    assert "categories" not in body
    assert "custom_args" not in body


def test_ses_email_tags_use_only_the_characters_ses_allows() -> None:
    assert ses_tags(tagged()) == [
        {"Name": "welcome", "Value": "true"},
        {"Name": "spring_sale", "Value": "true"},
        {"Name": "user", "Value": "42"},
        {"Name": "plan", "Value": "pro_yearly"},
    ]
    assert ses_tags(simple_envelope()) == []
    assert json.dumps(ses_tags(tagged()))  # plain JSON values


async def test_tags_stored_with_a_message_reach_the_provider_after_a_claim(contract: Contract, tmp_path: Path) -> None:
    store = await OutboxStore.open(f"sqlite:///{tmp_path / 'outbox.db'}")
    try:
        message = Message(
            **{"from": "app@example.com"},
            to="ada@example.org",
            subject="Hi",
            text="Hello",
            tags=["welcome"],
            metadata={"user": "42"},
        )
        envelope = render(message)
        await store.add(NewMessage(envelope, "", tags=envelope.tags, metadata=dict(envelope.metadata)))
        [claimed] = await store.claim("test-worker", limit=10)
    finally:
        await store.close()
    server, transport = await contract("sendgrid")
    await transport.send(claimed.envelope)
    body = server.sent[0].json()
    assert body["categories"] == ["welcome"]
    assert body["custom_args"] == {"user": "42"}
