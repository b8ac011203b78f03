"""API keys: random, shown once, stored only as a SHA-256 hash.

A key has 256 bits of randomness, so an unsalted fast hash is safe to store and look up (no dictionary to attack);
the lookup by hash means no key material is ever compared byte by byte.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "msc_"


def generate_key() -> str:
    """A new API key, e.g. ``msc_3q2...``; show it once, store ``hash_key(key)``."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def same_key(given: str, expected: str) -> bool:
    """Constant-time comparison (for the bootstrap key from ``MAILSC_API_KEY``)."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
