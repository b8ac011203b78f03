"""Rendering the pages: the Jinja2 environment (autoescaped), the security headers every web response carries, and
the route class that adds them and turns outbox errors into error pages."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping
from datetime import datetime
from typing import Any

from fastapi import Request, Response
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from jinja2 import Environment, PackageLoader, select_autoescape

from .. import __version__
from ..errors import InvalidStateError, MessageNotFoundError, OutboxUnavailableError

# The app's own pages: scripts and styles from /static only (no inline script can run even if some text were
# injected), no framing of these pages, no referrer leaking a message id to a link's target.
APP_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": APP_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

env = Environment(
    loader=PackageLoader("mailsc.web", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else ""


def _size(value: int) -> str:
    for unit in ("B", "KB", "MB"):
        if value < 1024 or unit == "MB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value //= 1024
    return f"{value} MB"


env.filters["when"] = _when
env.filters["size"] = _size
env.globals["version"] = __version__


def page(
    template: str, context: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> HTMLResponse:
    return HTMLResponse(env.get_template(template).render(**context), status_code=status, headers=dict(headers or {}))


def error_page(status: int, title: str, detail: str) -> HTMLResponse:
    return page("error.html", {"title": title, "detail": detail, "viewer": None, "banner": None}, status=status)


class SecureRoute(APIRoute):
    """Adds the security headers to every response of the web pages (a response may set its own CSP), and answers
    a missing message, a refused action or an unreachable database with an error page instead of JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def secured(request: Request) -> Response:
            try:
                response = await handler(request)
            except MessageNotFoundError:
                response = error_page(404, "Not found", "There is no such message (it may have been deleted).")
            except InvalidStateError as exc:
                response = error_page(409, "Not possible now", str(exc))
            except OutboxUnavailableError as exc:
                response = error_page(503, "Database unavailable", str(exc))
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return secured
