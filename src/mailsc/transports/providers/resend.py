"""Resend ``POST /emails``: JSON built from the stored MIME, an ``Idempotency-Key`` from the Message-ID."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any, ClassVar

import httpx

from ...doctor.steps import Step
from ...envelope import Envelope
from ..base import Outcome
from .http import HttpProviderTransport
from .structured import StructuredMessage, parse_message

_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_QUOTA = frozenset({"daily_quota_exceeded", "monthly_quota_exceeded"})


def _tag_text(value: str) -> str:
    return _TAG_UNSAFE.sub("_", value)[:256] or "_"


def resend_payload(
    message: StructuredMessage, *, tags: tuple[str, ...] = (), metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    """The ``/emails`` body. Resend's tags are name/value pairs of ``[A-Za-z0-9_-]``: a tag becomes
    ``{name: tag, value: "true"}``, a metadata entry ``{name: key, value: value}``, other characters as ``_``."""
    payload: dict[str, Any] = {
        "from": message.sender.formatted(),
        "to": [m.formatted() for m in message.to],
        "subject": message.subject,
    }
    for key, boxes in (("cc", message.cc), ("bcc", message.bcc), ("reply_to", message.reply_to)):
        if boxes:
            payload[key] = [m.formatted() for m in boxes]
    if message.text is not None:
        payload["text"] = message.text
    if message.html is not None:
        payload["html"] = message.html
    payload["headers"] = {"Message-ID": message.message_id, **dict(message.headers)}
    if message.attachments:
        payload["attachments"] = [
            {
                "filename": part.filename,
                "content": base64.b64encode(part.content).decode("ascii"),
                "content_type": part.content_type,
                **({"content_id": part.content_id} if part.content_id else {}),
            }
            for part in message.attachments
        ]
    pairs = [{"name": _tag_text(t), "value": "true"} for t in tags]
    pairs += [{"name": _tag_text(k), "value": _tag_text(v)} for k, v in (metadata or {}).items()]
    if pairs:
        payload["tags"] = pairs
    return payload


def idempotency_key(envelope: Envelope) -> str:
    """The same key for every attempt at one stored message (its Message-ID is fixed at acceptance)."""
    return "mailsc-" + hashlib.sha256(envelope.message_id.encode()).hexdigest()[:48]


class ResendTransport(HttpProviderTransport):
    """Resend's Emails API."""

    title: ClassVar[str] = "Resend"
    key_variable: ClassVar[str] = "MAILSC_RESEND_API_KEY"

    def _headers(self) -> dict[str, str]:
        assert self.config.api_key is not None
        return {"Authorization": f"Bearer {self.config.api_key.get_secret_value()}"}

    def _request(self, envelope: Envelope) -> httpx.Request:
        payload = resend_payload(parse_message(envelope), tags=envelope.tags, metadata=dict(envelope.metadata))
        headers = {"Content-Type": "application/json", "Idempotency-Key": idempotency_key(envelope)}
        return self._client.build_request("POST", "/emails", content=self.dumps(payload), headers=headers)

    def _error(self, response: httpx.Response) -> tuple[str | None, str]:
        body = self._json(response)
        if isinstance(body, dict) and "name" in body:
            return str(body["name"]), str(body.get("message", ""))
        return super()._error(response)

    def _classify(self, status: int, code: str | None, text: str) -> Outcome:
        if code in _QUOTA:
            return Outcome.UNAVAILABLE
        if code == "concurrent_idempotent_requests":
            return Outcome.RETRY
        if code == "invalid_idempotent_request":
            return Outcome.PERMANENT
        return super()._classify(status, code, text)

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        if code in _QUOTA:
            return "the Resend sending quota is used up: wait for it to reset, or upgrade the plan"
        if status == 403:
            return "verify the sender's domain in Resend (Domains); until then it sends only to your own address"
        if outcome is Outcome.UNAVAILABLE:
            return f"check {self.key_variable}: an API key with sending access"
        return ""

    def _account_request(self) -> httpx.Request:
        return self._client.build_request("GET", "/domains")

    def _probe_passes(self, response: httpx.Response, error: Any) -> bool:
        # A sending-only key may not list domains: Resend answers restricted_api_key, so the key itself is good.
        return getattr(error, "code", None) == "restricted_api_key" or not error.transient

    def _account_steps(self, response: httpx.Response) -> list[Step]:
        title = "Resend accepts the API key"
        if not response.is_success:
            error = self.error_for(response)
            if self._probe_passes(response, error):
                return [Step("credentials", title, True, "a sending-only key (domains not readable)")]
            return [Step("credentials", title, False, str(error), error.hint)]
        steps = [Step("credentials", title, True, f"HTTP {response.status_code}")]
        if not self.sender:
            return steps
        domain = self.sender.rpartition("@")[2].rstrip(">").lower()
        body = self._json(response)
        domains = body.get("data", []) if isinstance(body, dict) else []
        found = next((d for d in domains if isinstance(d, dict) and str(d.get("name", "")).lower() == domain), None)
        status = str(found.get("status")) if found else "missing"
        ok = status == "verified"
        fix = "" if ok else f"add and verify the domain {domain} in Resend (Domains), publishing its DNS records"
        steps.append(Step("sender", f"The sender's domain {domain} is verified", ok, f"status {status}", fix))
        return steps
