"""Mailgun ``POST /v3/{domain}/messages.mime``: the exact stored MIME bytes go out, US or EU base URL."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from ...doctor.steps import Step
from ...envelope import Envelope
from ..base import Outcome
from .http import HttpProviderTransport


class MailgunTransport(HttpProviderTransport):
    """Mailgun's Messages API, raw MIME form; the envelope recipients (Bcc included) go in ``to``."""

    title: ClassVar[str] = "Mailgun"
    key_variable: ClassVar[str] = "MAILSC_MAILGUN_API_KEY"

    def _auth(self) -> httpx.Auth:
        assert self.config.api_key is not None
        return httpx.BasicAuth("api", self.config.api_key.get_secret_value())

    @property
    def _domain_path(self) -> str:
        return f"/v3/{quote(self.config.domain or '', safe='')}"

    def _request(self, envelope: Envelope) -> httpx.Request:
        return self._client.build_request(
            "POST",
            f"{self._domain_path}/messages.mime",
            data=mailgun_form_fields(envelope),
            files={"message": ("message.mime", envelope.data, "message/rfc822")},
        )

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        if status in (401, 404):
            other = "us" if self.config.region == "eu" else "eu"
            return (
                f"check {self.key_variable} and the domain {self.config.domain!r}; a domain in Mailgun's "
                f"{other.upper()} region needs region={other}"
            )
        if status == 403:
            return "the domain may not send yet: verify its DNS records, or add the recipient to authorized recipients"
        return ""

    def _classify(self, status: int, code: str | None, text: str) -> Outcome:
        if status == 404:  # the domain is not in this account (or this region): every message would fail alike
            return Outcome.UNAVAILABLE
        return super()._classify(status, code, text)

    def _account_request(self) -> httpx.Request:
        return self._client.build_request("GET", f"/v3/domains/{quote(self.config.domain or '', safe='')}")

    def _probe_passes(self, response: httpx.Response, error: object) -> bool:
        # A domain sending key may send but not read the domain: only 401 and 404 prove the setup wrong.
        return response.status_code not in (401, 404) and response.status_code < 500

    def _account_steps(self, response: httpx.Response) -> list[Step]:
        title = f"Mailgun accepts the key for {self.config.domain}"
        if response.status_code == 403:
            return [Step("credentials", title, True, "the key may not read the domain (a sending key?)")]
        steps = super()._account_steps(response)
        if not response.is_success:
            return [Step("credentials", title, False, steps[0].detail, steps[0].fix)]
        body = self._json(response)
        domain = body.get("domain", {}) if isinstance(body, dict) else {}
        state = str(domain.get("state", "unknown"))
        active = state == "active" and not domain.get("is_disabled", False)
        fix = "" if active else f"verify the domain's DNS records (SPF, DKIM) in Mailgun; its state is {state}"
        steps = [Step("credentials", title, True, f"HTTP {response.status_code}")]
        steps.append(Step("domain", f"The domain {self.config.domain} may send", active, f"state {state}", fix))
        return steps


def mailgun_form_fields(envelope: Envelope) -> dict[str, Any]:
    """The form fields beside the MIME: every envelope recipient, tags as ``o:tag`` (Mailgun keeps at most 10 per
    message), metadata as ``v:`` variables (Mailgun's "user variables", shown in its events and webhooks)."""
    fields: dict[str, Any] = {"to": list(envelope.recipients)}
    if envelope.tags:
        fields["o:tag"] = list(envelope.tags)[:10]
    for key, value in envelope.metadata.items():
        fields[f"v:{key}"] = value
    return fields
