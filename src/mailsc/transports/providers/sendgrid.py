"""SendGrid v3 ``POST /v3/mail/send``: JSON built from the stored MIME; the id is the ``X-Message-Id`` header."""

from __future__ import annotations

import base64
from typing import Any, ClassVar

import httpx

from ...doctor.steps import Step
from ...envelope import Envelope
from ..base import Outcome
from .http import HttpProviderTransport
from .structured import Mailbox, StructuredMessage, parse_message

# SendGrid refuses these in "headers": they come from the structured fields.
_RESERVED = frozenset({"x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type", "to", "from", "subject"})


def _box(mailbox: Mailbox) -> dict[str, str]:
    return {"email": mailbox.email, "name": mailbox.name} if mailbox.name else {"email": mailbox.email}


def sendgrid_payload(
    message: StructuredMessage, *, tags: tuple[str, ...] = (), metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``mail/send`` body: tags become ``categories``, metadata ``custom_args``; our Message-ID is a header."""
    personalization: dict[str, Any] = {"to": [_box(m) for m in message.to]}
    if message.cc:
        personalization["cc"] = [_box(m) for m in message.cc]
    if message.bcc:
        personalization["bcc"] = [_box(m) for m in message.bcc]
    personalizations = [personalization]
    if not message.to:
        # SendGrid needs a "to" in each personalization: a Bcc-only message goes to each recipient on its own.
        personalizations = [{"to": [_box(m)]} for m in (*message.cc, *message.bcc)]
    content = [{"type": "text/plain", "value": message.text or " "}]
    if message.html is not None:
        content.append({"type": "text/html", "value": message.html})
    payload: dict[str, Any] = {
        "personalizations": personalizations,
        "from": _box(message.sender),
        "subject": message.subject,
        "content": content,
    }
    if len(message.reply_to) == 1:
        payload["reply_to"] = _box(message.reply_to[0])
    elif message.reply_to:
        payload["reply_to_list"] = [_box(m) for m in message.reply_to]
    headers = {name: value for name, value in message.headers if name.lower() not in _RESERVED}
    headers["Message-ID"] = message.message_id
    payload["headers"] = headers
    if message.attachments:
        payload["attachments"] = [
            {
                "content": base64.b64encode(part.content).decode("ascii"),
                "type": part.content_type,
                "filename": part.filename,
                "disposition": "inline" if part.inline else "attachment",
                **({"content_id": part.content_id} if part.content_id else {}),
            }
            for part in message.attachments
        ]
    if tags:
        payload["categories"] = list(tags)[:10]
    if metadata:
        payload["custom_args"] = dict(metadata)
    return payload


class SendGridTransport(HttpProviderTransport):
    """SendGrid's v3 Mail Send API."""

    title: ClassVar[str] = "SendGrid"
    key_variable: ClassVar[str] = "MAILSC_SENDGRID_API_KEY"

    def _headers(self) -> dict[str, str]:
        assert self.config.api_key is not None
        return {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"}

    def _request(self, envelope: Envelope) -> httpx.Request:
        payload = sendgrid_payload(parse_message(envelope), tags=envelope.tags, metadata=dict(envelope.metadata))
        return self._client.build_request(
            "POST", "/v3/mail/send", content=self.dumps(payload), headers={"Content-Type": "application/json"}
        )

    def _message_id(self, response: httpx.Response) -> str | None:
        value = response.headers.get("X-Message-Id")
        return str(value) if value else None

    def _error(self, response: httpx.Response) -> tuple[str | None, str]:
        body = self._json(response)
        errors = body.get("errors") if isinstance(body, dict) else None
        if isinstance(errors, list) and errors:
            parts = [
                str(e.get("message", "")) + (f" (field {e['field']})" if e.get("field") else "")
                for e in errors
                if isinstance(e, dict)
            ]
            return None, "; ".join(parts)
        return super()._error(response)

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        if status == 403:
            return (
                "verify the sender (Single Sender or domain authentication) in SendGrid, and the key's Mail Send access"
            )
        if outcome is Outcome.UNAVAILABLE:
            return f"check {self.key_variable}: a full or restricted key with Mail Send access"
        return ""

    def _account_request(self) -> httpx.Request:
        return self._client.build_request("GET", "/v3/scopes")

    def _account_steps(self, response: httpx.Response) -> list[Step]:
        steps = super()._account_steps(response)
        if not response.is_success:
            return steps
        body = self._json(response)
        scopes = body.get("scopes", []) if isinstance(body, dict) else []
        can_send = "mail.send" in scopes
        fix = "" if can_send else "give the API key Mail Send access (Settings > API Keys)"
        steps.append(Step("scope", "The key may send mail (mail.send)", can_send, f"{len(scopes)} scopes", fix))
        return steps
