"""Templates from ``TEMPLATE_FOLDER``, as fastapi-mail's ``template_name``: one file rendered with ``template_body``
as its variables (a dict, or a list passed as ``body``), through mailsc's ``FileTemplates.render_file``.

So they render in mailsc's bounded sandbox with HTML files autoescaped, and a variable the template uses but
``template_body`` lacks raises ``TemplateError`` naming it (fastapi-mail renders it as an empty string).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment

from ...templates import FileTemplates


@lru_cache(maxsize=16)
def file_templates(folder: Path) -> FileTemplates:
    """One per folder: compiled templates are cached, and recompiled when their file changes."""
    return FileTemplates(folder)


def environment(folder: Path) -> Environment:
    """The Jinja2 environment behind ``ConnectionConfig.template_engine()``."""
    return file_templates(folder).environment


def template_data(data: Any) -> dict[Any, Any]:
    """fastapi-mail's ``FastMail.check_data``: a dict as it is, a list as ``{"body": list}``."""
    if isinstance(data, dict):
        return data
    if isinstance(data, list):
        return {"body": data}
    raise ValueError(f"Unable to build template data dictionary - {type(data)}is an invalid source data type")


def render(folder: Path, name: str, data: Any) -> str:
    """Render the file ``name`` of ``folder`` with ``data``; ``TemplateError`` when it is missing or fails."""
    return file_templates(folder).render_file(name, template_data(data))
