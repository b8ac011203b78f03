"""``/v1/messages``: accept, batch, look up, list, cancel, retry."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import ValidationError

from ... import metrics
from ...errors import IdempotencyConflictError, MessageError, TemplateError
from ...message import Message
from ...outbox.records import AddResult
from ..deps import IDEMPOTENCY_KEY, Caller, Services, ServicesDep, authenticated, idempotency_key, json_body
from ..fastpath import fast_route, json_response, plain_json
from ..problems import ApiError, problem_responses
from ..schemas import (
    BatchAccepted,
    BatchCreate,
    BatchItem,
    BatchResult,
    MessageAccepted,
    MessageCreate,
    MessagePage,
    MessagePublic,
    MessageSummary,
)

router = APIRouter(prefix="/v1/messages", tags=["messages"], responses=problem_responses(401, 404, 409))
MessageId = Annotated[str, Path(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$", description="the id returned at acceptance")]
STATUSES = ("queued", "sending", "deferred", "sent", "failed", "cancelled", "expired")


async def accept(
    body: MessageCreate,
    response: Response,
    svc: ServicesDep,
    _caller: Caller,
    key: Annotated[str | None, Depends(idempotency_key)],
) -> MessageAccepted:
    """Accept one message. Answers 202 only after the message is durably stored."""
    result = await _enqueue(svc, body, key)
    if result.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    return MessageAccepted(id=result.id, created_at=result.created_at)


async def _accept_fast(request: Request) -> Response | None:
    """``accept`` without FastAPI's generic handler (see ``fastpath``); None hands the request to ``accept``."""
    raw = await request.body()  # first: a body streaming past the size limit is a 413 whatever else is wrong
    key = request.headers.get("idempotency-key")
    if not plain_json(request.headers.get("content-type")) or (key is not None and not IDEMPOTENCY_KEY.fullmatch(key)):
        return None
    try:
        body = MessageCreate.model_validate_json(raw)
    except ValidationError:
        return None
    svc: Services = request.app.state.services
    await authenticated(request, svc)
    result = await _enqueue(svc, body, key)
    accepted = MessageAccepted(id=result.id, created_at=result.created_at)
    if result.replayed:
        return json_response(accepted, 200, {"Idempotent-Replayed": "true"})
    return json_response(accepted, 202)


async def _enqueue(svc: Services, body: MessageCreate, key: str | None) -> AddResult:
    result = await svc.mailer.enqueue_with_result(
        _content(body),
        template=body.template,
        variables=body.variables,
        idempotency_key=key,
        send_at=body.send_at,
        expires_at=body.expires_at,
    )
    if not result.replayed:
        metrics.record_accepted()
    return result


router.add_api_route(
    "",
    accept,
    methods=["POST"],
    status_code=202,
    response_model=MessageAccepted,
    dependencies=[Depends(json_body)],
    responses={
        200: {"description": "idempotent replay: the same key and body were accepted before"},
        409: {"description": "the Idempotency-Key was used for another body"},
    },
    route_class_override=fast_route(_accept_fast),
)


def _content(body: MessageCreate) -> Message | dict[str, Any]:
    """The message, or with a template the fields the rendered template completes (rendered at acceptance)."""
    return body.to_message() if body.template is None else body.to_fields()


async def accept_batch(body: BatchCreate, svc: ServicesDep, _caller: Caller) -> BatchAccepted:
    """Accept up to 500 messages; each item is accepted or refused on its own."""
    results: list[BatchResult] = []
    pending: list[tuple[int, BatchItem]] = []
    for index, raw in enumerate(body.messages):
        try:
            pending.append((index, BatchItem.model_validate(raw)))
        except ValidationError as exc:
            errors = [{"loc": list(e["loc"]), "msg": str(e["msg"])} for e in exc.errors(include_url=False)]
            results.append(BatchResult(index=index, status=422, detail="invalid message", errors=errors))
    accepted = await _enqueue_all(svc, pending)
    results.extend(accepted)
    results.sort(key=lambda r: r.index)
    ok = sum(1 for r in results if r.status in (200, 202))
    return BatchAccepted(accepted=ok, refused=len(results) - ok, results=results)


async def _enqueue_all(svc: ServicesDep, items: list[tuple[int, BatchItem]]) -> list[BatchResult]:
    async def one(index: int, item: BatchItem) -> BatchResult:
        try:
            result = await _enqueue(svc, item, item.idempotency_key)  # counts it accepted unless a replay
        except (MessageError, TemplateError) as exc:
            return BatchResult(index=index, status=422, detail=str(exc), errors=exc.errors)
        except IdempotencyConflictError as exc:
            return BatchResult(index=index, status=409, detail=str(exc))
        return BatchResult(index=index, status=200 if result.replayed else 202, id=result.id)

    return list(await asyncio.gather(*(one(i, item) for i, item in items)))


async def _accept_batch_fast(request: Request) -> Response | None:
    """``accept_batch`` without FastAPI's generic handler (see ``fastpath``); None hands the request over."""
    raw = await request.body()  # first, as in _accept_fast
    if not plain_json(request.headers.get("content-type")):
        return None
    try:
        body = BatchCreate.model_validate_json(raw)
    except ValidationError:
        return None
    svc: Services = request.app.state.services
    await authenticated(request, svc)
    return json_response(await accept_batch(body, svc, ""), 207)


router.add_api_route(
    "/batch",
    accept_batch,
    methods=["POST"],
    status_code=207,
    response_model=BatchAccepted,
    dependencies=[Depends(json_body)],
    route_class_override=fast_route(_accept_batch_fast),
)


@router.api_route("/batch", methods=["GET", "PUT", "PATCH", "DELETE"], include_in_schema=False)
async def batch_other_methods() -> None:
    """Without this, ``GET /v1/messages/batch`` would be read as a message id."""
    raise ApiError(405, "only POST is allowed on /v1/messages/batch", headers={"Allow": "POST"})


@router.get("/{message_id}", response_model=MessagePublic)
async def status(message_id: MessageId, svc: ServicesDep, _caller: Caller) -> MessagePublic:
    """A message's status and its event timeline."""
    return MessagePublic.of(await svc.store.get(message_id))


@router.get("", response_model=MessagePage)
async def list_messages(
    svc: ServicesDep,
    _caller: Caller,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(STATUSES) + ")$")] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    recipient: Annotated[str | None, Query(max_length=320)] = None,
    cursor: Annotated[str | None, Query(pattern=r"^[0-9A-HJKMNP-TV-Z]{26}$")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> MessagePage:
    """Newest first, filtered; pass ``next_cursor`` back as ``cursor`` for the next page."""
    page = await svc.store.list_messages(status=status, tag=tag, recipient=recipient, cursor=cursor, limit=limit)
    return MessagePage(items=[MessageSummary.of(r) for r in page.items], next_cursor=page.next_cursor)


@router.post("/{message_id}/cancel", response_model=MessagePublic, responses={409: {"description": "too late"}})
async def cancel(message_id: MessageId, svc: ServicesDep, _caller: Caller) -> MessagePublic:
    """Cancel a message that no worker has claimed yet."""
    await svc.store.cancel(message_id)
    return MessagePublic.of(await svc.store.get(message_id))


@router.post("/{message_id}/retry", response_model=MessagePublic, responses={409: {"description": "not failed"}})
async def retry(message_id: MessageId, svc: ServicesDep, _caller: Caller) -> MessagePublic:
    """Queue a failed or expired message again."""
    await svc.store.retry(message_id)
    svc.mailer.wake_worker()
    return MessagePublic.of(await svc.store.get(message_id))
