"""`mailsc send --template` and `mailsc send-bulk --template` (variables from the CSV's columns)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.templates.conftest import FILES
from tests.test_cli import (  # noqa: F401 - the autouse fixtures of the CLI tests apply here too
    all_messages,
    build_the_command_once,
    database_url,
    logging_calls,
    one_line_error,
    run,
)


@pytest.fixture(autouse=True)
def templates_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "mail-templates"
    for name, content in FILES.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    monkeypatch.setenv("MAILSC_TEMPLATES_DIR", str(root))
    return root


def test_send_with_a_template_and_vars() -> None:
    result = run("send", "--to", "a@example.org", "--template", "both", "--var", "name=Ann")
    assert result.exit_code == 0, result.stderr
    [record] = all_messages(database_url_value())
    assert (record.subject, record.template_name, record.template_version) == ("Both for Ann", "both", None)


def test_send_with_a_template_from_stdin_json() -> None:
    body = '{"to": "a@example.org", "template": "both", "variables": {"name": "Bo"}}'
    assert run("send", "--stdin-json", stdin=body).exit_code == 0
    [record] = all_messages(database_url_value())
    assert record.subject == "Both for Bo"


def test_send_template_errors_are_one_line_usage_errors() -> None:
    missing = one_line_error(run("send", "--to", "a@example.org", "--template", "both"), 2)
    assert "variable 'name' is not defined" in missing
    assert "no stored template" in one_line_error(run("send", "--to", "a@example.org", "--template", "nope"), 2)
    assert "--var is only used with --template" in one_line_error(
        run("send", "--to", "a@example.org", "--subject", "s", "--text", "t", "--var", "a=b"), 2
    )
    assert all_messages(database_url_value()) == []


def test_send_bulk_with_a_template_fills_variables_from_columns(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name"])
        writer.writerows([["u1@example.org", "Una"], ["u2@example.org", "<Dos>"]])
    result = run("send-bulk", str(path), "--template", "both")
    assert result.exit_code == 0, result.stderr
    records = sorted(all_messages(database_url_value()), key=lambda r: r.recipients[0])
    assert [r.subject for r in records] == ["Both for Una", "Both for <Dos>"]
    assert {r.template_name for r in records} == {"both"}
    rerun = run("send-bulk", str(path), "--template", "both")  # idempotent, as without templates
    assert "queued 0, already queued 2" in rerun.stdout


def test_send_bulk_refuses_rows_the_template_cannot_render(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text("email,other\nu1@example.org,x\n")
    result = run("send-bulk", str(path), "--template", "both")
    assert result.exit_code == 1
    assert "line 2:" in result.stderr
    assert "'name' is not defined" in result.stderr
    assert "no stored template" in one_line_error(run("send-bulk", str(path), "--template", "nope"), 2)


def database_url_value() -> str:
    import os

    return os.environ["MAILSC_DATABASE_URL"]
