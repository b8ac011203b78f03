"""Local SMTP servers for the benchmarks, each in its own process so its CPU never shares the client's event loop.

``smtp_sink()`` runs Postfix's ``smtp-sink`` (C, plain SMTP only). ``../shared/tools/install-smtp-sink`` installs
the postfix package without configuring or starting the mail system; only the ``smtp-sink`` program is started
here, on a free loopback port, and it is ended by its PID. ``aiosmtpd_server()`` runs aiosmtpd offering STARTTLS
with a test certificate, because smtp-sink has no TLS; ``python -m bench.sink aiosmtpd ...`` is that process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import CLOCK_TICKS, REPO, event_loop

HOST = "127.0.0.1"
INSTALLER = REPO.parent / "shared" / "tools" / "install-smtp-sink"
BACKLOG = 1000
START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Postfix:
    """Paths of Postfix's two benchmark programs and the package version they come from."""

    smtp_sink: Path
    smtp_source: Path
    version: str


@dataclass(frozen=True)
class Server:
    """A running SMTP server process on ``host:port``; ``name`` says which server, for the report."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    host: str = HOST

    def cpu_times(self) -> tuple[float, float]:
        """User and system CPU seconds the server process has used so far (fields 14, 15 of /proc/PID/stat)."""
        stat = Path(f"/proc/{self.process.pid}/stat").read_text()
        fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces; fields[0] is #3
        return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def install_postfix_tools() -> Postfix:
    """Install postfix's smtp-sink/smtp-source if missing (needs root the first time); never starts Postfix."""
    if not INSTALLER.exists():
        raise SystemExit(
            f"{INSTALLER} is missing: it installs smtp-sink (run the bench from a checkout beside shared/)"
        )
    result = subprocess.run([str(INSTALLER)], check=True, capture_output=True, text=True)
    paths = result.stdout.split()
    if len(paths) < 2:
        raise SystemExit(f"{INSTALLER} printed no smtp-sink/smtp-source paths: {result.stderr.strip()[-500:]}")
    query = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", "postfix"], capture_output=True, text=True)
    return Postfix(Path(paths[0]), Path(paths[1]), query.stdout.strip() or "unknown version")


def free_port() -> int:
    """A TCP port free on the loopback interface right now (the server binds it a moment later)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def stop(process: subprocess.Popen[bytes]) -> None:
    """End one server process by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the SMTP server exited with status {process.returncode} before listening")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the SMTP server did not listen on {HOST}:{port} within {START_TIMEOUT:g} s")


@contextmanager
def smtp_sink(postfix: Postfix) -> Iterator[Server]:
    """Postfix's smtp-sink on a free loopback port, accepting and discarding every message; stopped on exit."""
    port = free_port()
    command = [str(postfix.smtp_sink)]
    if os.geteuid() == 0:
        command += ["-u", "nobody"]  # smtp-sink refuses to keep root privileges
    command += [f"{HOST}:{port}", str(BACKLOG)]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        _wait_listening(process, port)
        yield Server(f"Postfix smtp-sink {postfix.version}", port, process)
    finally:
        stop(process)


@contextmanager
def aiosmtpd_server(cert_chain: Path, loop: str, version: str) -> Iterator[Server]:
    """aiosmtpd in a child process, offering STARTTLS with ``cert_chain`` (key + certificate PEM); stopped on exit."""
    command = [sys.executable, "-m", "bench.sink", "aiosmtpd", "--cert-chain", str(cert_chain), "--loop", loop]
    process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    try:
        port = _read_port(process)
        yield Server(f"aiosmtpd {version}", port, process)
    finally:
        stop(process)
        if process.stdout is not None:
            process.stdout.close()


def _read_port(process: subprocess.Popen[bytes]) -> int:
    """The port the child prints once it listens (it binds port 0, so no other program can race for the port)."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], START_TIMEOUT)
    line = process.stdout.readline() if ready else b""
    if not line.strip().isdigit():
        raise RuntimeError(f"the aiosmtpd process did not start (exit status {process.poll()}, said {line!r})")
    return int(line)


class _Discard:
    """aiosmtpd handler: accept every message and keep nothing, like smtp-sink."""

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802 (aiosmtpd's name)
        return "250 OK discarded"


async def _serve_aiosmtpd(context: ssl.SSLContext) -> None:
    from aiosmtpd.smtp import SMTP  # only the server process needs aiosmtpd

    loop = asyncio.get_running_loop()
    # A fixed hostname: without one aiosmtpd calls socket.getfqdn() (a DNS lookup) for every connection.
    server = await loop.create_server(
        lambda: SMTP(_Discard(), hostname="bench.localhost", tls_context=context, loop=loop),
        HOST,
        0,
        backlog=BACKLOG,
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sink", description=__doc__)
    sub = parser.add_subparsers(dest="server", required=True)
    aiosmtpd = sub.add_parser("aiosmtpd", help="serve SMTP with STARTTLS on a free loopback port; print the port")
    aiosmtpd.add_argument("--cert-chain", type=Path, required=True, help="PEM file with the key and certificate chain")
    aiosmtpd.add_argument("--loop", default="uvloop", choices=["uvloop", "asyncio"])
    args = parser.parse_args(argv)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert_chain)
    with asyncio.Runner(loop_factory=event_loop(args.loop)[1]) as runner:
        runner.run(_serve_aiosmtpd(context))


if __name__ == "__main__":
    main()
