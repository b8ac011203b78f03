"""The doctor's words: why a certificate failed, what a login or MAIL FROM refusal means, and what to change.

Kept apart from the probing code so the texts can be read (and reviewed) as a whole; docs/troubleshooting.md says
the same things at more length.
"""

from __future__ import annotations

import ssl

from ..transports.smtp_errors import AUTH_HINTS
from .certificate import CertificateFacts

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code carries them.
HOSTNAME_MISMATCH = frozenset({62, 63, 64})
EXPIRED, NOT_YET_VALID = 10, 9
SELF_SIGNED = frozenset({18})
UNKNOWN_CA = frozenset({2, 19, 20, 21})

SECURITY_VARIABLE = "MAILSC_SMTP_SECURITY"


def certificate_reason(code: int) -> str:
    """A short machine-friendly name for a verification failure (``--json``'s ``data.reason``)."""
    if code in HOSTNAME_MISMATCH:
        return "hostname_mismatch"
    if code == EXPIRED:
        return "expired"
    if code == NOT_YET_VALID:
        return "not_yet_valid"
    if code in SELF_SIGNED:
        return "self_signed"
    if code in UNKNOWN_CA:
        return "unknown_ca"
    return "other"


def certificate_problem(
    error: ssl.SSLCertVerificationError, host: str, facts: CertificateFacts | None
) -> tuple[str, str]:
    """(what is wrong, the fix) for a certificate that failed verification."""
    code = error.verify_code
    seen = f" ({facts.summary()})" if facts is not None else ""
    ca_file = "MAILSC_SMTP_CA_FILE"
    if code in HOSTNAME_MISMATCH:
        names = ", ".join(facts.names) if facts is not None and facts.names else "other names"
        detail = f"the certificate is not valid for {host!r}: it was issued for {names}{seen}"
        fix = (
            f"connect by a name the certificate carries (set MAILSC_SMTP_HOST to one of: {names}); "
            "providers publish the exact SMTP host name to use, and an IP address rarely matches"
        )
    elif code == EXPIRED:
        when = f" on {facts.not_after:%Y-%m-%d}" if facts is not None else ""
        detail = f"the server's certificate expired{when}{seen}"
        fix = (
            "the server's operator must renew the certificate (if it is your server: renew it, e.g. `certbot renew`, "
            "and reload the mail server); check this machine's clock too"
        )
    elif code == NOT_YET_VALID:
        detail = f"the server's certificate is not valid yet{seen}"
        fix = "check this machine's clock (and time zone); otherwise the server installed a certificate too early"
    elif code in SELF_SIGNED:
        detail = f"the server's certificate is self-signed: no certificate authority vouches for it{seen}"
        fix = (
            f"best: give the server a certificate from a public CA (e.g. Let's Encrypt); if you run this server and "
            f"trust it, set {ca_file} to its certificate (PEM) so mailsc trusts exactly that certificate"
        )
    elif code in UNKNOWN_CA:
        issuer = facts.issuer if facts is not None else "its issuer"
        detail = f"the server's certificate is signed by a certificate authority this machine does not trust{seen}"
        fix = (
            f"if the server uses a private CA, set {ca_file} to that CA's certificate ({issuer}); if it is a public "
            "CA, the server probably does not send its intermediate certificate (the full chain) and must be fixed, "
            "or this machine's CA bundle is missing (install ca-certificates)"
        )
    else:
        detail = f"certificate verification failed: {error.verify_message}{seen}"
        fix = f"fix the server's certificate, or set {ca_file} to the CA that signed it"
    return detail, fix


def handshake_fix(reason: str) -> str:
    lowered = reason.lower()
    if "protocol" in lowered or "version" in lowered:
        return (
            "the server and mailsc share no TLS version: mailsc requires TLS 1.2 or newer, so the server's TLS setup "
            "must be updated (or this is not a TLS port)"
        )
    return "the server's TLS setup refused the handshake: check the port and the server's TLS configuration"


def _provider_login_hint(host: str) -> str:
    host = host.lower().rstrip(".")
    if host.endswith(("gmail.com", "googlemail.com")):
        return (
            "Gmail: with 2-Step Verification on, the account password does not work for SMTP; create an app "
            "password (Google Account > Security > App passwords) and use it with the full Gmail address"
        )
    if host.endswith(("office365.com", "outlook.com", "hotmail.com", "live.com")):
        return (
            "Outlook / Microsoft 365: SMTP AUTH must be enabled for the mailbox (an admin setting in Microsoft 365), "
            "and an account with multi-factor authentication needs an app password"
        )
    if host.startswith("email-smtp.") and host.endswith("amazonaws.com"):
        return (
            "Amazon SES: SMTP credentials are not your AWS access keys; create SMTP credentials in the SES console "
            "for this region"
        )
    if host.endswith("sendgrid.net"):
        return "SendGrid: the username is literally 'apikey' and the password is an API key with Mail Send access"
    return ""


def login_fix(code: int, host: str, username: str) -> str:
    """The fix for a refused AUTH, with the provider's known requirement when the host tells which one it is."""
    parts = [AUTH_HINTS.get(code, "check the username and password")]
    if code == 454:
        parts = ["a temporary authentication failure on the server side: try again in a few minutes"]
    if code in (535, 534):
        provider = _provider_login_hint(host)
        if provider:
            parts.append(provider)
        if "@" not in username and not host.lower().endswith("sendgrid.net"):
            parts.append(f"the username {username!r} is not a full email address, which most providers require")
    return "; ".join(parts)


def sender_fix(code: int, sender: str) -> str:
    """The fix for a refused ``MAIL FROM`` of the configured sender."""
    if code == 530:
        return (
            "the server wants authentication before accepting mail: set MAILSC_SMTP_USERNAME and "
            "MAILSC_SMTP_PASSWORD (and use TLS)"
        )
    if code == 501:
        return f"the server finds the address {sender!r} malformed: check MAILSC_MAIL_FROM"
    if code == 421 or 400 <= code < 500:
        return "a temporary refusal (greylisting, rate limit, or the server is busy): try again later"
    return (
        f"the server does not let this account send as {sender}: verify the address or its domain with your provider "
        "(Amazon SES: a verified identity; SendGrid/Mailgun/Postmark: sender or domain authentication; Gmail and "
        "Outlook: the account's own address or a configured alias), or change MAILSC_MAIL_FROM"
    )
