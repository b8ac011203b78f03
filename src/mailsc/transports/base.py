"""What every transport is: a tiny protocol, its result, and the four outcome classes of a send."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

from ..envelope import Envelope
from ..errors import ConnectionSetupError, DeliveryError, RecipientRefusal


class Outcome(StrEnum):
    """What a send attempt means for the message, and so what the worker does next."""

    ACCEPTED = "accepted"  # the server took it: record it sent
    RETRY = "retry"  # try this message again later through the same transport (4xx, timeout, dropped line)
    UNAVAILABLE = "unavailable"  # the setup is broken, not the message: defer it, pause the transport
    PERMANENT = "permanent"  # this message or its recipients were refused for good (5xx): never retried


def classify(error: BaseException) -> Outcome:
    """The outcome class of an error raised by ``Transport.send``."""
    if isinstance(error, ConnectionSetupError):
        return Outcome.UNAVAILABLE
    if isinstance(error, DeliveryError):
        return Outcome.RETRY if error.transient else Outcome.PERMANENT
    return Outcome.RETRY


@dataclass(frozen=True, slots=True)
class SendResult:
    """A message the server accepted, for all or some of its recipients (``refused`` lists the others)."""

    message_id: str
    accepted: tuple[str, ...]
    refused: tuple[RecipientRefusal, ...] = ()
    reply: str = ""
    transport: str = ""
    provider_message_id: str | None = None  # an HTTP provider's own id for the message (SES MessageId, ...)


@runtime_checkable
class Transport(Protocol):
    """A way out for rendered messages. ``send`` raises a ``DeliveryError`` when nothing was delivered."""

    name: str

    async def send(self, envelope: Envelope) -> SendResult: ...

    async def aclose(self) -> None: ...
