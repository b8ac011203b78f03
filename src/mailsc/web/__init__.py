"""The dev inbox and message log pages served by ``mailsc serve`` at ``/``: server-rendered Jinja2 templates with a
little plain JS and CSS from ``static/`` (no CDN: the pages work offline). Only ``api/app.py`` imports this."""

from __future__ import annotations

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from ..config import Settings
from .access import WebAccess
from .login import router as login_router
from .pages import router as pages_router
from .session import SessionSigner, secret_for


class _StaticFiles(StaticFiles):
    """The package's CSS and JS, with the same no-sniffing and no-framing headers as the pages."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cross-Origin-Resource-Policy", "same-origin")
        return response


def install(app: FastAPI, settings: Settings) -> None:
    """Add the pages and their static files to the service."""
    app.state.web_access = WebAccess(SessionSigner(secret_for(settings)))
    app.include_router(pages_router)
    app.include_router(login_router)
    app.mount("/static", _StaticFiles(packages=[("mailsc.web", "static")]), name="static")
