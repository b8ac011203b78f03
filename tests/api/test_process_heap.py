"""``mailsc serve`` owns its process: once started, its long-lived objects leave the garbage collector's full passes
(``gc.freeze``), which removed 75-95 ms pauses from the accept path. An app built for a test or embedded elsewhere
(the default) leaves the collector alone."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailsc.api.app import create_app
from tests.api.conftest import make_settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # give this test process its collector back


@pytest.mark.usefixtures("unfrozen")
async def test_serve_freezes_the_heap_once_started(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, None), run_worker=False, freeze_heap=True)
    assert gc.get_freeze_count() == 0  # not while building the app: only once its lifespan has started
    async with app.router.lifespan_context(app):
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the imported modules, the app, its engines


@pytest.mark.usefixtures("unfrozen")
async def test_an_app_leaves_the_collector_alone_by_default(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, None), run_worker=False)
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() == 0
