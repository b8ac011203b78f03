"""RetryPolicy is pure: every test passes the clock and the randomness in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from mailsc.delivery.retry import RetryPolicy, retry_hint

NOW = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt", range(1, 30))
@pytest.mark.parametrize("rand", [0.0, 0.25, 0.5, 0.999999])
def test_every_delay_is_within_its_bounds(attempt: int, rand: float) -> None:
    policy = RetryPolicy()
    delay = policy.next_delay(attempt, rand)
    ceiling = min(3600.0, 60.0 * 2 ** (attempt - 1))
    assert 60.0 <= delay <= ceiling


def test_first_retry_is_about_a_minute_and_the_cap_is_an_hour() -> None:
    policy = RetryPolicy()
    assert policy.next_delay(1, 0.0) == policy.next_delay(1, 0.99) == 60.0
    assert policy.next_delay(2, 0.0) == 60.0
    assert policy.next_delay(2, 0.999) == pytest.approx(119.94)
    assert policy.next_delay(50, 0.999999) <= 3600.0
    assert policy.next_delay(50, 0.999999) == pytest.approx(3600.0, rel=1e-3)


def test_jitter_spreads_retries() -> None:
    policy = RetryPolicy()
    delays = {round(policy.next_delay(6, r / 10), 3) for r in range(10)}
    assert len(delays) == 10


def test_configurable_base_and_cap() -> None:
    policy = RetryPolicy(base=1.0, cap=10.0)
    assert policy.next_delay(1, 0.5) == 1.0
    assert policy.next_delay(10, 0.999) <= 10.0


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("451 4.7.1 Greylisted, please try again in 300 seconds", 300.0),
        ("421 4.7.0 Try again in 5 minutes", 300.0),
        ("450 rate limited; retry after 2 hours", 7200.0),
        ("451 4.3.0 Please wait 30s before retrying", 30.0),
        ("451 4.3.0 temporary failure", None),
    ],
)
def test_server_hint_is_read(text: str, seconds: float | None) -> None:
    assert retry_hint(text) == seconds


def test_the_hint_is_honoured() -> None:
    policy = RetryPolicy()
    decision = policy.decide(attempt=1, created_at=NOW, now=NOW, rand=0.5, hint=300.0)
    assert decision.status == "deferred"
    assert decision.retry_at == NOW + timedelta(seconds=300)


def test_past_max_age_the_message_fails() -> None:
    policy = RetryPolicy(max_age=timedelta(hours=24))
    created = NOW - timedelta(hours=23, minutes=59, seconds=30)
    decision = policy.decide(attempt=20, created_at=created, now=NOW, rand=0.0)
    assert decision.status == "failed"
    assert "24 h" in decision.reason
    young = policy.decide(attempt=20, created_at=NOW - timedelta(hours=1), now=NOW, rand=0.0)
    assert young.status == "deferred"


def test_past_expires_at_the_message_expires() -> None:
    policy = RetryPolicy()
    decision = policy.decide(attempt=1, created_at=NOW, now=NOW, rand=0.0, expires_at=NOW + timedelta(seconds=30))
    assert decision.status == "expired"
    later = policy.decide(attempt=1, created_at=NOW, now=NOW, rand=0.0, expires_at=NOW + timedelta(hours=1))
    assert later.status == "deferred"
