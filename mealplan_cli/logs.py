"""Logging for people (rich on stderr) or machines (``LOG_FORMAT=json``), and to files.

The console gets everything at ``LOG_LEVEL``; ``LOG_DIR/combined.log`` the same, and
``LOG_DIR/error.log`` errors only, each rotated by size with a bounded number of old files.
Every line about a job carries its job id, type and attempt (passed as ``extra`` by the worker)
and every line the worker id. Secrets are replaced by ``***`` before any handler sees a record,
including exception text.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from logging.handlers import RotatingFileHandler
from pathlib import Path

from rich.console import Console
from rich.logging import RichHandler

from mealplan_cli.config import Settings

JOB_FIELDS = ("job_id", "job_type", "attempt")
MAX_FILE_BYTES = 10 * 2**20
BACKUP_FILES = 5


def secrets_of(settings: Settings) -> list[str]:
    """Every secret value the settings hold, to be masked wherever it might appear."""
    values = (
        settings.openai_api_key,
        settings.unsplash_access_key,
        settings.supabase_service_role_key,
        settings.database_url,
    )
    found = [v.get_secret_value() for v in values if v is not None]
    if settings.database_url is not None:  # the password inside the URL on its own, too
        url = settings.database_url.get_secret_value()
        if "://" in url and "@" in url.split("://", 1)[1]:
            credentials = url.split("://", 1)[1].rsplit("@", 1)[0]
            if ":" in credentials:
                found.append(credentials.split(":", 1)[1])
    return [s for s in found if len(s) >= 6]


class SecretFilter(logging.Filter):
    """Masks secrets in the message and in any exception text, before formatting."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = sorted(set(secrets), key=len, reverse=True)

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            record.msg, record.args = self.mask(record.getMessage()), None
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = self.mask(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


def _timestamp(record: logging.LogRecord) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z"
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def __init__(self, worker_id: str | None) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker_id": self.worker_id,
        }
        for name in JOB_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        error = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else None
        )
        if error:
            entry["error"] = error
        return json.dumps(entry)


class TextFormatter(logging.Formatter):
    """``time level worker=... job=... type=... attempt=... message`` for log files."""

    def __init__(self, worker_id: str | None) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"worker={self.worker_id}"] if self.worker_id else []
        fields += [
            f"{'job' if name == 'job_id' else name.removeprefix('job_')}={getattr(record, name)}"
            for name in JOB_FIELDS
            if hasattr(record, name)
        ]
        line = (
            f"{_timestamp(record)} {record.levelname:<7} {' '.join(fields)} {record.getMessage()}"
        )
        error = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else None
        )
        return f"{line}\n{error}" if error else line


def setup_logging(
    settings: Settings, *, worker_id: str | None = None, to_files: bool = True
) -> None:
    """Configure the ``mealworker`` loggers for this process (once per command)."""
    root = logging.getLogger("mealworker")
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    masking = SecretFilter(secrets_of(settings))
    console: logging.Handler
    if settings.log_format == "json":
        console = logging.StreamHandler()
        console.setFormatter(JsonFormatter(worker_id))
    else:
        console = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False
        )
    handlers: list[logging.Handler] = [console]
    if to_files:
        folder = Path(settings.log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, level in (("combined.log", logging.DEBUG), ("error.log", logging.ERROR)):
            rotating = RotatingFileHandler(
                folder / name, maxBytes=MAX_FILE_BYTES, backupCount=BACKUP_FILES, encoding="utf-8"
            )
            rotating.setLevel(level)
            formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
            rotating.setFormatter(formatter(worker_id))
            handlers.append(rotating)
    for handler in handlers:
        handler.addFilter(masking)
        root.addHandler(handler)
    root.setLevel(settings.log_level.value)
    root.propagate = False
    # The pool reports each connection it discards; the worker already logs the outage once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
