"""The peers' environment: fastapi-mail in its own virtual environment under bench/, never a dependency of mailsc.

``fastapi_mail_python()`` creates ``bench/.venv-fastapi-mail`` (git-ignored) on first use with pip from the
package registry: fastapi-mail at a fixed version, and FastAPI and uvicorn at the versions mailsc's own
environment has, so both servers run on the same framework and server code. Later runs reuse it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench import REPO, package_version

VENV = REPO / "bench" / ".venv-fastapi-mail"
FASTAPI_MAIL = "fastapi-mail==1.6.8"


def _requirements() -> list[str]:
    return [
        FASTAPI_MAIL,
        f"fastapi=={package_version('fastapi')}",
        f"uvicorn[standard]=={package_version('uvicorn')}",
    ]


def _installed_version(python: Path) -> str | None:
    """fastapi-mail's version in that environment, or None if it cannot import what the app needs."""
    probe = "import fastapi, fastapi_mail, uvicorn, uvloop, httptools; from importlib.metadata import version; "
    probe += "print(version('fastapi-mail'))"
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def fastapi_mail_python() -> tuple[Path, str]:
    """The interpreter of the fastapi-mail environment (created or completed now if needed) and its version."""
    python = VENV / "bin" / "python"
    found = _installed_version(python) if python.exists() else None
    if found == FASTAPI_MAIL.partition("==")[2]:
        return python, found
    if not python.exists():
        print(f"summary: creating {VENV.relative_to(REPO)} for fastapi-mail", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    install = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *_requirements()]
    result = subprocess.run(install, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"installing fastapi-mail into {VENV} failed: {result.stderr.strip()[-1000:]}")
    found = _installed_version(python)
    if found is None:
        raise SystemExit(f"{VENV} has no working fastapi-mail after pip install")
    return python, found
