"""Limits on templates and the per-render budget that enforces them from inside the template code.

A Jinja template compiles to Python and runs in the caller's thread; nothing can interrupt it from outside without
killing the process. So the sandbox (``sandbox.py``) calls back here at every point where work can pile up: each
loop iteration, each call, each intercepted operator, each chunk of output. These checks raise ``LimitExceeded``
*before* an oversized value is built (``'a' * 10**9`` is refused from the operands' sizes) and stop a render whose
loops run past the iteration budget or whose time runs out. The budget lives in a context variable, so concurrent
renders in other threads or tasks each have their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class TemplateLimits:
    """How much a template may be and do. The defaults fit transactional mail with a wide margin.

    ``max_source_size``: characters in each part of a template's source. ``max_rendered_size``: characters in each
    rendered part, and in any string or list built while rendering. ``max_iterations``: loop iterations and calls in
    one render, all loops together (so nested loops count their product). ``max_range``: items one ``range()`` may
    produce. ``render_timeout``: seconds one message's rendering may take.
    """

    max_source_size: int = 256 * 1024
    max_rendered_size: int = 1024 * 1024
    max_iterations: int = 200_000
    max_range: int = 10_000
    render_timeout: float = 0.5


class LimitExceeded(Exception):  # noqa: N818 - internal; always translated into a TemplateError
    """A render went past one of its limits; translated into ``TemplateError`` with the template's line."""


class Budget:
    """What one render may still spend."""

    __slots__ = ("deadline", "limits", "steps_left")

    def __init__(self, limits: TemplateLimits) -> None:
        self.limits = limits
        self.steps_left = limits.max_iterations
        self.deadline = time.monotonic() + limits.render_timeout


# Outside any render (Jinja folds constants at compile time) the defaults apply, with a fresh clock.
_current: ContextVar[Budget | None] = ContextVar("mailsc_template_budget", default=None)


def start(limits: TemplateLimits) -> object:
    """Begin a render's budget; pass the returned token to ``finish``."""
    return _current.set(Budget(limits))


def finish(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]


def budget() -> Budget:
    found = _current.get()
    return found if found is not None else Budget(TemplateLimits())


def tick() -> None:
    """One unit of work (a loop iteration or a call): refuse past the iteration budget, and every
    ``_CLOCK_EVERY`` steps past the deadline (reading the clock at every step cost more than the rest of the
    accounting; a step is small, bounded work, so this overshoots the deadline by microseconds)."""
    current = _current.get()
    if current is None:
        current = Budget(TemplateLimits())
    current.steps_left = steps = current.steps_left - 1
    if steps & _CLOCK_MASK and steps >= 0:
        return
    if steps < 0:
        raise LimitExceeded(
            f"the template ran more than {current.limits.max_iterations:,} loop iterations and calls "
            "(nested loops count their product)"
        )
    if time.monotonic() > current.deadline:
        raise LimitExceeded(f"rendering took longer than {current.limits.render_timeout:g} s")


_CLOCK_EVERY = 16
_CLOCK_MASK = _CLOCK_EVERY - 1


def max_size() -> int:
    found = _current.get()
    return (found.limits if found is not None else _DEFAULTS).max_rendered_size


_DEFAULTS = TemplateLimits()


def ensure_size(size: int, what: str = "a value") -> None:
    """Refuse to build ``what`` of ``size`` characters or items when that is more than a rendered part may hold."""
    if size > (limit := max_size()):
        raise LimitExceeded(f"{what} would have {size:,} characters or items; at most {limit:,} are allowed")


def guarded(iterable: Iterable[Any]) -> Iterator[Any]:
    """Iterate ``iterable``, spending one step of the budget per item (every ``for`` loop goes through this)."""
    for item in iterable:
        tick()
        yield item


def bounded_range(*args: int) -> range:
    """``range()`` for templates: at most ``max_range`` items (a loop over it spends a step per item)."""
    numbers = range(*args)
    limit = budget().limits.max_range
    if len(numbers) > limit:
        raise LimitExceeded(f"range() of {len(numbers):,} items; at most {limit:,} are allowed")
    return numbers
