"""Log files, their format, and the masking of secrets in every handler."""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.config import Settings
from mealplan_cli.logs import TextFormatter, setup_logging

KEY = "sk-live-0123456789abcdef"
PASSWORD = "db-pass-9f8e7d"


def settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(
        openai_api_key=SecretStr(KEY),
        database_url=SecretStr(f"postgresql://worker:{PASSWORD}@db.example:5432/postgres"),
        log_dir=tmp_path / "logs",
        **extra,
    )


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """setup_logging configures the process; leave it as the next test expects it."""
    root = logging.getLogger("mealworker")
    handlers, level, propagate = list(root.handlers), root.level, root.propagate
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = propagate


def test_the_password_inside_database_url_is_a_secret_too(tmp_path: Path) -> None:
    assert PASSWORD in settings(tmp_path).redactor().values


def test_psycopg_records_reach_the_masked_handlers(tmp_path: Path) -> None:
    setup_logging(settings(tmp_path), worker_id="vps-1")
    logging.getLogger("psycopg").warning(
        "error connecting: missing '=' after 'worker:%s@db' in connection info string", PASSWORD
    )
    combined = (tmp_path / "logs" / "combined.log").read_text()
    assert "worker:***@db" in combined
    assert PASSWORD not in combined


def log_a_leak() -> None:
    log = logging.getLogger("mealworker.worker")
    log.error("calling with key %s", KEY, extra={"job_id": 7, "job_type": "ping", "attempt": 2})
    try:
        raise RuntimeError(f"connect failed for postgresql://worker:{PASSWORD}@db")
    except RuntimeError:
        log.exception("unexpected error", extra={"job_id": 7, "job_type": "ping", "attempt": 2})


def test_files_mask_secrets_in_messages_and_tracebacks(tmp_path: Path) -> None:
    setup_logging(settings(tmp_path), worker_id="vps-1")
    log_a_leak()
    combined = (tmp_path / "logs" / "combined.log").read_text()
    errors = (tmp_path / "logs" / "error.log").read_text()
    for text in (combined, errors):
        assert KEY not in text
        assert PASSWORD not in text
        assert "calling with key ***" in text
        assert "RuntimeError: connect failed for postgresql://worker:***@db" in text
        assert "worker=vps-1 job=7 type=ping attempt=2" in text


def test_json_lines_carry_the_job_fields(tmp_path: Path) -> None:
    setup_logging(settings(tmp_path, log_format="json"), worker_id="vps-1")
    log_a_leak()
    lines = [
        json.loads(line) for line in (tmp_path / "logs" / "error.log").read_text().splitlines()
    ]
    assert lines[0]["message"] == "calling with key ***"
    assert (lines[0]["worker_id"], lines[0]["job_id"], lines[0]["attempt"]) == ("vps-1", 7, 2)
    assert PASSWORD not in lines[1]["error"]


RECORD = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) +\S")


def test_a_console_that_is_not_a_terminal_gets_one_line_per_record(database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "WORKER_ID": "vps-" + "x" * 60, "LOG_DIR": "logs"}
    result = CliRunner().invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    records = [line for line in result.stderr.splitlines() if not line.startswith("worker stopped")]
    assert records
    for line in records:
        assert RECORD.match(line), line
        assert f"worker=vps-{'x' * 60}" in line
    assert any("transport postgres" in line and "concurrency" in line for line in records)


def test_one_line_records_keep_their_traceback_on_the_line(tmp_path: Path) -> None:
    formatter = TextFormatter("vps-1", one_line=True)
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord(
            "mealworker", logging.ERROR, "", 0, "failed", None, sys.exc_info()
        )
    line = formatter.format(record)
    assert "\n" not in line
    assert RECORD.match(line)
    assert "RuntimeError: boom\\nsecond line" in line


def test_log_format_json_prints_json_on_the_console(database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "LOG_FORMAT": "json", "LOG_DIR": "logs"}
    result = CliRunner().invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("{")]
    assert lines
    assert all(json.loads(line)["time"].endswith("Z") for line in lines)


@pytest.mark.parametrize(
    ("name", "level"),
    [
        ("error", "ERROR"),
        ("warn", "WARNING"),
        ("info", "INFO"),
        ("http", "INFO"),
        ("verbose", "DEBUG"),
        ("debug", "DEBUG"),
        ("silly", "DEBUG"),
    ],
)
def test_the_node_worker_s_level_names_are_accepted(name: str, level: str) -> None:
    assert Settings.load(env_file=None, environ={"LOG_LEVEL": name}).log_level.value == level


def test_log_level_warn_does_not_break_a_command() -> None:
    result = CliRunner().invoke(
        app, ["generate", "--days", "1", "--json"], env={"LOG_LEVEL": "warn"}
    )
    assert result.exit_code == 0, result.output
