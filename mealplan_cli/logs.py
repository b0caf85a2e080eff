"""Logging for people (rich, on stderr) or machines (``LOG_FORMAT=json``, one object a line).

Every line about a job carries its job id, type and attempt (passed as ``extra``), and the
worker id; secrets are masked before anything is written.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterable

from rich.console import Console
from rich.logging import RichHandler

JOB_FIELDS = ("job_id", "job_type", "attempt")


class SecretFilter(logging.Filter):
    """Replaces every known secret value in a record's message with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if len(s) >= 6]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            for secret in self.secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, worker_id: str | None) -> None:
        super().__init__()
        self.worker_id = worker_id

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "worker_id": self.worker_id,
        }
        for name in JOB_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(
    level: str,
    *,
    json_lines: bool = False,
    worker_id: str | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Configure the ``mealworker`` loggers once per process."""
    root = logging.getLogger("mealworker")
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter(worker_id))
    else:
        handler = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False, rich_tracebacks=False
        )
    handler.addFilter(SecretFilter(secrets))
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    # The pool reports each connection it discards; the worker already logs the outage once.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
