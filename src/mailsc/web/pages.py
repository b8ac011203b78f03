"""The message log, the message view and its parts, the polling endpoint, and the actions (retry, cancel, delete)."""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from ..api.deps import Services, ServicesDep
from ..logs import mask_email, mask_emails
from ..outbox.records import MessageRecord
from ..outbox.tables import FINISHED
from . import mail
from .access import Viewer, WebAccess, csrf_ok, form
from .render import SecureRoute, error_page, page

router = APIRouter(route_class=SecureRoute, include_in_schema=False)
STATUSES = ("queued", "sending", "deferred", "sent", "failed", "cancelled", "expired")
_ID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
PAGE_SIZE = 100
# The mail's own HTML: no script, no remote load of any kind, no form, no plugin; its styles inline only.
# ``sandbox`` makes the document sandboxed even when opened on its own, outside the page's <iframe sandbox>.
_FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src {images}; form-action 'none'; "
    "base-uri 'none'; frame-ancestors 'self'"
)


def access(request: Request) -> WebAccess:
    found: WebAccess = request.app.state.web_access
    return found


async def gate(request: Request, svc: Services, *, redirect: bool = True) -> Viewer | Response:
    """The viewer, or the response that stands in for the page: a refusal (dev mode, wrong host) or the login."""
    web = access(request)
    if not await svc.keys_required():
        refusal = web.dev_refusal(request)
        if refusal is not None:
            return error_page(403, "Forbidden", refusal)
    viewer = await web.viewer(request, svc)
    if viewer is not None:
        return viewer
    if not redirect:
        return JSONResponse({"detail": "log in first"}, status_code=401)
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)


def finish(request: Request, viewer: Viewer, response: Response) -> Response:
    if viewer.new_cookie is not None:
        access(request).set_cookie(request, response, viewer.new_cookie)
    return response


def banner(svc: Services, viewer: Viewer) -> dict[str, str] | None:
    """Why delivery is paused (the transport's circuit breaker is open), for the banner on every page."""
    problem = svc.delivery_problem()
    if problem is None:
        return None
    return {
        "transport": problem.transport,
        "error": problem.error,
        "cause": mask_emails(problem.cause) if viewer.masked else problem.cause,
        "hint": problem.hint or "",
    }


def display_status(record: MessageRecord) -> str:
    return "captured" if record.status == "sent" and record.transport == "capture" else record.status


def row(record: MessageRecord, viewer: Viewer) -> dict[str, Any]:
    recipients = [mask_email(r) for r in record.recipients] if viewer.masked else list(record.recipients)
    return {
        "id": record.id,
        "url": f"/messages/{record.id}",
        "status": display_status(record),
        "to": recipients,
        "subject": record.subject,
        "tags": record.tags,
        "created_at": record.created_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }


async def context(svc: Services, viewer: Viewer, **extra: Any) -> dict[str, Any]:
    """What every page's template gets: the viewer, the banner, the CSRF token for its forms."""
    return {
        "viewer": viewer,
        "banner": banner(svc, viewer),
        "csrf": viewer.session.csrf,
        "keys_required": await svc.keys_required(),
        **extra,
    }


async def _listing(
    svc: Services, status: str | None, q: str | None, cursor: str | None, limit: int = PAGE_SIZE
) -> tuple[list[MessageRecord], str | None]:
    status = status if status in STATUSES else None
    cursor = cursor if cursor and _ID.match(cursor) else None
    result = await svc.store.list_messages(
        status=status, search=(q or "").strip()[:200] or None, cursor=cursor, limit=limit
    )
    return result.items, result.next_cursor


Text = Annotated[str | None, Query(max_length=200)]


@router.get("/")
async def message_log(
    request: Request, svc: ServicesDep, status: Text = None, q: Text = None, cursor: Text = None
) -> Response:
    """Every message, newest first; new ones appear without a reload (inbox.js polls /messages.json)."""
    viewer = await gate(request, svc)
    if not isinstance(viewer, Viewer):
        return viewer
    items, next_cursor = await _listing(svc, status, q, cursor)
    values = await context(
        svc,
        viewer,
        rows=[row(r, viewer) for r in items],
        statuses=STATUSES,
        status=status or "",
        q=q or "",
        next_cursor=next_cursor,
        first_page=not cursor,
    )
    return finish(request, viewer, page("log.html", values))


@router.get("/messages.json")
async def poll(
    request: Request,
    svc: ServicesDep,
    status: Text = None,
    q: Text = None,
    limit: Annotated[int, Query(ge=0, le=PAGE_SIZE)] = PAGE_SIZE,
) -> Response:
    """What the log page polls: the first page of rows (masked as the page is) and the banner."""
    viewer = await gate(request, svc, redirect=False)
    if not isinstance(viewer, Viewer):
        return viewer
    items, _ = await _listing(svc, status, q, None, limit) if limit else ([], None)
    body = {"items": [row(r, viewer) for r in items], "banner": banner(svc, viewer)}
    return finish(request, viewer, JSONResponse(body))


