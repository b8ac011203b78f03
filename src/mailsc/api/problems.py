"""RFC 9457 problem details: every error the API returns, and the one table of HTTP statuses for mailsc's errors."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from ..errors import (
    IdempotencyConflictError,
    InvalidStateError,
    MailscError,
    MessageError,
    MessageNotFoundError,
    OutboxUnavailableError,
    TemplateError,
)

logger = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"

# mailsc error -> (HTTP status, problem type slug). The first matching class wins.
STATUS_OF: list[tuple[type[MailscError], int, str]] = [
    (MessageError, 422, "invalid-message"),
    (TemplateError, 422, "template-error"),
    (IdempotencyConflictError, 409, "idempotency-conflict"),
    (InvalidStateError, 409, "invalid-state"),
    (MessageNotFoundError, 404, "not-found"),
    (OutboxUnavailableError, 503, "database-unavailable"),
]


class ProblemDocument(BaseModel):
    """RFC 9457 problem details, as every error of this API is answered."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, Any]] | None = None
    request_id: str | None = None


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting problem+json answers with these statuses."""
    always = (400, 401, 413, 415, 422, 429, 500, 503)
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {MEDIA_TYPE: {"schema": ProblemDocument.model_json_schema()}},
        }
        for status in sorted({*statuses, *always})
    }


class ApiError(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        slug: str | None = None,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        extensions: dict[str, Any] | None = None,
    ) -> None:
        self.status = status
        self.detail = detail
        self.slug = slug
        self.title = title
        self.errors = errors
        self.headers = headers
        self.extensions = extensions  # RFC 9457 extension members, e.g. a paused transport's cause and hint
        super().__init__(detail)


def problem_response(request: Request | None, error: ApiError) -> JSONResponse:
    """The problem document for ``error``, with the request id when there is one."""
    status, slug, title, errors, headers = error.status, error.slug, error.title, error.errors, error.headers
    detail = error.detail
    body: dict[str, Any] = {
        "type": f"https://mailsc.dev/problems/{slug}" if slug else "about:blank",
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    if error.extensions:
        body.update({k: v for k, v in error.extensions.items() if k not in body})
    request_id = getattr(request.state, "request_id", None) if request is not None else None
    if request_id:
        body["request_id"] = request_id
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def _validation_errors(exc: RequestValidationError) -> tuple[int, str, list[dict[str, Any]]]:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            ctx = error.get("ctx") or {}
            return 400, f"the request body is not valid JSON: {ctx.get('error', 'parse error')}", []
        loc = [p for p in error.get("loc", ()) if p != "body"]
        msg = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"loc": loc, "msg": msg})
    return 422, "the request does not match the schema", errors


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette's own Allow names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches(request.scope)
        if match is not Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


def install(app: FastAPI) -> None:
    """Register the exception handlers that turn every error into a problem document."""

    @app.exception_handler(ApiError)
    async def _problem(request: Request, exc: ApiError) -> JSONResponse:
        return problem_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail, errors = _validation_errors(exc)
        slug = "malformed-json" if status == 400 else "validation"
        return problem_response(request, ApiError(status, detail, slug=slug, errors=errors if status == 422 else None))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route for {request.method} {request.url.path}"
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}"
            headers = {"Allow": ", ".join(_allowed_methods(request))}
        return problem_response(request, ApiError(exc.status_code, detail, headers=headers))

    @app.exception_handler(MailscError)
    async def _mailsc(request: Request, exc: MailscError) -> JSONResponse:
        for error_type, status, slug in STATUS_OF:
            if isinstance(exc, error_type):
                errors = exc.errors if isinstance(exc, MessageError | TemplateError) else None
                headers = {"Retry-After": "5"} if status == 503 else None
                return problem_response(request, ApiError(status, str(exc), slug=slug, errors=errors, headers=headers))
        logger.error("api.unmapped_error", extra={"error": type(exc).__name__})
        return problem_response(request, ApiError(500, "an unexpected error occurred", slug="internal"))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.error("api.unexpected_error", exc_info=exc, extra={"path": request.url.path})
        detail = "an unexpected error occurred; quote the request id when reporting it"
        return problem_response(request, ApiError(500, detail, slug="internal"))
