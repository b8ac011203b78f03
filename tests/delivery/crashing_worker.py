"""A worker process whose transport kills the whole process on a poison message (``subject == "poison"``).

Used by the process tests to show that a message which crashes its worker every time ends ``failed`` after the
attempt limit instead of blocking the queue. Usage: ``python crashing_worker.py DATABASE_URL SMTP_PORT``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

from mailsc import ConnectionConfig
from mailsc.delivery import RetryPolicy, Worker
from mailsc.envelope import Envelope
from mailsc.outbox import OutboxStore
from mailsc.transports import SendResult, SmtpTransport


class CrashingTransport(SmtpTransport):
    async def send(self, envelope: Envelope) -> SendResult:
        if envelope.subject == "poison":
            os._exit(17)  # as a segfault or the OOM killer would: no cleanup, lease left behind
        return await super().send(envelope)


async def main(url: str, port: int) -> None:
    store = await OutboxStore.open(url)
    transport = CrashingTransport(ConnectionConfig(host="127.0.0.1", port=port, security="none"))
    worker = Worker(
        store,
        transport,
        RetryPolicy(base=0.05, cap=0.1),
        lease=timedelta(milliseconds=300),
        max_attempts=3,
        concurrency=4,
    )
    await worker.run(burst=True)
    await transport.aclose()
    await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
