"""One step of a diagnosis: what was checked, what was seen, and the fix when it failed. SMTP checks and the HTTP
provider transports both report in these terms, so ``mailsc doctor`` prints and serialises them the same way."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Step:
    """``name`` is a stable machine name (``tcp_connect``, ``auth``, ...); ``title`` says what was checked in
    plain words; ``detail`` what was seen; ``fix`` what to do about it (empty when the step passed). ``data``
    carries facts for ``--json`` (certificate expiry, extensions offered, ...), never a secret."""

    name: str
    title: str
    ok: bool
    detail: str = ""
    fix: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
