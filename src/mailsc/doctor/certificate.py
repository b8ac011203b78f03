"""The facts of a server's certificate (subject, issuer, validity, names) read from its DER bytes.

The standard library gives these facts only for a certificate that passed verification (``getpeercert()`` is empty
otherwise), but a diagnosis needs them most when verification failed: "issued for mail.example.net", "expired on
...". ``cryptography`` is not a runtime dependency, so this module reads the few X.509 fields it needs with a small
DER walker. It is used for display only: nothing here decides whether a certificate is trusted.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_NAME_ATTRIBUTES = {"2.5.4.3": "CN", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST"}
_SUBJECT_ALT_NAME = "2.5.29.17"
_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1", 0x1E: "utf-16-be", 0x1C: "utf-32-be"}


@dataclass(frozen=True)
class CertificateFacts:
    """What a person needs to recognise a certificate. ``names`` are the subjectAltName DNS names and IPs."""

    subject: str
    issuer: str
    not_before: datetime
    not_after: datetime
    names: tuple[str, ...]
    sha256: str

    @property
    def self_issued(self) -> bool:
        return self.subject == self.issuer

    def days_left(self, now: datetime | None = None) -> int:
        return (self.not_after - (now or datetime.now(UTC))).days

    def summary(self) -> str:
        names = ", ".join(self.names) if self.names else "no subjectAltName"
        return (
            f"certificate for {names}; subject {self.subject or '(empty)'}; issuer {self.issuer or '(empty)'}; "
            f"valid {self.not_before:%Y-%m-%d} to {self.not_after:%Y-%m-%d}"
        )

    def as_data(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "issuer": self.issuer,
            "not_before": self.not_before.isoformat(),
            "not_after": self.not_after.isoformat(),
            "names": list(self.names),
            "sha256": self.sha256,
        }


def read_certificate(der: bytes) -> CertificateFacts:
    """Parse the DER certificate ``der``; raises ``ValueError`` when it is not one."""
    try:
        return _read(der)
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a DER certificate: {exc}") from None


def _read(der: bytes) -> CertificateFacts:
    tag, certificate, _ = _tlv(der, 0)
    _expect(tag, 0x30)
    tag, tbs, _ = _tlv(certificate, 0)
    _expect(tag, 0x30)
    fields = list(_children(tbs))
    if fields and fields[0][0] == 0xA0:  # [0] EXPLICIT version
        fields = fields[1:]
    # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional [1] [2] [3]
    if len(fields) < 6:
        raise ValueError("truncated tbsCertificate")
    issuer = _name(fields[2][1])
    validity = list(_children(fields[3][1]))
    not_before, not_after = _time(*validity[0]), _time(*validity[1])
    subject = _name(fields[4][1])
    names: list[str] = []
    for tag, value in fields[6:]:
        if tag == 0xA3:  # [3] EXPLICIT extensions
            names = _alt_names(value)
    return CertificateFacts(
        subject, issuer, not_before, not_after, tuple(names), hashlib.sha256(der).hexdigest().upper()
    )


def _expect(tag: int, wanted: int) -> None:
    if tag != wanted:
        raise ValueError(f"unexpected DER tag 0x{tag:02x} (wanted 0x{wanted:02x})")


def _tlv(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """One tag-length-value at ``offset``: the tag, the value, and the offset after it."""
    tag = data[offset]
    length = data[offset + 1]
    offset += 2
    if length & 0x80:
        count = length & 0x7F
        if not 0 < count <= 4:
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[offset : offset + count], "big")
        offset += count
    end = offset + length
    if end > len(data):
        raise ValueError("DER value runs past its container")
    return tag, data[offset:end], end


def _children(data: bytes) -> list[tuple[int, bytes]]:
    found = []
    offset = 0
    while offset < len(data):
        tag, value, offset = _tlv(data, offset)
        found.append((tag, value))
    return found


def _oid(value: bytes) -> str:
    parts = [value[0] // 40, value[0] % 40] if value[0] < 80 else [2, value[0] - 80]
    number = 0
    for byte in value[1:]:
        number = (number << 7) | (byte & 0x7F)
        if not byte & 0x80:
            parts.append(number)
            number = 0
    return ".".join(map(str, parts))


def _string(tag: int, value: bytes) -> str:
    return value.decode(_STRING_CODECS.get(tag, "latin-1"), errors="replace")


def _name(value: bytes) -> str:
    """An X.509 Name as ``CN=..., O=...`` in the order written."""
    parts = []
    for _, rdn in _children(value):
        for _, attribute in _children(rdn):
            (oid_tag, oid), (string_tag, text) = _children(attribute)[:2]
            _expect(oid_tag, 0x06)
            oid_text = _oid(oid)
            parts.append(f"{_NAME_ATTRIBUTES.get(oid_text, oid_text)}={_string(string_tag, text)}")
    return ", ".join(parts)


def _time(tag: int, value: bytes) -> datetime:
    text = value.decode("ascii")
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ: years 50-99 are 19xx (RFC 5280)
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:
        raise ValueError("validity is not a time")
    return datetime.strptime(text.rstrip("Z")[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _alt_names(extensions: bytes) -> list[str]:
    [(_, sequence)] = _children(extensions)[:1]
    for _, extension in _children(sequence):
        parts = _children(extension)
        if _oid(parts[0][1]) != _SUBJECT_ALT_NAME:
            continue
        _, general_names = _children(parts[-1][1])[0]  # extnValue: OCTET STRING holding a SEQUENCE
        names = []
        for tag, value in _children(general_names):
            if tag == 0x82:  # dNSName
                names.append(value.decode("ascii", errors="replace"))
            elif tag == 0x87 and len(value) in (4, 16):  # iPAddress
                names.append(str(ipaddress.ip_address(value)))
        return names
    return []
