"""Log files, their format, and the masking of secrets in every handler."""

from __future__ import annotations

import json
import logging
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from mealplan_cli.cli import app
from mealplan_cli.ops.logs import TextFormatter, setup_logging
from mealplan_cli.settings.config import Settings
from tests.helpers.processes import clean_environment, wait_until

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


RECORD = re.compile(
    r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) +\S"
)


def test_a_console_that_is_not_a_terminal_gets_one_line_per_record(database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "WORKER_ID": "vps-" + "x" * 60, "LOG_DIR": "logs"}
    result = CliRunner().invoke(app, ["work", "--until-empty"], env=env)
    assert result.exit_code == 0, result.output
    records = result.stderr.splitlines()
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


def test_files_keep_a_record_and_its_traceback_on_one_line(tmp_path: Path) -> None:
    setup_logging(settings(tmp_path), worker_id="vps-1")
    log_a_leak()
    for name in ("combined.log", "error.log"):
        lines = (tmp_path / "logs" / name).read_text().splitlines()
        assert len(lines) == 2, lines  # two records, two lines: no traceback line of its own
        for line in lines:
            assert RECORD.match(line), line
        assert "Traceback (most recent call last)" in lines[1]


def run_worker(env: dict[str, str], tmp_path: Path, *, until: str | None = None) -> tuple[int, str]:
    """``mealworker work`` as a process; with ``until``, SIGTERM once the log file says it."""
    command = [sys.executable, "-m", "mealplan_cli", "work"]
    process = subprocess.Popen(
        command,
        env={**clean_environment(), "LOG_DIR": str(tmp_path / "logs"), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        if until is not None:
            combined = tmp_path / "logs" / "combined.log"
            wait_until(
                lambda: (
                    process.poll() is not None
                    or (combined.is_file() and until in combined.read_text())
                ),
                60,
                until,
            )
            process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode, output


def files(tmp_path: Path) -> dict[str, list[str]]:
    folder = tmp_path / "logs"
    return {
        name: (folder / name).read_text().splitlines() for name in ("combined.log", "error.log")
    }


@pytest.mark.timeout(120)
def test_start_up_and_shutdown_go_through_the_json_log_into_the_files(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO"}
    code, output = run_worker(env, tmp_path, until="ready to claim")
    assert code == 0, output
    console = [json.loads(line) for line in output.splitlines()]  # every line a JSON record
    messages = [record["message"] for record in console]
    assert any(m.startswith("SIGTERM: finishing running jobs") for m in messages), messages
    assert any(m.startswith("worker stopped: 0 completed") for m in messages), messages
    logged = [json.loads(line)["message"] for line in files(tmp_path)["combined.log"]]
    assert logged == messages


@pytest.mark.timeout(120)
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_worker_that_cannot_start_says_why_in_error_log(
    database_url: str, tmp_path: Path, log_format: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("alter function public.mealworker_register_worker rename to gone")
    env = {"DATABASE_URL": database_url, "LOG_FORMAT": log_format}
    code, output = run_worker(env, tmp_path)
    assert code == 1, output
    (error,) = files(tmp_path)["error.log"]
    assert "mealworker migrate" in error
    if log_format == "json":
        record = json.loads(error)
        assert record["level"] == "critical"
        assert record["message"].startswith("worker stopped: ")
        assert all(json.loads(line) for line in output.splitlines())
    else:
        assert RECORD.match(error), error
        assert error in output


@pytest.mark.timeout(120)
def test_a_worker_stopped_while_waiting_for_its_database_says_so_in_the_files(
    tmp_path: Path,
) -> None:
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/nowhere", "LOG_FORMAT": "json"}
    code, output = run_worker(env, tmp_path, until="database unavailable")
    assert code == 0, output
    records = [json.loads(line) for line in files(tmp_path)["combined.log"]]
    assert records[-1]["message"] == "SIGTERM: exiting; no job is held"
    assert all(json.loads(line) for line in output.splitlines())
