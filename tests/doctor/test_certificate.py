"""The certificate reader against ``cryptography``'s parse of the same certificates."""

from __future__ import annotations

import ssl
from datetime import UTC, datetime

import pytest
import trustme
from cryptography import x509

from mailsc.doctor.certificate import read_certificate


def der_of(pem: bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def test_leaf_facts_match_cryptography(ca: trustme.CA) -> None:
    leaf = ca.issue_cert(
        "mx.example.com",
        "127.0.0.1",
        "::1",
        common_name="mx.example.com",
        organization_name="Acme Mail",
        not_before=datetime(2024, 1, 2, 3, 4, 5),
        not_after=datetime(2051, 6, 7, 8, 9, 10),
    )
    der = der_of(leaf.cert_chain_pems[0].bytes())
    facts = read_certificate(der)
    parsed = x509.load_der_x509_certificate(der)
    assert facts.names == ("mx.example.com", "127.0.0.1", "::1")
    assert "CN=mx.example.com" in facts.subject
    assert "O=Acme Mail" in facts.subject
    assert facts.issuer.startswith("O=trustme")
    assert facts.not_before == parsed.not_valid_before_utc == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert facts.not_after == parsed.not_valid_after_utc  # 2051: a GeneralizedTime, not a UTCTime
    assert not facts.self_issued
    assert len(facts.sha256) == 64


def test_a_ca_certificate_is_self_issued_and_has_no_names(ca: trustme.CA) -> None:
    facts = read_certificate(der_of(ca.cert_pem.bytes()))
    assert facts.self_issued
    assert facts.names == ()


@pytest.mark.parametrize("junk", [b"", b"\x30\x03\x02\x01", b"not a certificate at all", b"\x30\x84\xff\xff\xff\xff"])
def test_junk_is_a_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError, match=r"DER|truncated|tag"):
        read_certificate(junk)
