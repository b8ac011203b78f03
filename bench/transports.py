"""Provider transports benchmark: messages/s through each HTTP provider transport to a local HTTPS server.

The server (its own process, plain asyncio, HTTP/1.1 keep-alive, a ``trustme`` certificate) answers every request at
once with a reply each provider's transport accepts, so the numbers measure the client side: building the request
(SigV4 for SES, JSON from the stored MIME for SendGrid, Postmark and Resend, multipart for Mailgun), TLS and HTTP.
**pool**: one transport (one ``httpx.AsyncClient``, its keep-alive pool of ``CONCURRENCY`` connections), reused.
**new connection**: a new transport for every message, as the providers' SDK snippets do (a client per call: a new
``SSLContext``, TCP and TLS handshakes, one request, close). Like ``httpx.AsyncClient()`` or ``requests`` by default,
its ``SSLContext`` loads certifi's CA bundle (here with the local CA appended); the pool builds its one context from
the same bundle. ``CONCURRENCY`` senders at once in both cases, on one message rendered up front. Trials are
interleaved; each row is the median.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import certifi
import trustme
from pydantic import SecretStr

from bench import Section, Settings, machine_line, markdown_table, package_version, wait_until_quiet
from mailsc import Message, render
from mailsc.config.transports import ProviderConfig
from mailsc.envelope import Envelope
from mailsc.message import Address
from mailsc.transports.providers import provider_transport

KINDS = ("ses", "sendgrid", "mailgun", "postmark", "resend")
CONCURRENCY = 8
RATE_TARGET = 1000.0
RATIO_TARGET = 3.0
_REPLY_BODY = json.dumps({"id": "bench-1", "MessageId": "bench-1", "MessageID": "bench-1", "ErrorCode": 0}).encode()
_REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Message-Id: bench-1\r\n"
    + f"Content-Length: {len(_REPLY_BODY)}\r\n\r\n".encode()
    + _REPLY_BODY
)


# --- the server (run as `python -m bench.transports CERT KEY`) ------------------------------------------------------


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            writer.write(_REPLY)
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _serve(cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(_answer, "127.0.0.1", 0, ssl=context, backlog=1024)
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


# --- the client ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    messages: int
    seconds: float
    cpu: float  # the client's user + system CPU seconds


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _config(kind: str, endpoint: str, ca_file: Path) -> ProviderConfig:
    base = ProviderConfig(
        kind=kind, endpoint=endpoint, ca_file=ca_file, pool_size=CONCURRENCY, timeout=30.0, max_size=10 * 2**20
    )
    if kind == "ses":
        return replace(
            base, access_key_id="AKIDEXAMPLE", secret_access_key=SecretStr("bench-secret"), region="eu-west-1"
        )
    return replace(base, api_key=SecretStr("bench-key"), domain="mg.example.com" if kind == "mailgun" else None)


async def _run(config: ProviderConfig, envelope: Envelope, messages: int, pooled: bool) -> Trial:
    shared = provider_transport(config) if pooled else None
    remaining = messages

    async def sender() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            transport = shared or provider_transport(config)
            try:
                result = await transport.send(envelope)
                assert result.provider_message_id == "bench-1"
            finally:
                if shared is None:
                    await transport.aclose()

    cpu, started = _cpu(), time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))
    seconds, used = time.perf_counter() - started, _cpu() - cpu
    if shared is not None:
        await shared.aclose()
    return Trial(messages, seconds, used)


def _envelope() -> Envelope:
    text = ("Your order has shipped and will arrive on Thursday. " * 36)[:1700]
    message = Message(to=["ada@example.org"], subject="Your order has shipped", text=text, html=f"<p>{text}</p>")
    return render(message, default_sender=Address.parse("App <app@example.com>"))


def run(settings: Settings) -> Section:
    trials = 1 if settings.quick else 3
    pooled_n, fresh_n = (300, 60) if settings.quick else (3000, 300)
    envelope = _envelope()
    with tempfile.TemporaryDirectory() as folder:
        ca = trustme.CA()
        ca_file, cert, key = Path(folder, "ca.pem"), Path(folder, "cert.pem"), Path(folder, "key.pem")
        ca_file.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + ca.cert_pem.bytes())
        issued = ca.issue_cert("127.0.0.1")
        issued.private_key_pem.write_to_path(str(key))
        issued.cert_chain_pems[0].write_to_path(str(cert))
        server = subprocess.Popen(
            [sys.executable, "-m", "bench.transports", str(cert), str(key)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        try:
            assert server.stdout is not None
            endpoint = f"https://127.0.0.1:{server.stdout.readline().strip()}"
            results: dict[tuple[str, bool], list[Trial]] = {}
            for _ in range(trials):
                for kind in KINDS:
                    for pooled in (True, False):
                        wait_until_quiet(settings.quiet_timeout)
                        loop = settings.loop_factory()
                        try:
                            config = _config(kind, endpoint, ca_file)
                            trial = loop.run_until_complete(
                                _run(config, envelope, pooled_n if pooled else fresh_n, pooled)
                            )
                        finally:
                            loop.close()
                        results.setdefault((kind, pooled), []).append(trial)
        finally:
            server.terminate()
            server.wait()
    return _section(settings, results, len(envelope.data))


def _section(settings: Settings, results: dict[tuple[str, bool], list[Trial]], size: int) -> Section:
    rows = []
    verdicts = []
    for kind in KINDS:
        rate = {}
        for pooled in (True, False):
            trials = results[(kind, pooled)]
            rate[pooled] = statistics.median(t.messages / t.seconds for t in trials)
            cpu = statistics.median(t.cpu / t.messages * 1000 for t in trials)
            client = "pool" if pooled else "new connection per message"
            ratio = f"{rate[True] / rate[False]:.1f}x" if not pooled else ""
            rows.append([kind, client, f"**{rate[pooled]:,.0f}**", f"{cpu:.2f}", ratio, f"{trials[0].messages:,}"])
        met_rate = "met" if rate[True] >= RATE_TARGET else "missed"
        met_ratio = "met" if rate[True] / rate[False] >= RATIO_TARGET else "missed"
        verdicts.append(
            f"- {kind}: pool {rate[True]:,.0f} messages/s (target >= {RATE_TARGET:,.0f}): **{met_rate}**; "
            f"{rate[True] / rate[False]:.1f}x a new connection per message (target >= {RATIO_TARGET:g}x): "
            f"**{met_ratio}**"
        )
    table = markdown_table(
        ["transport", "client", "messages/s", "client CPU s / 1k msgs", "pool ÷ new", "messages per trial"],
        rows,
        [False, False, True, True, True, True],
    )
    versions = f"httpx {package_version('httpx')}, httpx-auth {package_version('httpx-auth')}"
    text = (
        f"{machine_line(settings)} {versions}; {CONCURRENCY} senders at once; a {size:,}-byte message; "
        "HTTPS (TLS; certifi's bundle plus a local CA) to a local asyncio server (its own process) that answers "
        f"at once.\n\n{table}\n\n"
        "Targets (issue #11, this 2-core machine):\n\n" + "\n".join(verdicts)
    )
    return Section("Provider transports", text)


if __name__ == "__main__":
    if len(sys.argv) == 3:
        asyncio.run(_serve(sys.argv[1], sys.argv[2]))
    else:
        raise SystemExit(f"usage: python -m bench.transports CERT KEY (the benchmark's server); {os.getpid()}")
