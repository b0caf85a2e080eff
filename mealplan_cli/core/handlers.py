"""What a worker does with each job type: a handler per type, registered in one place.

A handler is ``async def handler(job, context) -> dict | None``: the dict is the job's result,
written in the same transaction that completes the job. Raising a ``MealworkerError`` fails the
job, retried later when ``error.retryable``; any other exception is retried as a bug. Raising
``JobDeferred(run_at, reason)`` puts the job back to wait until ``run_at`` without spending an
attempt (a cap reached, a window closed: nothing failed). A program embedding mealworker
registers its own with ``registry.register("type", handler)`` and passes whatever its handlers
need as the worker's ``resources`` (``context.resources``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mealplan_cli.core.queue import ClaimedJob, Queue
from mealplan_cli.ops.errors import JobDeferred as JobDeferred


@dataclass
class JobContext:
    """What a handler may use: the queue (for progress), its job, the worker's resources."""

    queue: Queue
    job: ClaimedJob
    resources: Any
    """Opaque to the worker: meal-plan jobs get ``GenerationServices`` here."""
    worker_id: str
    on_progress: Callable[[Any], None] | None = None
    """Also told every progress step (``run-job``'s progress display)."""


Handler = Callable[[ClaimedJob, JobContext], Awaitable[dict[str, Any] | None]]


@dataclass
class HandlerRegistry:
    handlers: dict[str, Handler] = field(default_factory=dict)

    def register(self, job_type: str, handler: Handler) -> None:
        self.handlers[job_type] = handler

    def get(self, job_type: str) -> Handler | None:
        return self.handlers.get(job_type)

    def __iter__(self) -> Iterator[str]:
        return iter(self.handlers)

    def __contains__(self, job_type: object) -> bool:
        return job_type in self.handlers

    def only(self, job_types: list[str]) -> HandlerRegistry:
        """The same handlers restricted to ``job_types`` (``work --job-type``)."""
        return HandlerRegistry({t: h for t, h in self.handlers.items() if t in job_types})


async def ping_job(job: ClaimedJob, context: JobContext) -> None:
    """Completes at once: for health checks and queue benchmarks."""
