"""Stored templates (the API's ``/v1/templates``): compiled once per version in the immutable sandbox, cached."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from .limits import TemplateLimits
from .render import CompiledTemplate, RenderedTemplate, TemplateSource, compile_source, render
from .sandbox import StoredTemplateEnvironment

CACHE_SIZE = 256
logger = logging.getLogger(__name__)


class StoredTemplates:
    """Compiles and renders stored templates. A version's source never changes, so ``(name, version)`` is a safe
    cache key: a new version is a new key, and the older versions of that name are dropped when it arrives."""

    def __init__(self, limits: TemplateLimits | None = None, *, cache_size: int = CACHE_SIZE) -> None:
        self.limits = limits or TemplateLimits()
        self.environment = StoredTemplateEnvironment()
        self._cache: OrderedDict[tuple[str, int], CompiledTemplate] = OrderedDict()
        self._cache_size = cache_size

    def check(self, name: str, subject: str | None, html: str | None, text: str | None) -> None:
        """Compile a template about to be stored; raises ``TemplateError`` (syntax, size, includes) naming the line.
        The CSS is not inlined here: that never refuses a template, and the first render of the version does it."""
        sources = {"subject": subject, "html": html, "text": text}
        compile_source(self.environment, name, None, sources, self.limits, inline=False)

    def compiled(self, source: TemplateSource) -> CompiledTemplate:
        """``source`` compiled, from the cache when this version was compiled before."""
        key = (source.name, source.version)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        sources = {"subject": source.subject, "html": source.html, "text": source.text}
        compiled = compile_source(self.environment, source.name, source.version, sources, self.limits)
        if compiled.not_inlined and source.html is not None:
            logger.info(
                "template.css_inlined_per_message",
                extra={"template": source.name, "version": source.version, "reason": compiled.not_inlined},
            )
        for older in [k for k in self._cache if k[0] == source.name and k[1] < source.version]:
            del self._cache[older]
        self._cache[key] = compiled
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return compiled

    def forget(self, name: str) -> None:
        """Drop every cached version of ``name`` (after it was deleted)."""
        for key in [k for k in self._cache if k[0] == name]:
            del self._cache[key]

    def render(self, source: TemplateSource, variables: Mapping[str, Any]) -> RenderedTemplate:
        """Render ``source`` with ``variables``; raises ``TemplateError``."""
        return render(self.compiled(source), variables, self.limits)
