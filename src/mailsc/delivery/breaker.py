"""``CircuitBreaker``: a broken setup pauses a transport instead of failing the queue (DESIGN.md §6).

After a failure that concerns the connection, not the message (wrong password, bad certificate, server down), the
worker stops handing messages to the transport and probes it (connect, EHLO, TLS, AUTH; no message) with backoff:
first after ``probe_base`` seconds, doubling up to ``probe_cap``. The first successful probe closes the breaker.
State changes are logged once each (opened, still open every ``remind_every`` seconds, closed), never per message.
Pure: every method takes the time; no clock, no I/O.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from .. import metrics
from ..errors import DeliveryError

logger = logging.getLogger(__name__)


@dataclass
class CircuitBreaker:
    """One transport's health as seen by one worker."""

    transport: str
    probe_base: float = 2.0
    probe_cap: float = 300.0
    remind_every: float = 300.0
    cause: DeliveryError | None = None
    opened_at: float | None = None
    next_probe_at: float = 0.0
    _delay: float = field(default=0.0, repr=False)
    _reminded_at: float = field(default=0.0, repr=False)

    @property
    def is_open(self) -> bool:
        return self.cause is not None

    def trip(self, error: DeliveryError, now: float) -> None:
        """A setup failure: open (or keep open) the breaker; the first one logs and counts an opening."""
        if self.cause is None:
            self.opened_at = now
            self._delay = self.probe_base
            self.next_probe_at = now + self._delay
            self._reminded_at = now
            metrics.record_breaker_opened(self.transport)
            logger.error("transport.unavailable", extra=self._fields(error))
        self.cause = error
        metrics.set_transport_up(self.transport, up=False)

    def probe_due(self, now: float) -> bool:
        return self.is_open and now >= self.next_probe_at

    def probe_failed(self, error: DeliveryError, now: float) -> None:
        """The probe failed too: wait longer before the next one; remind the operator now and then."""
        self.cause = error
        self._delay = min(self.probe_cap, max(self.probe_base, self._delay * 2))
        self.next_probe_at = now + self._delay
        if now - self._reminded_at >= self.remind_every:
            self._reminded_at = now
            fields = self._fields(error)
            fields["down_for_s"] = round(now - (self.opened_at or now))
            logger.error("transport.still_unavailable", extra=fields)

    def close(self, now: float) -> None:
        """A probe (or a send) succeeded: deliver again."""
        if self.cause is not None:
            logger.warning(
                "transport.recovered",
                extra={"transport": self.transport, "down_for_s": round(now - (self.opened_at or now))},
            )
        self.cause = None
        self.opened_at = None
        metrics.set_transport_up(self.transport, up=True)

    def _fields(self, error: DeliveryError) -> dict[str, object]:
        return {
            "transport": self.transport,
            "cause": str(error),
            "code": error.smtp_code,
            "hint": error.hint,
            "kind": type(error).__name__,
        }
