"""What every doctor walk shares: recording steps as they complete, and stopping at the first failing one."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from .session import ClosedError, NotSmtpError
from .steps import Step

OnStep = Callable[[Step], None]
FAILURES = (TimeoutError, ClosedError, NotSmtpError, OSError)  # what a probe of a live server may raise


class StopWalkError(Exception):
    """Raised after a failing step has been recorded: the walk ends there."""


class Walk:
    """Records steps in order (``steps``), tells ``on_step`` as each completes, and ends the walk at a failure."""

    def __init__(self, on_step: OnStep | None) -> None:
        self.on_step = on_step
        self.steps: list[Step] = []

    # -- recording ---------------------------------------------------------------------------------------------

    def ok(self, name: str, title: str, detail: str, **data: Any) -> None:
        self._record(Step(name, title, True, detail, "", data))

    def fail(self, name: str, title: str, detail: str, fix: str, **data: Any) -> NoReturn:
        self._record(Step(name, title, False, detail, fix, data))
        raise StopWalkError

    def _record(self, step: Step) -> None:
        self.steps.append(step)
        if self.on_step is not None:
            self.on_step(step)


def dropped_fix(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "the server stopped answering: try again, or a longer MAILSC_SMTP_TIMEOUT"
    return "the server dropped the session: check its logs, or try again later"
