"""Session cookies: signed, expiring, bound to the secret; the login's return path stays on this site."""

from __future__ import annotations

from pathlib import Path

from mailsc.web.access import local_path
from mailsc.web.session import ANONYMOUS, SessionSigner, secret_for
from tests.web.conftest import settings_for


def test_a_session_round_trips_and_holds_no_key() -> None:
    signer = SessionSigner(b"k" * 32, lifetime=60)
    session = signer.new("01KEYID", now=1000)
    value = signer.dump(session)
    assert signer.load(value, now=1030) == session
    assert session.authenticated
    assert not signer.new(ANONYMOUS).authenticated
    assert signer.new("x").csrf != signer.new("x").csrf


def test_expired_tampered_foreign_or_garbage_cookies_are_refused() -> None:
    signer = SessionSigner(b"k" * 32, lifetime=60)
    value = signer.dump(signer.new("bootstrap", now=1000))
    payload, signature = value.split(".")
    assert signer.load(value, now=1060) is None  # expired
    assert signer.load(f"{payload}x.{signature}", now=1001) is None
    assert signer.load(f"{payload}.{signature[:-2]}AA", now=1001) is None
    assert SessionSigner(b"o" * 32).load(value, now=1001) is None  # another process's secret
    for garbage in (None, "", "abc", "a.b.c", "é.ü", ".", "e30.x"):
        assert signer.load(garbage, now=1001) is None


def test_a_well_signed_but_malformed_payload_is_refused() -> None:
    signer = SessionSigner(b"k" * 32)
    import base64

    for payload in (b"[1, 2, 3]", b'{"a": 1}', b"not json", b'["a", "b"]'):
        encoded = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
        assert signer.load(f"{encoded}.{signer._sign(encoded)}") is None


def test_the_secret_follows_the_bootstrap_key(tmp_path: Path) -> None:
    keyed = settings_for(tmp_path, api_key="msc_one")
    assert secret_for(keyed) == secret_for(keyed)  # every process with this key accepts the others' sessions
    assert secret_for(keyed) != secret_for(settings_for(tmp_path, api_key="msc_two"))
    keyless = settings_for(tmp_path)
    assert secret_for(keyless) != secret_for(keyless)  # random per process


def test_login_returns_only_to_a_local_path() -> None:
    assert local_path("/messages/X?remote=1") == "/messages/X?remote=1"
    for target in (None, "", "https://evil.example", "//evil.example", "/\\evil.example", "javascript:alert(1)"):
        assert local_path(target) == "/"
