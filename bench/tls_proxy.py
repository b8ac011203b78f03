"""A STARTTLS front for smtp-sink: stunnel (C, Debian package ``stunnel4``) with ``protocol = smtp`` in server mode.

smtp-sink speaks plain SMTP only. stunnel accepts the client on its own loopback port, answers the greeting and
EHLO with ``250 STARTTLS``, performs the TLS handshake with a ``trustme`` certificate, and then relays the
decrypted session to smtp-sink (whose second EHLO reply, with PIPELINING, the client sees inside TLS). So the
STARTTLS rows end at the same C sink as the plain ones, and the price of TLS on the server side is stunnel's CPU,
reported on its own. Only the ``stunnel`` program is started (foreground, no pid file), on a free loopback port,
and it is ended by its PID.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import trustme

from bench.sink import HOST, free_port, stop

START_TIMEOUT = 15.0


@dataclass(frozen=True)
class Certificates:
    """A local CA (the clients trust it through ``ca_file``) and the server's key + certificate chain."""

    ca_file: Path
    cert_chain: Path

    @classmethod
    def create(cls, directory: Path) -> Certificates:
        ca = trustme.CA()
        cert = ca.issue_cert(HOST, "localhost")
        certificates = cls(directory / "ca.pem", directory / "server.pem")
        ca.cert_pem.write_to_path(str(certificates.ca_file))
        cert.private_key_and_cert_chain_pem.write_to_path(str(certificates.cert_chain))
        return certificates


@dataclass(frozen=True)
class TlsProxy:
    """A running stunnel in front of ``backend_port``; clients connect to ``port`` and upgrade with STARTTLS."""

    port: int
    process: subprocess.Popen[bytes]
    version: str


def stunnel_program() -> tuple[Path, str]:
    """The stunnel binary and its version line; installs Debian's ``stunnel4`` with apt when missing (as root)."""
    found = shutil.which("stunnel") or shutil.which("stunnel4")
    if found is None:
        if os.geteuid() != 0:
            raise SystemExit("stunnel is missing: `apt-get install stunnel4` (the STARTTLS rows need it)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-q", "stunnel4"], check=True, env=env, capture_output=True)
        found = shutil.which("stunnel") or shutil.which("stunnel4")
        if found is None:
            raise SystemExit("apt-get installed stunnel4 but no stunnel program is on PATH")
    banner = subprocess.run([found, "-version"], capture_output=True, text=True).stderr
    version = next((line.split(" on ")[0] for line in banner.splitlines() if line.startswith("stunnel ")), "stunnel")
    return Path(found), version


@contextmanager
def stunnel(backend_port: int, certificates: Certificates, directory: Path) -> Iterator[TlsProxy]:
    """stunnel offering STARTTLS on a free loopback port, relaying to ``HOST:backend_port``; stopped on exit."""
    program, version = stunnel_program()
    port = free_port()
    config = directory / f"stunnel-{port}.conf"
    config.write_text(
        "\n".join(
            [
                "foreground = yes",
                "pid =",
                "debug = 3",
                "[smtp]",
                f"accept = {HOST}:{port}",
                f"connect = {HOST}:{backend_port}",
                "protocol = smtp",
                f"cert = {certificates.cert_chain}",
                "",
            ]
        )
    )
    log = directory / f"stunnel-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen([str(program), str(config)], stdin=subprocess.DEVNULL, stdout=output, stderr=output)
    try:
        _wait_for_banner(process, port, log)
        yield TlsProxy(port, process, version)
    finally:
        stop(process)


def _wait_for_banner(process: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until stunnel answers with the sink's 220 greeting (it connects to the backend per client)."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"stunnel exited with status {process.returncode}: {log.read_text()[-500:]}")
        try:
            with socket.create_connection((HOST, port), timeout=1) as probe:
                if probe.recv(64).startswith(b"220"):
                    probe.sendall(b"QUIT\r\n")
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"stunnel did not answer on {HOST}:{port} within {START_TIMEOUT:g} s")
