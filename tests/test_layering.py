"""DESIGN.md §1: imports point down only. An AST check over src/mailsc keeps the layers honest."""

from __future__ import annotations

import ast
from pathlib import Path

import mailsc

PACKAGE = Path(mailsc.__file__).parent


def _imports(path: Path) -> set[str]:
    """The mailsc modules a file imports, as dotted names relative to the package (``transports.smtp``)."""
    module_parts = path.relative_to(PACKAGE).with_suffix("").parts
    package_parts = module_parts[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package_parts[: len(package_parts) - node.level + 1])
                target = [*base, *(node.module.split(".") if node.module else [])]
                found.add(".".join(target))
            elif node.module and node.module.startswith("mailsc"):
                found.add(node.module.removeprefix("mailsc").lstrip("."))
        elif isinstance(node, ast.Import):
            found.update(a.name.removeprefix("mailsc.") for a in node.names if a.name.startswith("mailsc."))
    return found


def _modules() -> dict[str, set[str]]:
    result = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        result[name] = _imports(path)
    return result


def test_nothing_imports_the_entry_points() -> None:
    for module, imports in _modules().items():
        if module in ("cli", "__main__") or module.startswith(("api", "cli.")):
            continue
        if module.startswith("web"):  # the pages are part of the service: they use its dependencies (api.deps)
            assert not {i for i in imports if i == "cli" or (i.startswith("api") and i != "api.deps")}, module
            continue
        assert not {i for i in imports if i == "cli" or i.startswith("api")}, module


def test_only_the_app_imports_the_web_pages() -> None:
    for module, imports in _modules().items():
        if module == "api.app" or module.startswith("web"):
            continue
        assert not [i for i in imports if i == "web" or i.startswith("web.")], module


def test_transports_and_outbox_never_import_each_other() -> None:
    for module, imports in _modules().items():
        if module.startswith("transports"):
            assert not [i for i in imports if i.startswith("outbox")], module
        if module.startswith("outbox"):
            assert not [i for i in imports if i.startswith("transports")], module


def test_lower_layers_do_not_import_upper_ones() -> None:
    upper = ("mailer", "delivery", "api", "cli", "integrations", "compat", "web", "doctor")
    lower = (
        "errors",
        "envelope",
        "config",
        "message",
        "mime",
        "htmltext",
        "keys",
        "logs",
        "metrics",
        "transports",
        "outbox",
    )
    for module, imports in _modules().items():
        if module.startswith(lower):
            # doctor.steps is a plain dataclass both the SMTP and the provider diagnoses report in.
            bad = [i for i in imports if i.startswith(upper) and i != "doctor.steps"]
            assert not bad, f"{module} imports {bad}"


def test_fastapi_only_under_api_and_integrations() -> None:
    # compat/fastapi_mail mirrors fastapi-mail, whose attachments are Starlette UploadFiles; `import mailsc` never
    # imports it.
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).as_posix()
        if relative.startswith(("api/", "integrations/", "web/", "compat/fastapi_mail/")):
            continue
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not {n for n in names if n.split(".")[0] in ("fastapi", "starlette")}, relative


def test_the_check_sees_real_imports() -> None:
    modules = _modules()
    assert "config" in modules["transports.smtp"]
    assert "errors" in modules["transports.smtp"]
    assert "transports.smtp_errors" in modules["transports.smtp"]
