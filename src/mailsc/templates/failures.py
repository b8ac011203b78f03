"""Jinja2's exceptions, and anything a template's code raised, translated into ``TemplateError`` (the one place).

The error names the template, the part (subject, html, text), the line in the template source (Jinja rewrites
tracebacks so their innermost frames are template lines), and for an undefined variable its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import TracebackType

from jinja2 import TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from ..errors import TemplateError
from .limits import LimitExceeded

_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")


def _position(tb: TracebackType | None) -> tuple[str | None, int | None]:
    """The innermost template frame of a traceback Jinja rewrote: (template file name, line)."""
    found: tuple[str | None, int | None] = (None, None)
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            found = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _relative(filename: str | None, folder: Path | None) -> str | None:
    if filename is None or folder is None:
        return filename
    try:
        return Path(filename).resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        return filename


def translate(
    exc: BaseException,
    *,
    template: str,
    version: int | None,
    part: str,
    own_file: str,
    folder: Path | None = None,
) -> TemplateError:
    """A ``TemplateError`` for ``exc``, raised while compiling or rendering ``part`` of ``template``.

    ``own_file`` is the part's own template file name; an error inside another file (a base template, an include)
    names that file too. ``folder`` turns file-template paths into names relative to the templates folder.
    """
    if isinstance(exc, TemplateError):
        return exc
    if isinstance(exc, TemplateSyntaxError):
        filename: str | None = exc.name or _relative(exc.filename, folder)
        line: int | None = exc.lineno
        message = f"syntax error: {exc.message}"
    else:
        filename, line = _position(exc.__traceback__)
        filename = _relative(filename, folder)
        message = _describe(exc)
    variable = None
    if isinstance(exc, UndefinedError):
        match = _UNDEFINED.match(str(exc.message))
        if match:
            variable = match.group(1)
            message = f"variable {variable!r} is not defined: give it in the variables"
    return TemplateError(
        message,
        template=template,
        version=version,
        part=part,
        line=line,
        variable=variable,
        file=filename if filename not in (None, own_file) else None,
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UndefinedError):
        return f"undefined value: {exc.message}"
    if isinstance(exc, SecurityError):
        return f"refused by the sandbox: {exc}"
    if isinstance(exc, LimitExceeded):
        return f"stopped: {exc}"
    if isinstance(exc, TemplateNotFound):
        return f"extends, includes or imports {exc.name!r}, which is not in the templates folder"
    if isinstance(exc, RecursionError):
        return "stopped: macros or recursive loops nest too deeply"
    if isinstance(exc, MemoryError):
        return "stopped: out of memory"
    return f"rendering failed: {type(exc).__name__}: {exc}"
