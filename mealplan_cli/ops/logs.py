"""Logging for people (rich at a terminal), for log readers (one line a record when stderr is
not a terminal, as under PM2 or systemd) or machines (``LOG_FORMAT=json``), and to files.

The console gets everything at ``LOG_LEVEL``; ``LOG_DIR/combined.log`` the same, and
``LOG_DIR/error.log`` errors only, each rotated by size with a bounded number of old files.
Every line about a job carries its job id, type and attempt (passed as ``extra`` by the worker)
and every line the worker id. Secrets are replaced by ``***`` before any handler sees a record,
including exception text.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TYPE_CHECKING

from mealplan_cli.ops.redact import Redactor

if TYPE_CHECKING:
    from mealplan_cli.settings.config import Settings

JOB_FIELDS = ("job_id", "job_type", "attempt")
MAX_FILE_BYTES = 10 * 2**20
BACKUP_FILES = 5


class SecretFilter(logging.Filter):
    """Masks secrets in the message and in any exception text, before formatting."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redactor.mask(record.getMessage()), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = self.redactor.mask(
                logging.Formatter().formatException(record.exc_info)
            )
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redactor.mask(record.exc_text)
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
    """``time level worker=... job=... type=... attempt=... message``, for files and for a
    console that is not a terminal (PM2, journald, docker): ``one_line`` keeps a record on one
    line there, its traceback included (newlines escaped), so no reader splits it."""

    def __init__(self, worker_id: str | None, *, one_line: bool = False) -> None:
        super().__init__()
        self.worker_id = worker_id
        self.one_line = one_line

    def format(self, record: logging.LogRecord) -> str:
        fields = [f"worker={self.worker_id}"] if self.worker_id else []
        fields += [
            f"{'job' if name == 'job_id' else name.removeprefix('job_')}={getattr(record, name)}"
            for name in JOB_FIELDS
            if hasattr(record, name)
        ]
        message = record.getMessage()
        line = " ".join([_timestamp(record), f"{record.levelname:<7}", *fields, message])
        error = record.exc_text or (
            self.formatException(record.exc_info) if record.exc_info else None
        )
        if self.one_line:
            line = line.replace("\n", "\\n")
            return f"{line} error={json.dumps(error)}" if error else line
        return f"{line}\n{error}" if error else line


def console_handler(settings: Settings, worker_id: str | None) -> logging.Handler:
    """Rich for a person at a terminal; one line a record for anything else; JSON on request."""
    stream = sys.stderr
    handler: logging.Handler
    if settings.log_format == "rich" and stream.isatty():
        from rich.console import Console  # rich only for a person at a terminal
        from rich.logging import RichHandler

        handler = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False
        )
    elif settings.log_format == "json":
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter(worker_id))
    else:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(TextFormatter(worker_id, one_line=True))
    return handler


def quiet_drivers() -> None:
    """Keep psycopg's own records (pool warnings with connection targets) off the console
    until ``setup_logging`` gives them a masked handler: the CLI reports failures itself."""
    driver = logging.getLogger("psycopg")
    for handler in list(driver.handlers):
        driver.removeHandler(handler)
    driver.addHandler(logging.NullHandler())
    driver.propagate = False


def setup_logging(
    settings: Settings, *, worker_id: str | None = None, to_files: bool = True
) -> None:
    """Configure the ``mealworker`` loggers for this process (once per command)."""
    root = logging.getLogger("mealworker")
    driver = logging.getLogger("psycopg")
    for logger in (root, driver):
        for old in list(logger.handlers):
            logger.removeHandler(old)
            old.close()
    masking = SecretFilter(settings.redactor())
    handlers: list[logging.Handler] = [console_handler(settings, worker_id)]
    if to_files:
        folder = Path(settings.log_dir)
        folder.mkdir(parents=True, exist_ok=True)
        for name, level in (("combined.log", logging.DEBUG), ("error.log", logging.ERROR)):
            rotating = RotatingFileHandler(
                folder / name, maxBytes=MAX_FILE_BYTES, backupCount=BACKUP_FILES, encoding="utf-8"
            )
            rotating.setLevel(level)
            rotating.setFormatter(
                JsonFormatter(worker_id)
                if settings.log_format == "json"
                else TextFormatter(worker_id, one_line=True)  # grep and tail see whole records
            )
            handlers.append(rotating)
    for handler in handlers:
        handler.addFilter(masking)
        root.addHandler(handler)
        driver.addHandler(handler)
    root.setLevel(settings.log_level.value)
    root.propagate = False
    # psycopg's records reach the same masked handlers. The pool reports each connection it
    # discards; the worker already logs the outage once.
    driver.setLevel(max(logging.WARNING, root.level))
    driver.propagate = False
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
