"""Where aiosmtplib's failures become mailsc's errors (DESIGN.md §8): each with its class in ``errors.py``, the
server's codes, and a hint a person can act on. Only ``transports/smtp.py`` calls this module."""

from __future__ import annotations

import socket
import ssl

from aiosmtplib import SMTPConnectResponseError, SMTPResponseException, SMTPTimeoutError

from ..config import ConnectionConfig
from ..errors import DeliveryError, SmtpConnectError, TlsSetupError, parse_enhanced_code
from .tls import CERT_HINT, describe_certificate_error

AUTH_HINTS = {
    535: "the server refused the username or password: check them; Gmail and Outlook need an app password, "
    "and most providers want the full email address as the username",
    534: "the server wants a stronger sign-in (e.g. an app password, or OAuth) for this account",
    530: "the server requires authentication (and maybe TLS) first: set a username and password",
    538: "the server requires TLS before authentication: use security=starttls or tls",
}


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def connect_error(exc: BaseException, config: ConnectionConfig, during: str = "connect") -> DeliveryError:
    """The ``errors.py`` class and a person's words for a failure while connecting, securing or logging in."""
    host, port = config.host, config.port
    where = f"{host}:{port}"
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return TlsSetupError(describe_certificate_error(cause, host), transient=False, hint=CERT_HINT)
    for cause in _causes(exc):
        if isinstance(cause, ssl.SSLError):
            hint = (
                "the port may expect STARTTLS (587) rather than implicit TLS"
                if during == "connect"
                else "the server's TLS setup is broken or too old (TLS 1.2 or newer is required)"
            )
            return TlsSetupError(
                f"TLS handshake with {where} failed: {cause.reason or cause}", transient=False, hint=hint
            )
        if isinstance(cause, socket.gaierror):
            return SmtpConnectError(
                f"the host name {host!r} does not resolve",
                transient=True,
                hint="check MAILSC_SMTP_HOST for a typo, and this machine's DNS",
            )
        if isinstance(cause, ConnectionRefusedError):
            return SmtpConnectError(
                f"connection to {where} refused: nothing listens there",
                transient=True,
                hint="check the port (587 for STARTTLS, 465 for implicit TLS) and that the server runs",
            )
    if isinstance(exc, SMTPConnectResponseError):
        return SmtpConnectError(
            f"{where} refused the session: {exc.code} {exc.message}",
            transient=exc.code < 500,
            smtp_code=exc.code,
            enhanced_code=parse_enhanced_code(exc.message),
        )
    if isinstance(exc, SMTPResponseException):
        return SmtpConnectError(
            f"{where} answered {exc.code} {exc.message} during {during}",
            transient=exc.code < 500,
            smtp_code=exc.code,
            enhanced_code=parse_enhanced_code(exc.message),
        )
    if isinstance(exc, SMTPTimeoutError | TimeoutError):
        hint = "a firewall may drop the traffic, or the provider blocks this port (25 is blocked on most cloud hosts)"
        if during == "connect" and config.security != "tls":
            hint += "; a server that waits silently may expect implicit TLS (port 465, security=tls)"
        return SmtpConnectError(
            f"timed out during {during} with {where} after {config.timeout:g} s", transient=True, hint=hint
        )
    return SmtpConnectError(f"{during} with {where} failed: {exc}", transient=True)


def reply_error(code: int, message: str, what: str) -> DeliveryError:
    return DeliveryError(
        f"{what}: {code} {message}",
        transient=code < 500,
        smtp_code=code,
        enhanced_code=parse_enhanced_code(message),
    )