def _detail(detail: dict[str, Any], masked: bool) -> str:
    text = "; ".join(f"{k}={v}" for k, v in detail.items())
    return mask_emails(text) if masked else text


@router.get("/messages/{message_id}")
async def message_view(request: Request, svc: ServicesDep, message_id: str, remote: bool = False) -> Response:
    """One message: its HTML in a sandboxed frame, text, headers, attachments, timeline, and the actions."""
    viewer = await gate(request, svc)
    if not isinstance(viewer, Viewer):
        return viewer
    if not _ID.match(message_id):
        return error_page(404, "Not found", "That is not a message id.")
    record = await svc.store.get(message_id)
    parsed = mail.parse(await svc.store.raw(message_id))
    events = [
        {
            "type": e["type"],
            "at": e["at"].strftime("%Y-%m-%d %H:%M:%S UTC"),
            "detail": _detail(e["detail"], viewer.masked),
        }
        for e in record.events
    ]
    last_error = record.last_error and (mask_emails(record.last_error) if viewer.masked else record.last_error)
    values = await context(
        svc,
        viewer,
        message=row(record, viewer),
        record=record,
        mail=parsed,
        events=events,
        remote=remote,
        last_error=last_error,
        can_retry=record.status in ("failed", "expired"),
        can_cancel=record.status in ("queued", "deferred"),
        can_delete=record.status in FINISHED,
    )
    return finish(request, viewer, page("message.html", values))


@router.get("/messages/{message_id}/body.html")
async def message_html(request: Request, svc: ServicesDep, message_id: str, remote: bool = False) -> Response:
    """The mail's HTML part alone, for the <iframe sandbox>: no scripts, and no remote images unless asked."""
    viewer = await gate(request, svc, redirect=False)
    if not isinstance(viewer, Viewer):
        return viewer
    if not _ID.match(message_id):
        return error_page(404, "Not found", "That is not a message id.")
    html = mail.parse(await svc.store.raw(message_id)).html or ""
    images = "data: https: http:" if remote else "data:"
    headers = {
        "Content-Security-Policy": _FRAME_CSP.format(images=images),
        "X-Frame-Options": "SAMEORIGIN",
        "X-DNS-Prefetch-Control": "off",
    }
    return finish(request, viewer, Response(html, media_type="text/html; charset=utf-8", headers=headers))


def _download(data: bytes, filename: str, media_type: str) -> Response:
    ascii_name = re.sub(r"[^A-Za-z0-9._-]", "_", filename) or "download"
    disposition = f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
    headers = {"Content-Disposition": disposition, "Content-Security-Policy": "sandbox; default-src 'none'"}
    return Response(data, media_type=media_type, headers=headers)


@router.get("/messages/{message_id}/raw.eml")
async def message_raw(request: Request, svc: ServicesDep, message_id: str) -> Response:
    """The stored MIME exactly as sent, as a .eml download."""
    viewer = await gate(request, svc)
    if not isinstance(viewer, Viewer):
        return viewer
    if not _ID.match(message_id):
        return error_page(404, "Not found", "That is not a message id.")
    return finish(request, viewer, _download(await svc.store.raw(message_id), f"{message_id}.eml", "message/rfc822"))


@router.get("/messages/{message_id}/parts/{index}")
async def message_part(request: Request, svc: ServicesDep, message_id: str, index: int) -> Response:
    """An attachment, always as a download (never rendered on this site's origin)."""
    viewer = await gate(request, svc)
    if not isinstance(viewer, Viewer):
        return viewer
    found = mail.attachment(await svc.store.raw(message_id), index) if _ID.match(message_id) else None
    if found is None:
        return error_page(404, "Not found", "The message has no such attachment.")
    part, data = found
    return finish(request, viewer, _download(data, part.filename, "application/octet-stream"))


@router.post("/messages/{message_id}/{action}")
async def message_action(request: Request, svc: ServicesDep, message_id: str, action: str) -> Response:
    """Retry a failed message, cancel a queued one, delete a finished one. Needs the page's CSRF token."""
    viewer = await gate(request, svc)
    if not isinstance(viewer, Viewer):
        return viewer
    fields = await form(request)
    if viewer.new_cookie is not None or not csrf_ok(request, viewer.session, fields.get("csrf")):
        return error_page(403, "Forbidden", "The form was stale or came from another site: reload the page and retry.")
    if not _ID.match(message_id) or action not in ("retry", "cancel", "delete"):
        return error_page(404, "Not found", "No such message or action.")
    if action == "retry":
        await svc.store.retry(message_id)
        svc.mailer.wake_worker()
    elif action == "cancel":
        await svc.store.cancel(message_id)
    else:
        await svc.store.delete(message_id)
        return RedirectResponse("/", status_code=303)
    return RedirectResponse(f"/messages/{message_id}", status_code=303)
