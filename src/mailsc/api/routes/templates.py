"""``/v1/templates``: stored templates (every PUT a new version), and previews that render without sending."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from ...errors import TemplateNotFoundError
from ...outbox.templates import StoredTemplate
from ..deps import Caller, ServicesDep, json_body
from ..problems import ApiError, problem_responses
from ..schemas import TEMPLATE_NAME

router = APIRouter(prefix="/v1/templates", tags=["templates"], responses=problem_responses(401, 404))
MAX_VERSION = 2**31 - 1  # the column is a 32-bit INTEGER on PostgreSQL
TemplateName = Annotated[str, Path(pattern=TEMPLATE_NAME, description="letters, digits, '_', '-', '.'")]


class TemplateIn(BaseModel):
    """A template's source: Jinja2 for the subject and for an HTML part, a text part, or both."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject": "Welcome, {{ name }}",
                    "html": "<style>p { color: #333 }</style><p>Hello {{ name }}, <a href='{{ url }}'>start</a>.</p>",
                }
            ]
        },
    )

    subject: str
    html: str | None = None
    text: str | None = Field(None, description="without one, the text part is derived from the rendered HTML")


class TemplatePublic(TemplateIn):
    model_config = ConfigDict(extra="forbid")

    name: str
    version: int
    created_at: datetime

    @classmethod
    def of(cls, stored: StoredTemplate) -> TemplatePublic:
        return cls(
            name=stored.name,
            version=stored.version,
            subject=stored.subject,
            html=stored.html,
            text=stored.text,
            created_at=stored.created_at,
        )


class TemplateSummary(BaseModel):
    name: str
    version: int
    subject: str
    created_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateSummary]


class PreviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    variables: dict[str, Any] = Field(default_factory=dict)


class Preview(BaseModel):
    """Exactly what a message sent with these variables would carry: subject, HTML (CSS inlined), text."""

    name: str
    version: int | None = Field(description="the stored version rendered (null for a file template)")
    subject: str
    html: str | None
    text: str | None


def _not_found(name: str) -> ApiError:
    return ApiError(404, f"no template {name!r}", slug="not-found")


@router.get("", response_model=TemplateList)
async def list_templates(svc: ServicesDep, _caller: Caller) -> TemplateList:
    """The latest version of every stored template."""
    items = [
        TemplateSummary(name=t.name, version=t.version, subject=t.subject, created_at=t.created_at)
        for t in await svc.store.list_templates()
    ]
    return TemplateList(items=items)


@router.put(
    "/{name}",
    response_model=TemplatePublic,
    status_code=200,
    dependencies=[Depends(json_body)],
    responses={201: {"description": "the first version of this name"}},
)
async def put_template(
    name: TemplateName, body: TemplateIn, response: Response, svc: ServicesDep, _caller: Caller
) -> TemplatePublic:
    """Store a new version. It is compiled first: a syntax error is a 422 naming the part and line, nothing stored."""
    svc.mailer.templates.stored.check(name, body.subject, body.html, body.text)
    stored = await svc.store.put_template(name, subject=body.subject, html=body.html, text=body.text)
    if stored.version == 1:
        response.status_code = 201
    return TemplatePublic.of(stored)


@router.get("/{name}", response_model=TemplatePublic)
async def get_template(
    name: TemplateName,
    svc: ServicesDep,
    _caller: Caller,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_VERSION, description="an earlier version (default: latest)")
    ] = None,
) -> TemplatePublic:
    """A stored template's source, latest version or the one asked for."""
    stored = await svc.store.get_template(name, version)
    if stored is None:
        raise _not_found(name)
    return TemplatePublic.of(stored)


@router.delete("/{name}", status_code=204, response_class=Response)
async def delete_template(name: TemplateName, svc: ServicesDep, _caller: Caller) -> Response:
    """Delete every version; messages already accepted keep what was rendered. Version numbers are not reused."""
    if not await svc.store.delete_template(name):
        raise _not_found(name)
    svc.mailer.templates.stored.forget(name)
    return Response(status_code=204)


@router.post("/{name}/preview", response_model=Preview, dependencies=[Depends(json_body)])
async def preview(name: TemplateName, body: PreviewIn, svc: ServicesDep, _caller: Caller) -> Preview:
    """Render with ``variables`` and send nothing: the same rendering a message gets (stored template, else file).
    A missing variable is a 422 naming it."""
    try:
        rendered = await svc.mailer.templates.render(name, body.variables)
    except TemplateNotFoundError:
        raise _not_found(name) from None
    return Preview(
        name=rendered.name, version=rendered.version, subject=rendered.subject, html=rendered.html, text=rendered.text
    )
