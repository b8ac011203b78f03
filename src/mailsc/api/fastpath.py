"""A fast path in front of FastAPI's request handling, for the hot routes (``POST /v1/messages`` and its batch).

FastAPI's generic handler costs more CPU per request than the rest of the accept path together (profiled: solving
four dependencies recomputes their metadata on every call, the body is parsed to Python objects and then validated,
the response model is validated again before it is serialised). A route built with ``fast_route(fast)`` first calls
``fast(request)``, which does the same work directly: one ``model_validate_json`` of the raw bytes, the same
authentication function, a response serialised by the model's own serializer. ``fast`` gives up (returns None)
on anything unusual — a body that does not validate, an unusual content type, a malformed header — *before* it has
any side effect, and the request then goes through FastAPI's own handler unchanged, which produces exactly the
problem documents it always did (the same statuses, order of checks, error locations and messages). The route's
OpenAPI description comes from the declared endpoint as before.

One deliberate difference: ``fast`` reads the body first, so a body that streams past the size limit (no
``Content-Length``) now meets ``RequestContext``'s 413, as documented; FastAPI's handler turned the middleware's
error into a 400 "There was an error parsing the body".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response

FastHandler = Callable[[Request], Awaitable[Response | None]]


def fast_route(fast: FastHandler) -> type[APIRoute]:
    """An ``APIRoute`` class trying ``fast`` before FastAPI's handler (pass it as ``route_class_override``)."""

    class FastPathRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            slow = super().get_route_handler()

            async def handler(request: Request) -> Response:
                response = await fast(request)
                return response if response is not None else await slow(request)

            return handler

    return FastPathRoute


def plain_json(content_type: str | None) -> bool:
    """True for ``application/json`` with or without parameters: the one type that both FastAPI's body reader and
    the 415 check (``deps.json_body``) read as JSON the same way. Others (``+json`` types) take the slow path."""
    return content_type is not None and content_type.split(";", 1)[0].strip().lower() == "application/json"


def json_response(model: BaseModel, status_code: int, headers: dict[str, str] | None = None) -> Response:
    """The response FastAPI builds for a ``response_model``: the model's JSON by alias, ``application/json``."""
    response = Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")
    if headers:
        response.headers.update(headers)
    return response
