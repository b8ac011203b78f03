"""What every HTTP provider transport shares: one pooled ``httpx.AsyncClient``, the size limit, the outcome of an
answer in four classes, rate-limit headers, network failures, the breaker's probe and ``mailsc doctor`` steps.

Each provider module adds how its request is built, where its message id is, and what its own error codes mean;
httpx's exceptions are translated here, and nowhere else.
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import json
import ssl
import time
from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from ...config.transports import ProviderConfig
from ...doctor.steps import Step
from ...envelope import Envelope
from ...errors import DeliveryError, MessageError, ProviderError, ProviderUnavailableError
from ...message import Address, Message
from ...mime import render
from ..base import Outcome, SendResult

MAX_RETRY_AFTER = 24 * 3600.0
try:
    USER_AGENT = f"mailsc/{importlib.metadata.version('mailsc')}"
except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
    USER_AGENT = "mailsc"


def retry_after_of(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait, from ``Retry-After`` (seconds or an HTTP date), SendGrid's ``X-RateLimit-Reset`` (a Unix
    time) or the IETF draft's ``RateLimit-Reset`` that Resend sends (seconds from now)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    wait: float | None = None
    if (value := lowered.get("retry-after")) is not None:
        try:
            wait = float(value)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(value).timestamp() - now
            except (TypeError, ValueError):
                wait = None
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        if wait is None and (value := lowered.get(name)) is not None:
            try:
                number = float(value)
            except ValueError:
                continue
            wait = number - now if number > 1e9 else number  # a Unix time, or seconds from now
    if wait is None:
        return None
    return min(max(wait, 1.0), MAX_RETRY_AFTER)


def _outcome_of_status(status: int) -> Outcome:
    if status in (401, 403):
        return Outcome.UNAVAILABLE
    if status in (408, 409, 425, 429) or status >= 500:
        return Outcome.RETRY
    return Outcome.PERMANENT


def build_ssl_context(config: ProviderConfig) -> ssl.SSLContext:
    """Built once per transport (the system trust store costs ~30 ms of CPU to load), TLS >= 1.2."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class HttpProviderTransport:
    """Base of the provider transports: subclasses build the request and read their provider's answers."""

    title: ClassVar[str] = "the provider"
    key_variable: ClassVar[str] = "the API key"

    def __init__(self, config: ProviderConfig, *, sender: str | None = None, name: str | None = None) -> None:
        self.config = config
        self.name = name or config.name
        self.max_size = config.max_size
        self.sender = sender
        self._client = httpx.AsyncClient(
            base_url=config.endpoint,
            timeout=httpx.Timeout(config.timeout, connect=min(config.timeout, 10.0)),
            limits=httpx.Limits(
                max_connections=config.pool_size, max_keepalive_connections=config.pool_size, keepalive_expiry=60
            ),
            http2=config.http2,
            verify=build_ssl_context(config),
            auth=self._auth(),
            headers={"User-Agent": USER_AGENT, **self._headers()},
        )

    # --- what a provider module supplies --------------------------------------------------------------------

    def _auth(self) -> httpx.Auth | None:
        return None

    def _headers(self) -> dict[str, str]:
        return {}

    def _request(self, envelope: Envelope) -> httpx.Request:
        raise NotImplementedError

    def _message_id(self, response: httpx.Response) -> str | None:
        body = self._json(response)
        value = body.get("id") if isinstance(body, dict) else None
        return str(value) if value else None

    def _error(self, response: httpx.Response) -> tuple[str | None, str]:
        """The provider's own error code (or name) and text from an error answer."""
        body = self._json(response)
        if isinstance(body, dict):
            text = body.get("message") or body.get("Message") or body.get("error") or ""
            return None, str(text)
        return None, response.text[:500]

    def _classify(self, status: int, code: str | None, text: str) -> Outcome:
        return _outcome_of_status(status)

    def _hint(self, outcome: Outcome, status: int, code: str | None, text: str) -> str:
        if outcome is Outcome.UNAVAILABLE:
            return f"check {self.key_variable} and the account's state in the {self.title} console; `mailsc doctor`"
        return ""

    def _account_request(self) -> httpx.Request:
        """A request that proves the credentials and sends nothing (the breaker's probe, doctor's first step)."""
        raise NotImplementedError

    def _account_steps(self, response: httpx.Response) -> list[Step]:
        """Doctor steps read from the answer to ``_account_request``."""
        if response.is_success:
            return [Step("credentials", f"{self.title} accepts the credentials", True, f"HTTP {response.status_code}")]
        error = self.error_for(response)
        return [Step("credentials", f"{self.title} accepts the credentials", False, str(error), error.hint)]

    async def _sender_steps(self) -> list[Step]:
        """Doctor steps checking the sender's identity or domain, where the provider's API tells."""
        return []

    # --- shared behaviour -----------------------------------------------------------------------------------

    @staticmethod
    def _json(response: httpx.Response) -> Any:
        try:
            return response.json()
        except (ValueError, UnicodeDecodeError):
            return None

    async def send(self, envelope: Envelope) -> SendResult:
        """Deliver one envelope; raises a ``ProviderError`` (or ``ProviderUnavailableError``) otherwise."""
        if len(envelope.data) > self.max_size:
            raise ProviderError(
                f"{self.name}: the message is {len(envelope.data):,} bytes; {self.title} takes at most "
                f"{self.max_size:,}",
                transient=False,
                provider=self.name,
                code="too_large",
            )
        response = await self._exchange(self._request(envelope))
        if not response.is_success:
            raise self.error_for(response)
        return SendResult(
            envelope.message_id,
            envelope.recipients,
            reply=f"{response.status_code} {response.reason_phrase}".strip(),
            transport=self.name,
            provider_message_id=self._message_id(response),
        )

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        try:
            response = await self._client.send(request)
            await response.aread()
            return response
        except httpx.TimeoutException as exc:
            sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            detail = "; it may have been accepted (at-least-once: a retry can deliver it twice)" if sent else ""
            raise ProviderError(
                f"{self.name}: no answer from {self.config.endpoint} within {self.config.timeout:g} s "
                f"({type(exc).__name__}){detail}",
                transient=True,
                provider=self.name,
                code="timeout",
            ) from None
        except httpx.ConnectError as exc:
            if _certificate_error(exc):
                raise ProviderUnavailableError(
                    f"{self.name}: the TLS certificate of {self.config.endpoint} failed verification: {exc}",
                    transient=True,
                    provider=self.name,
                    code="tls",
                    hint="check the endpoint; for a private CA set ?ca_file= or MAILSC_PROVIDER_CA_FILE",
                ) from None
            raise ProviderError(
                f"{self.name}: cannot connect to {self.config.endpoint}: {exc}",
                transient=True,
                provider=self.name,
                code="connect",
            ) from None
        except httpx.HTTPError as exc:  # dropped connection, protocol error: the send's fate is unknown
            raise ProviderError(
                f"{self.name}: the exchange with {self.config.endpoint} failed: {type(exc).__name__}: {exc}",
                transient=True,
                provider=self.name,
                code="network",
            ) from None

    def error_for(self, response: httpx.Response) -> ProviderError:
        """The error an unsuccessful answer means, in its outcome class, with the provider's own code and text."""
        status = response.status_code
        code, text = self._error(response)
        outcome = self._classify(status, code, text)
        shown = f"{self.name}: HTTP {status}" + (f" {code}" if code else "") + (f": {text}" if text else "")
        kind = ProviderUnavailableError if outcome is Outcome.UNAVAILABLE else ProviderError
        return kind(
            shown,
            transient=outcome is not Outcome.PERMANENT,
            provider=self.name,
            status=status,
            code=code,
            retry_after=retry_after_of(response.headers, time.time()) if outcome is Outcome.RETRY else None,
            hint=self._hint(outcome, status, code, text),
        )

    async def check(self) -> None:
        """The breaker's probe: prove the credentials without sending; raise as ``send`` would if they fail."""
        response = await self._exchange(self._account_request())
        if response.is_success:
            return
        error = self.error_for(response)
        if self._probe_passes(response, error):
            return
        raise error

    def _probe_passes(self, response: httpx.Response, error: ProviderError) -> bool:
        """A refusal that proves nothing against the account (the endpoint needs a permission sending does not)."""
        return not error.transient

    async def diagnose(self, to: str | None = None) -> list[Step]:
        """``mailsc doctor`` for this provider: reach the API, credentials, account and sender; then, with ``to``,
        a real test message. Stops at the first failing step; each failure says the fix in plain words."""
        reach = f"Reach the {self.title} API at {self.config.endpoint}"
        try:
            response = await self._exchange(self._account_request())
        except ProviderError as exc:
            fix = exc.hint or "check the network, a proxy or firewall, and the endpoint (?endpoint=)"
            return [Step("reach", reach, False, str(exc), fix)]
        steps = [Step("reach", reach, True, f"HTTP {response.status_code}", data={"endpoint": self.config.endpoint})]
        steps += self._account_steps(response)
        if all(step.ok for step in steps):
            steps += await self._sender_steps()
        if not all(step.ok for step in steps):
            return steps
        if to is not None:
            steps.append(await self._test_message(to))
        return steps

    async def _test_message(self, to: str) -> Step:
        title = f"Send a test message to {to} through {self.title}"
        if not self.sender:
            return Step("test_message", title, False, "no sender configured", "set MAILSC_MAIL_FROM")
        try:
            envelope = render(
                Message(
                    to=[to],
                    subject="mailsc doctor: test message",
                    text=f"This message tests delivery through {self.title} with mailsc.",
                ),
                default_sender=Address.parse(self.sender),
            )
            result = await self.send(envelope)
        except MessageError as exc:
            return Step("test_message", title, False, str(exc), "give a valid address with --to")
        except DeliveryError as exc:
            return Step("test_message", title, False, str(exc), exc.hint or "see the provider's text above")
        data = {"provider_message_id": result.provider_message_id}
        detail = f"accepted, {self.title} message id {result.provider_message_id}"
        return Step("test_message", title, True, detail, data=data)

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def dumps(payload: Any) -> bytes:
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _certificate_error(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
