"""TLS for SMTP: the one ``SSLContext`` a transport builds, and certificate failures in words a person understands."""

from __future__ import annotations

import ssl

from ..config import ConnectionConfig

CERT_HINT = "fix the server's certificate, or set MAILSC_SMTP_CA_FILE to the CA that signed it"


def build_tls_context(config: ConnectionConfig) -> ssl.SSLContext:
    """The one ``SSLContext`` a transport uses: system trust store (or ``ca_file``), TLS >= 1.2, host checked."""
    context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.client_cert is not None:
        context.load_cert_chain(str(config.client_cert), str(config.client_key) if config.client_key else None)
    if not config.verify_certs:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def describe_certificate_error(error: ssl.SSLCertVerificationError, host: str) -> str:
    """A sentence a person understands for a failed certificate verification."""
    reasons = {
        62: f"the server's certificate is not valid for {host!r} (it was issued for another name)",
        10: "the server's certificate has expired",
        9: "the server's certificate is not valid yet",
        18: "the server's certificate is self-signed",
        19: "the server's certificate chain ends in a self-signed certificate no trusted CA vouches for",
        20: "the server's certificate is signed by a certificate authority this machine does not trust (unknown CA)",
        21: "the server's certificate is signed by a certificate authority this machine does not trust (unknown CA)",
    }
    detail = reasons.get(error.verify_code, f"certificate verification failed: {error.verify_message}")
    return f"TLS to {host}: {detail}"
