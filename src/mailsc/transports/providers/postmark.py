"""Postmark ``POST /email``: JSON built from the stored MIME; the id is ``MessageID``."""

from __future__ import annotations

import base64
import re
from typing import Any, ClassVar

import httpx

from ...envelope import Envelope
from ...errors import ProviderError
from ..base import Outcome
from .http import HttpProviderTransport
from .structured import StructuredMessage, parse_message

# Postmark's own error codes (https://postmarkapp.com/developer/api/overview#error-codes) that concern the account.
_UNAVAILABLE_CODES = frozenset({10, 400, 401, 405, 412})
_RETRY_CODES = frozenset({429})
_ADDRESS = re.compile(r"[^\s,;:]+@[^\s,;:]+[A-Za-z0-9]")


def postmark_payload(
    message: StructuredMessage,
    *,
    message_stream: str = "outbound",
    tags: tuple[str, ...] = (),
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The ``/email`` body. Postmark has one ``Tag``: the first tag; the others go into ``Metadata``."""
    payload: dict[str, Any] = {
        "From": message.sender.formatted(),
        "To": ", ".join(m.formatted() for m in message.to),
        "Subject": message.subject,
        "MessageStream": message_stream,
    }
    for key, boxes in (("Cc", message.cc), ("Bcc", message.bcc), ("ReplyTo", message.reply_to)):
        if boxes:
            payload[key] = ", ".join(m.formatted() for m in boxes)
    if message.text is not None:
        payload["TextBody"] = message.text
    if message.html is not None:
        payload["HtmlBody"] = message.html
    headers = [{"Name": name, "Value": value} for name, value in message.headers]
    payload["Headers"] = [{"Name": "Message-ID", "Value": message.message_id}, *headers]
    if message.attachments:
        payload["Attachments"] = [
            {
                "Name": part.filename,
                "Content": base64.b64encode(part.content).decode("ascii"),
                "ContentType": part.content_type,
                **({"ContentID": f"cid:{part.content_id}"} if part.content_id else {}),
            }
            for part in message.attachments
        ]
    extra = dict(metadata or {})
    if tags:
        payload["Tag"] = tags[0]
        if len(tags) > 1:
            extra["tags"] = ",".join(tags)
    if extra:
        payload["Metadata"] = extra
    return payload


class PostmarkTransport(HttpProviderTransport):
    """Postmark's Email API, on the server token's ``message_stream`` (``outbound`` by default)."""

    title: ClassVar[str] = "Postmark"
    key_variable: ClassVar[str] = "MAILSC_POSTMARK_TOKEN"

    def _headers(self) -> dict[str, str]:
        assert self.config.api_key is not None
        return {"X-Postmark-Server-Token": self.config.api_key.get_secret_value(), "Accept": "application/json"}

    def _request(self, envelope: Envelope) -> httpx.Request:
        payload = postmark_payload(
            parse_message(envelope),
            message_stream=self.config.message_stream or "outbound",
            tags=envelope.tags,
            metadata=dict(envelope.metadata),
        )
        return self._client.build_request(
            "POST", "/email", content=self.dumps(payload), headers={"Content-Type": "application/json"}
        )

    def _message_id(self, response: httpx.Response) -> str | None:
        body = self._json(response)
        return str(body["MessageID"]) if isinstance(body, dict) and body.get("MessageID") else None

    def _error(self, response: httpx.Response) -> tuple[str | None, str]:
        body = self._json(response)
        if isinstance(body, dict) and "ErrorCode" in body:
            return str(body["ErrorCode"]), str(body.get("Message", ""))
        return super()._error(response)

    def _classify(self, status: int, code: str | None, text: str) -> Outcome:
        number = int(code) if code and code.isdigit() else None
        if number in _UNAVAILABLE_CODES:
            return Outcome.UNAVAILABLE
        if number in _RETRY_CODES:
            return Outcome.RETRY
        if number == 406 or status == 406:  # inactive (suppressed) recipient: never retried, never failed over
            return Outcome.PERMANENT
        return super()._classify(status, code, text)

    def error_for(self, response: httpx.Response) -> ProviderError:
        error = super().error_for(response)
        if error.code == "406" or response.status_code == 406:
            found = _ADDRESS.findall(error.args[0] if error.args else "")
            error.recipient = found[0] if len(found) == 1 else None
        return error

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        if code in ("400", "401"):
            return "add and confirm the sender signature (or verify its domain) in Postmark"
        if code == "405":
            return "the Postmark account may not send (out of credits?): see its billing page"
        if code == "412":
            return "the Postmark account is pending approval: until then it sends only to its own domain"
        if code == "406" or status == 406:
            return "the recipient is inactive after a hard bounce or spam complaint; reactivate it in Postmark"
        if outcome is Outcome.UNAVAILABLE:
            return f"check {self.key_variable}: a server API token of the right server"
        return ""

    def _account_request(self) -> httpx.Request:
        return self._client.build_request("GET", "/server")
