"""Log files, their format, and the masking of secrets in every handler."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from mealplan_cli.config import Settings
from mealplan_cli.logs import setup_logging

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
