"""Signed session cookies for the web pages: who logged in (never the key itself) and the CSRF token.

A session is ``base64url(json).base64url(HMAC-SHA256)``. It is signed, not encrypted: it holds only the key's id
(``bootstrap`` or a stored key's id), a random CSRF token and an expiry, none of them secret from the browser that
holds it. The signing secret comes from ``secret_for``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from ..config import Settings

ANONYMOUS = "anonymous"
DEFAULT_LIFETIME = 12 * 3600.0


@dataclass(frozen=True)
class Session:
    """``subject`` is ``anonymous``, ``bootstrap`` or a stored API key's id; ``csrf`` guards the forms."""

    subject: str
    csrf: str
    expires_at: int

    @property
    def authenticated(self) -> bool:
        return self.subject != ANONYMOUS


def secret_for(settings: Settings) -> bytes:
    """The signing secret: derived from ``MAILSC_API_KEY`` when one is set (every process behind a load balancer
    then accepts the others' sessions, and changing the key ends every session), else random for this process
    (sessions end when it restarts)."""
    if settings.api_key is not None:
        return hmac.digest(settings.api_key.get_secret_value().encode(), b"mailsc web session v1", "sha256")
    return secrets.token_bytes(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SessionSigner:
    """Issues and checks session cookie values."""

    def __init__(self, secret: bytes, *, lifetime: float = DEFAULT_LIFETIME) -> None:
        self._secret = secret
        self.lifetime = lifetime

    def new(self, subject: str, *, now: float | None = None) -> Session:
        """A fresh session (with a fresh CSRF token: a login never keeps the token of the session before it)."""
        now = time.time() if now is None else now
        return Session(subject, secrets.token_urlsafe(24), int(now + self.lifetime))

    def dump(self, session: Session) -> str:
        payload = _b64(json.dumps([session.subject, session.csrf, session.expires_at]).encode())
        return f"{payload}.{self._sign(payload)}"

    def load(self, value: str | None, *, now: float | None = None) -> Session | None:
        """The session in a cookie value; None when absent, forged, malformed or expired."""
        if not value or value.count(".") != 1:
            return None
        payload, signature = value.split(".")
        if not hmac.compare_digest(signature.encode("utf-8", "replace"), self._sign(payload).encode()):
            return None
        try:
            subject, csrf, expires_at = json.loads(_unb64(payload))
        except (ValueError, TypeError, binascii.Error):
            return None
        if not (isinstance(subject, str) and isinstance(csrf, str) and isinstance(expires_at, int)):
            return None
        if expires_at <= (time.time() if now is None else now):
            return None
        return Session(subject, csrf, expires_at)

    def _sign(self, payload: str) -> str:
        return _b64(hmac.digest(self._secret, payload.encode("utf-8", "replace"), hashlib.sha256))
