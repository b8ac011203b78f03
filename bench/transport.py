"""Transport benchmark: mailsc's pooled ``SmtpTransport`` against a new connection per message, plain and STARTTLS.

The new-connection client is what fastapi-mail and the usual snippet do: ``aiosmtplib.send()`` for each message,
which connects, says EHLO, for TLS builds an ``SSLContext`` with the system trust store and upgrades, sends, and
QUITs. Both clients run ``CONCURRENCY`` senders at once (the pool has as many connections) on one envelope rendered
up front, so the numbers compare transports, not rendering. Plain SMTP runs against Postfix's smtp-sink (the
headline) and aiosmtpd; STARTTLS only against aiosmtpd, because smtp-sink has no TLS. Both servers run in their own
processes. Trials of all cases are interleaved so a noisy neighbour hurts every case alike; each row is the median.
"""

from __future__ import annotations

import asyncio
import resource
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import aiosmtplib
import trustme

from bench import (
    Section,
    Settings,
    machine_line,
    machine_user_seconds,
    markdown_table,
    package_version,
    wait_until_quiet,
)
from bench.sink import HOST, Postfix, Server, aiosmtpd_server, install_postfix_tools, smtp_sink
from mailsc import ConnectionConfig, Envelope, Message, SmtpTransport, render
from mailsc.message import Address

CONCURRENCY = 4
MESSAGE_SIZE = 2048
SENDER = "bench@example.org"
RECIPIENT = "sink@example.org"
SMTP_SINK, AIOSMTPD = "smtp-sink", "aiosmtpd"

Client = Literal["pool", "new connection", "smtp-source"]
Security = Literal["none", "starttls"]

# Targets from the issue: pool / new connection (plain, TLS) and the pool's rate to smtp-sink.
PLAIN_RATIO_TARGET = 4.0
TLS_RATIO_TARGET = 10.0
RATE_TARGET = 3000.0

TRIALS = 5  # per case in a full run; the VM's speed varies by +-25 % from one second to the next

# A trial during which other programs used this much CPU (cores, user time) is repeated, up to ATTEMPTS in all.
DISTURBED = 0.25
ATTEMPTS = 3


@dataclass(frozen=True)
class Case:
    """One row of the table: which server, whether the client upgrades with STARTTLS, which client, how many."""

    server: str
    security: Security
    client: Client
    messages: int


@dataclass(frozen=True)
class Trial:
    """One timed run of a case. CPU in seconds; ``other_cpu`` is user CPU of programs other than client and server."""

    messages: int
    seconds: float
    client_cpu: float
    server_cpu: float
    other_cpu: float

    @property
    def rate(self) -> float:
        return self.messages / self.seconds

    @property
    def other_cores(self) -> float:
        return self.other_cpu / self.seconds


@dataclass(frozen=True)
class Snapshot:
    """Wall clock and CPU seconds used so far by the client, the server and the whole machine."""

    wall: float
    client_user: float
    client_total: float
    server_user: float
    server_total: float
    machine_user: float

    @classmethod
    def take(cls, server: Server, client: int = resource.RUSAGE_SELF) -> Snapshot:
        """``client`` is ``RUSAGE_SELF`` (all threads: aiosmtplib builds TLS contexts in a worker thread) or
        ``RUSAGE_CHILDREN`` for a client run as a subprocess."""
        usage = resource.getrusage(client)
        server_user, server_system = server.cpu_times()
        return cls(
            time.perf_counter(),
            usage.ru_utime,
            usage.ru_utime + usage.ru_stime,
            server_user,
            server_user + server_system,
            machine_user_seconds(),
        )

    def trial_until(self, end: Snapshot, messages: int) -> Trial:
        own_user = (end.client_user - self.client_user) + (end.server_user - self.server_user)
        return Trial(
            messages,
            end.wall - self.wall,
            end.client_total - self.client_total,
            end.server_total - self.server_total,
            max(end.machine_user - self.machine_user - own_user, 0.0),
        )


