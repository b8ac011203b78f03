"""The whole mailsc exception tree.

::

    MailscError
    ├── ConfigError                 settings are invalid; .problems lists every one (variable, message, hint)
    ├── MessageError                a message is malformed; .errors lists every bad field ({"loc", "msg"})
    ├── TemplateError               a template is missing, broken or refused by the sandbox; .template, .line, .variable
    │   └── TemplateNotFoundError   no stored template and no template file has that name
    ├── OutboxError                 the durable outbox failed
    │   ├── OutboxUnavailableError  the database cannot be reached or written (retry later)
    │   ├── IdempotencyConflictError the key was used before for a different message
    │   ├── MessageNotFoundError    no message with that id
    │   └── InvalidStateError       the message is not in a state that allows this (cancel after claim, ...)
    └── DeliveryError               a send failed; .transient, .smtp_code, .enhanced_code, .recipient, .hint,
                                    .retry_after
        ├── ConnectionSetupError    the setup is broken, not the message: the transport is unavailable
        │   ├── SmtpConnectError    connection refused, timed out, name not resolved, greeting refused
        │   ├── TlsSetupError       certificate not verified, handshake failed, STARTTLS not offered
        │   ├── AuthenticationError 530/534/535 and friends: wrong credentials or AUTH not possible
        │   ├── SenderNotAcceptedError the server refuses the configured sender (5xx at MAIL FROM)
        │   └── ProviderUnavailableError an HTTP provider refuses the account: 401/403, suspended, quota used up
        ├── ProviderError           an HTTP provider's refusal or failure; .provider, .status, .code (its own)
        ├── SenderRefusedError      MAIL FROM refused
        └── RecipientsRefusedError  every recipient refused at RCPT; .refusals has one entry each

Third-party errors are translated into this tree in exactly one module each (aiosmtplib in
``transports/smtp.py``); nothing above the transports sees an aiosmtplib exception.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

_ENHANCED_CODE = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")


def parse_enhanced_code(text: str) -> str | None:
    """The RFC 3463 enhanced status code at the start of a server reply's text, e.g. ``"5.7.8"``."""
    match = _ENHANCED_CODE.match(text)
    return match.group(1) if match else None


class MailscError(Exception):
    """Base class of every error mailsc raises on purpose."""


@dataclass(frozen=True)
class ConfigProblem:
    """One invalid setting: the variable a person must change, what is wrong, and how to fix it."""

    variable: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.variable}: {self.message}" + (f" ({self.hint})" if self.hint else "")


