"""Finding the template a message names: a stored template (its latest version) first, else a file template."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from .files import FileTemplates
from .render import RenderedTemplate, TemplateSource
from .stored import StoredTemplates

StoredLookup = Callable[[str], Awaitable[TemplateSource | None]]


class TemplateCatalog:
    """Renders templates by name for sending and previews.

    ``lookup(name)`` returns the latest stored version of a template (or ``None``); it is asked on every render, so a
    new version stored by any process is used by the next message, and the message records that version. Concurrent
    renders of the same name (a batch) share one lookup. Without a stored template of that name, the file template
    of ``files`` is used.
    """

    def __init__(
        self, files: FileTemplates, *, stored: StoredTemplates | None = None, lookup: StoredLookup | None = None
    ) -> None:
        self.files = files
        self.stored = stored or StoredTemplates(files.limits)
        self.lookup = lookup
        self._inflight: dict[str, asyncio.Task[TemplateSource | None]] = {}

    async def source(self, name: str) -> TemplateSource | None:
        """The latest stored version of ``name``, or ``None`` (also when there is no store)."""
        if self.lookup is None:
            return None
        task = self._inflight.get(name)
        if task is None or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(self.lookup(name))
            self._inflight[name] = task

            def done(finished: asyncio.Task[TemplateSource | None]) -> None:
                if self._inflight.get(name) is finished:
                    del self._inflight[name]

            task.add_done_callback(done)
        return await asyncio.shield(task)

    async def ensure_exists(self, name: str) -> None:
        """Raise ``TemplateNotFoundError`` unless ``name`` is a stored template or a template file (a quick check
        before rendering many messages with it)."""
        if await self.source(name) is None:
            self.files.compiled(name)

    async def render(self, name: str, variables: Mapping[str, Any] | None = None) -> RenderedTemplate:
        """Render template ``name``; raises ``TemplateNotFoundError`` or another ``TemplateError``."""
        source = await self.source(name)
        if source is not None:
            return self.stored.render(source, variables or {})
        return self.files.render(name, variables or {})
