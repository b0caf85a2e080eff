"""How a worker runs: its settings, taken from ``Settings`` (one set of defaults)."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from typing import Any

from mealplan_cli.core.worker.refusals import ROWS_HOLD
from mealplan_cli.settings.config import Settings


def default_worker_id(prefix: str = "") -> str:
    """``host-pid`` (``prefix-host-pid`` for run-job or the demo): the one formula."""
    name = f"{socket.gethostname()}-{os.getpid()}"
    return f"{prefix}-{name}" if prefix else name


def _default(name: str) -> Any:
    return Settings.model_fields[name].default


@dataclass(frozen=True)
class WorkerConfig:
    worker_id: str = field(default_factory=default_worker_id)
    concurrency: int = _default("max_concurrent_jobs")
    poll_interval: float = _default("poll_interval_ms") / 1000
    lease_seconds: float = _default("lease_seconds")
    job_timeout: float = _default("job_timeout_seconds")
    shutdown_grace: float = _default("shutdown_grace_seconds")
    sweep_interval: float = _default("stale_sweep_seconds")
    until_empty: bool = False
    listen: bool = True
    refused_rows_hold: float = ROWS_HOLD
    """How long a streak of refused completions holds the worker (``worker.refusals``)."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> WorkerConfig:
        """The worker's part of the settings; ``overrides`` (e.g. ``until_empty``) on top."""
        config = cls(
            worker_id=settings.worker_id or default_worker_id(),
            concurrency=settings.max_concurrent_jobs,
            poll_interval=settings.poll_interval_ms / 1000,
            lease_seconds=settings.lease_seconds,
            job_timeout=settings.job_timeout_seconds,
            shutdown_grace=settings.shutdown_grace_seconds,
            sweep_interval=settings.stale_sweep_seconds,
        )
        return replace(config, **overrides)

    @property
    def pool_size(self) -> int:
        """Database connections a worker of this concurrency keeps open."""
        return min(max(4, self.concurrency // 50), 10)


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux), for the workers table."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None
