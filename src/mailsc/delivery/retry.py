"""``RetryPolicy``: when to try a message again, or give up. Pure: no clock, no I/O, no hidden randomness."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_HINT = re.compile(
    r"(?:try\s+again|retry|wait)\D{0,24}?(\d{1,6})\s*(seconds?|secs?|s\b|minutes?|mins?|m\b|hours?|h\b)",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600}


def retry_hint(text: str) -> float | None:
    """Seconds a server asked us to wait ("try again in 5 minutes"), if its reply says so."""
    match = _HINT.search(text)
    if not match:
        return None
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)[0].lower()]


@dataclass(frozen=True)
class RetryDecision:
    """``status`` is ``deferred`` (with ``retry_at``), ``failed`` or ``expired``; ``reason`` says why."""

    status: str
    retry_at: datetime | None = None
    reason: str = ""


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter above a floor: attempt 1 waits ``base``, attempt n a uniformly random
    time between ``base`` and ``min(cap, base * 2**(n-1))``. Past ``max_age`` since acceptance the message fails;
    past its own ``expires_at`` it expires."""

    base: float = 60.0
    cap: float = 3600.0
    max_age: timedelta = timedelta(hours=24)

    def next_delay(self, attempt: int, rand: float, hint: float | None = None) -> float:
        """Seconds before the next try after ``attempt`` failed; ``rand`` is uniform in [0, 1)."""
        if hint is not None:
            return min(max(hint, 1.0), self.max_age.total_seconds())
        ceiling = min(self.cap, self.base * 2.0 ** min(max(attempt - 1, 0), 60))
        low = min(self.base, ceiling)
        return low + (ceiling - low) * rand

    def decide(
        self,
        *,
        attempt: int,
        created_at: datetime,
        now: datetime,
        rand: float,
        expires_at: datetime | None = None,
        hint: float | None = None,
    ) -> RetryDecision:
        """What to do with a message whose ``attempt``-th try failed transiently at ``now``."""
        retry_at = now + timedelta(seconds=self.next_delay(attempt, rand, hint))
        if expires_at is not None and retry_at >= expires_at:
            return RetryDecision("expired", reason="the next try would come after the message's expires_at")
        if retry_at - created_at > self.max_age:
            hours = self.max_age.total_seconds() / 3600
            return RetryDecision("failed", reason=f"still failing after the maximum age of {hours:g} h")
        return RetryDecision("deferred", retry_at)
