"""``Worker``: claim due messages (with a lease) -> send -> record the outcome and its event.

Sends run concurrently up to ``concurrency`` (the transport's pool bounds the connections); no database row lock
is ever held across an SMTP conversation, only a lease. ``run(burst=True)`` drains what is due and returns;
``stop()`` (SIGTERM) stops claiming, lets in-flight sends finish within ``grace`` seconds and gives the other
leases back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from datetime import datetime, timedelta

from ..errors import DeliveryError, OutboxUnavailableError, RecipientsRefusedError
from ..metrics import observe_send, record_outcome
from ..outbox.records import ClaimedMessage, Settled, new_id, utcnow
from ..outbox.store import OutboxStore
from ..transports.base import Outcome, Transport, classify
from .breaker import CircuitBreaker
from .retry import RetryPolicy, retry_hint

logger = logging.getLogger(__name__)


class Worker:
    """Moves due messages from an ``OutboxStore`` to a ``Transport``."""

    def __init__(
        self,
        store: OutboxStore,
        transport: Transport,
        policy: RetryPolicy | None = None,
        *,
        concurrency: int = 256,  # claimed and waiting for a pooled connection: big claims, few transactions
        batch_size: int = 200,
        lease: timedelta = timedelta(minutes=5),
        max_attempts: int = 30,
        poll_interval: float = 1.0,
        grace: float = 30.0,
        owner: str | None = None,
        probe_base: float = 2.0,
        probe_cap: float = 300.0,
    ) -> None:
        self.store = store
        self.transport = transport
        self.policy = policy or RetryPolicy()
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease = lease
        self.max_attempts = max_attempts
        self.poll_interval = poll_interval
        self.grace = grace
        self.owner = owner or f"{socket.gethostname()[:30]}:{os.getpid()}:{new_id()[-6:]}"
        self._random = random.Random()
        self._wakeup = asyncio.Event()
        self._stopping = False
        self._in_flight: dict[asyncio.Task[None], str] = {}
        self._suspect_in_flight = False
        self._sending = 0  # claimed and not yet attempted; recording an outcome does not hold a slot
        self._recover_at = 0.0
        self.breaker = CircuitBreaker(transport.name, probe_base=probe_base, probe_cap=probe_cap)
        self.sent = 0

    def replace_transport(self, transport: Transport) -> None:
        """New settings: later sends use ``transport``, and a paused transport is tried again at once."""
        self.transport = transport
        self.breaker = CircuitBreaker(
            transport.name, probe_base=self.breaker.probe_base, probe_cap=self.breaker.probe_cap
        )
        self.wake()

    def _suspect_done(self, _task: asyncio.Task[None]) -> None:
        self._suspect_in_flight = False

    def wake(self) -> None:
        """New mail was accepted: look for due messages now instead of at the next poll."""
        self._wakeup.set()

    def stop(self) -> None:
        """Stop claiming; ``run`` returns once in-flight sends finished (or ``grace`` ran out)."""
        self._stopping = True
        self._wakeup.set()

    async def run(self, *, burst: bool = False) -> None:
        """Deliver until ``stop()``; with ``burst=True``, return as soon as nothing is due and nothing in flight."""
        failures = 0
        # Claim in batches of at least a quarter of the slots, so a backlog costs few claim transactions.
        threshold = max(1, min(self.batch_size, self.concurrency) // 4)
        try:
            stop_listening = await self.store.listen(self.wake)
        except OutboxUnavailableError as exc:
            logger.warning("worker.listen_failed", extra={"error": str(exc), "detail": "falling back to polling"})
            stop_listening = None
        try:
            while not self._stopping:
                if self.breaker.is_open and await self._paused(burst):
                    if burst and not self._in_flight:
                        return
                    continue
                free = self.concurrency - self._sending
                if not self._suspect_in_flight and (free >= threshold or not self._in_flight):
                    try:
                        claimed = await self._claim(min(free, self.batch_size))
                        failures = 0
                    except OutboxUnavailableError as exc:
                        failures += 1
                        logger.error("worker.outbox_unavailable", extra={"error": str(exc)})
                        await self._pause(min(30.0, 0.5 * 2**failures))
                        continue
                    for message in claimed:
                        self._sending += 1
                        task = asyncio.create_task(self._deliver(message))
                        self._in_flight[task] = message.id
                        if message.suspect:  # it may crash us: claim nothing more until it is settled
                            self._suspect_in_flight = True
                            task.add_done_callback(self._suspect_done)
                if not self._in_flight:
                    if burst:
                        return
                    await self._pause(await self._idle_timeout())
                else:
                    await self._wait_for_progress()
        finally:
            await self._drain()
            if stop_listening is not None:
                await stop_listening()

    async def _paused(self, burst: bool) -> bool:
        """While the transport's setup is broken: probe when due, else wait. True while still paused."""
        loop = asyncio.get_running_loop()
        if self.breaker.probe_due(loop.time()):
            await self._probe()
        if not self.breaker.is_open:
            return False
        if not burst or self._in_flight:
            await self._pause(min(self.poll_interval, max(0.0, self.breaker.next_probe_at - loop.time())))
        return True

    async def _probe(self) -> None:
        """Connect, secure and authenticate without sending anything; close the breaker if that works."""
        check = getattr(self.transport, "check", None)
        now = asyncio.get_running_loop().time()
        if check is None:
            self.breaker.close(now)  # nothing to probe with: the next send is the probe
            return
        try:
            await check()
        except DeliveryError as exc:
            self.breaker.probe_failed(exc, asyncio.get_running_loop().time())
        else:
            self.breaker.close(asyncio.get_running_loop().time())

    async def _claim(self, limit: int) -> list[ClaimedMessage]:
        """Claim due mail; look for abandoned rows (a dead worker's) at most once per ``poll_interval``, and
        always before concluding that nothing is due."""
        now = asyncio.get_running_loop().time()
        recover = now >= self._recover_at
        options = {"lease": self.lease, "max_attempts": self.max_attempts}
        claimed = await self.store.claim(self.owner, limit, recover=recover, **options)  # type: ignore[arg-type]
        if not claimed and not recover:
            recover = True
            claimed = await self.store.claim(self.owner, limit, recover=True, **options)  # type: ignore[arg-type]
        if recover:
            self._recover_at = now + self.poll_interval
        return claimed

    async def _idle_timeout(self) -> float:
        try:
            due = await self.store.next_due_at()
        except OutboxUnavailableError:
            return self.poll_interval
        if due is None:
            return self.poll_interval
        return max(0.0, min(self.poll_interval, (due - utcnow()).total_seconds()))

    # Both waits clear the wake-up only after waking: a wake() that arrived while we were busy is never lost.
    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout=seconds)
        self._wakeup.clear()

    async def _wait_for_progress(self) -> None:
        waker = asyncio.create_task(self._wakeup.wait())
        try:
            await asyncio.wait(
                [*self._in_flight, waker], timeout=self.poll_interval, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waker.cancel()
            self._wakeup.clear()

    async def _drain(self) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(list(self._in_flight), timeout=self.grace)
        unfinished = [self._in_flight[t] for t in pending if t in self._in_flight]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if unfinished:
            try:
                released = await self.store.release(self.owner, unfinished)
                logger.warning(
                    "worker.released",
                    extra={"count": released, "detail": "sends unfinished at shutdown go back to the queue"},
                )
            except OutboxUnavailableError:
                logger.error(
                    "worker.release_failed", extra={"count": len(unfinished), "detail": "their leases will expire"}
                )

    async def _deliver(self, message: ClaimedMessage) -> None:
        task = asyncio.current_task()
        try:
            try:
                outcome = await self._attempt(message)
            finally:
                self._sending -= 1
                self._wakeup.set()
            latency = (utcnow() - message.created_at).total_seconds() if outcome.status == "sent" else None
            record_outcome(outcome.status, latency)
            try:
                await self.store.settle(self.owner, outcome)
            except Exception as exc:
                # The lease runs out and the message is tried again: at-least-once, never lost.
                logger.error(
                    "delivery.unrecorded",
                    extra={"message_id": message.id, "status": outcome.status, "error": str(exc)},
                    exc_info=not isinstance(exc, OutboxUnavailableError),
                )
        finally:
            if task is not None:
                self._in_flight.pop(task, None)
            self._wakeup.set()

    async def _attempt(self, message: ClaimedMessage) -> Settled:
        started = utcnow()
        if self.breaker.is_open and self.breaker.cause is not None:
            return self._paused_outcome(message, self.breaker.cause)
        if message.expires_at is not None and started >= message.expires_at:
            logger.info("delivery.expired", extra={"message_id": message.id})
            return Settled(
                message.id, "expired", {"reason": "expires_at passed before delivery"}, error="expired before delivery"
            )
        send_started = time.perf_counter()
        try:
            result = await self.transport.send(message.envelope)
        except DeliveryError as exc:
            return self._after_failure(message, exc, started)
        except Exception as exc:  # a bug in a transport must not kill the worker: retry, and log loudly
            logger.exception("delivery.crashed", extra={"message_id": message.id})
            error = DeliveryError(f"unexpected {type(exc).__name__}: {exc}", transient=True)
            return self._after_failure(message, error, started)
        finally:
            observe_send(time.perf_counter() - send_started)
        self.sent += 1
        detail: dict[str, object] = {
            "transport": result.transport,
            "reply": result.reply,
            "accepted": len(result.accepted),
        }
        if result.refused:
            detail["refused"] = [
                {"recipient": r.recipient, "code": r.smtp_code, "message": r.message} for r in result.refused
            ]
        if result.provider_message_id:
            detail["provider_message_id"] = result.provider_message_id
        logger.info("delivery.sent", extra={"message_id": message.id, "attempt": message.attempts})
        return Settled(
            message.id,
            "sent",
            detail,
            attempt_started_at=started,
            transport=result.transport or self.transport.name,
            provider_message_id=result.provider_message_id,
        )

    def _paused_outcome(self, message: ClaimedMessage, error: DeliveryError) -> Settled:
        """Deferred without counting the attempt: the setup is broken, not the message. It is due again at once,
        and is claimed as soon as the transport works again (max age and expires_at still apply)."""
        now = utcnow()
        if now - message.created_at > self.policy.max_age:
            reason = "the transport stayed unavailable past the maximum age"
            return Settled(
                message.id,
                "failed",
                {"error": str(error), "reason": reason},
                error=f"{error}; {reason}",
                smtp_code=error.smtp_code,
            )
        detail = {"error": str(error), "code": error.smtp_code, "class": Outcome.UNAVAILABLE.value, "hint": error.hint}
        return Settled(
            message.id,
            "deferred",
            detail,
            next_attempt_at=now,
            error=str(error),
            smtp_code=error.smtp_code,
            uncounted=True,
        )

    def _after_failure(self, message: ClaimedMessage, error: DeliveryError, started: datetime) -> Settled:
        outcome = classify(error)
        if outcome is Outcome.UNAVAILABLE:
            self.breaker.trip(error, asyncio.get_running_loop().time())
            return self._paused_outcome(message, error)
        detail: dict[str, object] = {"error": str(error), "code": error.smtp_code, "class": outcome.value}
        if isinstance(error, RecipientsRefusedError):
            detail["refused"] = [
                {"recipient": r.recipient, "code": r.smtp_code, "message": r.message} for r in error.refusals
            ]
        if outcome is Outcome.PERMANENT:
            logger.warning(
                "delivery.failed",
                extra={"message_id": message.id, "attempt": message.attempts, "code": error.smtp_code},
            )
            return Settled(
                message.id, "failed", detail, error=str(error), smtp_code=error.smtp_code, attempt_started_at=started
            )
        now = utcnow()
        decision = self.policy.decide(
            attempt=message.attempts,
            created_at=message.created_at,
            now=now,
            rand=self._random.random(),
            expires_at=message.expires_at,
            hint=error.retry_after if error.retry_after is not None else retry_hint(str(error)),
        )
        if decision.status != "deferred":
            detail["reason"] = decision.reason
            logger.warning(
                f"delivery.{decision.status}",
                extra={
                    "message_id": message.id,
                    "attempt": message.attempts,
                    "code": error.smtp_code,
                    "reason": decision.reason,
                },
            )
            return Settled(
                message.id,
                decision.status,
                detail,
                error=f"{error}; {decision.reason}",
                smtp_code=error.smtp_code,
                attempt_started_at=started,
            )
        assert decision.retry_at is not None
        detail["retry_at"] = decision.retry_at.isoformat()
        logger.info(
            "delivery.deferred",
            extra={
                "message_id": message.id,
                "attempt": message.attempts,
                "code": error.smtp_code,
                "retry_at": decision.retry_at.isoformat(),
            },
        )
        return Settled(
            message.id,
            "deferred",
            detail,
            next_attempt_at=decision.retry_at,
            error=str(error),
            smtp_code=error.smtp_code,
            attempt_started_at=started,
        )
