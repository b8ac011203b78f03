"""Who may see the pages: open in dev (no API key exists), else a session from the login form; CSRF checks.

Dev mode (no key configured, so `mailsc serve` listens on loopback only) answers only requests from a loopback
client that name a loopback host: a web page elsewhere cannot read the inbox by pointing its own host name at
127.0.0.1 (DNS rebinding).

The session cookie is HttpOnly and SameSite=Strict always. It is Secure (and named with the ``__Host-`` prefix) when
the page is served over HTTPS (directly, or behind a proxy that sends ``X-Forwarded-Proto`` from an address uvicorn
trusts). On plain HTTP it cannot be Secure (the browser would never send it back), so logging in over plain HTTP is
allowed only to a loopback host, where nothing crosses a network.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from urllib.parse import parse_qs

from fastapi import Request, Response

from ..api.deps import Services
from ..config import is_loopback
from .session import ANONYMOUS, Session, SessionSigner

COOKIE = "mailsc_session"
SECURE_COOKIE = "__Host-mailsc_session"
_FORM_LIMIT = 16 * 1024


@dataclass(frozen=True)
class Viewer:
    """The person looking at a page; ``new_cookie`` is a session cookie value still to be set on the response."""

    session: Session
    new_cookie: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.session.authenticated

    @property
    def masked(self) -> bool:
        """Recipients are shown masked (``j***@example.org``) to a viewer who has not logged in with a key."""
        return not self.session.authenticated


class WebAccess:
    """Sessions and access decisions for one app."""

    def __init__(self, signer: SessionSigner) -> None:
        self.signer = signer

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https"

    def cookie_name(self, request: Request) -> str:
        return SECURE_COOKIE if self.secure(request) else COOKIE

    def set_cookie(self, request: Request, response: Response, value: str) -> None:
        response.set_cookie(
            self.cookie_name(request),
            value,
            max_age=int(self.signer.lifetime),
            path="/",
            secure=self.secure(request),
            httponly=True,
            samesite="strict",
        )

    def dev_refusal(self, request: Request) -> str | None:
        """Why an open (keyless) inbox refuses this request, or None."""
        client = request.client.host if request.client else ""
        if not is_loopback(client):
            return "with no API key configured the inbox answers loopback clients only"
        if not is_loopback(_host_name(request.headers.get("host", ""))):
            return "with no API key configured the inbox answers only to a loopback host name (127.0.0.1, localhost)"
        return None

    async def viewer(self, request: Request, svc: Services) -> Viewer | None:
        """The viewer, or None when a login is required."""
        session = self.signer.load(request.cookies.get(self.cookie_name(request)))
        if session is not None and session.authenticated and not await self._still_valid(session.subject, svc):
            session = None
        if session is not None and (session.authenticated or not await svc.keys_required()):
            return Viewer(session)
        if await svc.keys_required():
            return None
        fresh = self.signer.new(ANONYMOUS)
        return Viewer(fresh, self.signer.dump(fresh))

    async def _still_valid(self, subject: str, svc: Services) -> bool:
        """A session ends as soon as its key is revoked (the key table is tiny, and pages are human-paced)."""
        if subject == "bootstrap":
            return svc.settings.api_key is not None
        return any(k.id == subject and k.revoked_at is None for k in await svc.store.list_api_keys())


async def form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (the only kind the pages post), first value of each field."""
    body = await request.body()
    if len(body) > _FORM_LIMIT:
        return {}
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True, max_num_fields=20)
    return {name: values[0] for name, values in fields.items()}


def same_origin(request: Request) -> bool:
    """The request came from a page of this site, by ``Origin`` or else ``Sec-Fetch-Site`` (which no script can
    set). Our pages send ``Referrer-Policy: no-referrer``, so a browser posts their forms with ``Origin: null`` and
    only ``Sec-Fetch-Site: same-origin`` tells them apart from an opaque (sandboxed) origin. A client that sends
    neither header is not a browser: the CSRF token alone decides."""
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if origin is not None and origin != "null":
        return origin == f"{request.url.scheme}://{request.url.netloc}" and site in (None, "same-origin")
    if site is not None:
        return site == "same-origin"
    return origin is None


def csrf_ok(request: Request, session: Session | None, token: str | None) -> bool:
    """A state-changing request carries the token of the session it came with, from a same-origin page."""
    if session is None or not token or not same_origin(request):
        return False
    return hmac.compare_digest(token.encode(), session.csrf.encode())


def _host_name(host: str) -> str:
    """``127.0.0.1:8025`` -> ``127.0.0.1``; ``[::1]:8025`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def local_path(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (never ``//elsewhere`` or a full URL)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
