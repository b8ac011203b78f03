"""``FailoverTransport``: ordered failover between transports (``MAILSC_TRANSPORTS=postmark,smtp``).

It is itself a ``Transport``, so the worker sends through it as through any other. Each member has its own
``CircuitBreaker``: a member whose setup is broken (401/403, a suspended account, a wrong SMTP password) is skipped
and probed with backoff, and the next one takes the mail. A member that keeps answering "retry later" (three
times in a row by default) is rested for its ``Retry-After`` (or ``cooldown``) while another can deliver.

Never failed over: a permanent refusal of the message or its recipients (that would get around a provider's
suppression list), and a message larger than the next member's size limit (it waits for one that takes it). Only
when every member's breaker is open does a send raise ``ConnectionSetupError``, which pauses the worker as for a
single broken transport. The ``SendResult.transport`` of a delivery names the member that delivered.

At-least-once: a member that times out after sending the request may have accepted the message; the retry (through
it, or through the next member) can then deliver it twice. Resend de-duplicates by ``Idempotency-Key``; the others
cannot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..envelope import Envelope
from ..errors import ConnectionSetupError, DeliveryError
from ..transports.base import Outcome, SendResult, Transport, classify
from .breaker import CircuitBreaker

logger = logging.getLogger(__name__)


@dataclass
class Route:
    """One member of the failover list and what the router knows of its health."""

    transport: Transport
    breaker: CircuitBreaker
    max_size: int | None = None
    retries: int = 0  # "retry later" answers in a row
    rest_until: float = 0.0  # after too many of them: skipped until then while another member can deliver
    probing: bool = field(default=False, repr=False)

    @property
    def name(self) -> str:
        return self.transport.name

    def fits(self, envelope: Envelope) -> bool:
        return self.max_size is None or len(envelope.data) <= self.max_size


class FailoverTransport:
    """Sends through the first healthy member of ``transports``, in order."""

    def __init__(
        self,
        transports: Sequence[Transport],
        *,
        retry_streak: int = 3,
        cooldown: float = 30.0,
        probe_base: float = 2.0,
        probe_cap: float = 300.0,
    ) -> None:
        if not transports:
            raise ValueError("FailoverTransport needs at least one transport")
        self.routes = [
            Route(
                t,
                CircuitBreaker(t.name, probe_base=probe_base, probe_cap=probe_cap),
                _max_size(t),
            )
            for t in transports
        ]
        self.name = "failover(" + ",".join(t.name for t in transports) + ")"
        self.retry_streak = retry_streak
        self.cooldown = cooldown

    @property
    def open_connections(self) -> int:
        counts = [getattr(r.transport, "open_connections", None) for r in self.routes]
        return sum(c for c in counts if isinstance(c, int))

    def health(self) -> list[tuple[str, DeliveryError | None]]:
        """Each member's name and why it is paused (``None`` when it is healthy), in order."""
        return [(r.name, r.breaker.cause) for r in self.routes]

    async def send(self, envelope: Envelope) -> SendResult:
        """Deliver through the first member that can; raise the reason when none could."""
        loop = asyncio.get_running_loop()
        retry_error: DeliveryError | None = None
        skipped: list[str] = []
        for index, route in enumerate(self.routes):
            now = loop.time()
            if not route.fits(envelope):
                skipped.append(f"{route.name}: the message is larger than its limit of {route.max_size:,} bytes")
                continue
            if route.breaker.is_open and not await self._probe(route):
                skipped.append(f"{route.name}: unavailable ({route.breaker.cause})")
                continue
            if route.rest_until > now and self._another_can_take(index, envelope, now):
                skipped.append(f"{route.name}: resting after repeated retry-later answers")
                continue
            try:
                result = await route.transport.send(envelope)
            except DeliveryError as exc:
                outcome = classify(exc)
                if outcome is Outcome.PERMANENT:
                    raise  # refused for good: another member must not get around the refusal
                if outcome is Outcome.UNAVAILABLE:
                    route.breaker.trip(exc, loop.time())
                    skipped.append(f"{route.name}: unavailable ({exc})")
                    continue
                route.retries += 1
                retry_error = retry_error or exc
                if route.retries < self.retry_streak or not self._another_can_take(index, envelope, now):
                    raise
                route.rest_until = loop.time() + (exc.retry_after or self.cooldown)
                logger.warning(
                    "transport.resting",
                    extra={"transport": route.name, "retries": route.retries, "error": str(exc)},
                )
                skipped.append(f"{route.name}: retry later ({exc})")
                continue
            route.retries, route.rest_until = 0, 0.0
            if index:
                logger.info("delivery.failed_over", extra={"transport": route.name, "skipped": skipped})
            return result
        raise self._nothing_sent(envelope, skipped, retry_error)

    def _nothing_sent(self, envelope: Envelope, skipped: list[str], retry_error: DeliveryError | None) -> DeliveryError:
        if retry_error is not None:
            return retry_error
        open_causes = [r.breaker.cause for r in self.routes if r.breaker.cause is not None]
        if len(open_causes) == len(self.routes):
            first = open_causes[0]
            error = ConnectionSetupError(
                f"every transport is unavailable: {'; '.join(skipped)}", transient=True, hint=first.hint
            )
            return error
        if not any(r.fits(envelope) for r in self.routes):
            return DeliveryError(f"no transport takes a message this large: {'; '.join(skipped)}", transient=False)
        # A healthy member could not take this message (too large): wait for one that can.
        return DeliveryError(f"no transport could take the message now: {'; '.join(skipped)}", transient=True)

    def _another_can_take(self, index: int, envelope: Envelope, now: float) -> bool:
        return any(r.fits(envelope) and not r.breaker.is_open and r.rest_until <= now for r in self.routes[index + 1 :])

    async def _probe(self, route: Route) -> bool:
        """A paused member whose probe is due is probed (one probe at a time); True when it works again."""
        loop = asyncio.get_running_loop()
        if route.probing or not route.breaker.probe_due(loop.time()):
            return False
        route.probing = True
        try:
            check = getattr(route.transport, "check", None)
            if check is not None:
                await check()
        except DeliveryError as exc:
            route.breaker.probe_failed(exc, loop.time())
            return False
        finally:
            route.probing = False
        route.breaker.close(loop.time())  # without a check, the next send is the probe
        return True

    async def check(self) -> None:
        """The worker's probe when every member was paused: succeed as soon as one member works again."""
        if any(not r.breaker.is_open for r in self.routes):
            return
        for route in self.routes:
            route.breaker.next_probe_at = 0.0  # the worker has waited its own backoff: probe each now
            if await self._probe(route):
                return
        cause = self.routes[0].breaker.cause
        raise cause if cause is not None else ConnectionSetupError("every transport is unavailable", transient=True)

    async def aclose(self) -> None:
        await asyncio.gather(*(r.transport.aclose() for r in self.routes))


def _max_size(transport: Transport) -> int | None:
    size = getattr(transport, "max_size", None)
    return size if isinstance(size, int) else None
