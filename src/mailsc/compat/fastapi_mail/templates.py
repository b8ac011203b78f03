"""Templates from ``TEMPLATE_FOLDER``, rendered as fastapi-mail renders them: a Jinja2 ``Environment`` with a
``FileSystemLoader`` and autoescape on, the variables from ``template_body`` (a dict, or a list passed as ``body``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader


@lru_cache(maxsize=16)
def environment(folder: Path) -> Environment:
    """One environment per folder (Jinja2 caches compiled templates and reloads a changed file)."""
    return Environment(loader=FileSystemLoader(folder), autoescape=True)


def template_data(data: Any) -> dict[Any, Any]:
    """fastapi-mail's ``FastMail.check_data``: a dict as it is, a list as ``{"body": list}``."""
    if isinstance(data, dict):
        return data
    if isinstance(data, list):
        return {"body": data}
    raise ValueError(f"Unable to build template data dictionary - {type(data)}is an invalid source data type")


def render(folder: Path, name: str, data: Any) -> str:
    """Render ``name`` from ``folder`` with ``data`` (``jinja2.TemplateNotFound`` when it does not exist)."""
    return environment(folder).get_template(name).render(**template_data(data))