@dataclass(frozen=True)
class Row:
    case: Case
    trials: tuple[Trial, ...]

    @property
    def median(self) -> Trial:
        """The trial with the median rate (its own seconds and CPU, so the row stays one consistent run)."""
        ordered = sorted(self.trials, key=lambda t: t.rate)
        return ordered[(len(ordered) - 1) // 2]


@dataclass(frozen=True)
class Tls:
    """Test CA and server certificate (trustme), written to files for the server process and the clients."""

    ca_file: Path
    cert_chain: Path

    @classmethod
    def create(cls, directory: Path) -> Tls:
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        tls = cls(directory / "ca.pem", directory / "server.pem")
        ca.cert_pem.write_to_path(str(tls.ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(tls.cert_chain))
        return tls


def cases(quick: bool) -> list[Case]:
    """The rows, in table order. Slow baselines send fewer messages; every row reports a rate."""
    many, some, few = (500, 200, 100) if quick else (5000, 2000, 500)
    return [
        Case(SMTP_SINK, "none", "pool", many),
        Case(SMTP_SINK, "none", "new connection", many),
        Case(SMTP_SINK, "none", "smtp-source", many),
        Case(AIOSMTPD, "none", "pool", many),
        Case(AIOSMTPD, "none", "new connection", some),
        Case(AIOSMTPD, "starttls", "pool", many),
        Case(AIOSMTPD, "starttls", "new connection", few),
    ]


def build_envelope(size: int = MESSAGE_SIZE) -> Envelope:
    """A plain-text message of about ``size`` rendered bytes (Message-ID and line breaks make it vary a little)."""

    def with_body(length: int) -> Envelope:
        line = "The quick brown fox jumps over the lazy dog; pack my box with five dozen jugs.\n"
        body = line * (length // len(line) + 1)
        message = Message(to=[RECIPIENT], subject="mailsc transport benchmark", text=body[: max(length, 1)])
        return render(message, default_sender=Address.parse(SENDER))

    first = with_body(size)
    return with_body(size - (len(first.data) - size))  # minus the headers' share (give or take a CRLF)


async def _fan_out(messages: int, send_one: Callable[[], Awaitable[object]]) -> None:
    """``CONCURRENCY`` senders taking messages from one shared count until all are sent; any failure aborts."""
    remaining = iter(range(messages))

    async def sender() -> None:
        for _ in remaining:
            await send_one()

    await asyncio.gather(*(sender() for _ in range(CONCURRENCY)))


async def _pool(server: Server, security: Security, tls: Tls, envelope: Envelope, messages: int) -> None:
    config = ConnectionConfig(
        host=server.host,
        port=server.port,
        security=security,
        ca_file=tls.ca_file if security == "starttls" else None,
        pool_size=CONCURRENCY,
    )
    transport = SmtpTransport(config, name="bench")
    try:
        await _fan_out(messages, lambda: transport.send(envelope))
    finally:
        await transport.aclose()


async def _new_connections(server: Server, security: Security, tls: Tls, envelope: Envelope, messages: int) -> None:
    starttls = security == "starttls"

    async def send_one() -> object:
        # cert_bundle, not a shared tls_context: like the usual snippet, each call builds its own SSLContext.
        return await aiosmtplib.send(
            envelope.data,
            sender=envelope.sender,
            recipients=list(envelope.recipients),
            hostname=server.host,
            port=server.port,
            start_tls=starttls,
            cert_bundle=str(tls.ca_file) if starttls else None,
        )

    await _fan_out(messages, send_one)


async def _timed(server: Server, messages: int, work: Awaitable[None]) -> Trial:
    start = Snapshot.take(server)
    await work
    return start.trial_until(Snapshot.take(server), messages)


def _smtp_source(server: Server, postfix: Postfix, messages: int) -> Trial:
    """Postfix's own C client over persistent connections (``-d``): how fast the sink can go, for reference."""
    command = [str(postfix.smtp_source), "-d", "-s", str(CONCURRENCY), "-m", str(messages), "-l", str(MESSAGE_SIZE)]
    command += ["-f", SENDER, "-t", RECIPIENT, f"{server.host}:{server.port}"]
    start = Snapshot.take(server, resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return start.trial_until(Snapshot.take(server, resource.RUSAGE_CHILDREN), messages)


@dataclass(frozen=True)
class Bench:
    """Everything a trial needs: the running servers, certificates, the envelope and the event loop."""

    servers: dict[str, Server]
    postfix: Postfix
    tls: Tls
    envelope: Envelope
    settings: Settings

    def trial(self, case: Case, messages: int | None = None) -> Trial:
        count = case.messages if messages is None else messages
        server = self.servers[case.server]
        if case.client == "smtp-source":
            return _smtp_source(server, self.postfix, count)
        client = _pool if case.client == "pool" else _new_connections
        work = client(server, case.security, self.tls, self.envelope, count)
        # A fresh loop per trial, as a fresh process would have: nothing carries over from the previous case.
        with asyncio.Runner(loop_factory=self.settings.loop_factory) as runner:
            return runner.run(_timed(server, count, work))


def measure(bench: Bench, planned: list[Case], trials: int) -> list[Row]:
    """Warm each case up briefly, then run ``trials`` rounds over all cases (interleaved), printing progress."""
    for case in planned:
        bench.trial(case, messages=min(case.messages, 20))
    results: dict[Case, list[Trial]] = {case: [] for case in planned}
    for round_number in range(1, trials + 1):
        for case in planned:
            trial = undisturbed_trial(bench, case)
            results[case].append(trial)
            print(
                f"  trial {round_number}/{trials}: {_label(case)}: {trial.messages} in {trial.seconds:.2f} s "
                f"= {trial.rate:,.0f} msg/s (other programs: {trial.other_cores:.2f} cores)",
                flush=True,
            )
    return [Row(case, tuple(results[case])) for case in planned]


def undisturbed_trial(bench: Bench, case: Case) -> Trial:
    """A trial that other programs did not disturb: started on a quiet machine, repeated if they woke up meanwhile.

    After ``ATTEMPTS`` disturbed attempts the least disturbed one is kept (its load shows in the table).
    """
    attempts: list[Trial] = []
    for _ in range(ATTEMPTS):
        load = wait_until_quiet(bench.settings.quiet_timeout)
        if load >= DISTURBED:
            print(f"  (other programs keep {load:.2f} cores busy; measuring anyway)", flush=True)
        attempts.append(bench.trial(case))
        if attempts[-1].other_cores < DISTURBED or bench.settings.quick:
            break
        print(f"  (other programs used {attempts[-1].other_cores:.2f} cores during the trial: again)", flush=True)
    return min(attempts, key=lambda t: t.other_cores)


def _label(case: Case) -> str:
    return f"{case.server}, {'STARTTLS' if case.security == 'starttls' else 'plain'}, {case.client}"


def _rate(rows: list[Row], server: str, security: Security, client: Client) -> float | None:
    """The median rate of one row, found by what it measured."""
    for row in rows:
        if (row.case.server, row.case.security, row.case.client) == (server, security, client):
            return row.median.rate
    return None


def _ratio(rows: list[Row], server: str, security: Security) -> float | None:
    pool, new = _rate(rows, server, security, "pool"), _rate(rows, server, security, "new connection")
    return pool / new if pool is not None and new is not None else None


def _table(rows: list[Row], servers: dict[str, Server]) -> str:
    header = [
        "server",
        "security",
        "client",
        "messages",
        "seconds",
        "msg/s",
        "msg/s, all trials",
        "client CPU s / 1k msgs",
        "server CPU s / 1k msgs",
        "other programs, cores",
        "pool / new connection",
    ]
    body = []
    for row in rows:
        case, trial = row.case, row.median
        ratio = _ratio(rows, case.server, case.security) if case.client == "pool" else None
        body.append(
            [
                servers[case.server].name,
                "STARTTLS" if case.security == "starttls" else "plain",
                {"pool": "mailsc pool", "new connection": "new connection", "smtp-source": "smtp-source -d (C)"}[
                    case.client
                ],
                f"{trial.messages:,}",
                f"{trial.seconds:.2f}",
                f"**{trial.rate:,.0f}**",
                " / ".join(f"{t.rate:,.0f}" for t in row.trials),
                f"{trial.client_cpu / trial.messages * 1000:.3f}",
                f"{trial.server_cpu / trial.messages * 1000:.3f}",
                f"{trial.other_cores:.2f}",
                f"**{ratio:.1f}x**" if ratio is not None else "",
            ]
        )
    return markdown_table(header, body, [False, False, False, *([True] * 8)])


def _targets(rows: list[Row]) -> list[str]:
    """One line per target of the issue: the measured value and whether it was met."""
    checks = [
        ("pool / new connection, plain (smtp-sink)", _ratio(rows, SMTP_SINK, "none"), PLAIN_RATIO_TARGET, "x"),
        ("pool / new connection, STARTTLS (aiosmtpd)", _ratio(rows, AIOSMTPD, "starttls"), TLS_RATIO_TARGET, "x"),
        ("pool to smtp-sink", _rate(rows, SMTP_SINK, "none", "pool"), RATE_TARGET, " msg/s"),
    ]
    lines = []
    for label, value, target, unit in checks:
        goal = f"target >= {target:,.0f}{unit}"
        if value is None:
            lines.append(f"- {label}: not measured ({goal})")
        else:
            verdict = "met" if value >= target else "missed"
            shown = f"{value:.1f}x" if unit == "x" else f"{value:,.0f} msg/s"
            lines.append(f"- {label}: {shown} ({goal}): **{verdict}**")
    return lines


REPRODUCE = """How to reproduce (as root the first time: smtp-sink gets installed):

- `make bench`: this table (about 10 minutes: five trials per row, each waiting for a quiet machine);
  writes this section.
- `BENCH_QUICK=1 make bench`: fewer messages, one trial, under 2 minutes; prints the table, writes nothing.
- `BENCH_LOOP=asyncio make bench`: the default asyncio loop instead of uvloop (used when installed);
  `BENCH_QUIET_TIMEOUT=0` skips waiting for other programs to go quiet."""


def _retry_policy(settings: Settings) -> str:
    wait = f"waits up to {settings.quiet_timeout:g} s for a quiet machine"
    if settings.quick:
        return f"Each trial {wait} (quick run: never repeated)."
    repeat = f"is repeated (up to {ATTEMPTS} attempts) if other programs used {DISTURBED:g} cores or more while it ran"
    return f"Each trial {wait} and {repeat}."


def report(rows: list[Row], bench: Bench, trials: int) -> str:
    """The generated Markdown: what ran where, how it was measured, the table and the targets."""
    servers, size = bench.servers, len(bench.envelope.data)
    versions = f"mailsc {package_version('mailsc')}, aiosmtplib {package_version('aiosmtplib')}."
    setup = [
        f"- Message: one {size:,}-byte text message to one recipient, rendered once up front by `mailsc.render`; "
        f"{CONCURRENCY} senders at once in every row.",
        f"- **mailsc pool**: `SmtpTransport(ConnectionConfig(..., pool_size={CONCURRENCY}))`, "
        '`await transport.send(envelope)`; plain rows use `security="none"`, STARTTLS rows `security="starttls"` '
        "with `ca_file=` the test CA.",
        "- **new connection**: `aiosmtplib.send(data, sender=..., recipients=..., hostname=..., port=...)` per "
        "message, what fastapi-mail and the usual snippet do; STARTTLS rows pass `start_tls=True, "
        "cert_bundle=<CA>`, so each connection builds its own `SSLContext` (system trust store + CA), as "
        "`aiosmtplib.send` does by default.",
        "- **smtp-source -d (C)**: Postfix's load generator on persistent connections, for reference: how fast the "
        "sink itself goes.",
        f"- Servers, each in its own process on 127.0.0.1: **{servers[SMTP_SINK].name}** (plain only: smtp-sink has "
        f"no TLS) and **{servers[AIOSMTPD].name}** (Python; offers STARTTLS with a `trustme` certificate, verified "
        "by the clients). Only smtp-sink is started, never the Postfix mail system.",
        "- Client CPU: user + system time of the benchmark process (all threads) or of smtp-source; server CPU: of "
        "the server process. Other programs: user CPU of everything else on the machine during the trial, in cores. "
        + _retry_policy(bench.settings),
    ]
    how = f"median of {trials} trials, all cases interleaved (every trial listed)" if trials > 1 else "one trial"
    return "\n\n".join(
        [
            f"{machine_line(bench.settings)} {versions}",
            "\n".join(setup),
            f"**msg/s** = messages / wall-clock seconds, {how}.",
            _table(rows, servers),
            "Targets:\n\n" + "\n".join(_targets(rows)),
            REPRODUCE,
        ]
    )


def _start_servers(stack: ExitStack, postfix: Postfix, tls: Tls, settings: Settings) -> dict[str, Server]:
    loop = "uvloop" if settings.loop_name.startswith("uvloop") else "asyncio"
    return {
        SMTP_SINK: stack.enter_context(smtp_sink(postfix)),
        AIOSMTPD: stack.enter_context(aiosmtpd_server(tls.cert_chain, loop, package_version("aiosmtpd"))),
    }


def run(settings: Settings) -> Section:
    """Start the servers, measure every case, stop the servers; returns the ``## Transport`` section."""
    trials = 1 if settings.quick else TRIALS
    planned = cases(settings.quick)
    postfix = install_postfix_tools()
    with tempfile.TemporaryDirectory(prefix="mailsc-bench-") as tmp, ExitStack() as stack:
        tls = Tls.create(Path(tmp))
        servers = _start_servers(stack, postfix, tls, settings)
        bench = Bench(servers, postfix, tls, build_envelope(), settings)
        print(f"transport: {len(planned)} cases x {trials} trials, {settings.loop_name}", flush=True)
        rows = measure(bench, planned, trials)
        return Section("Transport", report(rows, bench, trials))
