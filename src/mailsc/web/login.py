"""The login form (an API key in, a signed session cookie out) and logout."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from ..api.deps import ServicesDep, identify_key
from ..config import is_loopback
from .access import csrf_ok, form, local_path
from .pages import access
from .render import SecureRoute, error_page, page
from .session import ANONYMOUS

router = APIRouter(route_class=SecureRoute, include_in_schema=False)


def _https_required() -> Response:
    return error_page(400, "HTTPS required", "Serve the inbox over HTTPS (or open it on this machine) to log in.")


def _login_page(csrf: str, target: str, error: str | None = None, status: int = 200) -> Response:
    values = {"viewer": None, "banner": None, "csrf": csrf, "next": target, "error": error}
    return page("login.html", values, status=status)


def _plain_http_elsewhere(request: Request) -> bool:
    """A key typed into a page served over plain HTTP to a non-loopback host would cross the network in clear."""
    host = request.url.hostname or ""
    return request.url.scheme != "https" and not is_loopback(host)


@router.get("/login")
async def login_form(request: Request, svc: ServicesDep, next: Annotated[str | None, Query()] = None) -> Response:
    """The form: one field for an API key."""
    if not await svc.keys_required():
        return RedirectResponse("/", status_code=303)
    if _plain_http_elsewhere(request):
        return _https_required()
    web = access(request)
    session = web.signer.load(request.cookies.get(web.cookie_name(request))) or web.signer.new(ANONYMOUS)
    response = _login_page(session.csrf, local_path(next))
    web.set_cookie(request, response, web.signer.dump(session))
    return response


@router.post("/login")
async def login(request: Request, svc: ServicesDep) -> Response:
    """Check the key, then start a session holding the key's id (never the key)."""
    if _plain_http_elsewhere(request):
        return _https_required()
    web = access(request)
    session = web.signer.load(request.cookies.get(web.cookie_name(request)))
    fields = await form(request)
    target = local_path(fields.get("next"))
    if session is None or not csrf_ok(request, session, fields.get("csrf")):
        return error_page(403, "Forbidden", "The form was stale or came from another site: reload it and retry.")
    client = request.client.host if request.client else "unknown"
    if not svc.allow(f"web-login:{client}"):
        return _login_page(session.csrf, target, "Too many attempts; wait a second.", status=429)
    subject = await identify_key(svc, fields.get("key", "").strip()) if fields.get("key", "").strip() else None
    if subject is None:
        return _login_page(session.csrf, target, "Unknown or revoked API key.", status=401)
    response = RedirectResponse(target, status_code=303)
    web.set_cookie(request, response, web.signer.dump(web.signer.new(subject)))
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    web = access(request)
    session = web.signer.load(request.cookies.get(web.cookie_name(request)))
    if not csrf_ok(request, session, (await form(request)).get("csrf")):
        return error_page(403, "Forbidden", "The form was stale or came from another site: reload it and retry.")
    response = RedirectResponse("/login", status_code=303)
    web.set_cookie(request, response, web.signer.dump(web.signer.new(ANONYMOUS)))
    return response
