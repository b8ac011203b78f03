"""The library surface lives in ``mailsc/__init__.py``: a sorted ``__all__`` that names exactly what it exports."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import mailsc


def test_all_is_sorted_and_unique() -> None:
    assert mailsc.__all__ == sorted(mailsc.__all__)
    assert len(set(mailsc.__all__)) == len(mailsc.__all__)


def test_all_names_exist_and_public_names_are_listed() -> None:
    for name in mailsc.__all__:
        assert hasattr(mailsc, name), name
    public = {n for n in vars(mailsc) if not n.startswith("_") and n not in {"annotations"}}
    modules = {n for n in public if type(getattr(mailsc, n)).__name__ == "module"}
    assert public - modules == set(mailsc.__all__) - {"__version__"}


def test_ships_py_typed() -> None:
    assert (Path(mailsc.__file__).parent / "py.typed").is_file()


def test_import_does_not_pull_in_the_web_stack_or_migrations() -> None:
    code = "import sys, mailsc; print(sorted(m for m in ('fastapi', 'starlette', 'alembic') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[]"
