"""``mailsc doctor``: diagnose a delivery setup step by step, stopping at the first failing step with the fix."""

from __future__ import annotations

from .steps import Step

__all__ = ["Step"]
