"""The raw client ceiling: aiosmtplib over a pool of persistent connections, nothing else, in its own process.

``python -m bench.raw_client --port P --messages N`` opens ``--connections`` ``aiosmtplib.SMTP`` connections
(``--ca-file``: each upgraded with STARTTLS, one ``SSLContext`` for all), and sends N pre-built ~2 KB messages
with ``sendmail`` over them, one at a time per connection. No outbox, no HTTP, no rendering: what Python's SMTP
client can do on this machine, the ceiling mailsc's worker works under. Prints one JSON line: wall-clock seconds,
per-message send latency quantiles, its own CPU and peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import ssl
import time

import aiosmtplib

from bench import event_loop

HOST = "127.0.0.1"
SENDER = "app@example.com"
LINE = "Your order has shipped and is on its way; the tracking number follows in a separate message.\r\n"


def message(sequence: int, size: int = 2048) -> bytes:
    """A plain-text message of about ``size`` bytes, CRLF line endings, a unique Message-ID."""
    head = (
        f"From: {SENDER}\r\nTo: user{sequence}@example.org\r\nSubject: Order {sequence} shipped\r\n"
        f"Message-ID: <{sequence}.raw@bench.localhost>\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
    )
    body = (LINE * (size // len(LINE) + 1))[: max(size - len(head), 0)]
    return (head + body.rpartition("\r\n")[0] + "\r\n").encode()


async def _send_all(port: int, messages: int, connections: int, ca_file: str | None) -> dict[str, float]:
    context = ssl.create_default_context(cafile=ca_file) if ca_file else None
    clients = [
        aiosmtplib.SMTP(hostname=HOST, port=port, start_tls=context is not None, tls_context=context)
        for _ in range(connections)
    ]
    await asyncio.gather(*(client.connect() for client in clients))
    payloads = [message(n) for n in range(messages)]
    remaining = iter(range(messages))
    latencies: list[float] = []

    async def sender(client: aiosmtplib.SMTP) -> None:
        for n in remaining:
            started = time.perf_counter()
            await client.sendmail(SENDER, [f"user{n}@example.org"], payloads[n])
            latencies.append(time.perf_counter() - started)

    usage, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.gather(*(sender(client) for client in clients))
    seconds, end = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF)
    await asyncio.gather(*(client.quit() for client in clients))
    latencies.sort()
    return {
        "seconds": seconds,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "cpu": (end.ru_utime + end.ru_stime) - (usage.ru_utime + usage.ru_stime),
        "peak_rss_mb": _peak_rss_mb(),
    }


def _peak_rss_mb() -> float:
    """VmHWM of this process (``ru_maxrss`` would still hold the forking parent's high-water mark after exec)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.raw_client", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--messages", type=int, required=True)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--ca-file", help="upgrade every connection with STARTTLS, trusting this CA")
    parser.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = parser.parse_args(argv)
    with asyncio.Runner(loop_factory=event_loop(args.loop)[1]) as runner:
        result = runner.run(_send_all(args.port, args.messages, args.connections, args.ca_file))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
