"""Which diagnosis runs: the SMTP walk for an SMTP transport, a provider transport's own ``diagnose``, or a plain
statement for the capture transport (nothing is delivered, so there is nothing to diagnose)."""

from __future__ import annotations

import logging
from typing import Any

from ..config import ConnectionConfig, Settings
from ..mailer import Mailer
from ..message import Address
from ..transports.base import Transport
from ..transports.capture import CaptureTransport
from ..transports.memory import MemoryTransport
from ..transports.smtp import SmtpTransport
from .smtp import diagnose_smtp
from .steps import Step
from .walk import OnStep

CAPTURE_DETAIL = (
    "no SMTP server or provider is configured: mail is captured for the dev inbox, not delivered. To deliver, set "
    "MAILSC_SMTP_URL (e.g. smtp://user:password@smtp.example.com:587 for STARTTLS, smtps://...:465 for implicit TLS) "
    "or MAILSC_SMTP_HOST, MAILSC_SMTP_PORT, MAILSC_SMTP_USERNAME and MAILSC_SMTP_PASSWORD, then run `mailsc doctor` "
    "again"
)


async def diagnose(
    settings: Settings,
    smtp: ConnectionConfig | None,
    *,
    sender: Address | None = None,
    to: str | None = None,
    on_step: OnStep | None = None,
) -> list[Step]:
    """Diagnose the delivery setup: ``smtp`` (the configured SMTP profile, maybe with command-line overrides) when
    given, else the transport ``Mailer`` would build from ``settings``."""
    if smtp is not None and (smtp is not settings.smtp or smtp.suppress_send):
        return await diagnose_smtp(smtp, sender=sender, to=to, on_step=on_step)
    mailer_log = logging.getLogger("mailsc.mailer")
    quiet, mailer_log.disabled = mailer_log.disabled, True  # the capture-mode warning: the doctor says it itself
    try:
        transport = Mailer.transport_for(settings)
    finally:
        mailer_log.disabled = quiet
    try:
        return await diagnose_transport(transport, sender=sender, to=to, on_step=on_step)
    finally:
        await transport.aclose()


async def diagnose_transport(
    transport: Transport | Any,
    *,
    sender: Address | None = None,
    to: str | None = None,
    on_step: OnStep | None = None,
) -> list[Step]:
    """The diagnosis for one built transport. A failover chain (a transport with ``routes``) is diagnosed member
    by member, each to its own first failure: a broken primary makes the fallback matter all the more."""
    members = [getattr(route, "transport", None) for route in getattr(transport, "routes", None) or ()]
    if members and all(member is not None for member in members):
        steps: list[Step] = []
        for index, member in enumerate(members, 1):
            name = str(getattr(member, "name", type(member).__name__))
            header = Step(
                "transport", f"Transport {index} of {len(members)}: {name}", True, "", "", {"transport": name}
            )
            if on_step is not None:
                on_step(header)
            steps += [header, *await diagnose_transport(member, sender=sender, to=to, on_step=on_step)]
        return steps
    if isinstance(transport, SmtpTransport):
        return await diagnose_smtp(transport.config, sender=sender, to=to, on_step=on_step)
    provider_diagnose = getattr(transport, "diagnose", None)
    if callable(provider_diagnose):
        found = list(await provider_diagnose(to))
        for step in found:
            if on_step is not None:
                on_step(step)
        return found
    name = str(getattr(transport, "name", type(transport).__name__))
    if isinstance(transport, CaptureTransport):
        step = Step("transport", "Delivery transport", True, CAPTURE_DETAIL, "", {"transport": "capture"})
    elif isinstance(transport, MemoryTransport):
        step = Step("transport", "Delivery transport", True, "SUPPRESS_SEND is on: mail is kept in memory, never sent")
    else:
        step = Step("transport", "Delivery transport", True, f"the {name} transport offers no diagnosis")
    if on_step is not None:
        on_step(step)
    return [step]