class ConfigError(MailscError):
    """The configuration is invalid. Lists every problem at once; never contains a secret's value."""

    def __init__(self, problems: Sequence[ConfigProblem]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        super().__init__(f"invalid configuration, {count} problem{'s' if count != 1 else ''}:\n{lines}")


class MessageError(MailscError):
    """A message cannot be sent as given. ``errors`` holds ``{"loc": [...], "msg": ...}`` for each bad field."""

    def __init__(self, errors: Sequence[dict[str, Any]]) -> None:
        self.errors = [dict(e) for e in errors]
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" if e["loc"] else e["msg"] for e in self.errors]
        super().__init__("; ".join(parts))

    @classmethod
    def single(cls, field: str | Sequence[str | int], msg: str) -> MessageError:
        loc = [field] if isinstance(field, str) else list(field)
        return cls([{"loc": loc, "msg": msg}])


class TemplateError(MailscError):
    """A template could not be found, compiled or rendered (nothing was stored or sent).

    ``template`` names it, ``version`` is the stored version (``None`` for a file template), ``part`` is
    ``subject``, ``html`` or ``text``, ``line`` the line in that part (or in the file named by ``file``, for an
    included or extended file), ``variable`` the missing variable. ``errors`` is the same in the ``{"loc", "msg"}``
    shape of ``MessageError``.
    """

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        version: int | None = None,
        part: str | None = None,
        line: int | None = None,
        variable: str | None = None,
        file: str | None = None,
    ) -> None:
        self.reason = message
        self.template = template
        self.version = version
        self.part = part
        self.line = line
        self.variable = variable
        self.file = file
        where = []
        if template is not None:
            where.append(f"template {template!r}" + (f" (version {version})" if version is not None else ""))
        if file is not None and file != part:
            where.append(f"file {file!r}")
        elif part is not None:
            where.append(part)
        if line is not None:
            where.append(f"line {line}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    @property
    def errors(self) -> list[dict[str, Any]]:
        """One ``{"loc", "msg"}`` entry: the missing variable's place in ``variables``, else the template."""
        loc: list[str | int] = ["variables", self.variable] if self.variable else ["template"]
        return [{"loc": loc, "msg": str(self)}]


class TemplateNotFoundError(TemplateError):
    """No stored template and no template file has that name."""


class OutboxError(MailscError):
    """The durable outbox could not do what was asked."""


class OutboxUnavailableError(OutboxError):
    """The database could not be reached or written; nothing was stored. Safe to retry."""


class IdempotencyConflictError(OutboxError):
    """The idempotency key belongs to an earlier message with different content."""

    def __init__(self, key: str, existing_id: str) -> None:
        self.key = key
        self.existing_id = existing_id
        super().__init__(f"idempotency key {key!r} was already used for message {existing_id} with other content")


class MessageNotFoundError(OutboxError):
    """No message has that id."""


class InvalidStateError(OutboxError):
    """The message's status does not allow the operation."""

    def __init__(self, message: str, status: str) -> None:
        self.status = status
        super().__init__(message)


class DeliveryError(MailscError):
    """A message was not delivered.

    ``transient`` says whether the same message may succeed later unchanged (4xx, timeouts, dropped lines);
    ``smtp_code``/``enhanced_code`` are the server's reply where there was one; ``hint`` is what a person should do.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        smtp_code: int | None = None,
        enhanced_code: str | None = None,
        recipient: str | None = None,
        hint: str = "",
    ) -> None:
        self.transient = transient
        self.smtp_code = smtp_code
        self.enhanced_code = enhanced_code
        self.recipient = recipient
        self.hint = hint
        super().__init__(message)

    # Seconds the server asked us to wait before the next try (HTTP Retry-After and rate-limit headers), if it did.
    retry_after: float | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} (hint: {self.hint})" if self.hint else text


class ConnectionSetupError(DeliveryError):
    """The connection to the server could not be set up: a broken setup, not a broken message.

    A queue defers the message and marks the transport unavailable instead of failing it (DESIGN.md §6).
    """


class SmtpConnectError(ConnectionSetupError):
    """The server could not be reached, or refused the session at its greeting."""


class TlsSetupError(ConnectionSetupError):
    """TLS could not be established: certificate verification, handshake, or STARTTLS not offered."""


class AuthenticationError(ConnectionSetupError):
    """The server refused the credentials, or no usable AUTH mechanism was offered."""


class SenderNotAcceptedError(ConnectionSetupError):
    """The server refuses the configured default sender itself: every message would fail the same way."""


class ProviderError(DeliveryError):
    """An HTTP email provider (SES, SendGrid, Mailgun, Postmark, Resend) did not take the message.

    ``provider`` names it, ``status`` is the HTTP status (``None`` for a network failure), ``code`` the provider's
    own error code or name (``MessageRejected``, ``406``, ``rate_limit_exceeded``); the message keeps the
    provider's own text. ``retry_after`` is the wait the provider asked for, in seconds.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool,
        provider: str,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        recipient: str | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message, transient=transient, recipient=recipient, hint=hint)
        self.provider = provider
        self.status = status
        self.code = code
        self.retry_after = retry_after


class ProviderUnavailableError(ProviderError, ConnectionSetupError):
    """The provider refuses the account, not the message: wrong key (401/403), account suspended or paused,
    sender domain not verified, quota used up. Deferred and the transport paused, never ``failed``."""


class SenderRefusedError(DeliveryError):
    """The server refused the envelope sender at ``MAIL FROM``."""


@dataclass(frozen=True)
class RecipientRefusal:
    """One recipient the server refused at ``RCPT TO``."""

    recipient: str
    smtp_code: int
    message: str
    enhanced_code: str | None = None

    @property
    def transient(self) -> bool:
        return 400 <= self.smtp_code < 500


class RecipientsRefusedError(DeliveryError):
    """Every recipient was refused; nothing was sent. Transient only if every refusal was a 4xx."""

    def __init__(self, refusals: Sequence[RecipientRefusal]) -> None:
        self.refusals = list(refusals)
        first = self.refusals[0]
        super().__init__(
            "all recipients refused: "
            + "; ".join(f"{r.smtp_code} {r.message}" for r in self.refusals[:3])
            + (f" (+{len(self.refusals) - 3} more)" if len(self.refusals) > 3 else ""),
            transient=all(r.transient for r in self.refusals),
            smtp_code=first.smtp_code,
            enhanced_code=first.enhanced_code,
            recipient=first.recipient if len(self.refusals) == 1 else None,
        )
